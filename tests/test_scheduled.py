"""Scheduled mode: runs with no selection take what changed since the last published run."""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import pytest

from conftest import STRATUS_GZ, lake_rows, place, records_of
from loglake import catalog, cli, jobs, manifest, runner, state, storage
from loglake.planning import Plan, PlannedFile, schedule

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
    # Compaction is tested on its own (test_hourly): here the runs' own files stay visible.
    (tmp_path / "c.yaml").write_text("scheduled:\n  overlap_seconds: 0\ncompaction:\n  max_partitions_per_run: 0\n")
    return tmp_path / "raw", tmp_path / "lake"


# --------------------------------------------------------------------------- the rules


def plan_of(*files):
    return Plan(files=[PlannedFile(f"f{i}", (day,), mtime) for i, (day, mtime) in enumerate(files)])


def test_first_run_takes_everything_and_sets_the_watermark_behind_the_newest_object():
    s = schedule(plan_of(("d1", 10), ("d1", 20), ("d2", 30)), None, overlap=5)
    assert s.plan.partitions == {("d1",), ("d2",)} and s.watermark_after == 25


def test_later_runs_take_only_the_new_objects_not_their_partitions_whole():
    s = schedule(plan_of(("d1", 10), ("d1", 40), ("d2", 30), ("d3", 5)), watermark=35, overlap=0)
    assert [f.uri for f in s.plan.files] == ["f1"]  # d1 changed: its new file only
    assert s.watermark_after == 40


def test_objects_a_manifest_holds_are_not_taken_again():
    # The overlap makes a run see the previous run's newest objects again: the partition's
    # manifest says they were converted.
    plan = plan_of(("d1", 10), ("d1", 20), ("d2", 20))
    s = schedule(plan, watermark=5, overlap=0, converted=lambda values: frozenset({"f0"}) if values == ("d1",)
                 else frozenset({"f2"}))
    assert [f.uri for f in s.plan.files] == ["f1"] and s.partitions_changed == 1
    assert s.describe()["objects_already_converted"] == 2


def test_bounds_leave_the_rest_and_the_watermark_stops_before_it():
    s = schedule(plan_of(("d1", 10), ("d2", 20), ("d3", 30)), None, overlap=0, max_partitions=1)
    assert s.plan.partitions == {("d1",)} and s.partitions_left == 2
    assert 10 <= s.watermark_after < 20  # d2 and d3 stay newer than the watermark
    s = schedule(plan_of(("d1", 10), ("d1", 11), ("d2", 20)), None, overlap=0, max_files=1)
    assert s.plan.partitions == {("d1",)}  # at least one partition, even past max_files


def test_the_watermark_never_moves_backwards():
    s = schedule(plan_of(("d1", 10)), watermark=50, overlap=0)
    assert s.plan.files == [] and s.watermark_after == 50


def test_a_bad_key_in_the_overlap_is_quarantined_once():
    """The overlap lists the newest objects again; a bad key among them used to be
    quarantined by every run that listed it (review finding)."""
    from loglake import keys

    def bad(name, mtime):
        return keys.KeyResult(name, keys.ERROR, "bad_account", ""), mtime

    first = schedule(Plan(plan_of(("d1", 10)).files, rejected=[bad("b1", 8), bad("b2", 12)]), None, overlap=5)
    assert [k.key for k, _ in first.plan.rejected] == ["b1", "b2"] and first.watermark_after == 7
    assert first.quarantined_after == {"b1": 8, "b2": 12}  # both lie above the new watermark
    listed_again = Plan(plan_of(("d1", 10), ("d2", 30)).files, rejected=[bad("b1", 8), bad("b2", 12), bad("b3", 29)])
    second = schedule(listed_again, first.watermark_after, overlap=5, quarantined=first.quarantined_after)
    assert [k.key for k, _ in second.plan.rejected] == ["b3"]  # new; b1 and b2 were quarantined
    assert second.watermark_after == 25 and second.quarantined_after == {"b3": 29}  # b1, b2 now below it
    only_bad = schedule(Plan([], rejected=[bad("b4", 40)]), None, overlap=5)
    assert only_bad.watermark_after == 35 and only_bad.quarantined_after == {"b4": 40}


