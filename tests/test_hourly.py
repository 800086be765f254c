"""Hourly runs as production runs them: runs after runs, late files, kills between steps,
readers reading meanwhile, compaction. Raw objects on the moto server where S3 matters."""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.orc as orc
import pytest

from conftest import REPO, STRATUS_GZ, lake_rows, place, records_of
from loglake import catalog, cli, jobs, manifest, publish, state, storage
from loglake.sources.cloudtrail import CLOUDTRAIL
from orc_footer import dictionary_columns

RECORDS = records_of(STRATUS_GZ)
N = len(RECORDS)
ACCOUNT = "123456789012"
TABLE = "from_cloudtrail_readready"
PART = f"org=none/account={ACCOUNT}/region=us-east-1"


def key(day: int, name: str) -> str:
    return f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/12/{day:02d}/{name}.json.gz"


def body(tag: str, records=None) -> bytes:
    """Real records with event ids of their own (``tag``), so objects never repeat each other."""
    recs = [dict(r, eventID=f"{r['eventID']}-{tag}") for r in (records or RECORDS)]
    return gzip.compress(json.dumps({"Records": recs}).encode())


def ids(rows) -> list[str]:
    return [r["eventid"] for r in rows]


# --------------------------------------------------------------------------- readers never see less


def _orc_bytes(event_ids: list[str]) -> bytes:
    rows = [{"eventid": e, "eventname": "GetCallerIdentity", "eventsource": "sts.amazonaws.com"} for e in event_ids]
    buf = io.BytesIO()
    orc.write_table(pa.Table.from_pylist(rows, schema=CLOUDTRAIL.orc_arrow()), buf, compression="zlib")
    return buf.getvalue()


class Reader:
    """Reads one partition the two documented ways, with clients of its own (no hooks):
    Athena's (list the Glue location, skip hidden names, read every file) and a path
    reader's (the manifest's current files). Records what each saw at every call."""

    def __init__(self, endpoint: str, database: str, values: list[str], partition_uri: str):
        session = boto3.session.Session()
        self.s3 = session.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        self.glue = session.client("glue", endpoint_url=endpoint, region_name="us-east-1")
        self.database, self.values, self.partition = database, values, partition_uri
        self.seen: list[tuple[str, str, list[str]]] = []  # (after which call, how, event ids)

    def _read(self, uri: str) -> list[str]:
        bucket, k = storage.split_s3(uri)
        data = self.s3.get_object(Bucket=bucket, Key=k)["Body"].read()
        return orc.ORCFile(io.BytesIO(data)).read(columns=["eventid"]).column(0).to_pylist()

    def athena(self) -> list[str]:
        location = self.glue.get_partition(DatabaseName=self.database, TableName=TABLE,
                                           PartitionValues=self.values)["Partition"]["StorageDescriptor"]["Location"]
        bucket, prefix = storage.split_s3(location.rstrip("/") + "/")
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix):]
                if not any(p.startswith(("_", ".")) for p in rel.split("/")):
                    out += self._read(f"s3://{bucket}/{obj['Key']}")
        return out

    def manifest(self) -> list[str]:
        bucket, k = storage.split_s3(manifest.uri(self.partition))
        doc = json.loads(self.s3.get_object(Bucket=bucket, Key=k)["Body"].read())
        return [e for f in doc["files"] for e in self._read(storage.join(self.partition, f["name"]))]

    def __call__(self, event_name: str, **_) -> None:
        self.seen.append((event_name, "athena", self.athena()))
        self.seen.append((event_name, "manifest", self.manifest()))


