"""Scheduled mode: runs with no selection take what changed since the last published run."""
from __future__ import annotations

import json
import os
import time

import pytest

from conftest import STRATUS_GZ, place, records_of
from loglake import catalog, cli, jobs, state, storage
from loglake.convert import Plan, PlannedFile, schedule

N = len(records_of(STRATUS_GZ))


def day_key(day: int, name: str) -> str:
    return f"AWSLogs/123456789012/CloudTrail/us-east-1/2024/12/{day:02d}/{name}.json.gz"


def distinct(name: str) -> bytes:
    """The stratus records with event ids of their own, so files never duplicate each other."""
    import gzip

    recs = [dict(r, eventID=f"{r['eventID']}-{name}") for r in records_of(STRATUS_GZ)]
    return gzip.compress(json.dumps({"Records": recs}).encode())


def put(raw, day, name, mtime):
    path = place(raw, day_key(day, name), distinct(f"{day}-{name}"))
    os.utime(path, (mtime, mtime))


def run(tmp_path, raw, out, *extra):
    path = tmp_path / f"s-{time.monotonic_ns()}.json"
    code = cli.main(["-q", "run", "cloudtrail", "--raw", str(raw), "--out", str(out), "--scheduled",
                     "--summary-json", str(path), "--config", str(tmp_path / "c.yaml"), *extra])
    return code, json.loads(path.read_text())


@pytest.fixture
def lake(tmp_path):
    (tmp_path / "c.yaml").write_text("scheduled:\n  overlap_seconds: 0\n")
    return tmp_path / "raw", tmp_path / "lake"


# --------------------------------------------------------------------------- the rules


def plan_of(*files):
    return Plan(files=[PlannedFile(f"f{i}", (day,), mtime) for i, (day, mtime) in enumerate(files)])


def test_first_run_takes_everything_and_sets_the_watermark_behind_the_newest_object():
    s = schedule(plan_of(("d1", 10), ("d1", 20), ("d2", 30)), None, overlap=5)
    assert s.plan.partitions == {("d1",), ("d2",)} and s.watermark_after == 25


def test_later_runs_take_changed_partitions_whole():
    s = schedule(plan_of(("d1", 10), ("d1", 40), ("d2", 30), ("d3", 5)), watermark=35, overlap=0)
    assert [f.uri for f in s.plan.files] == ["f0", "f1"]  # d1 changed: both its files
    assert s.watermark_after == 40


def test_bounds_leave_the_rest_and_the_watermark_stops_before_it():
    s = schedule(plan_of(("d1", 10), ("d2", 20), ("d3", 30)), None, overlap=0, max_partitions=1)
    assert s.plan.partitions == {("d1",)} and s.partitions_left == 2
    assert 10 <= s.watermark_after < 20  # d2 and d3 stay newer than the watermark
    s = schedule(plan_of(("d1", 10), ("d1", 11), ("d2", 20)), None, overlap=0, max_files=1)
    assert s.plan.partitions == {("d1",)}  # at least one partition, even past max_files


def test_the_watermark_never_moves_backwards():
    s = schedule(plan_of(("d1", 10)), watermark=50, overlap=0)
    assert s.plan.files == [] and s.watermark_after == 50


# --------------------------------------------------------------------------- end to end, local


def test_second_run_processes_only_what_arrived_in_between(spark, tmp_path, lake):
    raw, out = lake
    t0 = time.time() - 3600
    put(raw, 1, "a", t0)
    put(raw, 2, "a", t0 + 1)
    code, first = run(tmp_path, raw, out)
    assert code == 0 and first["files_read"] == 2 and first["written"] == 2 * N
    assert first["scheduled"]["watermark_before"] is None

    put(raw, 2, "late", t0 + 100)  # a late file for a day already done
    put(raw, 3, "a", t0 + 101)  # a new day
    code, second = run(tmp_path, raw, out)
    assert code == 0
    assert second["files_read"] == 3  # day 2 again, whole (2 files), and day 3: not day 1
    assert second["scheduled"]["partitions_taken"] == 2
    assert second["written"] == 3 * N

    code, third = run(tmp_path, raw, out)
    assert code == 0 and third["files_read"] == 0 and third["written"] == 0
    rows = _rows(out)
    assert len(rows) == 4 * N and len({r["eventid"] for r in rows}) == 4 * N