def test_a_listing_runs_bad_key_is_quarantined_once_end_to_end(spark, tmp_path, lake):
    raw, out = lake
    (tmp_path / "c.yaml").write_text("compaction:\n  max_partitions_per_run: 0\n")  # the default 300 s overlap
    put(raw, 1, "a", time.time() - 60)
    bad = place(raw, "AWSLogs/12345/CloudTrail/us-east-1/2024/12/01/bad.json.gz", STRATUS_GZ)  # bad_account
    os.utime(bad, (time.time() - 30, time.time() - 30))  # within the default 300 s overlap
    for _ in range(2):
        code, summary = run(tmp_path, raw, out)
        assert code == 0
    assert summary["files_read"] == 0 and summary["quarantined"]["total"] == 0
    import pyarrow.orc as orc

    reasons = [r["reason"] for f in (out / "quarantine").rglob("*.orc") for r in orc.ORCFile(str(f)).read().to_pylist()]
    assert reasons == ["bad_account"]


# --------------------------------------------------------------------------- end to end, local


def test_later_runs_read_only_the_new_files_and_add_their_rows(spark, tmp_path, lake):
    raw, out = lake
    t0 = time.time() - 3600
    put(raw, 1, "a", t0)
    put(raw, 2, "a", t0 + 1)
    code, first = run(tmp_path, raw, out)
    assert code == 0 and first["files_read"] == 2 and first["written"] == 2 * N
    assert first["scheduled"]["watermark_before"] is None

    put(raw, 2, "late", t0 + 100)  # a late file for a day already converted
    put(raw, 3, "a", t0 + 101)  # a new day
    code, second = run(tmp_path, raw, out)
    assert code == 0
    assert second["files_read"] == 2 and second["raw_bytes_read"] > 0  # not day 2's first file again
    assert second["scheduled"]["partitions_taken"] == 2 and second["written"] == 2 * N

    code, third = run(tmp_path, raw, out)
    assert code == 0 and third["files_read"] == 0 and third["written"] == 0
    rows = lake_rows(out / "from_cloudtrail_readready")
    assert len(rows) == 4 * N and len({r["eventid"] for r in rows}) == 4 * N
    day2 = out / "from_cloudtrail_readready" / "org=none/account=123456789012/region=us-east-1/dt=2024-12-02"
    assert len(manifest.current_files(str(day2))) == 2  # compaction is off in this test: one file per run
    index = state.read_index(str(out), "cloudtrail")
    assert "org=none/account=123456789012/region=us-east-1/dt=2024-12-02" in index["open"]


def test_a_run_killed_after_publishing_is_resumed_not_repeated(spark, tmp_path, lake, monkeypatch):
    raw, out = lake
    put(raw, 1, "a", time.time() - 100)
    assert run(tmp_path, raw, out)[0] == 0
    before = state.read_watermark(str(out), "cloudtrail")
    put(raw, 2, "a", time.time() - 50)
    put(raw, 3, "a", time.time() - 50)

    def crash(*_a, **_k):
        raise RuntimeError("killed between publishing and committing")

    monkeypatch.setattr(runner, "_commit", crash)
    with pytest.raises(RuntimeError):
        run(tmp_path, raw, out)
    monkeypatch.undo()
    assert state.read_watermark(str(out), "cloudtrail") == before  # not committed
    intent = state.read_intent(str(out), "cloudtrail")
    assert intent is not None and len(intent["files"]) == 2
    assert not (out / "_state" / "cloudtrail" / "lock.json").exists()  # released on the way out
    put(raw, 4, "a", time.time() - 10)  # arrives meanwhile: not part of the interrupted run
    code, again = run(tmp_path, raw, out)
    assert code == 0 and again["resumed"] and again["run_id"] == intent["run_id"]
    # It converts its input again (so its runs row and quarantine describe the whole run)
    # and publishes nothing twice: both partitions were committed before the crash.
    assert again["files_read"] == 2 and again["partitions_already_committed"] == 2
    assert again["partitions_written"] == 0
    assert state.read_intent(str(out), "cloudtrail") is None
    code, nxt = run(tmp_path, raw, out)
    assert code == 0 and nxt["files_read"] == 1  # day 4, by the next run
    rows = lake_rows(out / "from_cloudtrail_readready")
    assert len(rows) == 4 * N and len({r["eventid"] for r in rows}) == 4 * N


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
    assert len(lake_rows(out / "from_cloudtrail_readready")) == 3 * N


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


