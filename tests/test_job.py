"""The CloudTrail readready job on the real shared samples, locally and the Glue way."""
from __future__ import annotations

import collections
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.orc as orc
import pytest
import yaml

from conftest import ELASTIC_GZ, REPO, STRATUS_GZ, lake_rows, place, records_of
from loglake import addapart, catalog, cli, jobs, manifest
from loglake.sources.cloudtrail import CLOUDTRAIL
from loglake.sources.cloudtrail import SOURCE as CLOUDTRAIL_SOURCE

STRATUS_KEY = (
    "AWSLogs/o-abcdefghij/017622104382/CloudTrail/us-east-1/2024/12/01/"
    "017622104382_CloudTrail_us-east-1_20241201T1200Z_a.json.gz"
)
ELASTIC_KEY = (
    "AWSLogs/111111111111/CloudTrail/eu-west-1/2026/01/06/111111111111_CloudTrail_eu-west-1_20260106T0000Z_b.json.gz"
)
DIGEST_KEY = (
    "AWSLogs/111111111111/CloudTrail-Digest/eu-west-1/2026/01/06/111111111111_CloudTrail-Digest_eu-west-1_x.json.gz"
)
TABLE = "from_cloudtrail_readready"


def write_config(path: Path, **sections) -> str:
    path.write_text(yaml.safe_dump(sections))
    return str(path)


def run_cli(tmp_path, raw, out, *extra, config=None):
    summary_file = tmp_path / f"summary-{len(list(tmp_path.glob('summary-*')))}.json"
    argv = ["-q", "run", "cloudtrail", "--raw", str(raw), "--out", str(out), "--summary-json", str(summary_file)]
    if config:
        argv += ["--config", config]
    assert cli.main(argv + list(extra)) == 0
    return json.loads(summary_file.read_text())


def orc_files(out: Path) -> list[Path]:
    """The table's current files (manifests): a rerun's replaced files stay for the retention."""
    return sorted(Path(f) for f in manifest.table_files(str(out / TABLE), CLOUDTRAIL_SOURCE.schema.partition_names))


def read_table(out: Path):
    return pa.Table.from_pylist(lake_rows(out / TABLE))


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / "raw"
    place(root, STRATUS_KEY, STRATUS_GZ)
    place(root, ELASTIC_KEY, ELASTIC_GZ)
    place(root, DIGEST_KEY, gzip.compress(b'{"awsAccountId":"111111111111"}'))
    place(root, "AWSLogs/README.txt", b"not a log")
    return root


