"""Every `loglake` command as a user runs it: the installed console script, in a process of
its own, on small demo-like data (real samples), checked by exit code and output.

A command tested only as a function inside the test process can pass on state an earlier
test left behind (a GX context, a Spark session, storage configured for moto); a new
process has none of that. `demo` and `bench` have end-to-end runs of their own.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyorc
import pytest

from conftest import STRATUS_GZ, lake_rows, place, records_of
from loglake import contract, manifest, rejected_keys

LOGLAKE = str(Path(sys.executable).parent / "loglake")
# An organization trail whose id is o- and 9 characters, as in a published sample that the
# publisher anonymised: shorter than AWS's current 10-32 rule, a well-shaped partition value.
ORG = "o-x7k2m9q4z"
ACCOUNT = "294599468799"
DAY_PREFIX = f"AWSLogs/{ORG}/{ACCOUNT}/CloudTrail/us-east-1/2024/12/01/"
CT_KEY = DAY_PREFIX + f"{ACCOUNT}_CloudTrail_us-east-1_20241201T0000Z_stratus.json.gz"


def loglake(*args, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([LOGLAKE, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, (f"exit {done.returncode}\nstdout:\n{done.stdout[-2000:]}\n"
                                  f"stderr:\n{done.stderr[-4000:]}")
    return done


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A lake written by `loglake run cloudtrail` in its own process (one JVM start: the
    CloudWatch job runs the same code, and has its own tests in test_cloudwatch)."""
    root = tmp_path_factory.mktemp("commands")
    place(root / "raw", CT_KEY, STRATUS_GZ)
    out = root / "lake"
    done = loglake("run", "cloudtrail", "--raw", root / "raw", "--out", out, "--summary-json", root / "s.json")
    return root, out, (done, json.loads((root / "s.json").read_text()) if done.returncode == 0 else None)


def test_run_converts_an_org_trail_with_a_short_org_id(lake):
    root, out, (done, summary) = lake
    ok(done)
    assert json.loads(done.stdout) == summary  # the JSON summary on stdout, logs on stderr
    records = records_of(STRATUS_GZ)
    assert summary["files_read"] == 1 and summary["records_read"] == len(records)
    assert summary["raw_bytes_read"] == STRATUS_GZ.stat().st_size
    assert summary["written"] == len({r["eventID"] for r in records})
    assert summary["quarantined"]["total"] == 0 and summary["skipped_keys"] == {}
    assert summary["status"] == "published" and summary["balanced"] is True
    part = out / "from_cloudtrail_readready" / f"org={ORG}" / f"account={ACCOUNT}" / "region=us-east-1"
    part = part / "dt=2024-12-01"
    [current] = manifest.current_files(str(part))  # one file, in the generation folder the manifest names
    assert [str(p) for p in part.rglob("*.orc")] == [current]


def test_the_runs_row_reads_back_by_an_orc_reader_as_written(lake):
    _, out, (done, summary) = lake
    ok(done)
    [path] = (out / "runs" / "source=cloudtrail").rglob("*.orc")
    row = next(iter(pyorc.Reader(io.BytesIO(path.read_bytes()), struct_repr=pyorc.StructRepr.DICT)))
    started = summary["started_at"].replace("+00:00", "")
    assert row["run_id"] == summary["run_id"] and row["written"] == summary["written"]
    assert row["raw_bytes_read"] == STRATUS_GZ.stat().st_size  # appended last (ddl/columns.tsv)
    assert row["started_at"].replace(tzinfo=None).isoformat() == started  # the UTC wall time, as written


@pytest.mark.broken_orc  # its copy of the lake is broken on purpose
def test_contract_passes_on_the_lake_and_fails_naming_a_broken_file(lake, tmp_path):
    _, out, _ = lake
    report = json.loads(ok(loglake("contract", "--lake", out)).stdout)
    assert report["ok"] is True and report["problems"] == []
    assert report["files_by_table"]["cloudtrail_readready"] == 1 and report["files_by_table"]["runs"] == 1
    assert report["files_checked"] == sum(report["files_by_table"].values())

    broken = tmp_path / "lake"
    shutil.copytree(out, broken)
    [good] = (broken / "from_cloudtrail_readready").rglob("*.orc")
    shutil.copyfile(next((broken / "runs").rglob("*.orc")), good.parent / "not-this-table.orc")
    done = loglake("contract", "--lake", broken)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert {p["file"].rsplit("/", 1)[-1] for p in report["problems"]} == {"not-this-table.orc"}
    assert "not-this-table.orc" in done.stderr