def test_a_run_whose_lock_was_taken_over_does_not_publish(spark, tmp_path, lake, monkeypatch):
    raw, out = lake
    put(raw, 1, "a", time.time() - 100)
    real_fence = state.Lock.fence

    def outlived(self):  # the TTL passed while this run converted; another run took the lock
        body = json.dumps({"run_id": "successor", "expires_at": time.time() + 600, "generation": 9})
        (out / "_state" / "cloudtrail" / "lock.json").write_text(body)
        real_fence(self)

    monkeypatch.setattr(state.Lock, "fence", outlived)
    with pytest.raises(state.LockLost):
        run(tmp_path, raw, out)
    assert not (out / "from_cloudtrail_readready").exists()  # fenced before publishing
    assert json.loads((out / "_state" / "cloudtrail" / "lock.json").read_text())["run_id"] == "successor"
    assert state.read_intent(str(out), "cloudtrail") is not None  # for the lock's holder to resume


def test_a_run_that_lost_its_lock_leaves_the_successors_intent_staging_and_summary(tmp_path, monkeypatch):
    """A run (A) whose lock a successor (B) took over, and that then fails (B's start
    removed A's staged files: unbalanced), used to clear B's intent, delete B's staging
    folder (the same run id: B resumes A's input) and write the runs summary under B's
    run id. It now fences right after staging and stops there (review finding; no Spark:
    staging is faked, the heartbeat off, as when a run stalls past its TTL)."""
    import dataclasses

    from loglake import convert, publish
    from loglake.config import Config
    from loglake.objects import FileTotals
    from loglake.sources import get_source
    from loglake.stage import _Staged

    out = str(tmp_path / "lake")
    config = Config()
    config = dataclasses.replace(config, scheduled=dataclasses.replace(config.scheduled, lock_ttl_seconds=1))
    plan = Plan([PlannedFile(f"file://{tmp_path}/raw/{day_key(1, 'a')}",
                             ("none", "123456789012", "us-east-1", "2024-12-01"), 1.0, 10)])
    successor = {}

    def stalled_stage(spark, source, config, plan, staging, *args, **kwargs):
        time.sleep(1.2)  # past the TTL, and no heartbeat extended it
        successor["lock"] = state.run_lock(out, "cloudtrail", "run-B", 600)
        successor["lock"].__enter__()
        successor["intent"] = state.read_intent(out, "cloudtrail")
        os.makedirs(storage.local_path(staging), exist_ok=True)
        Path(storage.local_path(staging), "B-staged.orc").write_text("B's")
        return _Staged(FileTotals(files=1, records_read=5, kept=4), {}, 0, 0)  # unbalanced

    monkeypatch.setattr(convert, "_stage", stalled_stage)
    monkeypatch.setattr(state, "kept_alive", lambda lock: contextlib.nullcontext())
    with pytest.raises(state.LockLost):
        runner.run(None, get_source("cloudtrail"), config, out, lambda: runner.Work(plan, publish.ADD, scheduled={}),
                   kind=runner.SCHEDULED)
    run_id = successor["intent"]["run_id"]
    assert json.loads(Path(out, "_state", "cloudtrail", "lock.json").read_text())["run_id"] == "run-B"
    assert state.read_intent(out, "cloudtrail")["run_id"] == run_id  # B's to resume
    assert Path(out, "_staging", run_id, "B-staged.orc").read_text() == "B's"
    assert not Path(out, "_runs").exists() and not Path(out, "runs").exists()
    successor["lock"].__exit__(None, None, None)