def test_an_interrupted_run_leaves_the_watermark_where_it_was(spark, tmp_path, lake, monkeypatch):
    raw, out = lake
    put(raw, 1, "a", time.time() - 100)
    assert run(tmp_path, raw, out)[0] == 0
    before = state.read_watermark(str(out), "cloudtrail")
    put(raw, 2, "a", time.time() - 50)

    def crash(*_a, **_k):
        raise RuntimeError("killed while publishing")

    monkeypatch.setattr(storage, "move_tree", crash)
    with pytest.raises(RuntimeError):
        run(tmp_path, raw, out)
    monkeypatch.undo()
    assert state.read_watermark(str(out), "cloudtrail") == before
    assert not (out / "_state" / "cloudtrail" / "lock.json").exists()  # released on the way out
    code, again = run(tmp_path, raw, out)
    assert code == 0 and again["files_read"] == 1 and len(_rows(out)) == 2 * N


def test_a_backlog_drains_over_bounded_runs(spark, tmp_path, lake):
    raw, out = lake
    t0 = time.time() - 3600
    for day in (1, 2, 3):
        put(raw, day, "a", t0 + day)
    taken = []
    for _ in range(4):
        code, summary = run(tmp_path, raw, out, "--max-partitions", "1")
        assert code == 0
        taken.append(summary["scheduled"]["partitions_taken"])
    assert taken == [1, 1, 1, 0]
    assert len(_rows(out)) == 3 * N


def test_overlapping_runs_do_not_both_publish(spark, tmp_path, lake):
    raw, out = lake
    put(raw, 1, "a", time.time() - 100)
    with state.run_lock(str(out), "cloudtrail", "someone-else", ttl_seconds=600):
        code, summary = run(tmp_path, raw, out)
        assert code == 0 and summary["status"] == "skipped_locked"
        assert not (out / "from_cloudtrail_readready").exists()
    # A crashed run's expired lock is taken over.
    lock = out / "_state" / "cloudtrail" / "lock.json"
    lock.write_text(json.dumps({"run_id": "crashed", "expires_at": time.time() - 1}))
    code, summary = run(tmp_path, raw, out)
    assert code == 0 and summary["status"] == "published" and summary["written"] == N
    assert not lock.exists()


def _rows(out):
    import pyarrow.dataset as pads

    table = pads.dataset(str(out / "from_cloudtrail_readready"), format="orc", partitioning="hive").to_table()
    return table.to_pylist()


# --------------------------------------------------------------------------- the Glue way, against moto