def test_run_on_real_samples_counts_and_rows(spark, tmp_path, raw, capsys, stage_path):
    stratus, elastic = records_of(STRATUS_GZ), records_of(ELASTIC_GZ)
    config = write_config(tmp_path / "c.yaml", filters={"event_names": {"deny": ["DescribeInstanceInformation"]}})
    out = tmp_path / "lake"

    summary = run_cli(tmp_path, raw, out, config=config)

    denied = sum(r["eventName"] == "DescribeInstanceInformation" for r in stratus + elastic)
    kept = [r for r in stratus + elastic if r["eventName"] != "DescribeInstanceInformation"]
    duplicates = len(kept) - len({r["eventID"] for r in kept})  # the elastic samples reuse two ids
    assert denied > 0 and duplicates == 2
    assert summary["files_read"] == 2
    assert summary["records_read"] == len(stratus) + len(elastic)
    assert summary["filtered"] == denied
    assert summary["filtered_by_rule"] == {"event_names": denied}
    assert summary["duplicates"] == duplicates
    assert summary["written"] == len(kept) - duplicates
    assert summary["balanced"] is True and summary["status"] == "published"
    assert summary["skipped_keys"] == {"digest": 1, "no_layout_match": 1}
    # The junk key is quarantined (the digest is skipped by design, not quarantined).
    assert summary["quarantined"] == {"total": 1, "records": 0, "by_reason": {"no_layout_match": 1}}
    # The printed summary is the same JSON (stdout is for machines).
    assert json.loads(capsys.readouterr().out)["written"] == summary["written"]

    table = read_table(out)
    assert table.num_rows == summary["written"]
    rows = table.to_pylist()
    by_partition = collections.Counter((r["org"], r["account"], r["region"], r["dt"]) for r in rows)
    assert by_partition == {
        ("o-abcdefghij", "017622104382", "us-east-1", "2024-12-01"):
            len(stratus) - sum(r["eventName"] == "DescribeInstanceInformation" for r in stratus),
        ("none", "111111111111", "eu-west-1", "2026-01-06"): len({r["eventID"] for r in elastic}),
    }
    assert {r["eventid"] for r in rows} == {
        r["eventID"] for r in stratus + elastic if r["eventName"] != "DescribeInstanceInformation"
    }
    # StartSession rows carry the sessionid from the sample's responseElements.
    expected_sessions = {
        r["eventID"]: r["responseElements"]["sessionId"]
        for r in stratus
        if r["eventName"] == "StartSession" and r["responseElements"]
    }
    assert len(expected_sessions) == 3
    got = {r["eventid"]: r["sessionid"] for r in rows if r["eventname"] == "StartSession"}
    assert {k: got[k] for k in expected_sessions} == expected_sessions
    assert all(r["sessionid"] is None for r in rows if r["eventsource"] != "ssm.amazonaws.com")
    assert {r["source_file"].rsplit("/", 1)[-1] for r in rows} == {
        STRATUS_KEY.rsplit("/", 1)[-1], ELASTIC_KEY.rsplit("/", 1)[-1]
    }
    # each file in the table's sort (eventsource, eventname, useridentity_arn, eventtime), nulls first as Spark sorts
    files = orc_files(out)
    assert len(files) == 2
    for path in files:
        order = [(r["eventsource"], r["eventname"], r["useridentity_arn"], r["eventtime"])
                 for r in orc.read_table(str(path)).to_pylist()]
        assert order == sorted(order, key=lambda t: tuple((v is not None, v) for v in t)), path


def test_output_is_orc_zlib_with_the_declared_flat_schema(spark, tmp_path, raw):
    out = tmp_path / "lake"
    run_cli(tmp_path, raw, out)
    files = orc_files(out)
    assert files and all(orc.ORCFile(str(f)).compression == "ZLIB" for f in files)
    schema = orc.ORCFile(str(files[0])).schema
    assert schema.names == CLOUDTRAIL.names  # partition columns live in the path
    spark_schema = spark.read.orc(f"file://{out / TABLE}").schema
    assert [(f.name, f.dataType.simpleString()) for f in spark_schema.fields] == [
        (c.name, "string" if c.type == "string" else c.type) for c in CLOUDTRAIL.all_columns
    ]
    assert not any(f.dataType.typeName() in ("struct", "array", "map") for f in spark_schema.fields)
    # One declared schema drives Spark, Arrow and Glue: they cannot drift apart.
    glue_cols = [(c["Name"], c["Type"]) for c in CLOUDTRAIL.glue_columns()]
    assert glue_cols == [(c.name, c.type) for c in CLOUDTRAIL.columns]


def test_rerun_replaces_instead_of_duplicating_and_picks_up_late_files(spark, tmp_path, raw):
    out = tmp_path / "lake"
    first = run_cli(tmp_path, raw, out)
    files_before = orc_files(out)
    second = run_cli(tmp_path, raw, out)
    assert second["written"] == first["written"]
    assert read_table(out).num_rows == first["written"]
    # The same input: the rerun rewrote its own files, under the same names.
    assert orc_files(out) == files_before and len(list((out / TABLE).rglob("*.orc"))) == len(files_before)

    # A file arriving late for a day already done: rerunning that day adds exactly it.
    late = [dict(r, eventID=r["eventID"] + "-late") for r in records_of(STRATUS_GZ)[:5]]
    late_key = ELASTIC_KEY.replace("_b.json.gz", "_late.json.gz")
    place(raw, late_key, gzip.compress(json.dumps({"Records": late}).encode()))
    third = run_cli(tmp_path, raw, out, "--date", "2026-01-06")
    elastic_ids = {r["eventID"] for r in records_of(ELASTIC_GZ)}
    assert third["files_read"] == 2 and third["written"] == len(elastic_ids) + 5
    assert read_table(out).num_rows == first["written"] + 5
    # Other input for that day: a new generation folder; the replaced one stays for the
    # retention (compaction.retain_minutes), read by no one who follows the manifest.
    assert len(orc_files(out)) == len(files_before)
    assert len(list((out / TABLE).rglob("*.orc"))) == len(files_before) + 1