def test_every_file_a_run_adds_to_a_partition_is_in_its_published_files(spark, tmp_path, monkeypatch):
    """`loglake alerts` reads the rows of the files a run's `runs` row names. A run whose
    rows for one partition fill more than one file (over MAX_RECORDS_PER_FILE: 2M rows)
    named only the first, whose manifest entry lists the raw objects (review finding)."""
    import pyarrow.orc as orc

    from loglake import stage

    config = tmp_path / "c.yaml"
    config.write_text("scheduled:\n  overlap_seconds: 0\ncompaction:\n  max_partitions_per_run: 0\n")
    raw, out = tmp_path / "raw", tmp_path / "lake"
    put(raw, 1, "a", time.time() - 100)
    monkeypatch.setattr(stage, "MAX_RECORDS_PER_FILE", N // 2 + 1)  # stands in for 2M rows in one run
    code, summary = run(tmp_path, raw, out)
    assert code == 0 and summary["written"] == N
    part = out / "from_cloudtrail_readready" / "org=none" / "account=123456789012" / "region=us-east-1"
    files = manifest.load(str(part / "dt=2024-12-01")).files
    assert len(files) == 2 and sum(f.rows for f in files) == N
    [runs_file] = (out / "runs").rglob("*.orc")
    published = json.loads(orc.ORCFile(str(runs_file)).read().to_pylist()[0]["published_files"])
    assert sorted(published) == sorted(f"{part.relative_to(out / 'from_cloudtrail_readready')}/dt=2024-12-01/{f.name}"
                                       for f in files)


def test_a_selection_lists_its_objects_under_the_lock(spark, tmp_path, lake, monkeypatch):
    """A rebuild replaces its partitions with what it listed: listed before the lock, an
    object a scheduled run added in between was dropped from its partition (review)."""
    from loglake import planning

    raw, out = lake
    put(raw, 1, "a", time.time() - 100)
    real, seen = planning.plan_from_listing, []

    def listing(*args, **kwargs):
        seen.append((out / "_state" / "cloudtrail" / "lock.json").exists())
        return real(*args, **kwargs)

    monkeypatch.setattr(planning, "plan_from_listing", listing)
    assert cli.main(["-q", "run", "cloudtrail", "--raw", str(raw), "--out", str(out), "--date", "2024-12-01",
                     "--config", str(tmp_path / "c.yaml")]) == 0
    assert seen == [True]  # once, holding the lock
    assert cli.main(["-q", "run", "cloudtrail", "--raw", str(tmp_path / "typo"), "--out", str(out),
                     "--date", "2024-12-01"]) == 2  # --raw still checked before Spark is asked for
    assert len(_rows(out)) == N


def test_a_live_run_keeps_its_lock_past_the_ttl(tmp_path):
    """The heartbeat: a run that works longer than the TTL is not taken over; once it has
    stopped (its heartbeat with it), the next run takes the lock after the TTL."""
    out = str(tmp_path / "lake")
    with state.run_lock(out, "cloudtrail", "long-run", ttl_seconds=1) as lock, state.kept_alive(lock):
        time.sleep(2.2)  # twice the TTL
        with pytest.raises(state.LockHeld, match="long-run"):
            with state.run_lock(out, "cloudtrail", "next-run", ttl_seconds=1):
                pass
        lock.fence()  # still its own
    Path(out, "_state", "cloudtrail", "lock.json").write_text(
        json.dumps({"run_id": "killed", "expires_at": time.time() + 0.3}))  # a run killed with its heartbeat
    time.sleep(0.5)
    with state.run_lock(out, "cloudtrail", "next-run", ttl_seconds=1):
        assert json.loads(Path(out, "_state", "cloudtrail", "lock.json").read_text())["run_id"] == "next-run"


def _rows(out):
    return lake_rows(out / "from_cloudtrail_readready")


def _rows_in(folder):
    """The rows an ORC reader finds in one folder, as Athena reads a partition's location."""
    import pyarrow.orc as orc

    return [r for f in sorted(Path(folder).glob("*.orc")) for r in orc.read_table(str(f)).to_pylist()]


# --------------------------------------------------------------------------- the Glue way, against moto


def _glue_lake(aws, tmp_path, bucket="trail", extra=""):
    config_path = tmp_path / "c.yaml"
    config_path.write_text(
        f"sources: {{cloudtrail: {{bucket: {bucket}}}}}\ncatalog: {{database: lake}}\n"
        f"readready: {{location: 'file://{tmp_path}/lake'}}\naws: {{endpoint_url: '{aws.endpoint}'}}\n"
        f"quality: {{expectations: false}}\n{extra}"
    )
    from loglake.addapart import AddAPart
    from loglake.config import load_config

    config = load_config(str(config_path), env={})
    catalog.ensure_database(aws.glue, "lake")
    for tinput in catalog.table_inputs(config, f"file://{tmp_path}/lake", {"cloudtrail": f"s3://{bucket}/AWSLogs/"}):
        catalog.ensure_table(aws.glue, "lake", tinput)
    aws.s3.create_bucket(Bucket=bucket)
    return config_path, AddAPart(config, glue=aws.glue)


def notify(app, bucket, *keys_):
    from loglake.addapart import Message

    body = json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                    "s3": {"bucket": {"name": bucket}, "object": {"key": k, "size": 1}}}
                                   for k in keys_]})
    outcome = app.process([Message(f"m-{time.monotonic_ns()}", body)])
    assert not outcome.failed_message_ids
    return outcome