def test_a_reader_between_every_call_of_a_publish_sees_old_files_or_old_plus_complete_new(aws):
    """Adding a run's files, then compacting: after every S3 and Glue call the publish
    makes, the partition reads (as Athena and as a manifest reader) old rows, or old rows
    plus some complete new ones; never fewer, never a row twice."""
    aws.s3.create_bucket(Bucket="lake")
    root = "s3://lake/rr"
    part = f"{root}/{TABLE}/{PART}/dt=2024-12-01"
    values = ["none", ACCOUNT, "us-east-1", "2024-12-01"]
    catalog.ensure_database(aws.glue, "db")
    catalog.ensure_table(aws.glue, "db", catalog.table_input(TABLE, CLOUDTRAIL, f"{root}/{TABLE}", "orc"))
    staged = {}
    for name, events in (("a", ["a1", "a2", "a3"]), ("b", ["b1", "b2"]), ("c", ["c1"]),
                         ("compacted", ["a1", "a2", "a3", "b1", "b2", "c1"])):
        staged[name] = f"{root}/_staging/run/{name}.orc"
        storage.write_bytes(staged[name], _orc_bytes(events))
    after, _ = publish.add(part, [(staged["a"], 3)], ["s3://trail/a.json.gz"])
    publish.register(aws.glue, "db", TABLE, {tuple(values): storage.join(part, after.generation) + "/"})
    old = ["a1", "a2", "a3"]

    reader = Reader(aws.endpoint, "db", values, part)
    s3, glue = storage._s3(), aws.glue
    hooks = [(s3, "after-call.s3"), (glue, "after-call.glue")]
    for client, event in hooks:
        client.meta.events.register(event, reader, unique_id="test-reader")
    try:
        # An hourly run adds two files.
        after, added = publish.add(part, [(staged["b"], 2), (staged["c"], 1)], ["s3://trail/b.json.gz"])
        assert added
        publish.register(glue, "db", TABLE, {tuple(values): storage.join(part, after.generation) + "/"})
        adding = list(reader.seen)
        # Compaction replaces them with one file; the old ones stay for the retention.
        _, after = publish.replace(part, [(staged["compacted"], 6)], sorted(after.converted), time.time() + 600,
                                   prefix="c")
        publish.register(glue, "db", TABLE, {tuple(values): storage.join(part, after.generation) + "/"})
        swapping = reader.seen[len(adding):]
        publish.expire(part, now=time.time() + 601)
        expiring = reader.seen[len(adding) + len(swapping):]
    finally:
        for client, event in hooks:
            client.meta.events.unregister(event, unique_id="test-reader")

    new = {"b1", "b2", "c1"}
    assert len(adding) >= 6 and len(swapping) >= 4 and len(expiring) >= 2  # the hook saw every call
    for call, how, seen in adding:
        assert len(seen) == len(set(seen)), f"a row twice after {call} ({how}): {seen}"
        assert set(old) <= set(seen) <= set(old) | new, f"after {call} ({how}): {seen}"
        assert len(set(seen) & {"b1", "b2"}) in (0, 2)  # a file is whole or absent
    assert sorted(adding[-1][2]) == sorted(old + list(new))
    everything = sorted(old + list(new))
    for call, how, seen in swapping + expiring:
        assert sorted(seen) == everything, f"after {call} ({how}): {seen}"


# --------------------------------------------------------------------------- a day in slices, on S3


