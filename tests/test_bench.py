"""The data generator and the benchmark, at a size that runs in seconds.

No timing is asserted: the machine is shared. What is checked is what the benchmark's
numbers rest on: the generated data is deterministic, realistic in its compression and
key layout, its sessions join, and a whole benchmark run reports every figure.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from conftest import SAMPLES
from loglake import bench, firehose, generate, transforms
from loglake.sources import cloudtrail, cloudwatch
from loglake.sources.cloudtrail import parse_cloudtrail_key
from loglake.sources.cloudwatch import parse_firehose_key

# One account, region and day: about 14 events per 5-minute file, close to the small
# benchmark's density (gzip ratios depend on how many records share a file).
DENSE = {"events": 4_000, "accounts": 1, "regions": 1, "days": 1, "seed": 7}
# a real results file, as the benchmark wrote it (the committed small run)
COMMITTED_SMALL = Path(bench.REPO) / "bench" / "results-small.json"
COMMITTED_TINY = Path(bench.REPO) / "bench" / "results-tiny.json"  # the committed run with a schedule part


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    stats = generate.generate(out / "a", samples=SAMPLES, workers=1, **DENSE)
    return out, stats


def test_same_seed_same_bytes(generated, tmp_path):
    out, stats = generated
    again = generate.generate(tmp_path / "b", samples=SAMPLES, workers=1, **DENSE)
    assert tree_digest(out / "a") == tree_digest(tmp_path / "b")
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in stats.items() if k != "seconds"}
    other = generate.generate(tmp_path / "c", samples=SAMPLES, workers=1, **{**DENSE, "seed": 8})
    assert tree_digest(tmp_path / "c") != tree_digest(out / "a")
    assert other["cloudtrail"]["events"] == DENSE["events"]


def test_gzip_ratio_close_to_the_real_samples(generated):
    _, stats = generated
    ratio = stats["gzip_ratio"]
    real = ratio["real"]
    # recomputed here from the files, not trusted from the stats
    assert ratio["generated_cloudtrail"] == pytest.approx(
        stats["cloudtrail"]["uncompressed_bytes"] / stats["cloudtrail"]["bytes"], rel=1e-3)
    for reference in (real["reference"], real["stratus_files"]):
        assert abs(ratio["generated_cloudtrail"] / reference - 1) <= 0.25, ratio
    assert ratio["within_25pct"]


def test_keys_and_records_are_what_loglake_expects(generated):
    out, stats = generated
    ct_files = sorted((out / "a" / "cloudtrail").rglob("*.json.gz"))
    assert len(ct_files) == stats["cloudtrail"]["files"]
    events, errors, types = 0, 0, set()
    for path in ct_files:
        key = str(path.relative_to(out / "a" / "cloudtrail"))
        parsed = parse_cloudtrail_key(key)
        assert parsed.ok, (key, parsed.reason)
        org, account, region, day = parsed.partition.values
        assert org == stats["org"] and account in stats["accounts"] and region in stats["regions"]
        raw = gzip.decompress(path.read_bytes())
        assert raw.startswith(b'{"Records":[') and b"\n" not in raw  # compact, as trails deliver
        records, problem = cloudtrail.decode_cloudtrail(path.read_bytes())
        assert problem is None
        for i, rec in enumerate(records):
            assert cloudtrail.check_cloudtrail_record(rec, i) is None
            assert rec["recipientAccountId"] == account and rec["awsRegion"] == region
            assert rec["eventTime"][:10] <= day  # delivered on or after the event's day
            errors += bool(rec.get("errorCode"))
            types.add((rec.get("userIdentity") or {}).get("type"))
        events += len(records)
    assert events == DENSE["events"]
    assert 0.02 <= errors / events <= 0.07
    assert {"AssumedRole", "IAMUser", "AWSService"} <= types
    cw_files = sorted(p for p in (out / "a" / "cloudwatch").rglob("*") if p.is_file())
    assert cw_files and len(cw_files) == stats["cloudwatch"]["files"]
    for path in cw_files:
        key = str(path.relative_to(out / "a" / "cloudwatch"))
        assert key.startswith("cwl/") and not key.endswith(".gz")
        assert parse_firehose_key(key).ok, key


def test_session_ids_match_the_firehose_session_records(generated):
    out, stats = generated
    started, terminated = {}, set()
    for path in (out / "a" / "cloudtrail").rglob("*.json.gz"):
        for rec in json.loads(gzip.decompress(path.read_bytes()))["Records"]:
            sid = cloudtrail.session_id(rec)
            if rec["eventName"] == "StartSession":
                started[sid] = rec["userIdentity"]["arn"]
            elif rec["eventName"] == "TerminateSession":
                terminated.add(sid)
    assert started and len(started) == stats["sessions"]
    assert terminated <= set(started)
    user_part = {sid: sid.rsplit("-", 1) for sid in started}
    assert all(len(suffix) == 26 and suffix.isalnum() and suffix.islower() for _, suffix in user_part.values())
    seen: dict[str, str] = {}
    members = control = 0
    for path in (p for p in (out / "a" / "cloudwatch").rglob("*") if p.is_file()):
        data = path.read_bytes()
        members += data.count(b"\x1f\x8b\x08")
        stream = firehose.GzipChunks(data)
        for item in firehose.iter_documents(stream):
            assert not isinstance(item, transforms.Problem), item
            _, doc = item
            if doc["messageType"] == "CONTROL_MESSAGE":
                control += 1
                continue
            if doc["logGroup"] != generate.SESSION_LOG_GROUP:
                continue
            for event in doc["logEvents"]:
                fields, problem = cloudwatch.parse_session_record(event["message"])
                assert problem is None and fields
                seen[fields["sessionid"]] = fields["useridentity_arn"]
        assert stream.problem is None
    assert seen == started  # every session's keystrokes, by the principal who started it
    assert control >= 1 and members > len(list((out / "a" / "cloudwatch").rglob("loglake-cwl-*")))


def test_bench_tiny_reports_every_figure(spark, tmp_path):
    """The whole benchmark on ~2k events, in this process (the session's Spark)."""
    out = tmp_path / "out"
    out.mkdir()
    earlier = json.loads(COMMITTED_SMALL.read_text()) | {"scale": "tiny", "needle_speedup": 12345.5}
    (out / "results-tiny.json").write_text(json.dumps(earlier))  # an earlier run at this scale
    res = bench.run("tiny", tmp_path / "work", out, ingest_mode="in-process", spark=spark)
    results = json.loads((out / "results-tiny.json").read_text())
    # a smoke run writes its own scale's files only, never the committed results.json
    assert not (out / "results.json").exists() and not (out / "RESULTS.md").exists()
    for key in bench.REQUIRED_KEYS:
        assert key in results, key
        assert results[key] is not None, key
    assert results["scale"] == "tiny" and results["events"] == bench.SCALES["tiny"]["events"]
    queries = results["details"]["queries"]
    assert all(queries[q]["same_answer"] for q in ("needle", "scan", "session_join")), queries
    assert queries["needle"]["readready"]["rows"] == results["details"]["generate"]["needle"]["events"] > 0
    assert results["glue_calls_known_partitions"] == 0
    # each column's share read from every readready file's stripe footers: the shares and
    # the tail (footers, postscript) stay within the files' bytes
    cols = results["details"]["sizes"]["cloudtrail"]
    assert cols["columns"]["files"] == cols["readready_files"] > 0
    assert 0 < sum(cols["columns"]["share"].values()) + cols["columns"]["tail_share"] <= 1
    assert set(cols["columns"]["encodings"]) == set(cols["columns"]["share"])
    assert results["details"]["ingest"]["cloudtrail"]["records_read"] == results["events"]
    # the strong peer, a process of its own, wrote the same events (it drops what loglake
    # would quarantine; the generated data has none), and each step of the limit was timed
    peer = results["details"]["strong_peer"]
    assert peer["rows"] == results["details"]["ingest"]["cloudtrail"]["written"] == results["events"]
    assert peer["bytes"] > 0 and peer["memory"]["peak_jvm_mb"] > 0
    assert results["ingest_vs_strong_peer"] > 0 and results["strong_peer_size_ratio"] > 0
    limit = results["limit_breakdown_s"]
    assert set(limit) == {"decompress", "parse_json", "encode_orc", "total"} and all(v > 0 for v in limit.values())
    assert results["details"]["limit"]["raw_files"] == results["details"]["generate"]["cloudtrail"]["files"]
    ct_seconds = results["details"]["ingest"]["cloudtrail"]["seconds"]
    assert 0 < results["ingest_vs_limit"] == round(limit["total"] / ct_seconds, 3)
    # the schedule part: each delivered raw byte read once, one file per partition after
    # compaction, a reader that never saw a partition shrink or a row twice, and the
    # hourly lake holding exactly the batch lake's events
    sched = results["details"]["schedule"]
    assert len(sched["runs"]) == bench.SCHEDULE["tiny"]["slices"] + 1
    assert all(r["status"] == "published" for r in sched["runs"])
    assert sched["late_files"] >= 1 and sched["runs"][-1]["files_read"] >= sched["late_files"]
    assert sched["files_read"] == sched["delivered_files"]
    assert 1.0 <= results["hourly_read_amplification"] <= 1.05
    assert results["files_per_closed_partition"] == 1
    assert results["reader_anomalies"] == 0 and sched["reader"]["reads"] > 0
    assert results["hourly_same_events_as_batch"] is True
    events = sched["event_ids"]
    assert events["hourly"] == events["batch"] and events["hourly"]["rows"] == events["hourly"]["distinct"]
    assert events["hourly"]["rows"] == sched["events"] == bench.SCHEDULE["tiny"]["events"]
    assert results["hourly_vs_batch_time"] > 0 and results["run_startup_s"] > 0
    assert sched["startup"]["status"] == "published"
    # the phases were timed in the runs and the batch run: the whole run holds its parts
    phases = sched["runs_phases_s"]
    assert phases["the whole run (lock to commit)"] >= phases["convert (all of convert.convert)"] > 0
    assert phases["list the raw folder"] > 0 and sched["batch"]["phases_s"]["convert (all of convert.convert)"] > 0
    md = (out / "RESULTS-tiny.md").read_text()
    assert "| figure | target | measured | met |" in md and "needle" in md
    assert "| strong peer (`bench/strong_peer.py`)" in md and "Measured limit (`limit_breakdown_s`" in md
    assert "## 6. Scheduled runs" in md and "(`hourly_vs_batch_time`) | <= 2.0 |" in md
    assert res["targets"].keys() == bench.TARGETS.keys()
    # the earlier run became the before column, and is kept in the results for a re-render
    assert results["details"]["previous_run"]["needle_speedup"] == 12345.5
    assert "| figure | target | measured | met | previous run (" in md and "12,345.5" in md


def test_the_schedule_warm_up_runs_scheduled_runs_and_a_compaction_in_scratch_lakes(spark, generated, tmp_path,
                                                                                   monkeypatch):
    """The warm-up before the measured runs does what they do (scheduled runs over a
    folder that fills, then a compaction), in lakes of its own: the measured lakes must
    not see any of it."""
    from loglake import manifest, storage
    from loglake.sources import SOURCES

    out, stats = generated
    monkeypatch.setattr(bench, "WARMUP_RUNS", 3)
    monkeypatch.setattr(bench, "WARMUP_RUN_FILES", 4)
    ct_root = out / "a" / "cloudtrail"
    parts = bench.delivery_slices(ct_root, stats["start_date"], 24, 7)
    work = tmp_path / "work"
    bench._warm_scheduled(spark, SOURCES["cloudtrail"], ct_root, [kv for p in parts for kv in p], work)
    assert sorted(p.name for p in work.iterdir()) == ["warmup-delivered", "warmup-hourly"]
    assert len([p for p in (work / "warmup-delivered").rglob("*.json.gz")]) == 12
    runs = list((work / "warmup-hourly" / "_runs" / "cloudtrail").glob("*.json"))
    kinds = sorted("compaction" in json.loads(p.read_text()) for p in runs)
    assert kinds == [False, False, False, True]  # three runs, then the compaction
    table = work / "warmup-hourly" / "from_cloudtrail_readready"
    for tp in manifest.partitions(str(table), ["org", "account", "region", "dt"]):
        m = manifest.load(storage.join(str(table), tp.path))
        assert m.compacted and len(m.files) == 1


def test_phase_timer_times_a_function_under_each_name_it_is_bound_to_and_restores_them():
    """``convert`` calls ``_stage`` through its own binding (``from loglake.stage import
    _stage``): the timer must see those calls, and leave both names as they were."""
    from loglake import convert, stage

    original = stage._stage
    assert convert._stage is original
    timer = bench.PhaseTimer((("loglake.stage", "_stage", "stage"), ("loglake.convert", "_publish", "publish")))
    with timer:
        assert convert._stage is stage._stage is not original
        with pytest.raises(AttributeError):  # any call: it fails at once, and is still timed
            convert._stage(None, None, None, None, None, None, None, None)
    assert stage._stage is original and convert._stage is original
    assert set(timer.as_dict()) == {"stage"} and timer.seconds["stage"] > 0
    first = timer.seconds["stage"]
    with timer:  # entered again: the times add up
        with pytest.raises(AttributeError):
            stage._stage(None, None, None, None, None, None, None, None)
    assert timer.seconds["stage"] > first and stage._stage is original


def test_the_large_ingests_memory_measured_alone_is_in_the_committed_report(tmp_path):
    """``--only memory --scale large`` writes memory-large.json (the ingest's peak at
    large against the small's, the median of alternated runs); the committed report
    shows it as peak_rss_large_vs_small, against its target."""
    medium = json.loads(COMMITTED_SMALL.read_text()) | {"scale": "medium", "events": 1_000_000}
    medium["details"].pop("previous_run", None)
    (tmp_path / "results-medium.json").write_text(json.dumps(medium))
    (tmp_path / "memory-large.json").write_text(json.dumps({
        "scale": "large", "events": 5_000_000, "peak_rss_mb": 1210.0, "small_peak_rss_mb": 1000.0,
        "ratio_to_small": 1.21, "runs": {"small": [{}, {}], "large": [{}, {}]},
        "machine": {"date": "2030-01-02 03:04 UTC", "commit": "abc1234"}}))

    assert bench.main(["--render", "--scale", "medium", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["peak_rss_large_vs_small"] == 1.21
    assert written["targets"]["peak_rss_large_vs_small"] == {
        "target": "<= 1.1", "measured": 1.21, "met": False, "what": bench.TARGETS["peak_rss_large_vs_small"][2]}
    md = (tmp_path / "RESULTS.md").read_text()
    assert "`peak_rss_large_vs_small` 1.210: the large ingest alone" in md
    assert "1210.0 MiB against 1000.0 MiB (2030-01-02, `abc1234`)" in md


def test_render_puts_the_other_scale_beside_and_keeps_each_report(tmp_path):
    """--render re-writes the reports from stored results: the large report gets a column
    with the small scale's figures; each scale keeps its own RESULTS-<scale>.md."""
    small = json.loads(COMMITTED_SMALL.read_text())
    large = json.loads(COMMITTED_SMALL.read_text()) | {"scale": "large", "events": 5_000_000,
                                                       "size_ratio_cloudtrail": 1.69}
    large["targets"]["size_ratio_cloudtrail"]["measured"] = 1.69
    large["peak_rss_mb"] = round(small["peak_rss_mb"] * 1.5, 1)
    large["details"].pop("previous_run", None)
    large["details"]["machine"] = {**large["details"]["machine"], "date": "2030-01-02 03:04 UTC", "commit": "abc1234"}
    (tmp_path / "results-small.json").write_text(json.dumps(small))
    (tmp_path / "results-large.json").write_text(json.dumps(large))

    assert bench.main(["--render", "--scale", "large", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "RESULTS.md").read_text()
    assert md == (tmp_path / "RESULTS-large.md").read_text()
    assert md.startswith("# loglake benchmark: `large` scale")
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["scale"] == "large"
    # memory against the stored small run, whichever ran last
    assert written["peak_rss_vs_small"] == 1.5 and written["targets"]["peak_rss_vs_small"]["met"] is False
    assert written["details"]["peak_rss_small_run"]["peak_rss_mb"] == small["peak_rss_mb"]
    other_col = f"`small` scale ({small['details']['machine']['date'][:10]}, `{small['details']['machine']['commit']}`)"
    assert f"| figure | target | measured | met | {other_col} |" in md
    row = next(line for line in md.splitlines() if "(`size_ratio_cloudtrail`)" in line)
    assert row.endswith(f"| 1.690 | **no** | {small['size_ratio_cloudtrail']:.3f} |")
    assert "previous run" not in md  # no earlier large run was stored
    assert "`RESULTS-small.md`" in md

    bench.render("small", tmp_path)
    small_md = (tmp_path / "RESULTS-small.md").read_text()
    assert "previous run (" in small_md and "`large` scale (2030-01-02, `abc1234`)" in small_md
    assert (tmp_path / "RESULTS-large.md").read_text() == md  # the large report stays as it was
    # and the committed report stays the large one: a small scale writes only its own files
    assert (tmp_path / "RESULTS.md").read_text() == md
    assert json.loads((tmp_path / "results.json").read_text())["scale"] == "large"


def test_only_schedule_folds_the_schedule_part_into_the_stored_results(tmp_path, monkeypatch):
    """--only schedule measures the schedule part and keeps every other stored figure; the
    stored figures before it become the previous run. The measurement itself (what
    run_schedule returns) is the committed tiny run's schedule part, with a new batch time."""
    stored = json.loads(COMMITTED_SMALL.read_text())
    stored["details"].pop("schedule", None)  # a stored run without a schedule part
    for key in ("hourly_read_amplification", "hourly_vs_batch_time", "run_startup_s", "files_per_closed_partition",
                "reader_anomalies", "hourly_same_events_as_batch"):
        stored.pop(key, None)
        stored["targets"].pop(key, None)
    (tmp_path / "results-small.json").write_text(json.dumps(stored))
    measured = json.loads(COMMITTED_TINY.read_text())["details"]["schedule"]
    measured["batch"]["seconds"] = measured["hourly_s"] / 1.5
    monkeypatch.setattr(bench, "run_schedule", lambda *a, **k: json.loads(json.dumps(measured)))

    bench.run_schedule_only("small", tmp_path / "work", tmp_path, spark=object())

    res = json.loads((tmp_path / "results-small.json").read_text())
    assert res["hourly_vs_batch_time"] == 1.5 and res["targets"]["hourly_vs_batch_time"]["met"] is True
    assert res["reader_anomalies"] == measured["reader"]["anomalies"]
    assert res["files_per_closed_partition"] == measured["files_per_closed_partition"]["mean"]
    for key in ("size_ratio_cloudtrail", "needle_speedup", "ingest_events_per_s_per_core", "events"):
        assert res[key] == stored[key], key  # the other parts' figures, as they were measured
    assert res["details"]["previous_run"]["needle_speedup"] == stored["needle_speedup"]
    assert res["details"]["previous_run"].get("hourly_vs_batch_time") is None  # none stored before
    assert res["details"]["schedule"]["measured_alone"]["machine"]["date"]
    md = (tmp_path / "RESULTS-small.md").read_text()
    assert "## 6. Scheduled runs" in md and "Measured on its own (`--only schedule`" in md
    assert not (tmp_path / "results.json").exists()  # small: not a committed scale


def test_only_schedule_without_stored_results_says_so(tmp_path, capsys):
    assert bench.main(["--only", "schedule", "--scale", "large", "--out", str(tmp_path),
                       "--work", str(tmp_path / "work")]) == 2
    assert "results-large.json: no stored results for the large scale" in capsys.readouterr().err


def test_naive_peer_flag_reaches_the_run_and_defaults_to_the_scale(tmp_path, monkeypatch):
    """--no-naive-peer skips the ~70-minute naive peer of a large run; without the flag the
    scale decides (medium skips it)."""
    seen = []
    monkeypatch.setattr(bench, "run", lambda *a, **kw: seen.append(kw["with_naive_peer"]) or {})
    common = ["--scale", "large", "--out", str(tmp_path), "--work", str(tmp_path / "work")]
    for flags in ([], ["--no-naive-peer"], ["--naive-peer"]):
        assert bench.main(common + flags) == 0
    assert seen == [None, False, True]
    assert bench.SCALES["medium"]["naive_peer"] is False and "naive_peer" not in bench.SCALES["large"]


def test_a_run_without_the_samples_stops_before_measuring(tmp_path, monkeypatch, capsys):
    """The schedule part generates data after the queries (~20 minutes into a large run,
    even with --reuse): without the real samples the run says so at once."""
    from loglake import samples

    monkeypatch.delenv(samples.SAMPLES_ENV, raising=False)
    monkeypatch.setattr(samples, "REPO", tmp_path / "elsewhere" / "loglake")
    monkeypatch.setattr(samples, "_origin_checkout", lambda: None)
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    work = tmp_path / "work"
    assert bench.main(["--scale", "tiny", "--reuse", "--work", str(work), "--out", str(tmp_path / "out")]) == 2
    assert "no samples found" in capsys.readouterr().err and not work.exists()


def test_samples_flag_reaches_the_generator_and_a_wrong_one_is_named(tmp_path, monkeypatch, capsys):
    """The missing-samples hint says "pass --samples DIR": bench takes it, and hands it to
    the generator (in this process and the ingest children) through the environment. A
    wrong one stops the run before it measures, naming the folder."""
    from loglake import samples

    monkeypatch.setenv(samples.SAMPLES_ENV, "")  # unset, and restored after bench.main sets it
    monkeypatch.chdir(tmp_path)
    samples.samples_dir()  # the default samples are there: a wrong --samples must not fall back to them
    wrong = tmp_path / "not-samples"
    common = ["--scale", "tiny", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    assert bench.main(common + ["--samples", str(wrong)]) == 2
    assert str(wrong) in capsys.readouterr().err and not (tmp_path / "work").exists()

    seen = []
    monkeypatch.setattr(bench, "run", lambda *a, **k: seen.append(samples.samples_dir()))
    assert bench.main(common + ["--samples", str(SAMPLES)]) == 0
    assert seen == [Path(SAMPLES).resolve()]


def test_render_without_stored_results_says_so(tmp_path, capsys):
    assert bench.main(["--render", "--scale", "large", "--out", str(tmp_path)]) == 2
    assert "results-large.json: no stored results for the large scale" in capsys.readouterr().err


def test_generate_main_help_and_bad_args(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        generate.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--events", "--accounts", "--regions", "--days", "--seed"):
        assert flag in text
    assert generate.main(["--out", str(tmp_path), "--regions", "99"]) == 2