def test_glue_job_without_selection_converts_what_addapart_put_in_the_inbox(spark, aws, tmp_path):
    bucket = "trail"
    config_path, app = _glue_lake(aws, tmp_path, bucket)

    def land(day, name, announce=True):
        key = day_key(day, name)
        aws.s3.put_object(Bucket=bucket, Key=key, Body=distinct(f"{day}-{name}"))
        if announce:
            assert notify(app, bucket, key).inbox_objects == 1
        return key

    argv = ["job.py", "--JOB_NAME", "scheduled", "--config", str(config_path)]
    land(1, "a")
    first = jobs.main("cloudtrail", argv)
    assert first["files_read"] == 1 and first["status"] == "published" and first["scheduled"]["inbox_files"] == 1
    land(2, "a")
    land(1, "b")  # a later object of a day already converted
    second = jobs.main("cloudtrail", argv)
    assert second["files_read"] == 2 and second["written"] == 2 * N
    # A late-registered partition: its object landed before two runs, and AddAPart saw it
    # only afterwards (an outage, a dead-letter redrive). It is converted when it is seen.
    late = land(5, "a", announce=False)
    assert jobs.main("cloudtrail", argv)["files_read"] == 0
    assert jobs.main("cloudtrail", argv)["files_read"] == 0
    notify(app, bucket, late)
    notify(app, bucket, day_key(2, "a"))  # SQS delivers at least once: a repeat is not converted again
    third = jobs.main("cloudtrail", argv)
    assert third["files_read"] == 1 and third["written"] == N
    assert third["scheduled"]["objects_already_converted"] == 1
    parts = catalog.list_partitions(aws.glue, "lake", "from_cloudtrail_readready")
    assert sorted(p["Values"][3] for p in parts) == ["2024-12-01", "2024-12-02", "2024-12-05"]
    for p in parts:  # Athena reads the partition's current generation folder
        assert p["StorageDescriptor"]["Location"].rstrip("/").rsplit("/", 1)[-1][:2] in ("g-", "c-")
    rows = _rows(tmp_path / "lake")
    assert len(rows) == 4 * N and len({r["eventid"] for r in rows}) == 4 * N
    assert not list((tmp_path / "lake" / "_state" / "cloudtrail" / "inbox").glob("*.json"))  # all claimed