def test_a_day_in_slices_on_s3_reads_each_object_once_then_compacts_to_one_file(spark, aws, tmp_path):
    """Hourly runs over an S3 prefix (listing mode): each reads only its slice's objects,
    whatever the overlap re-lists; then compaction leaves one file per partition."""
    aws.s3.create_bucket(Bucket="trail")
    out = tmp_path / "lake"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"aws: {{endpoint_url: '{aws.endpoint}'}}\nquality: {{expectations: false}}\n"
                   "compaction: {max_partitions_per_run: 0}\n")  # compaction at the end, by the command
    slices = [[(1, "a"), (2, "a")], [(1, "b"), (2, "b"), (3, "a")], [(3, "b")], [(1, "late")]]
    reads = []
    for n, objects in enumerate(slices):
        for day, name in objects:
            aws.s3.put_object(Bucket="trail", Key=key(day, name), Body=body(f"{day}{name}"))
        summary_path = tmp_path / f"s{n}.json"
        assert cli.main(["-q", "run", "cloudtrail", "--scheduled", "--raw", "s3://trail/AWSLogs/", "--out", str(out),
                         "--summary-json", str(summary_path), "--config", str(cfg)]) == 0
        reads.append(json.loads(summary_path.read_text())["files_read"])
    assert reads == [len(s) for s in slices]  # the 300 s overlap re-lists older objects: manifests skip them
    delivered = sum(len(s) for s in slices)
    rows = lake_rows(out / TABLE)
    assert len(rows) == delivered * N and len(set(ids(rows))) == delivered * N
    # the runs' files are interim (compaction replaces them): small, so without dictionaries
    names = list(CLOUDTRAIL.names)
    assert all(dictionary_columns(str(f), names) == set() for f in (out / TABLE).rglob("*.orc"))
    summary_path = tmp_path / "compact.json"
    assert cli.main(["-q", "compact", "cloudtrail", "--out", str(out), "--closed", "--retain-minutes", "0",
                     "--summary-json", str(summary_path), "--config", str(cfg)]) == 0
    summary = json.loads(summary_path.read_text())
    assert summary["partitions_compacted"] == 3 and summary["files_before"] == delivered
    assert summary["files_after"] == 3 and summary["rows"] == delivered * N and summary["duplicates"] == 0
    for day in (1, 2, 3):
        folder = out / TABLE / PART / f"dt=2024-12-0{day}"
        [compacted] = folder.rglob("*.orc")  # the retention is 0: only the compacted file is left
        assert "eventsource" in dictionary_columns(str(compacted), names)  # written with ORC's threshold
    assert sorted(ids(lake_rows(out / TABLE))) == sorted(ids(rows))


# --------------------------------------------------------------------------- kill -9, then run again


def _job_lake(aws, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources: {cloudtrail: {bucket: trail}}\ncatalog: {database: lake}\n"
        f"readready: {{location: 'file://{tmp_path}/lake'}}\naws: {{endpoint_url: '{aws.endpoint}'}}\n"
        # A killed run cannot release its lock: the next run takes it over once this passed.
        "quality: {expectations: false}\nscheduled: {lock_ttl_seconds: 3}\n"
    )
    from loglake.addapart import AddAPart
    from loglake.config import load_config

    config = load_config(str(cfg), env={})
    catalog.ensure_database(aws.glue, "lake")
    for tinput in catalog.table_inputs(config, f"file://{tmp_path}/lake", {"cloudtrail": "s3://trail/AWSLogs/"}):
        catalog.ensure_table(aws.glue, "lake", tinput)
    aws.s3.create_bucket(Bucket="trail")
    return cfg, AddAPart(config, glue=aws.glue)


def _land(aws, app, objects: dict[str, bytes]) -> None:
    from loglake.addapart import Message

    for k, data in objects.items():
        aws.s3.put_object(Bucket="trail", Key=k, Body=data)
    records = [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "trail"}, "object": {"key": k, "size": len(d)}}} for k, d in objects.items()]
    assert not app.process([Message("m", json.dumps({"Records": records}))]).failed_message_ids


def _athena_rows(aws, lake: Path) -> list[str]:
    """What Athena reads: every file below each Glue partition location (hidden names skipped)."""
    out = []
    for p in catalog.list_partitions(aws.glue, "lake", TABLE):
        folder = Path(storage.local_path(p["StorageDescriptor"]["Location"]))
        for f in sorted(folder.rglob("*.orc")):
            if not any(part.startswith(("_", ".")) for part in f.relative_to(folder).parts):
                out += orc.ORCFile(str(f)).read(columns=["eventid"]).column(0).to_pylist()
    return out


def _wait_for_lock_expiry(lake: Path) -> None:
    lock = lake / "_state" / "cloudtrail" / "lock.json"
    if lock.exists():  # the killed run's: it could not release it
        time.sleep(max(0.0, json.loads(lock.read_text())["expires_at"] - time.time() + 0.1))


def _orc_rows(folder: Path) -> list[dict]:
    return [r for f in sorted(folder.rglob("*.orc")) for r in orc.ORCFile(str(f)).read().to_pylist()]


KILL_STEPS = ["claimed", "staged", "partition:2", "release", "compact_swap:2"]