def test_partition_that_now_yields_nothing_is_emptied(spark, tmp_path, raw):
    out = tmp_path / "lake"
    run_cli(tmp_path, raw, out)
    config = write_config(tmp_path / "c.yaml", filters={"event_sources": {"allow": ["ssm.amazonaws.com"]}})
    summary = run_cli(tmp_path, raw, out, config=config)
    rows = read_table(out).to_pylist()
    assert rows and {r["eventsource"] for r in rows} == {"ssm.amazonaws.com"}
    assert len(rows) == summary["written"]


def test_selection_and_bad_files_do_not_cost_neighbours(spark, tmp_path, raw):
    place(raw, ELASTIC_KEY.replace("_b.json.gz", "_notgz.json.gz"), b"plain text, not gzip")
    place(raw, ELASTIC_KEY.replace("_b.json.gz", "_cut.json.gz"), ELASTIC_GZ.read_bytes()[:300])
    out = tmp_path / "lake"
    summary = run_cli(tmp_path, raw, out, "--date", "2026-01-06")
    assert summary["files_read"] == 3
    assert summary["quarantined"]["by_reason"] == {"no_layout_match": 1, "not_gzip": 1, "truncated_gzip": 1}
    quarantine = pads.dataset(str(out / "quarantine"), format="orc", partitioning="hive").to_table().to_pylist()
    assert {q["raw_key"].rsplit("/", 1)[-1]: q["reason"] for q in quarantine} == {
        ELASTIC_KEY.rsplit("/", 1)[-1].replace("_b.", "_notgz."): "not_gzip",
        ELASTIC_KEY.rsplit("/", 1)[-1].replace("_b.", "_cut."): "truncated_gzip",
        "README.txt": "no_layout_match",  # the junk key: quarantined whatever the selection
    }
    assert summary["written"] == len({r["eventID"] for r in records_of(ELASTIC_GZ)})
    assert {r["dt"] for r in read_table(out).to_pylist()} == {"2026-01-06"}


def test_bad_selection_is_a_usage_error(tmp_path, raw, capsys):
    assert cli.main(["run", "cloudtrail", "--raw", str(raw), "--out", str(tmp_path), "--date", "2024-02-30"]) == 2
    assert "--date must be a date" in capsys.readouterr().err


# --------------------------------------------------------------------------- the Glue way