def test_quality_docs_in_a_fresh_process(lake, tmp_path):
    _, out, _ = lake
    done = ok(loglake("quality", "docs", "--lake", out, "--out", tmp_path / "docs"))
    index = Path(done.stdout.strip())
    assert index == tmp_path / "docs" / "index.html"
    html = index.read_text()
    assert "from_cloudtrail_readready" in html and "from_cloudwatch_readready" in html  # both suites
    assert f"{lake[2][1]['run_id']}" in html  # and the run's validation result


def test_query_list_sql_and_a_spark_run(lake):
    _, out, _ = lake
    listing = ok(loglake("query", "--list")).stdout
    assert "needle_readready" in listing and "--param event_name=<string>" in listing
    params = ["-p", "event_name=StartSession", "-p", "from_day=2024-12-01", "-p", "to_day=2024-12-01"]
    rendered = ok(loglake("query", "needle_readready", *params, "--sql")).stdout
    assert "eventname = 'StartSession'" in rendered
    done = ok(loglake("query", "needle_readready", *params, "--lake", out, "--format", "json"))
    rows = json.loads(done.stdout)["rows"]
    expected = sorted(r["eventID"] for r in records_of(STRATUS_GZ) if r["eventName"] == "StartSession")
    assert sorted(r["eventid"] for r in rows) == expected and len(expected) == 3
    assert {r["account"] for r in rows} == {ACCOUNT}