def test_a_run_killed_at_any_step_and_run_again_leaves_each_event_once(spark, aws, tmp_path):
    """kill -9 of the Glue job script (in its own process) at each step in turn: after
    taking its input (claimed), after converting (staged), between two partitions'
    commits, in the middle of its commit (release), between two partitions' compaction
    swaps. Each time the next run finishes the job: each event once in readready, as
    Athena and as a manifest reader see it, each quarantined object once, each runs row
    once. One lake for all steps: every step adds its own slice to three partitions."""
    cfg, app = _job_lake(aws, tmp_path)
    lake = tmp_path / "lake"
    argv = ["job.py", "--JOB_NAME", "hourly", "--config", str(cfg)]
    _land(aws, app, {key(1, "a"): body("1a"), key(2, "a"): body("2a")})
    assert jobs.main("cloudtrail", argv)["written"] == 2 * N
    delivered = ["1a", "2a"]
    for n, step in enumerate(KILL_STEPS):
        tags = [f"1s{n}", f"2s{n}", f"3s{n}"]  # late files for days 1 and 2 (compacted by now), and day 3
        _land(aws, app, {key(int(t[0]), t): body(t) for t in tags} | {key(3, f"broken{n}"): b"this is not gzip"})
        delivered += tags
        killed = subprocess.run(
            [sys.executable, str(REPO / "glue_jobs" / "cloudtrail_readready.py"), *argv[1:]],
            env={**os.environ, "LOGLAKE_KILL_AT": step}, capture_output=True, text=True, timeout=600)
        assert killed.returncode == -9, (step, killed.stderr[-3000:])
        _wait_for_lock_expiry(lake)
        again = jobs.main("cloudtrail", argv)
        assert again["status"] == "published", step

        expected = sorted(f"{r['eventID']}-{t}" for t in delivered for r in RECORDS)
        assert sorted(ids(lake_rows(lake / TABLE))) == expected, step
        assert sorted(_athena_rows(aws, lake)) == expected, step
        quarantined = [r["raw_key"] for r in _orc_rows(lake / "quarantine") if r["reason"] == "not_gzip"]
        assert sorted(q.rsplit("/", 1)[-1] for q in quarantined) == [f"broken{i}.json.gz" for i in range(n + 1)], step
        runs = [r for r in _orc_rows(lake / "runs") if r["job"] == "cloudtrail_readready"]
        assert len({r["run_id"] for r in runs}) == len(runs), step
        assert sum(r["written"] for r in runs) == len(expected), step  # no run counted rows another had written
        assert state.read_intent(str(lake), "cloudtrail") is None, step
        assert not list((lake / "_state" / "cloudtrail" / "inbox").glob("*.json")), step
        for day in (1, 2, 3):  # closed days, compacted by the scheduled job
            m = manifest.load(str(lake / TABLE / PART / f"dt=2024-12-0{day}"))
            assert m.compacted and len(m.files) == 1, (step, day)


# --------------------------------------------------------------------------- compaction


def _compaction_lake(tmp_path: Path) -> tuple[Path, Path, Path]:
    """raw folder, lake and config for scheduled runs that leave compaction to the command."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("quality: {expectations: false}\ncompaction: {max_partitions_per_run: 0}\n")
    return tmp_path / "raw", tmp_path / "lake", cfg


def _scheduled(raw: Path, out: Path, cfg: Path) -> dict:
    path = cfg.parent / f"s{time.monotonic_ns()}.json"
    assert cli.main(["-q", "run", "cloudtrail", "--scheduled", "--raw", str(raw), "--out", str(out),
                     "--summary-json", str(path), "--config", str(cfg)]) == 0
    return json.loads(path.read_text())


@pytest.fixture(params=["in tasks", "by spark"])
def rewrite_path(request, monkeypatch):
    """Compaction's two ways of rewriting a partition: small ones in one task with
    pyarrow (the default for these), large ones through Spark's sort (forced here)."""
    from loglake import compact as compact_module

    if request.param == "by spark":
        monkeypatch.setattr(compact_module, "IN_TASK_ROWS", -1)
    return request.param


def _drops_the_first_kept_row(table, key):
    """A dedup with a bug: it loses a row (shipped to Spark's workers by value)."""
    from loglake.orcwrite import first_of_each_key

    return first_of_each_key(table, key).slice(1)


