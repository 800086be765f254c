"""Nothing lost, nothing wrong published: quarantine reasons, reconciliation, fault survival."""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.dataset as pads
import pytest

from conftest import CT, CWL, ELASTIC_GZ, STRATUS_GZ, firehose_objects, lake_rows, place, records_of, session_owner_docs
from loglake import cli, convert, planning, samples, stage, storage
from loglake.config import config_from_dict
from loglake.sources.cloudtrail import SOURCE as CLOUDTRAIL_SOURCE

# Delivery days after the samples' events (CloudTrail delivers an event after it happens;
# the quality gate checks that): stratus ends 2024-11-30, elastic 2026-01-05.
DAY = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/12/01/"
ELASTIC_DAY = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/01/06/"
AWSDOCS = CT / "awsdocs" / "awsdocs_cloudtrail_examples.jsonl"
OTRF = CT / "otrf-security-datasets" / "ec2_proxy_s3_exfiltration_2020-09-14011940.json"
DIGEST = CT / "elastic-integrations" / "test-cloudtrail-digest-json.log"


def gz_records(records) -> bytes:
    return gzip.compress(json.dumps({"Records": records}).encode())


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(tmp_path, source, raw, out, *extra, config=None):
    path = tmp_path / f"s-{time.monotonic_ns()}.json"
    argv = ["-q", "run", source, "--raw", str(raw), "--out", str(out), "--summary-json", str(path), *extra]
    if config:
        argv += ["--config", str(config)]
    code = cli.main(argv)
    return code, json.loads(path.read_text())


def quarantine_rows(out):
    return pads.dataset(str(out / "quarantine"), format="orc", partitioning="hive").to_table().to_pylist()


def readready_rows(out, table="from_cloudtrail_readready"):
    return lake_rows(out / table)