def test_a_compaction_without_catalog_never_leaves_glue_on_removed_files(spark, aws, tmp_path):
    """A hand-run `loglake compact` without --catalog on a lake the Glue job keeps: the
    manifest switched and Glue did not. The next job's retention step used to remove the
    folder Glue still named, so Athena saw the partition empty until a late object came.
    Now that job moves Glue first and keeps the replaced files one more retention period
    (review finding; the reviewer's reproduction, made a test)."""
    import datetime as dt

    bucket = "trail"
    config_path, app = _glue_lake(aws, tmp_path, bucket, extra="compaction: {retain_minutes: 0.01}\n")
    today = dt.datetime.now(dt.UTC)

    def land(name):
        key = f"AWSLogs/123456789012/CloudTrail/us-east-1/{today:%Y/%m/%d}/{name}.json.gz"
        aws.s3.put_object(Bucket=bucket, Key=key, Body=distinct(name))
        notify(app, bucket, key)

    def glue_location():
        [p] = catalog.list_partitions(aws.glue, "lake", "from_cloudtrail_readready")
        return storage.local_path(p["StorageDescriptor"]["Location"])

    argv = ["job.py", "--JOB_NAME", "scheduled", "--config", str(config_path)]
    for name in ("a", "b"):  # today's partition is open: a file per run
        land(name)
        assert jobs.main("cloudtrail", argv)["status"] == "published"
    before = glue_location()
    assert cli.main(["-q", "compact", "cloudtrail", "--out", f"file://{tmp_path}/lake",
                     "--config", str(config_path)]) == 0  # no --catalog: Glue still names `before`
    assert glue_location() == before
    time.sleep(1.0)  # past the retention (0.6 s here)
    healed = jobs.main("cloudtrail", argv)
    after = glue_location()
    part = os.path.dirname(after.rstrip("/"))
    assert os.path.basename(after.rstrip("/")) == manifest.load(part).generation != os.path.basename(before.rstrip("/"))
    assert os.path.isdir(before), "the replaced files stay a retention period after Glue moved"
    assert healed["compaction"]["files_removed"] == 0
    assert len(_rows_in(after)) == 2 * N
    time.sleep(1.0)
    assert jobs.main("cloudtrail", argv)["compaction"]["files_removed"] == 2
    assert not os.path.exists(before) and glue_location() == after and len(_rows_in(after)) == 2 * N


def test_a_catalog_planned_rebuild_keeps_the_rows_of_a_second_trail_glue_cannot_name(spark, aws, tmp_path):
    """Two trails log the same account, region and day under different prefixes; Glue
    holds one location per partition (AddAPart registers the first, the second finds it
    existing). A rebuild planned from the catalog (the Glue job with --date) listed that
    one folder and replaced the partition with its events alone (review finding)."""
    bucket = "trail"
    config_path, app = _glue_lake(aws, tmp_path, bucket)
    for prefix in ("trail-a", "trail-b"):
        key = f"{prefix}/{day_key(1, prefix)}"
        aws.s3.put_object(Bucket=bucket, Key=key, Body=distinct(prefix))
        notify(app, bucket, key)
    [raw_part] = catalog.list_partitions(aws.glue, "lake", "from_cloudtrail_raw")
    assert raw_part["StorageDescriptor"]["Location"].startswith(f"s3://{bucket}/trail-a/")
    argv = ["job.py", "--JOB_NAME", "lake", "--config", str(config_path)]
    assert jobs.main("cloudtrail", argv)["written"] == 2 * N
    rebuilt = jobs.main("cloudtrail", [*argv, "--date", "2024-12-01"])
    assert rebuilt["status"] == "published" and rebuilt["files_read"] == 2 and rebuilt["written"] == 2 * N
    rows = _rows(tmp_path / "lake")
    assert len(rows) == 2 * N and {r["source_file"].split("/")[3] for r in rows} == {"trail-a", "trail-b"}


