"""Shared fixtures: one Spark session and one moto server per test process (`make test` runs two)."""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from loglake import localaws, samples, storage

# Every JVM the tests start (the session's, and each `loglake` process's) compiles with
# the quick compiler only: test runs are short, and a process starts ~3 s sooner
# (tests/test_commands.py: 137 s -> 118 s; in-process Spark tests unchanged).
os.environ.setdefault("LOGLAKE_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1")

REPO = Path(__file__).resolve().parents[1]
try:  # ../shared/data/external, found as `loglake demo` finds it (LOGLAKE_SAMPLES overrides)
    SAMPLES = samples.samples_dir()
except FileNotFoundError as exc:
    SAMPLES, _SAMPLES_MISSING = Path("/nonexistent"), str(exc)
else:
    _SAMPLES_MISSING = ""
CT = SAMPLES / "cloudtrail"
STRATUS_GZ = CT / "stratus-red-team" / "stratus_detonation_logs_all.records.json.gz"
ELASTIC_GZ = CT / "elastic-integrations" / "elastic_cloudtrail_test_logs_all.records.json.gz"
CWL = SAMPLES / "cloudwatch_logs"
FIREHOSE_OBJECT = CWL / "derived" / "firehose_style_s3_object_concatenated_gzip_members.gz"
CONTROL_MESSAGE = CWL / "vector" / "control_message.json"
LAMBDA_LOGS = CWL / "datadog-serverless-functions" / "cloudwatch_logs.json"
SESSION_FIXTURE = REPO / "tests" / "fixtures" / "ssm_session_records.jsonl"
SESSION_OWNER = "294599468799"  # the account of the real stratus StartSession events


def pytest_configure(config):
    if _SAMPLES_MISSING:
        raise pytest.UsageError(f"shared samples: {_SAMPLES_MISSING}")
    # Before any Spark starts: its Python workers inherit the environment of that moment,
    # and they read s3:// objects from the moto server with these credentials.
    os.environ.update(localaws.FAKE_CREDENTIALS)


def records_of(path: Path) -> list[dict]:
    """Records of a real sample, read independently of loglake's own decoder."""
    with gzip.open(path) as fh:
        return json.load(fh)["Records"]


@pytest.fixture(scope="session")
def spark():
    from loglake.runtime import local_spark

    os.environ.setdefault("LOGLAKE_SPARK_MASTER", "local[2]")
    session = local_spark("loglake-tests")
    yield session
    session.stop()


@pytest.fixture(params=["one pass", "one pass, spilled", "by spark"])
def stage_path(request, monkeypatch):
    """A run's two ways of converting and writing (loglake.onepass): whole partitions
    per task, the default for runs as small as the tests', with every partition of more
    than 3 rows sorted in spilled runs (loglake.spill), or Spark's shuffle to the writers
    (forced here). The test fails unless all its runs went that way."""
    from loglake import onepass, spill, stage

    if request.param == "by spark":
        monkeypatch.setattr(onepass, "MAX_PARTITION_BYTES", -1)
    if request.param == "one pass, spilled":
        monkeypatch.setattr(spill, "SPILL_ROWS", 3)
    calls: list[str] = []

    def counting(name: str):
        real = getattr(stage, name)

        def counted(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        return counted

    for name in ("_stage_one_pass", "_stage_by_spark"):
        monkeypatch.setattr(stage, name, counting(name))
    yield request.param
    wanted = {"one pass": "_stage_one_pass", "one pass, spilled": "_stage_one_pass",
              "by spark": "_stage_by_spark"}[request.param]
    assert calls and set(calls) == {wanted}, f"runs of this test went {calls}, not only {request.param}"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    server = localaws.MotoServer(log_path=str(tmp_path_factory.mktemp("moto") / "moto.log")).start()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server):
    """A clean moto server for one test, with clients pointed at it."""
    moto_server.reset()
    storage.configure(moto_server.endpoint, "us-east-1")

    class Clients:
        endpoint = moto_server.endpoint
        s3 = storage.client("s3", moto_server.endpoint, "us-east-1")
        sqs = storage.client("sqs", moto_server.endpoint, "us-east-1")
        glue = storage.client("glue", moto_server.endpoint, "us-east-1")

    yield Clients
    storage.configure(None, None)