def test_config_show_and_check(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("readready:\n  location: file:///tmp/lake\n")
    shown = ok(loglake("config", "show", "--config", config)).stdout
    assert "location: file:///tmp/lake" in shown
    assert "config ok" in ok(loglake("config", "check", "--config", config)).stderr
    config.write_text("readready:\n  locaton: x\n")
    done = loglake("config", "check", "--config", config)
    assert done.returncode == 2 and "readready.locaton" in done.stderr


def test_ddl_prints_every_table_in_the_snapshot_order():
    text = ok(loglake("ddl")).stdout
    tables = contract.parse_snapshot(contract.SNAPSHOT.read_text())
    for key, name in (("runs", "runs"), ("quarantine", "quarantine"), ("cloudtrail_readready",
                                                                          "from_cloudtrail_readready")):
        statement = text[text.index(f"CREATE EXTERNAL TABLE IF NOT EXISTS loglake.{name} ("):]
        columns = statement[: statement.index("PARTITIONED BY")]
        positions = [columns.index(f"`{col}` {type_}") for col, type_ in tables[key]]
        assert positions == sorted(positions), key


def test_lookup_load_writes_a_table_the_contract_accepts(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "connect_list_users.json"
    done = ok(loglake("lookup", "load", "connect-users", fixture, "--out", tmp_path / "lake"))
    summary = json.loads(done.stdout)
    users = json.loads(fixture.read_text())["UserSummaryList"]
    assert summary["rows"] == len(users)
    report = json.loads(ok(loglake("contract", "--lake", tmp_path / "lake")).stdout)
    assert report["files_by_table"]["connect_users"] == 1 and report["ok"] is True


def test_generate_writes_the_day_it_reports(tmp_path):
    done = ok(loglake("generate", "--out", tmp_path, "--events", 10000, "--accounts", 1, "--regions", 1,
                      "--days", 1, "--workers", 1))
    stats = json.loads(done.stdout)
    files = list((tmp_path / "cloudtrail").rglob("*.json.gz"))
    assert stats["cloudtrail"]["files"] == len(files)
    assert sum(len(json.loads(gzip.decompress(f.read_bytes()))["Records"]) for f in files) == \
        stats["cloudtrail"]["events"] == 10000


# --------------------------------------------------------------------------- against the moto server

def test_ddl_apply_then_addapart_drain_and_backfill(aws, tmp_path):
    bucket, lake = "org-trail", f"file://{tmp_path}/lake"
    config = tmp_path / "c.yaml"
    config.write_text(f"sources:\n  cloudtrail: {{bucket: {bucket}}}\ncatalog: {{database: cmds}}\n"
                      f"readready: {{location: '{lake}'}}\n")
    env = {"LOGLAKE__AWS__ENDPOINT_URL": aws.endpoint, "LOGLAKE__AWS__REGION": "us-east-1"}
    applied = json.loads(ok(loglake("ddl", "--apply", "--config", config, env=env)).stdout)
    tables = {t["Name"] for t in aws.glue.get_tables(DatabaseName="cmds")["TableList"]}
    assert {"from_cloudtrail_raw", "runs", "quarantine"} <= tables, applied

    aws.s3.create_bucket(Bucket=bucket)
    queue = aws.sqs.create_queue(QueueName="q")["QueueUrl"]
    bad = f"AWSLogs/{ORG}/{ACCOUNT}/CloudTrail/us-east-1/2024/02/30/x.json.gz"
    for key in (CT_KEY, bad):
        aws.s3.put_object(Bucket=bucket, Key=key, Body=STRATUS_GZ.read_bytes())
        aws.sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [{
            "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]}))
    drained = json.loads(ok(loglake("addapart", "drain", "--queue", queue, "--config", config, env=env)).stdout)
    assert (drained["messages"], drained["created"], drained["keys_for_quarantine"]) == (2, 1, 1)
    [(result, _)] = rejected_keys.claim(lake, "cloudtrail").results
    assert (result.key, result.reason) == (f"s3://{bucket}/{bad}", "bad_date")
    parts = aws.glue.get_partitions(DatabaseName="cmds", TableName="from_cloudtrail_raw")["Partitions"]
    assert [p["Values"] for p in parts] == [[ORG, ACCOUNT, "us-east-1", "2024-12-01"]]

    backfilled = json.loads(ok(loglake("addapart", "backfill", "--source", "cloudtrail", "--config", config,
                                       env=env)).stdout)
    assert (backfilled["objects"], backfilled["created"], backfilled["existed"]) == (2, 0, 1)


def test_scheduled_runs_then_compact_closed_leave_one_current_file_per_partition(tmp_path):
    """The installed command, each run a process of its own, on a folder where new files
    appear between runs; then `compact --closed`: one current file per partition."""
    raw, out = tmp_path / "raw", tmp_path / "lake"

    # The gate has its own tests; here the runs leave compaction to the command, which is
    # what this test is about (a scheduled run would compact these closed days itself).
    env = {"LOGLAKE__QUALITY__EXPECTATIONS": "false", "LOGLAKE__COMPACTION__MAX_PARTITIONS_PER_RUN": "0"}

    def run(*args):
        return json.loads(ok(loglake(*args, env=env)).stdout)

    from loglake import manifest
    from test_hourly import PART, TABLE, N, body, ids, key

    place(raw, key(1, "a"), body("1a"))
    place(raw, key(2, "a"), body("2a"))
    first = run("run", "cloudtrail", "--scheduled", "--raw", raw, "--out", out,
                    "--summary-json", tmp_path / "1.json")
    assert first["files_read"] == 2 and json.loads((tmp_path / "1.json").read_text())["run_id"] == first["run_id"]
    place(raw, key(1, "b"), body("1b"))
    second = run("run", "cloudtrail", "--scheduled", "--raw", raw, "--out", out)
    assert second["files_read"] == 1
    done = run("compact", "cloudtrail", "--out", out, "--closed", "--retain-minutes", "0")
    # day 2's one file is a run's, interim (ZLIB's fast level, no dictionaries): compacted too
    assert (done["partitions_compacted"], done["files_before"], done["files_after"]) == (2, 3, 2)
    assert done["partitions_already_compact"] == 0 and done["rows"] == 3 * N
    for day in (1, 2):
        folder = out / TABLE / PART / f"dt=2024-12-0{day}"
        files = list(folder.rglob("*.orc"))
        assert len(files) == 1 and [str(files[0])] == manifest.current_files(str(folder))
    assert len(set(ids(lake_rows(out / TABLE)))) == len(lake_rows(out / TABLE)) == 3 * N


def test_alerts_list_and_run_send_each_match_once(lake, tmp_path):
    root, out, (done, _) = lake
    ok(done)
    rules = [json.loads(line) for line in ok(loglake("alerts", "list")).stdout.splitlines()]
    assert "cloudtrail_tampering" in {r["name"] for r in rules} and all(r["severity"] and r["key"] for r in rules)
    sink = tmp_path / "alerts.jsonl"
    state = out / "_state" / "alerts"
    shutil.rmtree(state, ignore_errors=True)
    first = json.loads(ok(loglake("alerts", "run", "--lake", out, "--sink", f"file:{sink}")).stdout)
    sent = sum(r["sent"] for r in first["rules"].values())
    lines = [json.loads(x) for x in sink.read_text().splitlines()]
    assert first["failed"] == 0 and sent == len(lines) >= 3
    assert {"rule", "severity", "eventid", "eventtime", "message"} <= set(lines[0])
    assert {a["match"]["eventname"] for a in lines if a["rule"] == "cloudtrail_tampering"} >= {"StopLogging",
                                                                                              "DeleteTrail"}
    again = json.loads(ok(loglake("alerts", "run", "--lake", out, "--sink", f"file:{sink}")).stdout)
    assert sum(r["sent"] for r in again["rules"].values()) == 0 and len(sink.read_text().splitlines()) == sent
    bad = loglake("alerts", "run", "--lake", out, "--sink", "slack")
    assert bad.returncode == 2 and "expected file:PATH" in bad.stderr
    unknown = loglake("alerts", "run", "--lake", out, "--sink", f"file:{sink}", "--rule", "nope")
    assert unknown.returncode == 2 and "no alert rule 'nope'" in unknown.stderr


def test_a_lake_root_that_is_not_there_is_an_error_naming_it(tmp_path):
    """A typo in a lake root used to read as an empty lake: `query` printed 0 rows,
    `contract` said ok, `compact` started Spark and took a lock below the typo; all exit 0."""
    missing = tmp_path / "typo"
    for argv in (["query", "deletions_today", "--lake", missing, "-p", "day=2024-12-01"],
                 ["contract", "--lake", missing],
                 ["quality", "docs", "--lake", missing, "--out", tmp_path / "docs"],
                 ["alerts", "run", "--lake", missing, "--sink", f"file:{tmp_path / 'alerts.jsonl'}"],
                 ["compact", "cloudtrail", "--out", missing]):
        done = loglake(*argv)
        assert (done.returncode, done.stdout) == (2, ""), (argv, done.stderr)
        assert f"{missing}: does not exist" in done.stderr and "Traceback" not in done.stderr, argv
    assert not missing.exists() and not (tmp_path / "docs").exists()


def test_an_empty_s3_lake_prefix_is_an_error_and_a_written_one_is_not(aws, tmp_path):
    aws.s3.create_bucket(Bucket="lake")
    env = {"LOGLAKE__AWS__ENDPOINT_URL": aws.endpoint, "LOGLAKE__AWS__REGION": "us-east-1"}
    done = loglake("contract", "--lake", "s3://lake/readready", env=env)
    assert done.returncode == 2 and "s3://lake/readready: holds no objects" in done.stderr
    aws.s3.put_object(Bucket="lake", Key="readready/from_cloudtrail_readready/_manifest.json", Body=b"{}")
    assert json.loads(ok(loglake("contract", "--lake", "s3://lake/readready", env=env)).stdout)["ok"]


def test_run_bounds_only_with_scheduled_and_never_negative(tmp_path):
    """--max-files used to be ignored without --scheduled, and -1 bounded a run to one
    partition; both are refused before anything is read."""
    place(tmp_path / "raw", CT_KEY, STRATUS_GZ)
    common = ["run", "cloudtrail", "--raw", tmp_path / "raw", "--out", tmp_path / "lake"]
    done = loglake(*common, "--max-files", "5")
    assert done.returncode == 2 and "bound a --scheduled run" in done.stderr
    done = loglake(*common, "--scheduled", "--max-partitions", "-1")
    assert done.returncode == 2 and "max_partitions must be a whole number >= 0 (0: no bound), got -1" in done.stderr
    assert not (tmp_path / "lake").exists()


def test_global_flags_go_before_every_command_generate_and_bench_too(tmp_path):
    """`loglake -v generate ...` failed with an AssertionError traceback and `loglake -q bench`
    with "unrecognized arguments": the two tools parse their own arguments."""
    done = ok(loglake("-v", "generate", "--out", tmp_path / "raw", "--events", 10000, "--accounts", 1,
                      "--regions", 1, "--days", 1, "--workers", 1))
    assert json.loads(done.stdout)["cloudtrail"]["events"] == 10000
    done = loglake("-q", "bench", "--render", "--scale", "small", "--out", tmp_path / "reports")
    assert done.returncode == 2 and "no stored results for the small scale" in done.stderr, done.stderr


def test_no_aws_credentials_is_a_one_line_error(tmp_path):
    """An AWS call that fails (here: no credentials anywhere) is exit 1 and one line, not a
    botocore traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOGLAKE_"))}
    env |= {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path)}
    done = subprocess.run([LOGLAKE, "addapart", "drain", "--queue", "https://sqs.us-east-1.amazonaws.com/1/q"],
                          capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("loglake: AWS: ") and "credentials" in line.lower()


def test_a_reader_that_stops_early_gets_no_traceback():
    """`loglake query --list | head -1` printed a BrokenPipeError traceback."""
    proc = subprocess.Popen([LOGLAKE, "query", "--list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    proc.stdout.close()  # before the child has written a line: its first write finds no reader
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1 and "Traceback" not in err, err


def test_every_subcommand_has_a_test_here():
    from loglake import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    tested = {"run", "contract", "quality", "query", "config", "ddl", "lookup", "generate", "addapart", "compact",
              "alerts"}
    assert set(sub.choices) - {"demo", "bench"} == tested, "a new command needs a process test here"