def test_glue_job_script_path_against_moto(spark, aws, tmp_path, capsys):
    """AddAPart registers raw partitions; the job plans from the catalog, reads s3://
    through boto3 in the executors, writes file:// ORC and registers readready partitions."""
    bucket = "trail"
    config_path = write_config(
        tmp_path / "c.yaml",
        sources={"cloudtrail": {"bucket": bucket}},
        catalog={"database": "lake"},
        readready={"location": f"file://{tmp_path}/lake"},
        aws={"endpoint_url": aws.endpoint},
    )
    from loglake.config import load_config

    config = load_config(config_path, env={})
    catalog.ensure_database(aws.glue, "lake")
    catalog.ensure_table(aws.glue, "lake", catalog.table_input(
        "from_cloudtrail_raw", CLOUDTRAIL_SOURCE.raw_schema, f"s3://{bucket}/AWSLogs/", "cloudtrail_json"))
    catalog.ensure_table(aws.glue, "lake", catalog.table_input(
        TABLE, CLOUDTRAIL_SOURCE.schema, f"file://{tmp_path}/lake/{TABLE}", "orc"))
    aws.s3.create_bucket(Bucket=bucket)
    aws.s3.put_object(Bucket=bucket, Key=STRATUS_KEY, Body=STRATUS_GZ.read_bytes())
    aws.s3.put_object(Bucket=bucket, Key=ELASTIC_KEY, Body=ELASTIC_GZ.read_bytes())
    body = json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                    "s3": {"bucket": {"name": bucket}, "object": {"key": k}}}
                                   for k in (STRATUS_KEY, ELASTIC_KEY)]})
    assert addapart.AddAPart(config, glue=aws.glue).process([addapart.Message("m", body)]).created == 2

    summary = jobs.main("cloudtrail", ["script.py", "--JOB_NAME", "t", "--config", config_path, "--date", "2024-12-01"])
    assert summary["files_read"] == 1 and summary["written"] == len(records_of(STRATUS_GZ))
    assert summary["balanced"] is True
    assert json.loads(capsys.readouterr().out)["run_id"] == summary["run_id"]
    parts = list(catalog.list_partitions(aws.glue, "lake", TABLE))
    folder = f"file://{tmp_path}/lake/{TABLE}/org=o-abcdefghij/account=017622104382/region=us-east-1/dt=2024-12-01"
    generation = manifest.load(folder).generation  # Athena reads the partition's current generation folder
    assert generation.startswith("r-")
    assert [(p["Values"], p["StorageDescriptor"]["Location"]) for p in parts] == [(
        ["o-abcdefghij", "017622104382", "us-east-1", "2024-12-01"], f"{folder}/{generation}/",
    )]
    # --partitions-since: only partitions registered after that moment (none here).
    later = jobs.main("cloudtrail", ["script.py", "--JOB_NAME", "t", "--config", config_path,
                                     "--partitions-since", "2999-01-01T00:00:00"])
    assert later["files_read"] == 0
    earlier = jobs.main("cloudtrail", ["script.py", "--JOB_NAME", "t", "--config", config_path,
                                       "--partitions-since", "2000-01-01T00:00:00"])
    assert earlier["files_read"] == 2
    elastic_ids = {r["eventID"] for r in records_of(ELASTIC_GZ)}
    assert read_table(tmp_path / "lake").num_rows == len(records_of(STRATUS_GZ)) + len(elastic_ids)


def test_glue_script_is_thin():
    script = (REPO / "glue_jobs" / "cloudtrail_readready.py").read_text()
    code = [line for line in script.splitlines() if line.strip() and not line.startswith(('"""', "#"))]
    assert code == ["from loglake.jobs import main", 'main("cloudtrail")']


def test_a_job_without_a_readready_location_is_refused(tmp_path):
    """(A job without a selection is a scheduled run: tests/test_scheduled.py.)"""
    config = write_config(tmp_path / "c.yaml", catalog={"database": "lake"})
    with pytest.raises(ValueError, match="readready.location is empty"):
        jobs.main("cloudtrail", ["script.py", "--JOB_NAME", "t", "--config", config])


def test_converter_batches_rows_of_many_files_and_loses_none(tmp_path):
    """The mapInArrow function, without Spark: small files share a batch, a big one goes
    whole, and every file's events and its counts row come out exactly once."""
    import pyarrow as pa

    from loglake import objects
    from loglake.config import config_from_dict

    stratus, elastic = records_of(STRATUS_GZ), records_of(ELASTIC_GZ)
    files = []
    for i, records in enumerate([stratus[:3], stratus[3:5], elastic[:4], stratus, elastic[4:6]]):
        path = tmp_path / f"f{i}.json.gz"
        path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
        files.append((f"file://{path}", len(records)))
    names = CLOUDTRAIL_SOURCE.schema.partition_names
    items = pa.RecordBatch.from_pylist([
        {"uri": u, "size": (tmp_path / u.rsplit("/", 1)[1]).stat().st_size, **dict.fromkeys(names, "x")}
        for u, _ in files
    ])
    run = objects._convert_partition("cloudtrail", config_from_dict({}), batch_rows=8)
    batches = list(run(iter([items])))
    rows = [r for b in batches for r in b.to_pylist()]
    kinds = collections.Counter(r["_kind"] for r in rows)
    assert kinds[objects.KIND_EVENT] == sum(n for _, n in files) > len(stratus)
    assert kinds[objects.KIND_FILE] == len(files)
    assert all(b.schema == objects._output_schema(CLOUDTRAIL_SOURCE) for b in batches)
    # 3 + 2 + 4 rows (plus counts rows) fill the first batch; the big file rides in the
    # second whole; the last small file is flushed at the end.
    assert len(batches) == 3 and [b.num_rows >= 8 for b in batches[:2]] == [True, True]
    counted = {json.loads(r["_detail"])["file"]: json.loads(r["_detail"])["kept"]
               for r in rows if r["_kind"] == objects.KIND_FILE}
    assert counted == dict(files)