def test_compaction_that_loses_a_row_switches_nothing(spark, tmp_path, monkeypatch, rewrite_path):
    """A row lost between reading a partition and writing its compacted file is not
    mistaken for a dropped repeat: the compaction counts the repeats apart from the
    dedup and the write that must keep the rest."""
    from pyspark import cloudpickle

    from loglake import compact as compact_module

    raw, out, cfg = _compaction_lake(tmp_path)
    for tag in "ab":  # two runs: two files in the partition
        place(raw, key(1, tag), body(tag))
        _scheduled(raw, out, cfg)
    part = out / TABLE / PART / "dt=2024-12-01"
    before = manifest.load(str(part))
    assert len(before.files) == 2
    if rewrite_path == "by spark":
        lost = f"{RECORDS[0]['eventID']}-a"
        real = compact_module.write_readready
        monkeypatch.setattr(compact_module, "write_readready",
                            lambda rows, *a: real(rows.where(f"eventid != '{lost}'"), *a))
    else:
        monkeypatch.setattr(compact_module, "first_of_each_key", _drops_the_first_kept_row)
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with pytest.raises(RuntimeError, match=f"read {2 * N} rows with 0 repeats but staged {2 * N - 1}; nothing"):
            cli.main(["-q", "compact", "cloudtrail", "--out", str(out), "--config", str(cfg), "--closed"])
    finally:
        if rewrite_path == "in tasks":
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert manifest.load(str(part)) == before  # nothing switched
    assert sorted(ids(lake_rows(out / TABLE))) == sorted(f"{r['eventID']}-{t}" for t in "ab" for r in RECORDS)


def test_compaction_drops_repeats_is_idempotent_and_takes_late_data_again(spark, tmp_path, rewrite_path):
    raw, out, cfg = _compaction_lake(tmp_path)

    def run_scheduled():
        return _scheduled(raw, out, cfg)

    def compact(*extra):
        path = tmp_path / f"c{time.monotonic_ns()}.json"
        assert cli.main(["-q", "compact", "cloudtrail", "--out", str(out), "--summary-json", str(path),
                         "--config", str(cfg), *extra]) == 0
        return json.loads(path.read_text())

    place(raw, key(1, "a"), body("a"))
    place(raw, key(2, "a"), body("2a"))
    run_scheduled()
    # The same event delivered again in a later object of the same partition (day 1);
    # day 2 gets a new object without repeats.
    # With it, new events that sort after it: the rows kept are the first of each id,
    # not as many rows from the top (which would keep the repeat and lose these).
    repeat = dict(RECORDS[0], eventID=f"{RECORDS[0]['eventID']}-a")
    later = [dict(RECORDS[0], eventID=f"{RECORDS[0]['eventID']}-b{i}", eventName="ZzzLater") for i in range(2)]
    place(raw, key(1, "b"), gzip.compress(json.dumps({"Records": [repeat, *later]}).encode()))
    place(raw, key(2, "b"), body("2b"))
    assert run_scheduled()["files_read"] == 2
    assert len(lake_rows(out / TABLE)) == 3 * N + 3  # open: the repeat shows twice until compaction (README)

    first = compact("--date", "2024-12-01,2024-12-02")
    assert (first["partitions_compacted"], first["files_before"], first["files_after"]) == (2, 4, 2)
    assert first["rows"] == 3 * N + 2 and first["duplicates"] == 1
    rows = lake_rows(out / TABLE)
    raw_by_id = {f"{r['eventID']}-{t}": r for t in ("a", "2a", "2b") for r in RECORDS}
    raw_by_id.update({r["eventID"]: r for r in later})
    assert sorted(ids(rows)) == sorted(raw_by_id)
    # every column kept its value, in the partition that dropped a repeat and in the other
    assert all(r["eventname"] == raw_by_id[r["eventid"]]["eventName"] for r in rows)
    assert all(r["requestid"] == raw_by_id[r["eventid"]].get("requestID") for r in rows)
    compact_runs = [r for r in _orc_rows(out / "runs") if r["job"] == "cloudtrail_compact"]
    assert [r["duplicates"] for r in compact_runs] == [1]
    # one file a partition, in the table's sort (eventsource, eventname, useridentity_arn, eventtime; nulls first)
    for day in (1, 2):
        day_part = out / TABLE / PART / f"dt=2024-12-0{day}"
        [file] = manifest.load(str(day_part)).files
        got = orc.read_table(str(day_part / file.name)).to_pylist()
        order = [(r["eventsource"], r["eventname"], r["useridentity_arn"], r["eventtime"]) for r in got]
        assert order == sorted(order, key=lambda t: tuple((v is not None, v) for v in t))

    part = out / TABLE / PART / "dt=2024-12-01"
    before = manifest.load(str(part))
    second = compact("--date", "2024-12-01")
    assert second["partitions_compacted"] == 0 and second["partitions_already_compact"] == 1
    assert manifest.load(str(part)) == before  # the same files, the same manifest
    assert len(list(part.rglob("*.orc"))) == 3  # the replaced files stay for the retention

    place(raw, key(1, "late"), body("late"))  # hours late, for a compacted partition
    late = run_scheduled()
    assert late["files_read"] == 1
    m = manifest.load(str(part))
    assert len(m.files) == 2 and not m.compacted  # beside the compacted file, and open again
    assert f"{PART}/dt=2024-12-01" in state.read_index(str(out), "cloudtrail")["open"]
    third = compact("--closed", "--retain-minutes", "0")
    assert third["partitions_compacted"] == 1 and third["rows"] == 2 * N + 2
    assert len(list(part.rglob("*.orc"))) == 1
    assert len(set(ids(lake_rows(out / TABLE)))) == 2 * N + 2 + 2 * N  # day 1 (a, b, late), day 2 (2a, 2b)