# --------------------------------------------------------------------------- reader contract

def lake_roots(uris) -> set[str]:
    """Lake roots of the ORC files among ``uris``: the path before a folder named after a
    table loglake owns (default names). Staging folders are not published data."""
    from loglake import contract
    from loglake.config import Config

    names = {t["Name"] for t in contract.owned_tables(Config()).values()}
    roots = set()
    for uri in uris:
        parts = uri.split("/")
        if not uri.endswith(".orc") or "_staging" in parts:
            continue
        at = next((i for i, part in enumerate(parts[:-1]) if part in names), None)
        if at:
            roots.add("/".join(parts[:at]))
    return roots


def assert_reader_contract(roots) -> None:
    from loglake import contract
    from loglake.config import Config

    problems = [p for root in sorted(roots) for p in contract.check_lake(root, Config()).problems]
    assert not problems, f"ORC files Athena would misread: {problems[:5]}"


@pytest.fixture(autouse=True)
def _reader_contract(request):
    """After every test, every ORC file it left in its lakes (tmp_path, moto S3) must read in
    Athena exactly as written (loglake.contract). Opt out with @pytest.mark.broken_orc."""
    # Taken before the test, so that both are torn down after this check.
    tmp = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    aws = request.getfixturevalue("aws") if "aws" in request.fixturenames else None
    yield
    if request.node.get_closest_marker("broken_orc"):
        return
    if tmp is not None:
        assert_reader_contract(lake_roots(str(p) for p in tmp.rglob("*.orc")))
    if aws is not None:
        storage.configure(aws.endpoint, "us-east-1")  # a test may have pointed storage elsewhere
        keys = [o.uri for b in aws.s3.list_buckets().get("Buckets", [])
                for o in storage.list_objects(f"s3://{b['Name']}/")]
        assert_reader_contract(lake_roots(keys))


def session_records() -> list[dict]:
    return samples.session_records(SESSION_FIXTURE)


def session_owner_docs() -> list[dict]:
    """The session fixture as the CloudWatch Logs documents Firehose would deliver."""
    from loglake import samples

    return samples.session_log_documents(session_records(), SESSION_OWNER)


def firehose_objects() -> dict[str, bytes]:
    """The demo's Firehose-style objects: the session fixture, a real CONTROL_MESSAGE
    and a real Lambda log group, documents run together in several gzip members."""
    return samples.firehose_objects(SAMPLES)


def place(raw_root: Path, key: str, source: Path | bytes) -> Path:
    """Put a sample (file or bytes) at ``raw_root/key``."""
    dest = raw_root / key
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, bytes):
        dest.write_bytes(source)
    else:
        shutil.copyfile(source, dest)
    return dest


def lake_rows(table_dir) -> list[dict]:
    """A readready table's rows as a path reader following the manifests reads them (README,
    "Reading the files yourself"): each partition's current files only (manifest.table_files),
    partition values from the ``key=value`` folders, the files read with pyarrow."""
    import pyarrow.orc as orc

    from loglake import manifest
    from loglake.config import Config
    from loglake.sources import SOURCES

    base = str(table_dir).rstrip("/")
    [names] = [s.schema.partition_names for s in SOURCES.values()
               if Config().table(s.name, "readready") == Path(base).name]
    rows = []
    for f in manifest.table_files(base, names):
        values = dict(part.split("=", 1) for part in f[len(base) + 1:].split("/")[: len(names)])
        rows += [{**r, **values} for r in orc.ORCFile(f).read().to_pylist()]
    return rows