def test_glue_job_without_selection_is_scheduled(spark, aws, tmp_path):
    bucket = "trail"
    config_path = tmp_path / "c.yaml"
    config_path.write_text(
        f"sources: {{cloudtrail: {{bucket: {bucket}}}}}\ncatalog: {{database: lake}}\n"
        f"readready: {{location: 'file://{tmp_path}/lake'}}\naws: {{endpoint_url: '{aws.endpoint}'}}\n"
        # The keys' delivery days are in 2024 while moto's LastModified is today: widen the
        # lookback (3 days by default, right for real trails) so they are listed.
        "scheduled: {overlap_seconds: 0, lookback_days: 100000}\nquality: {expectations: false}\n"
    )
    from loglake.addapart import AddAPart, Message
    from loglake.config import load_config

    config = load_config(str(config_path), env={})
    catalog.ensure_database(aws.glue, "lake")
    for tinput in catalog.table_inputs(config, f"file://{tmp_path}/lake", {"cloudtrail": f"s3://{bucket}/AWSLogs/"}):
        catalog.ensure_table(aws.glue, "lake", tinput)
    aws.s3.create_bucket(Bucket=bucket)
    app = AddAPart(config, glue=aws.glue)

    def land(day, name):
        key = day_key(day, name)
        aws.s3.put_object(Bucket=bucket, Key=key, Body=distinct(f"{day}-{name}"))
        body = json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                        "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]})
        app.process([Message(key, body)])

    argv = ["job.py", "--JOB_NAME", "scheduled", "--config", str(config_path)]
    land(1, "a")
    first = jobs.main("cloudtrail", argv)
    assert first["files_read"] == 1 and first["status"] == "published"
    time.sleep(1.1)  # S3 LastModified has one-second resolution
    land(2, "a")
    second = jobs.main("cloudtrail", argv)
    assert second["files_read"] == 1 and second["written"] == N
    assert second["scheduled"]["watermark_before"] == first["scheduled"]["watermark_after"]
    parts = catalog.list_partitions(aws.glue, "lake", "from_cloudtrail_readready")
    assert sorted(p["Values"][3] for p in parts) == ["2024-12-01", "2024-12-02"]
    # The lookback floor keeps older raw partitions out of the listing.
    from loglake.convert import Selection, plan_from_catalog
    from loglake.sources import CLOUDTRAIL_SOURCE

    floored = plan_from_catalog(aws.glue, CLOUDTRAIL_SOURCE, config, Selection(), min_day="2024-12-02")
    assert floored.partitions == {("none", "123456789012", "us-east-1", "2024-12-02")}
    assert sorted(p.name for p in (tmp_path / "lake" / "_state" / "cloudtrail").iterdir()) == ["watermark.json"]


def test_conditional_put_on_s3_sends_its_conditions(aws):
    # The conditions travel as headers (Glue 5.0's botocore has no IfNoneMatch parameter):
    # the server must see them, or a second writer would silently win.
    aws.s3.create_bucket(Bucket="lake")
    uri = "s3://lake/_state/lock.json"
    assert storage.put_conditional(uri, b"first", None)
    assert not storage.put_conditional(uri, b"second", None)
    _, etag = storage.read_versioned(uri)
    assert not storage.put_conditional(uri, b"stale", '"not-the-etag"')
    assert storage.put_conditional(uri, b"third", etag)
    assert storage.read_bytes(uri) == b"third"
    storage.write_bytes("s3://lake/other", b"plain")  # a plain put on the same client has no condition
    storage.write_bytes("s3://lake/other", b"again")
    assert storage.read_bytes("s3://lake/other") == b"again"


def test_lock_and_watermark_on_s3_use_conditional_writes(aws):
    """On S3 (Glue), the lock is an If-None-Match put; a dead run's lock an If-Match overwrite."""
    aws.s3.create_bucket(Bucket="lake")
    root = "s3://lake/readready"
    with state.run_lock(root, "cloudtrail", "run-1", ttl_seconds=600):
        with pytest.raises(state.LockHeld, match="run-1"):
            with state.run_lock(root, "cloudtrail", "run-2", ttl_seconds=600):
                pass
    assert not storage.exists(f"{root}/_state/cloudtrail/lock.json")
    aws.s3.put_object(Bucket="lake", Key="readready/_state/cloudtrail/lock.json",
                      Body=json.dumps({"run_id": "dead", "expires_at": time.time() - 5}))
    with state.run_lock(root, "cloudtrail", "run-3", ttl_seconds=600):
        body = aws.s3.get_object(Bucket="lake", Key="readready/_state/cloudtrail/lock.json")["Body"].read()
        assert json.loads(body)["run_id"] == "run-3"
    assert state.read_watermark(root, "cloudtrail") is None
    state.write_watermark(root, "cloudtrail", 123.5, "run-3")
    assert state.read_watermark(root, "cloudtrail") == 123.5