def test_a_second_trails_insight_folder_is_listed_with_its_cloudtrail_folder(tmp_path):
    """The manifest names the second trail's objects; with include_insights its
    CloudTrail-Insight/ folder beside them is a raw folder of the partition too (review finding)."""
    from loglake import planning
    from loglake.config import config_from_dict
    from loglake.sources import get_source

    source = get_source("cloudtrail")
    config = config_from_dict({"readready": {"location": f"file://{tmp_path}/lake"},
                               "sources": {"cloudtrail": {"include_insights": True}}})
    values = ("none", "123456789012", "us-east-1", "2024-05-01")
    day = "AWSLogs/123456789012/{}/us-east-1/2024/05/01/"
    b_trail = "s3://raw/trailB/" + day.format("CloudTrail") + "123456789012_CloudTrail_us-east-1_x.json.gz"
    part = storage.join(f"file://{tmp_path}/lake", "from_cloudtrail_readready",
                        catalog.hive_partition_path(list(source.schema.partition_names), values).rstrip("/"))
    manifest.commit(part, lambda _: manifest.Manifest("g1", (manifest.DataFile("g1/f.orc", 5, (b_trail,)),)))
    a = "s3://raw/trailA/" + day.format("CloudTrail")
    extra = planning.converted_elsewhere(source, config, values, [a, *source.sibling_dirs(a, config)])
    b = "s3://raw/trailB/"
    assert extra == [b + day.format("CloudTrail-Insight"), b + day.format("CloudTrail")]


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


@pytest.mark.parametrize("where", ["local", "s3"])
def test_releasing_a_lock_never_deletes_the_lock_of_a_run_that_took_it_over(request, tmp_path, monkeypatch, where):
    """Release read the lock, saw its own run id, then deleted: a run that took the lock
    over between the two (this one outlived its TTL) lost it, and a third could start
    beside it. The delete is now conditional on the version read."""
    if where == "s3":
        aws = request.getfixturevalue("aws")
        aws.s3.create_bucket(Bucket="lake")
        root = "s3://lake/readready"
    else:
        root = f"file://{tmp_path}/lake"
    real = storage.read_versioned
    with state.run_lock(root, "cloudtrail", "run-a", ttl_seconds=600) as lock:
        ours = real(lock.uri)
        successor = json.dumps({"run_id": "run-b", "expires_at": time.time() + 600, "generation": 2}).encode()

        def read_then_taken_over(uri):  # the release's read, and the successor's put right after it
            monkeypatch.setattr(storage, "read_versioned", real)
            assert storage.put_conditional(uri, successor, expect=ours[1])
            return ours

        monkeypatch.setattr(storage, "read_versioned", read_then_taken_over)
    held = storage.read_versioned(lock.uri)
    assert held is not None and json.loads(held[0])["run_id"] == "run-b"
    with pytest.raises(state.LockHeld, match="run-b"):
        with state.run_lock(root, "cloudtrail", "run-c", ttl_seconds=600):
            pass


def test_a_scheduled_run_over_a_folder_counts_the_skipped_keys_of_new_objects_only(spark, tmp_path, lake):
    """Objects at or below the watermark are neither taken nor classified again: a
    digest file skipped by the first run is not counted by every run after it (with no
    overlap, as configured here; within ``scheduled.overlap_seconds`` of the newest
    object the next run sees it again, like every object there)."""
    raw, out = lake
    t0 = time.time() - 3600
    put(raw, 1, "a", t0)
    digest = place(raw, "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/12/01/d.json.gz", b"{}")
    os.utime(digest, (t0, t0))
    code, first = run(tmp_path, raw, out)
    assert code == 0 and first["files_read"] == 1 and first["skipped_keys"] == {"digest": 1}
    put(raw, 2, "a", t0 + 100)
    code, second = run(tmp_path, raw, out)
    assert code == 0 and second["files_read"] == 1 and second["skipped_keys"] == {}