def test_readready_files_carry_bloom_filters_on_the_needle_columns(spark, tmp_path, raw):
    out = tmp_path / "lake"
    run_cli(tmp_path, raw, out)
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(f"file://{orc_files(out)[0]}")
    reader = jvm.org.apache.orc.OrcFile.createReader(
        path, jvm.org.apache.orc.OrcFile.readerOptions(spark._jsc.hadoopConfiguration()))
    names = list(reader.getSchema().getFieldNames())
    n = reader.getSchema().getMaximumId() + 1
    included = spark.sparkContext._gateway.new_array(jvm.boolean, n)
    for i in range(n):
        included[i] = True
    rows = reader.rows()
    try:
        blooms = rows.readRowIndex(0, included, included).getBloomFilterIndex()
    finally:
        rows.close()
    with_bloom = {names[i - 1] for i in range(1, n) if blooms[i] is not None}
    assert with_bloom == set(CLOUDTRAIL_SOURCE.bloom_columns)


def test_read_ahead_keeps_order_bounds_the_window_and_defers_errors():
    import threading
    import time

    from loglake import objects

    running, peak, lock = [0], [0], threading.Lock()

    def read(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.002)
        with lock:
            running[0] -= 1
        if i == 5:
            raise FileNotFoundError(f"no such object: {i}")
        return f"bytes of {i}".encode()

    got = []
    for item, fetch in objects.read_ahead(range(40), read, window=4):
        try:
            got.append((item, fetch()))
        except FileNotFoundError as exc:
            got.append((item, str(exc)))
    assert [i for i, _ in got] == list(range(40))
    assert got[5] == (5, "no such object: 5") and got[6] == (6, b"bytes of 6")
    assert 1 < peak[0] <= 4


def test_file_list_slices_follow_the_input_size_not_just_the_cores():
    from loglake import planning, stage

    def plan(n, size):
        return planning.Plan(files=[planning.PlannedFile(f"f{i}", ("x",), 0.0, size) for i in range(n)])

    assert stage._slices(plan(1, 1000), parallelism=2) == 1  # never more slices than files
    assert stage._slices(plan(3, 20 << 20), parallelism=2) == 3
    assert stage._slices(plan(100, 1000), parallelism=2) == 2  # fits a slice per core: one per core
    medium = plan(100, 400_000)  # ~38 MiB, over 2 x SLICE_BYTES: 4 per core
    assert stage._slices(medium, parallelism=2) == 8
    big = plan(157_000, 9_000)  # ~1.3 GiB of gzip: each slice holds at most SLICE_BYTES
    slices = stage._slices(big, parallelism=2)
    assert 157_000 * 9_000 / slices <= stage.SLICE_BYTES < 157_000 * 9_000 / (slices - 1)


def test_one_pass_takes_runs_whose_partitions_each_fit_a_task_and_a_cores_share():
    from loglake import onepass

    mib = 1 << 20
    hourly = {(f"a{i}",): 2 * mib for i in range(80)}  # an hourly run: 80 partitions of ~2 MiB
    assert onepass.suits(hourly, parallelism=2)
    assert onepass.suits({("a",): 5 * mib}, parallelism=2)  # small: one pass whatever its partitions
    assert not onepass.suits({}, parallelism=2)
    # a partition too big to hold in one task
    assert not onepass.suits({**hourly, ("big",): onepass.MAX_PARTITION_BYTES + 1}, parallelism=2)
    # one partition is most of the run: one core would convert it alone
    assert not onepass.suits({("a",): 40 * mib, ("b",): 10 * mib}, parallelism=2)
    assert onepass.suits({("a",): 25 * mib, ("b",): 25 * mib}, parallelism=2)
    assert not onepass.suits({("a",): 25 * mib, ("b",): 25 * mib}, parallelism=4)