def write_config(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- every reason


def test_every_cloudtrail_reason_code_from_real_bad_inputs(spark, tmp_path):
    stratus = records_of(STRATUS_GZ)
    awsdocs = lines(AWSDOCS)
    otrf = lines(OTRF)
    no_id = [r for r in awsdocs if not r.get("eventID")]
    # The one real eventTime that is not ISO-8601 sits on a record without eventID; give it
    # one so the time check is what rejects it.
    bad_time = [dict(r, eventID="id-added") for r in awsdocs if r.get("eventTime") == "2014-03-06T21: 22: 54Z"]
    # The record with the largest requestParameters (a real CreateTrustAnchor, 2 KB of
    # certificate) against a limit just above twice the next largest record's text.
    big = max(stratus, key=lambda r: len(json.dumps(r["requestParameters"])))
    limit = 2 * len(json.dumps(big["requestParameters"], separators=(",", ":")))
    full = gzip.decompress(STRATUS_GZ.read_bytes())
    cut_at = full.index(b"},{", len(full) // 2) + 2  # a record boundary in the middle
    raw = tmp_path / "raw"
    inputs = {
        "truncated.json.gz": STRATUS_GZ.read_bytes()[: len(STRATUS_GZ.read_bytes()) // 2],
        "plain.json.gz": full,  # the real records, but never gzipped
        "empty.json.gz": b"",
        "latin1.json.gz": gzip.compress(
            json.dumps({"Records": stratus[:2]}).encode().replace(b"amazonaws", b"amaz\xf6naws", 1)),
        "malformed.json.gz": gzip.compress(full[:cut_at] + b"garbage, " + full[cut_at:]),
        "digest-in-wrong-place.json.gz": gzip.compress(DIGEST.read_bytes()),  # real digest: no Records
        "records.json.gz": gz_records(no_id + otrf[:3] + bad_time + [big] + stratus[:20]),
    }
    for name, body in inputs.items():
        place(raw, DAY + name, body)
    place(raw, "AWSLogs/123456789012/CloudTrail/us-east-1/2024/13/01/bad-date.json.gz", STRATUS_GZ)
    place(raw, "exports/junk.bin", b"junk")
    config = write_config(tmp_path, f"quality:\n  max_record_bytes: {limit}\n")
    out = tmp_path / "lake"

    code, summary = run(tmp_path, "cloudtrail", raw, out, config=config)

    assert code == 0, summary
    q = summary["quarantined"]["by_reason"]
    assert q["truncated_gzip"] == 1
    assert q["not_gzip"] == 1
    assert q["empty_object"] == 1
    assert q["invalid_utf8"] == 1
    assert q["malformed_json"] == 1
    assert q["no_records"] == 1
    assert q["missing_event_id"] == len(no_id)
    assert q["missing_event_time"] == 3
    assert q["bad_event_time"] == len(bad_time) == 1
    assert q["record_too_large"] == 1
    assert q["bad_date"] == 1 and q["no_layout_match"] == 1
    assert summary["balanced"] is True, summary["reconciliation"]
    rows = quarantine_rows(out)
    assert len(rows) == summary["quarantined"]["total"]
    by_reason = {}
    for r in rows:
        by_reason.setdefault(r["reason"], []).append(r)
    assert {r["record_index"] for r in by_reason["missing_event_id"]} == set(range(len(no_id)))
    assert json.loads(by_reason["missing_event_time"][0]["payload"]) == otrf[0]
    assert by_reason["not_gzip"][0]["payload_size"] == len(full)
    assert by_reason["record_too_large"][0]["payload_size"] >= len(json.dumps(big, separators=(",", ":"))) - 10
    assert all(r["run_id"] == summary["run_id"] and r["source"] == "cloudtrail" for r in rows)
    # Good neighbours survive: the records before the break of the truncated and malformed
    # files, and the good records of the mixed file, are all published.
    assert by_reason["truncated_gzip"][0]["record_index"] > 0
    assert by_reason["malformed_json"][0]["record_index"] == full[:cut_at].count(b'"eventID"')
    written_ids = {r["eventid"] for r in readready_rows(out)}
    assert {r["eventID"] for r in stratus[:20]} <= written_ids


def test_malformed_json_keeps_the_records_before_the_break(spark, tmp_path):
    stratus = records_of(STRATUS_GZ)
    parts = [json.dumps(r) for r in stratus[:10]]
    broken = '{"Records": [' + ", ".join(parts[:7]) + ", <<not json>>" + ", ".join(parts[7:]) + "]}"
    raw = tmp_path / "raw"
    place(raw, DAY + "m.json.gz", gzip.compress(broken.encode()))
    code, summary = run(tmp_path, "cloudtrail", raw, tmp_path / "lake")
    assert code == 0 and summary["written"] == 7 and summary["records_read"] == 7
    assert summary["quarantined"]["by_reason"] == {"malformed_json": 1}
    [row] = quarantine_rows(tmp_path / "lake")
    assert row["record_index"] == 7 and "<<not json>>" in row["payload"]


def test_cloudwatch_reason_codes(spark, tmp_path):
    raw = tmp_path / "raw"
    # A real Firehose HTTP delivery request is not a CloudWatch Logs document: no logEvents.
    vector_request = json.loads((CWL / "vector" / "firehose_http_delivery_request_cwl.json").read_text())
    docs = session_owner_docs()
    docs[0]["logEvents"].append({"id": "1" * 56, "timestamp": 1722514756000, "message": '{"sessionId": '})
    place(raw, "fh/2024/08/01/12/a", samples.build_object([vector_request, *docs]))
    place(raw, "fh/2024/08/01/12/b", samples.build_object(session_owner_docs())[:-30])
    code, summary = run(tmp_path, "cloudwatch", raw, tmp_path / "lake")
    assert code == 0
    assert summary["quarantined"]["by_reason"] == {
        "bad_session_record": 1, "no_log_events": 1, "truncated_gzip": 1, "truncated_json": 1,
    }
    assert summary["balanced"] is True and summary["duplicates"] > 0  # b repeats a's events


def test_object_vanished_between_listing_and_read(spark, aws, tmp_path):
    aws.s3.create_bucket(Bucket="raw")
    for name in ("a", "b"):
        aws.s3.put_object(Bucket="raw", Key=DAY + f"{name}.json.gz", Body=STRATUS_GZ.read_bytes())
    config = config_from_dict({"aws": {"endpoint_url": aws.endpoint}, "quality": {"expectations": False}})
    selection = planning.Selection()
    plan = planning.plan_from_listing(CLOUDTRAIL_SOURCE, "s3://raw/AWSLogs/", config, selection)
    aws.s3.delete_object(Bucket="raw", Key=DAY + "b.json.gz")
    summary = convert.convert(spark, CLOUDTRAIL_SOURCE, config, plan, str(tmp_path / "lake"), selection=selection)
    assert summary["quarantined"]["by_reason"] == {"object_missing": 1}
    assert summary["written"] == len(records_of(STRATUS_GZ)) and summary["balanced"] is True


# --------------------------------------------------------------------------- reconciliation


def test_runs_table_and_duplicates(spark, tmp_path, stage_path):
    raw = tmp_path / "raw"
    place(raw, ELASTIC_DAY + "a.json.gz", ELASTIC_GZ)
    place(raw, ELASTIC_DAY + "b.json.gz", ELASTIC_GZ)  # the same events delivered twice
    out = tmp_path / "lake"
    code, summary = run(tmp_path, "cloudtrail", raw, out)
    elastic = records_of(ELASTIC_GZ)
    ids = {r["eventID"] for r in elastic}
    assert code == 0 and summary["written"] == len(ids)
    assert summary["duplicates"] == 2 * len(elastic) - len(ids)
    [run_row] = pads.dataset(str(out / "runs"), format="orc", partitioning="hive").to_table().to_pylist()
    assert run_row["run_id"] == summary["run_id"] and run_row["status"] == "published"
    assert run_row["balanced"] is True and run_row["duplicates"] == summary["duplicates"]
    assert run_row["records_read"] == run_row["written"] + run_row["filtered"] + run_row["quarantined_records"] + \
        run_row["duplicates"]
    assert (out / "_runs" / "cloudtrail" / f"{summary['run_id']}.json").is_file()


def test_a_run_whose_objects_yield_no_rows_passes_the_gate_and_quarantines_them(spark, tmp_path, stage_path):
    """Every object read, none yields a row: the writing tasks tally nothing, the gate
    (on, as by default) expects no rows, and the run publishes its quarantine."""
    raw = tmp_path / "raw"
    place(raw, DAY + "a.json.gz", b"this is not gzip")
    code, summary = run(tmp_path, "cloudtrail", raw, tmp_path / "lake")
    assert code == 0 and summary["status"] == "published", summary
    assert summary["written"] == 0 and summary["quarantined"]["by_reason"] == {"not_gzip": 1}
    assert summary["quality"]["success"] is True and summary["balanced"] is True
    assert [r["reason"] for r in quarantine_rows(tmp_path / "lake")] == ["not_gzip"]


def _loses_an_event(lost, table, key):
    """A dedup with a bug: it also drops the event ``lost`` (shipped to the tasks by value)."""
    import pyarrow.compute as pc

    from loglake.orcwrite import first_of_each_key

    kept = first_of_each_key(table, key)
    return kept.filter(pc.not_equal(kept["eventid"], lost))


def _mangles_a_column(column, table, key):
    """A dedup with a bug: it also overwrites ``column`` of every row (shipped by value)."""
    import pyarrow as pa

    from loglake.orcwrite import first_of_each_key

    kept = first_of_each_key(table, key)
    i = kept.schema.get_field_index(column)
    return kept.set_column(i, column, pa.array(["moon"] * kept.num_rows, kept.schema.field(i).type))


def test_an_object_changed_before_its_problems_are_gathered_fails_the_run(spark, tmp_path, monkeypatch):
    """A run's one pass counts each object's problems; their quarantine rows come from
    converting the objects with problems again. An object that changed in between (here
    rewritten as two records without an eventID: two problems where one was counted)
    gives rows that were not counted: the run must not balance, and must publish nothing."""
    stratus = records_of(STRATUS_GZ)
    parts = [json.dumps(r) for r in stratus[:10]]
    raw, out = tmp_path / "raw", tmp_path / "lake"
    place(raw, DAY + "m.json.gz", gzip.compress(('{"Records": [' + ", ".join(parts[:7]) + ", <<not json>>"
                                                + ", ".join(parts[7:]) + "]}").encode()))
    original = stage._converted_frame

    def rewritten_first(spark, source, config, files, slices):
        assert [f.uri.rsplit("/", 1)[-1] for f in files] == ["m.json.gz"]  # only the object with problems
        place(raw, DAY + "m.json.gz", gz_records([{k: v for k, v in r.items() if k != "eventID"}
                                                  for r in stratus[:2]]))
        return original(spark, source, config, files, slices)

    monkeypatch.setattr(stage, "_converted_frame", rewritten_first)
    code, summary = run(tmp_path, "cloudtrail", raw, out)
    assert code == 1 and summary["status"] == "rejected_unbalanced" and summary["balanced"] is False
    assert summary["quarantined"]["by_reason"] == {"malformed_json": 1}  # as counted by the one pass
    assert not (out / "from_cloudtrail_readready").exists() and not (out / "quarantine").exists()


def test_unbalanced_run_fails_and_publishes_nothing(spark, tmp_path, monkeypatch, stage_path):
    import functools

    from pyspark import cloudpickle

    from loglake import onepass

    raw = tmp_path / "raw"
    place(raw, DAY + "a.json.gz", STRATUS_GZ)
    out = tmp_path / "lake"
    assert run(tmp_path, "cloudtrail", raw, out)[0] == 0
    before = sorted(p.name for p in (out / "from_cloudtrail_readready").rglob("*.orc"))

    # A bug that silently loses a record between conversion and the written files must be
    # caught by the reconciliation (the rows in the files' footers are counted).
    lost = records_of(STRATUS_GZ)[0]["eventID"] + "-b"
    if stage_path == "by spark":
        original = stage.write_readready
        monkeypatch.setattr(stage, "write_readready",
                            lambda rows, *a: original(rows.where(f"eventid != '{lost}'"), *a))
    else:  # in the task, between its dedup and its writer
        monkeypatch.setattr(onepass, "first_of_each_key", functools.partial(_loses_an_event, lost))
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    place(raw, DAY + "b.json.gz", gz_records([dict(r, eventID=r["eventID"] + "-b") for r in records_of(STRATUS_GZ)]))
    try:
        code, summary = run(tmp_path, "cloudtrail", raw, out)
    finally:
        if stage_path == "one pass":
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert code == 1 and summary["balanced"] is False and summary["status"] == "rejected_unbalanced"
    n = len(records_of(STRATUS_GZ))
    assert summary["reconciliation"].startswith(f"read {2 * n} = written {2 * n - 1} + filtered 0"), summary
    assert sorted(p.name for p in (out / "from_cloudtrail_readready").rglob("*.orc")) == before
    assert len(readready_rows(out)) == n
    assert not (out / "_staging").exists() or not any((out / "_staging").iterdir())


def test_a_staged_file_no_task_reported_fails_the_run(spark, tmp_path, monkeypatch, stage_path):
    """Publish takes the staged files a task reported, each with the rows its footer
    holds: an ORC file in the staging folder that no task reported (a stray attempt's)
    makes the run unbalanced, and nothing is published."""
    import shutil
    from pathlib import Path

    raw = tmp_path / "raw"
    place(raw, DAY + "a.json.gz", STRATUS_GZ)
    name = "_stage_by_spark" if stage_path == "by spark" else "_stage_one_pass"
    real = getattr(stage, name)

    def with_a_stray_file(spark, source, config, plan, staging, table, *a):
        done = real(spark, source, config, plan, staging, table, *a)
        first = next(Path(storage.local_path(storage.join(staging, table))).rglob("*.orc"))
        shutil.copyfile(first, first.with_name("part-99999-0.zlib.orc"))
        return done

    monkeypatch.setattr(stage, name, with_a_stray_file)
    code, summary = run(tmp_path, "cloudtrail", raw, tmp_path / "lake")
    assert code == 1 and summary["status"] == "rejected_unbalanced" and summary["written"] == 310
    assert "staged files not as the writers reported" in summary["reconciliation"]
    assert "part-99999-0.zlib.orc" in summary["reconciliation"]
    assert not list((tmp_path / "lake").rglob("*.zlib.orc"))  # nothing published


# --------------------------------------------------------------------------- fault survival


def test_crash_while_publishing_then_rerun_leaves_exactly_one_copy(spark, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    days = ["2024-12-01", "2024-12-02", "2024-12-03"]
    for day in days:
        place(raw, DAY.replace("2024/12/01", day.replace("-", "/")) + "a.json.gz", STRATUS_GZ)
    out = tmp_path / "lake"
    assert run(tmp_path, "cloudtrail", raw, out)[0] == 0
    copied = []
    real_copy = storage.copy_object

    def crash_after_first(src, dst):
        if copied:
            raise KeyboardInterrupt("killed")  # like a kill: not an Exception the job handles
        copied.append(dst)
        return real_copy(src, dst)

    monkeypatch.setattr(storage, "copy_object", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "cloudtrail", raw, out)
    monkeypatch.setattr(storage, "copy_object", real_copy)
    code, summary = run(tmp_path, "cloudtrail", raw, out)
    assert summary["resumed"] is True  # the same command again: it finishes the interrupted run
    rows = readready_rows(out)
    assert code == 0 and len(rows) == summary["written"] == 3 * len(records_of(STRATUS_GZ))
    assert len({(r["dt"], r["eventid"]) for r in rows}) == len(rows)


def test_process_killed_mid_write_then_rerun_leaves_exactly_one_copy(tmp_path):
    """A real kill -9 of a separate loglake process while it writes, then a rerun."""
    raw = tmp_path / "raw"
    for i in range(40):
        place(raw, DAY + f"f{i:02d}.json.gz", gz_records(
            [dict(r, eventID=f"{r['eventID']}-{i}") for r in records_of(STRATUS_GZ)]))
    out = tmp_path / "lake"
    # A killed run cannot release its lock: the next run takes it over once its TTL passed.
    # TMPDIR: a killed task cannot remove its spilled runs (loglake.spill); here they go with tmp_path
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "LOGLAKE_SPARK_MASTER": "local[1]", "LOGLAKE__QUALITY__EXPECTATIONS": "false",
           "LOGLAKE__SCHEDULED__LOCK_TTL_SECONDS": "120", "TMPDIR": str(tmp_path / "tmp")}
    cmd = [sys.executable, "-m", "loglake.cli", "-q", "run", "cloudtrail", "--raw", str(raw), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "_staging").exists() and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(out.glob("from_cloudtrail_readready/**/*.orc"))  # killed before anything was published
    lock = out / "_state" / "cloudtrail" / "lock.json"
    holder = json.loads(lock.read_text())  # the dead run's, live for two minutes: a rerun is refused, naming it
    held = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert held.returncode == 1 and "lock.json" in held.stderr, held.stderr[-2000:]
    # its TTL passing, without waiting for it (a TTL of seconds raced the rerun's start-up)
    lock.write_text(json.dumps({**holder, "expires_at": time.time() - 1}))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    rows = readready_rows(out)
    assert len(rows) == summary["written"] == 40 * len(records_of(STRATUS_GZ))
    assert len({r["eventid"] for r in rows}) == len(rows)


def test_firehose_fixture_objects_are_balanced(spark, tmp_path):
    raw = tmp_path / "raw"
    for key, body in firehose_objects().items():
        place(raw, key, body)
    code, summary = run(tmp_path, "cloudwatch", raw, tmp_path / "lake")
    assert code == 0 and summary["balanced"] and summary["quarantined"]["total"] == 0


# Not spilled: the bug is injected in the dedup, which a spilled partition runs on its sort
# index alone; its rows are tallied for the gate as in one pass.
@pytest.mark.parametrize("stage_path", ["one pass", "by spark"], indirect=True)
def test_failed_quality_gate_publishes_and_registers_nothing(spark, aws, tmp_path, monkeypatch, capsys, stage_path):
    monkeypatch.setenv("LOGLAKE__AWS__ENDPOINT_URL", aws.endpoint)
    raw = tmp_path / "raw"
    place(raw, DAY + "a.json.gz", STRATUS_GZ)
    out = tmp_path / "lake"
    assert run(tmp_path, "cloudtrail", raw, out, "--catalog")[0] == 0
    before = readready_rows(out)
    parts_before = aws.glue.get_partitions(DatabaseName="loglake", TableName="from_cloudtrail_readready")["Partitions"]

    # A bug between conversion and the files that gives rows the gate rejects (awsregion
    # not a region); bad input no longer reaches the gate (the record checks quarantine it).
    import functools

    from pyspark import cloudpickle
    from pyspark.sql import functions as F

    from loglake import onepass

    if stage_path == "by spark":
        original = stage.write_readready
        monkeypatch.setattr(stage, "write_readready",
                            lambda rows, *a: original(rows.withColumn("awsregion", F.lit("moon")), *a))
    else:
        monkeypatch.setattr(onepass, "first_of_each_key", functools.partial(_mangles_a_column, "awsregion"))
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    odd = [dict(r, eventID=r["eventID"] + "-x") for r in records_of(STRATUS_GZ)[:3]]
    place(raw, DAY.replace("2024/12/01", "2024/12/02") + "b.json.gz", gz_records(odd))
    capsys.readouterr()
    try:
        code, summary = run(tmp_path, "cloudtrail", raw, out, "--catalog")
    finally:
        if stage_path != "by spark":
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert code == 1 and summary["status"] == "rejected_quality" and summary["balanced"] is True
    assert any("awsregion" in f and "match_regex" in f for f in summary["quality"]["failed"])
    assert "failed the data-quality gate" in capsys.readouterr().err
    assert readready_rows(out) == before  # the previous good data is untouched
    parts = aws.glue.get_partitions(DatabaseName="loglake", TableName="from_cloudtrail_readready")["Partitions"]
    assert len(parts) == len(parts_before) == 1
    runs = pads.dataset(str(out / "runs"), format="orc", partitioning="hive").to_table().to_pylist()
    assert sorted(r["status"] for r in runs) == ["published", "rejected_quality"]
    assert (out / "_quality" / "cloudtrail" / f"{summary['run_id']}.json").is_file()


def test_addapart_key_errors_reach_the_quarantine_once_through_the_next_run(spark, tmp_path, monkeypatch):
    from loglake import keys, rejected_keys

    raw, out = tmp_path / "raw", tmp_path / "lake"
    place(raw, DAY + "a.json.gz", STRATUS_GZ)
    bad = [keys.KeyResult("s3://trail/AWSLogs/123456789012/CloudTrail/us-east-1/2024/02/30/x.json.gz", keys.ERROR,
                          keys.BAD_DATE, "2024/02/30 is not a calendar date"),
           keys.KeyResult("s3://trail/AWSLogs/o-UPPER/123456789012/CloudTrail/us-east-1/2024/12/01/y.json.gz",
                          keys.ERROR, keys.BAD_ORG, "organization id 'o-UPPER' is not o- and [a-z0-9]")]
    rejected_keys.write(f"file://{out}", "cloudtrail", bad[:1])
    rejected_keys.write(f"file://{out}", "cloudtrail", bad)  # SQS redelivered the first key: once in the quarantine
    rejected_keys.write(f"file://{out}", "cloudwatch", bad[1:])  # another source's: not this run's

    # A run that does not publish leaves them for the next one.
    monkeypatch.setattr(convert, "_summary", _unbalanced(convert._summary))
    code, summary = run(tmp_path, "cloudtrail", raw, out)
    assert code == 1 and len(list((out / "_state" / "cloudtrail" / "rejected_keys").iterdir())) == 2
    monkeypatch.undo()

    code, summary = run(tmp_path, "cloudtrail", raw, out)
    assert code == 0 and summary["balanced"] is True
    assert summary["quarantined"]["by_reason"] == {"bad_date": 1, "bad_org": 1}
    assert summary["skipped_keys"] == {"bad_date": 1, "bad_org": 1}
    rows = {r["raw_key"]: r for r in quarantine_rows(out)}
    assert set(rows) == {b.key for b in bad}
    assert rows[bad[0].key]["reason"] == "bad_date" and rows[bad[0].key]["run_id"] == summary["run_id"]
    assert not list((out / "_state" / "cloudtrail" / "rejected_keys").iterdir())
    assert len(list((out / "_state" / "cloudwatch" / "rejected_keys").iterdir())) == 1

    code, again = run(tmp_path, "cloudtrail", raw, out)
    assert code == 0 and again["quarantined"]["total"] == 0 and len(quarantine_rows(out)) == 2


def _unbalanced(summary_fn):
    def wrapped(*args, **kwargs):
        return {**summary_fn(*args, **kwargs), "balanced": False}
    return wrapped


# --------------------------------------------------------------------------- lone surrogates

LONE = "curl/8 \ud83d"  # half an emoji: JSON can escape it, UTF-8 (and ORC) cannot hold it


def test_a_lone_surrogate_escape_keeps_its_record_and_the_run(spark, tmp_path):
    """JSON may escape half a UTF-16 pair; the ORC writer cannot encode it, and the whole
    run failed (no file named). The record is kept, the half pair read as U+FFFD -- on
    orjson's path, the big-integer path, a salvaged truncated file, and CloudWatch's."""
    stratus = records_of(STRATUS_GZ)[:6]
    plain = [dict(r, userAgent=LONE) if i == 1 else r for i, r in enumerate(stratus[:3])]
    big = [dict(stratus[3], userAgent=LONE, additionalEventData={"n": 10**20})]
    cut = json.dumps({"Records": [dict(stratus[4], userAgent=LONE), stratus[5]]})
    raw = tmp_path / "raw"
    place(raw, DAY + "plain.json.gz", gz_records(plain))
    place(raw, DAY + "big.json.gz", gz_records(big))
    place(raw, DAY + "cut.json.gz", gzip.compress(cut[: cut.rindex("{") + 5].encode()))
    code, summary = run(tmp_path, "cloudtrail", raw, tmp_path / "lake")
    assert code == 0 and summary["written"] == 5 and summary["balanced"] is True
    assert summary["quarantined"]["by_reason"] == {"malformed_json": 1}  # the cut record only
    agents = {r["eventid"]: r["useragent"] for r in readready_rows(tmp_path / "lake")}
    for record in (plain[1], big[0], stratus[4]):
        assert agents[record["eventID"]] == "curl/8 \ufffd"
    assert agents[plain[0]["eventID"]] == plain[0]["userAgent"]

    docs = session_owner_docs()
    event = docs[0]["logEvents"][0]
    session = json.loads(event["message"])
    session["sessionData"] = ["echo \ud83d"]
    event["message"] = json.dumps(session)  # escaped twice: in the message, then in the document
    docs[0]["logEvents"].append({"id": "9" * 56, "timestamp": event["timestamp"], "message": "plain \udc00"})
    cw_raw = tmp_path / "cw"
    place(cw_raw, "fh/2024/08/01/12/a", samples.build_object(docs))
    code, summary = run(tmp_path, "cloudwatch", cw_raw, tmp_path / "cw-lake")
    assert code == 0 and summary["balanced"] is True and not summary["quarantined"]["by_reason"]
    rows = lake_rows(tmp_path / "cw-lake" / "from_cloudwatch_readready")
    assert {"echo \ufffd", "plain \ufffd"} <= {r["sessiondata"] or r["message"] for r in rows}


def test_json_nested_past_the_parsers_depth_is_malformed_not_a_failed_run(spark, tmp_path):
    """orjson stops at 1024 levels, Python's decoder at its stack: the RecursionError it
    raised while salvaging (CloudTrail) or splitting (Firehose) failed the whole run."""
    deep = "[" * 5000 + "]" * 5000
    stratus = records_of(STRATUS_GZ)[:3]
    text = json.dumps({"Records": stratus})
    nested = json.dumps(stratus[1])[:-1] + f', "requestParameters": {deep}}}'
    text = text.replace(json.dumps(stratus[1]), nested)
    raw = tmp_path / "raw"
    place(raw, DAY + "deep.json.gz", gzip.compress(text.encode()))
    code, summary = run(tmp_path, "cloudtrail", raw, tmp_path / "lake")
    assert code == 0 and summary["written"] == 1 and summary["balanced"] is True
    assert summary["quarantined"]["by_reason"] == {"malformed_json": 1}  # from the deep record on

    docs = session_owner_docs()
    bad = json.dumps(docs[0])[:-1] + f', "extra": {deep}}}'
    cw_raw = tmp_path / "cw"
    place(cw_raw, "fh/2024/08/01/12/a", samples.build_object(docs) + gzip.compress(bad.encode()))
    code, summary = run(tmp_path, "cloudwatch", cw_raw, tmp_path / "cw-lake")
    assert code == 0 and summary["balanced"] is True
    assert summary["written"] == sum(len(d["logEvents"]) for d in docs)
    assert summary["quarantined"]["by_reason"] == {"malformed_json": 1}


def test_an_object_whose_conversion_raises_is_quarantined_by_name_and_the_run_goes_on(spark, tmp_path):
    """A document no check foresaw (no logEvents, and a logGroup that is a list: unhashable
    where the source looks it up) raised out of the source and failed every run listing
    the object; it is now one conversion_failed problem naming the object, and the other
    objects are published."""
    docs = session_owner_docs()
    odd = [{"messageType": "DATA_MESSAGE", "logGroup": ["/aws/ssm/sessionlogs"]}]
    raw = tmp_path / "raw"
    place(raw, "fh/2024/08/01/12/good", samples.build_object(docs))
    place(raw, "fh/2024/08/01/12/odd", samples.build_object(odd))
    code, summary = run(tmp_path, "cloudwatch", raw, tmp_path / "lake")
    assert code == 0 and summary["balanced"] is True
    assert summary["written"] == sum(len(d["logEvents"]) for d in docs)
    assert summary["quarantined"]["by_reason"] == {"conversion_failed": 1}
    [row] = quarantine_rows(tmp_path / "lake")
    assert row["raw_key"].endswith("fh/2024/08/01/12/odd") and row["reason"] == "conversion_failed"
    assert row["detail"].startswith("TypeError: unhashable type: 'list'")


# --------------------------------------------------------------------------- the gate's rules, per record


def test_a_record_breaking_a_gate_rule_is_quarantined_not_the_whole_run(spark, tmp_path):
    """Each of these records failed the quality gate, and so the whole run -- and every
    scheduled run after it, meeting the same object again. Each is now one quarantined
    record with the rule as its reason, and the others are published."""
    stratus = records_of(STRATUS_GZ)
    good = stratus[:3]
    future = dict(stratus[3], eventTime="2099-01-01T00:00:00Z")  # past dt 2024-12-01 + 48 h
    source = dict(stratus[4], eventSource="Not A Service")
    region = dict(stratus[5], awsRegion="moon")
    session = dict(stratus[6], eventSource="ssm.amazonaws.com", eventName="StartSession",
                   responseElements={"streamUrl": "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/x"},
                   requestParameters={"target": "i-0123456789abcdef0"})
    session.pop("errorCode", None)
    raw = tmp_path / "raw"
    place(raw, DAY + "mixed.json.gz", gz_records([*good, future, source, region, session]))
    code, summary = run(tmp_path, "cloudtrail", raw, tmp_path / "lake")
    assert code == 0 and summary["status"] == "published" and summary["balanced"] is True
    assert summary["written"] == 3
    assert summary["quarantined"]["by_reason"] == {
        "event_after_delivery": 1, "bad_event_source": 1, "bad_aws_region": 1, "missing_session_id": 1}
    rows = {r["reason"]: r for r in quarantine_rows(tmp_path / "lake")}
    assert '"eventid":"' + future["eventID"] in rows["event_after_delivery"]["payload"]
    assert rows["bad_event_source"]["record_index"] == 4 and "Not A Service" in rows["bad_event_source"]["payload"]
    assert {r["eventid"] for r in readready_rows(tmp_path / "lake")} == {r["eventID"] for r in good}


def test_a_cloudwatch_event_breaking_a_gate_rule_is_quarantined_not_the_whole_run(spark, tmp_path):
    """A document owner that is no account id, and a session record naming no target,
    failed the gate (and the run); now each event is one quarantined record."""
    docs = session_owner_docs()
    odd_owner = dict(docs[0], owner="not-an-account", logStream=docs[0]["logStream"] + "-x")
    event = docs[1]["logEvents"][0]
    session = json.loads(event["message"])
    del session["target"]
    no_target = dict(docs[1], logEvents=[dict(event, id="7" * 56, message=json.dumps(session))])
    raw = tmp_path / "raw"
    place(raw, "fh/2024/08/01/12/a", samples.build_object([*docs, odd_owner, no_target]))
    code, summary = run(tmp_path, "cloudwatch", raw, tmp_path / "lake")
    assert code == 0 and summary["status"] == "published" and summary["balanced"] is True
    assert summary["written"] == sum(len(d["logEvents"]) for d in docs)
    assert summary["quarantined"]["by_reason"] == {"bad_owner": len(odd_owner["logEvents"]), "bad_session_record": 1}
    details = {r["reason"]: r["detail"] for r in quarantine_rows(tmp_path / "lake")}
    assert "no target.id" in details["bad_session_record"] and "not-an-account" in details["bad_owner"]