def test_compaction_reads_files_of_an_older_schema_with_nulls_and_keeps_the_file_order(tmp_path):
    """A partition's files joined for compaction: consecutive files of one schema are
    conformed together, a file written before a column was appended gets nulls there,
    and the rows stay in file order (the dedup keeps the first row of each key)."""
    from loglake import compact
    from loglake.config import FiltersConfig
    from loglake.sources.cloudtrail import process_cloudtrail

    schema = CLOUDTRAIL.orc_arrow()
    rows = process_cloudtrail(STRATUS_GZ.read_bytes(), "stratus", FiltersConfig()).rows
    full = pa.Table.from_pylist(rows, schema=CLOUDTRAIL.arrow(with_partitions=False)).cast(schema)
    last = schema.names[-1]
    older = full.drop_columns([last])  # a file that predates the last column
    chunks = [full.slice(0, 5), full.slice(5, 4), older.slice(9, 6), full.slice(15, 3)]
    uris = []
    for i, t in enumerate(chunks):
        path = tmp_path / f"f{i}.orc"
        orc.write_table(t, str(path))
        uris.append(str(path))
    got = compact._read_partition(uris, schema)
    assert got.schema == schema
    assert got.column("eventid").to_pylist() == [r["eventid"] for r in rows[:18]]
    assert got.column(last).to_pylist()[9:15] == [None] * 6
    want = full.slice(0, 18).to_pylist()
    for i, (g, w) in enumerate(zip(got.to_pylist(), want, strict=True)):
        assert g == (dict(w, **{last: None}) if 9 <= i < 15 else w), i


def test_publishing_threads_are_kept_between_runs_and_made_again_in_a_forked_child():
    """A run's publish uses the process's thread pool (started once: started per run, its
    threads took a two-partition run's publish from 4 to 23 ms); a child forked after it
    has none of those threads, so it must make its own instead of waiting forever on a
    pool with no workers."""
    import multiprocessing

    from loglake import convert

    pool = convert._publish_pool()
    assert convert._publish_pool() is pool and pool.submit(lambda: 41 + 1).result(timeout=10) == 42
    child = multiprocessing.get_context("fork").Process(target=_publish_in_child)
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0


def _publish_in_child():
    from loglake import convert

    raise SystemExit(0 if convert._publish_pool().submit(lambda: 7).result(timeout=10) == 7 else 1)