def test_one_pass_deals_each_partition_whole_in_key_order_largest_first():
    from loglake import onepass

    files = [(f"s3://b/p{p}/f{i:02d}", size, (f"p{p}",))
             for p, (n, size) in enumerate([(3, 100), (10, 100), (1, 50), (2, 400), (5, 10)])
             for i in reversed(range(n))]
    dealt = onepass.deal(files, slices=2)
    assert sorted(row for s in dealt for row in s) == sorted((u, s, *v) for u, s, v in files)  # each once
    for chunk in dealt:
        parts = [row[2] for row in chunk]
        runs = [p for i, p in enumerate(parts) if i == 0 or parts[i - 1] != p]
        assert len(runs) == len(set(runs))  # a partition's objects together
        for p in set(parts):
            uris = [row[0] for row in chunk if row[2] == p]
            assert uris == sorted(uris)
    # bytes p0 300, p1 1000, p2 50, p3 800, p4 50; largest first, each to the lighter list:
    # p1 | p3, then p0 (800 < 1000), p2 (1000 < 1100), p4 (1050 < 1100)
    assert sorted(sorted({row[2] for row in chunk}) for chunk in dealt) == [["p0", "p3"], ["p1", "p2", "p4"]]
    assert len(onepass.deal(files, slices=16)) == 5  # never more lists than partitions


def test_a_one_pass_task_reports_its_objects_counts_added_up_in_one_row(tmp_path):
    """A task sends the driver a few rows a partition and one for all its objects' counts,
    however many objects it read: a row per object, collected, grew the driver with the
    input. The totals are those of the real files, a malformed one included."""
    from loglake import objects, onepass, orcwrite
    from loglake.config import config_from_dict

    stratus, elastic = records_of(STRATUS_GZ), records_of(ELASTIC_GZ)
    groups = {"p1": [stratus[:3], stratus[3:10], elastic[:4]], "p2": [elastic[4:6], stratus[10:11]]}
    items, sizes = [], 0
    for part, files in groups.items():
        for i, records in enumerate(files):
            path = tmp_path / "raw" / part / f"f{i}.json.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
            sizes += path.stat().st_size
            items.append((f"file://{path}", path.stat().st_size, "o-1", "111122223333", "us-east-1", part))
    bad = tmp_path / "raw" / "p2" / "bad.json.gz"
    bad.write_bytes(gzip.compress(b'{"Records": [{"eventID": '))
    sizes += bad.stat().st_size
    items.append((f"file://{bad}", bad.stat().st_size, "o-1", "111122223333", "us-east-1", "p2"))
    names = tuple(CLOUDTRAIL_SOURCE.schema.partition_names)
    assert names == ("org", "account", "region", "dt")
    layout = orcwrite.Layout(str(tmp_path / "out"), names, CLOUDTRAIL_SOURCE.schema.orc_arrow(),
                             tuple(CLOUDTRAIL_SOURCE.bloom_columns), 1000)

    rows = list(onepass.task("cloudtrail", config_from_dict({}), layout)(iter(items)))

    kinds = collections.Counter(r["_kind"] for r in rows)
    assert kinds == {onepass.KIND_WRITTEN: 2, onepass.KIND_PARTITION: 2, onepass.KIND_FILES: 1,
                     onepass.KIND_TALLY: 1}
    totals = objects.FileTotals.from_json(next(r["_detail"] for r in rows if r["_kind"] == onepass.KIND_FILES))
    assert totals.files == 6 and totals.bytes == sizes
    assert totals.records_read == totals.kept == 3 + 7 + 4 + 2 + 1
    assert totals.problems == {"malformed_json": 1} and totals.with_problems == {f"file://{bad}"}
    # the elastic samples' 3rd and 4th records share an event id: p1 keeps 13 of its 14
    parts = sorted((r["dt"], json.loads(r["_detail"])) for r in rows if r["_kind"] == onepass.KIND_PARTITION)
    assert parts == [("p1", {"rows": 14, "repeats": 1}), ("p2", {"rows": 3, "repeats": 0})]
    written = sorted((r["dt"], json.loads(r["_detail"])["rows"]) for r in rows if r["_kind"] == onepass.KIND_WRITTEN)
    assert written == [("p1", 13), ("p2", 3)]


def test_a_plan_holds_each_partitions_values_once(tmp_path):
    """The driver holds a plan entry per object for the whole run: objects of one
    partition share one tuple of its values (a tuple and three strings an object, before)."""
    from loglake import planning
    from loglake.config import config_from_dict

    raw = tmp_path / "raw"
    for name in ("a", "b", "c"):
        place(raw, STRATUS_KEY.replace("_a.json.gz", f"_{name}.json.gz"), STRATUS_GZ)
    place(raw, ELASTIC_KEY, ELASTIC_GZ)
    plan = planning.plan_from_listing(CLOUDTRAIL_SOURCE, str(raw), config_from_dict({}), planning.Selection())
    assert [f.values for f in plan.files] == [("none", "111111111111", "eu-west-1", "2026-01-06")] + [
        ("o-abcdefghij", "017622104382", "us-east-1", "2024-12-01")] * 3  # in key order
    assert plan.files[1].values is plan.files[2].values is plan.files[3].values
    assert not hasattr(plan.files[0], "__dict__")  # slots


def test_file_totals_add_up_objects_and_merge_across_tasks():
    """What each task reports and the driver adds up: counts, filtered records by rule,
    problems by reason and the objects that had any, through the JSON a task sends."""
    from loglake.objects import FileTotals

    def counts(uri, size, read, kept, filtered=None, problems=None):
        return {"file": uri, "bytes": size, "records_read": read, "kept": kept, "filtered": filtered or {},
                "control_messages": 1 if uri.endswith("c") else 0,
                "quarantined_records": sum((problems or {}).values()), "problems": problems or {}}

    one, two = FileTotals(), FileTotals()
    one.add(counts("s3://b/a", 100, 10, 8, {"digest": 2}))
    one.add(counts("s3://b/b", 50, 5, 4, problems={"malformed_record": 1}))
    two.add(counts("s3://b/c", 20, 0, 0))
    two.add(counts("s3://b/d", 70, 7, 5, {"digest": 1, "rule": 1}, {"malformed_record": 1, "too_big": 1}))
    total = FileTotals()
    for part in (one, two):
        total.merge(FileTotals.from_json(part.to_json()))
    assert (total.files, total.bytes, total.records_read, total.kept) == (4, 240, 22, 17)
    assert total.control_messages == 1 and total.quarantined_records == 3
    assert total.filtered == {"digest": 3, "rule": 1}
    assert total.problems == {"malformed_record": 2, "too_big": 1}
    assert total.with_problems == {"s3://b/b", "s3://b/d"}


def test_one_pass_deals_objects_of_unknown_size_by_count():
    """The inbox records size 0 when a notification had none: such objects still spread."""
    from loglake import onepass

    files = [(f"s3://b/p{p}/f{i}", 0, (f"p{p}",)) for p in range(6) for i in range(3)]
    assert sorted(len(chunk) for chunk in onepass.deal(files, slices=3)) == [6, 6, 6]


def test_a_clean_run_converts_and_writes_in_one_spark_job(spark, tmp_path):
    """A clean run is one Spark job: its tasks convert, write and count, and no job of
    its own gathers quarantine rows (the objects with problems are converted again, and
    only when there are some)."""
    raw = tmp_path / "raw"
    place(raw, STRATUS_KEY, STRATUS_GZ)
    place(raw, ELASTIC_KEY, ELASTIC_GZ)
    group = f"one-job-{tmp_path.name}"
    spark.sparkContext.setJobGroup(group, "test")
    try:
        summary = run_cli(tmp_path, raw, tmp_path / "out")
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    assert summary["status"] == "published" and summary["written"] > 0
    assert summary["quarantined"]["total"] == 0
    assert len(spark.sparkContext.statusTracker().getJobIdsForGroup(group)) == 1
