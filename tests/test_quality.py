"""The data-quality gate: each expectation passes clean data and catches its own violation."""
from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import time

import pyarrow as pa
import pytest

from conftest import ELASTIC_GZ, STRATUS_GZ, records_of
from loglake import checks, orcwrite, quality
from loglake.sources import SOURCES, cloudtrail, get_source
from loglake.sources.cloudwatch import CloudWatchConfig

UTC = dt.UTC
CT_TABLE = "from_cloudtrail_readready"
CW_TABLE = "from_cloudwatch_readready"
SSM_GROUP = "/aws/ssm/sessionlogs"
START_SESSION_COND = (
    "row_condition=(eventsource == ssm.amazonaws.com AND eventname == StartSession"
    " AND errorcode IS NULL AND responseelements IS NOT NULL)"
)

TIMINGS: list[float] = []


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# --------------------------------------------------------------------------- frames


def ct_row(n: int, **values) -> dict:
    row = {
        "org": "none",
        "account": "012345678901",
        "region": "us-gov-east-1",
        "dt": "2024-05-01",
        "eventid": f"00000000-0000-0000-0000-{n:012d}",
        "eventtime": ts("2024-05-01T10:00:00"),
        "eventsource": "ec2.amazonaws.com",
        "eventname": "DescribeInstances",
        "awsregion": "us-gov-east-1",
        "source_file": "AWSLogs/012345678901/CloudTrail/us-gov-east-1/2024/05/01/a.json.gz",
    }
    row.update(values)
    return row


def clean_ct_rows() -> list[dict]:
    return [
        ct_row(1),
        # An old event delivered (or replayed) late: no lower bound on eventtime.
        ct_row(2, eventtime=ts("2019-12-31T23:59:59")),
        # The last instant allowed: end of the delivery day + 1 day.
        ct_row(3, eventtime=ts("2024-05-03T00:00:00")),
        # An anonymised region, as in the published samples.
        ct_row(4, awsregion="sagov-westsouth-1r", eventsource="s3.amazonaws.com", eventname="GetObject"),
        # The same eventid in another partition is not a duplicate.
        ct_row(1, dt="2024-05-02", eventtime=ts("2024-05-02T10:00:00")),
        # StartSession that returned a session.
        ct_row(
            5,
            eventsource="ssm.amazonaws.com",
            eventname="StartSession",
            responseelements='{"sessionId":"alice-0123"}',
            sessionid="alice-0123",
        ),
        # StartSession with responseElements null (a real published sample): not checked.
        ct_row(6, eventsource="ssm.amazonaws.com", eventname="StartSession"),
        # Failed StartSession: an error response, no session.
        ct_row(
            7,
            eventsource="ssm.amazonaws.com",
            eventname="StartSession",
            errorcode="AccessDenied",
            responseelements='{"message":"denied"}',
        ),
        # TerminateSession without a response is not a StartSession.
        ct_row(8, eventsource="ssm.amazonaws.com", eventname="TerminateSession", responseelements="{}"),
    ]


def cw_row(n: int, **values) -> dict:
    row = {
        "dt": "2024-08-01",
        "hour": "12",
        "owner": "294599468799",
        "loggroup": SSM_GROUP,
        "logstream": "alice-0123",
        "event_id": f"{n:056d}",
        "event_timestamp": ts("2024-08-01T12:19:16"),
        "message": '{"sessionId":"alice-0123","target":{"id":"i-0abc"},"sessionData":["whoami"]}',
        "sessionid": "alice-0123",
        "target_id": "i-0abc",
        "source_file": "firehose/2024/08/01/12/a.gz",
    }
    row.update(values)
    return row


def plain(n: int, **values) -> dict:
    """A plain log event: no session columns."""
    return cw_row(n, **{"message": "START RequestId: 1", "sessionid": None, "target_id": None, **values})


def clean_cw_rows() -> list[dict]:
    return [
        cw_row(1),
        cw_row(2, message=' \t{"sessionId":"alice-0123","sessionData":[]}'),
        # Another stream may reuse an event id.
        cw_row(1, logstream="bob-0456", sessionid="bob-0456"),
        # Plain text in a session group (the non-streaming format) has no session record.
        plain(3),
        # JSON in another log group is not a session record.
        plain(4, loggroup="/aws/lambda/f", message='{"level":"info"}'),
        plain(5, loggroup="/aws/lambda/f"),
    ]


def frame(spark, source: str, rows: list[dict]):
    table = get_source(source).schema
    names = [c.name for c in table.all_columns]
    return spark.createDataFrame([tuple(r.get(n) for n in names) for r in rows], table.spark_ddl())


def run(spark, source, rows, expect_rows=True, **kw) -> quality.QualityResult:
    df = frame(spark, source, rows)
    start = time.perf_counter()
    result = quality.validate(df, source, expect_rows, **kw)
    TIMINGS.append(time.perf_counter() - start)
    return result


def report_timings():
    if TIMINGS:
        print(f"\nvalidate(): {len(TIMINGS)} calls, first {TIMINGS[0]:.2f}s, "
              f"median {sorted(TIMINGS)[len(TIMINGS) // 2]:.2f}s, max {max(TIMINGS):.2f}s")


@pytest.fixture(scope="module", autouse=True)
def _timings():
    yield
    report_timings()


# --------------------------------------------------------------------------- clean data


def test_importing_the_module_loads_neither_gx_nor_spark():
    code = (
        "import sys, loglake.quality;"
        " print(sorted(m for m in ('great_expectations', 'pyspark') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_clean_cloudtrail_frame_passes(spark):
    result = run(spark, "cloudtrail", clean_ct_rows())
    assert result.success, result.failed
    assert result.table == CT_TABLE
    assert result.failed == []
    assert result.evaluated == len(quality.expectations("cloudtrail")) == result.result["statistics"][
        "evaluated_expectations"
    ]
    assert result.result["suite_name"] == CT_TABLE
    json.dumps(result.result)  # JSON-serialisable as it is


def test_clean_cloudwatch_frame_passes(spark):
    result = run(spark, "cloudwatch", clean_cw_rows())
    assert result.success, result.failed
    assert result.table == CW_TABLE
    assert result.evaluated == len(quality.expectations("cloudwatch"))


def test_real_samples_flattened_pass_the_gate(spark):
    """Every published CloudTrail sample, flattened by the converter, passes: including the
    elastic StartSession whose responseElements is null."""
    rows, seen = [], set()
    for path in (STRATUS_GZ, ELASTIC_GZ):
        for record in records_of(path):
            row = cloudtrail.flatten_cloudtrail(record)
            if row["eventid"] in seen:  # dedup runs before the gate
                continue
            seen.add(row["eventid"])
            day = row["eventtime"].date().isoformat()  # delivered the day it happened
            row.update(org="o-abcdefghij", account="294599468799", region="me-northwest-3r", dt=day)
            row["source_file"] = path.name
            rows.append(row)
    assert any(r["eventname"] == "StartSession" and r["responseelements"] is None for r in rows)
    result = run(spark, "cloudtrail", rows)
    assert result.success, result.failed


# --------------------------------------------------------------------------- each expectation fails alone


def with_ct(*extra: dict, replace: dict | None = None):
    rows = clean_ct_rows()
    if replace:
        rows[0] = ct_row(1, **replace)
    return rows + list(extra)


CT_VIOLATIONS = {
    "eventid null": (
        with_ct(replace={"eventid": None}),
        "expect_column_values_to_not_be_null(column=eventid): 1 of 9 rows",
    ),
    "duplicate eventid in a partition": (
        with_ct(ct_row(1, eventname="RunInstances")),
        "expect_compound_columns_to_be_unique(column_list=org,account,region,dt,eventid): 2 of 10 rows",
    ),
    "eventtime null": (
        with_ct(replace={"eventtime": None}),
        "expect_column_values_to_not_be_null(column=eventtime): 1 of 9 rows",
    ),
    "eventtime after the delivery deadline": (
        with_ct(ct_row(9, eventtime=ts("2024-05-03T00:00:01"))),
        "expect_column_pair_values_a_to_be_greater_than_b(column_A=_delivery_deadline, column_B=eventtime,"
        " or_equal=True): 1 of 10 rows",
    ),
    "eventsource not an endpoint": (
        with_ct(ct_row(9, eventsource="EC2.amazonaws.com")),
        "expect_column_values_to_match_regex(column=eventsource, regex=^[a-z0-9.-]+\\.amazonaws\\.com\\z)",
    ),
    "eventsource with a trailing newline": (
        with_ct(ct_row(9, eventsource="ec2.amazonaws.com\n")),
        "expect_column_values_to_match_regex(column=eventsource,",
    ),
    "eventname null": (
        with_ct(replace={"eventname": None}),
        "expect_column_values_to_not_be_null(column=eventname)",
    ),
    "eventname empty": (
        with_ct(ct_row(9, eventname="")),
        "expect_column_values_to_match_regex(column=eventname, regex=\\S): 1 of 10 rows",
    ),
    "account not 12 digits": (
        with_ct(ct_row(9, account="12345678901")),
        'expect_column_values_to_match_regex(column=account, regex=^[0-9]{12}\\z): 1 of 10 rows, e.g. ["12345678901"]',
    ),
    "region partition not a region": (
        with_ct(ct_row(9, region="US-EAST-1")),
        "expect_column_values_to_match_regex(column=region,",
    ),
    "dt not a date": (
        with_ct(ct_row(9, dt="2024-5-1")),
        "expect_column_values_to_match_regex(column=dt,",
    ),
    "awsregion not a region": (
        with_ct(ct_row(9, awsregion="global")),
        'expect_column_values_to_match_regex(column=awsregion, regex=^[a-z]{2,8}(-[a-z]+)+-[0-9]{1,2}[a-z]?\\z): '
        '1 of 10 rows, e.g. ["global"]',
    ),
    "successful StartSession without sessionid": (
        with_ct(ct_row(9, eventsource="ssm.amazonaws.com", eventname="StartSession", responseelements="{}")),
        f"expect_column_values_to_not_be_null(column=sessionid, {START_SESSION_COND}): 1 of 2 rows",
    ),
}


def one_pass_failed(spark, source: str, rows: list[dict]) -> list[str]:
    """The lines of the checks the one-pass Spark aggregate fails (no GX)."""
    work = quality.with_derived_columns(frame(spark, source, rows), source)
    result = checks.evaluate(work, quality.checks_of(source), "t")
    return sorted(quality.describe_failure(r) for r in result["results"] if not r["success"])


def name_of(line: str) -> str:
    return line.split(": ")[0]


def same_failure(line: str, expected: str) -> bool:
    """``line`` reports what ``expected`` (read off GX's report of that violation alone)
    says, counts included; not GX's examples, which the one-pass engines do not collect,
    nor the count of rows sharing a key, which GX alone counts."""
    if "compound_columns_to_be_unique" in expected:
        return name_of(line) == name_of(expected)
    return line.startswith(expected.split(", e.g.")[0])


@pytest.mark.parametrize("case", list(CT_VIOLATIONS))
def test_each_cloudtrail_expectation_fails_alone_and_is_named(spark, case):
    rows, expected = CT_VIOLATIONS[case]
    failed = one_pass_failed(spark, "cloudtrail", rows)
    assert len(failed) == 1, failed
    assert same_failure(failed[0], expected), failed[0]


def all_at_once(violations: dict, clean: list[dict]) -> list[dict]:
    """Every violation's rows in one frame: the clean rows, then each case's rows that
    are not clean rows."""
    rows = list(clean)
    for case_rows, _ in violations.values():
        rows += [r for r in case_rows if r not in clean]
    return rows


@pytest.mark.parametrize("source", ["cloudtrail", "cloudwatch"])
def test_great_expectations_fails_every_violation_the_one_pass_evaluation_fails(spark, source):
    """GX (some 40 Spark jobs a validation) is run once, on all violations together: it
    fails exactly the expectations the violations above name, with their counts and
    examples in the lines, and the one-pass evaluation failed the same ones. Each
    violation failing its expectation alone is shown by the one-pass evaluation (the
    tests above) and by the writing tasks' tally (below)."""
    violations, clean = (CT_VIOLATIONS, clean_ct_rows()) if source == "cloudtrail" else (CW_VIOLATIONS,
                                                                                          clean_cw_rows())
    rows = all_at_once(violations, clean)
    result = run(spark, source, rows)
    assert not result.success and result.result["meta"]["loglake"]["engine"] == "great_expectations"
    failed = {name_of(line): line for line in result.failed}
    wanted = {name_of(e) for _, e in violations.values()}  # some name an expectation by a prefix
    assert all(any(f.startswith(want) for f in failed) for want in wanted), (sorted(wanted), sorted(failed))
    assert all(any(f.startswith(want) for want in wanted) for f in failed), (sorted(wanted), sorted(failed))
    assert result.result["meta"]["loglake"]["one_pass_failed"] == sorted(failed)
    for _, expected in violations.values():
        if "e.g." in expected:  # GX's examples of the unexpected values
            example = expected.split("e.g. ")[1]
            assert any(line.startswith(name_of(expected)) and example in line for line in result.failed), expected


def with_cw(*extra: dict, replace: dict | None = None):
    rows = clean_cw_rows()
    if replace:
        rows[0] = cw_row(1, **replace)
    return rows + list(extra)


CW_VIOLATIONS = {
    "event_id null": (
        with_cw(replace={"event_id": None}),
        "expect_column_values_to_not_be_null(column=event_id): 1 of 6 rows",
    ),
    "duplicate event in a stream": (
        with_cw(cw_row(1, message='{"sessionId":"alice-0123","sessionData":["again"]}')),
        "expect_compound_columns_to_be_unique(column_list=dt,hour,owner,loggroup,logstream,event_id): 2 of 7 rows",
    ),
    "event_timestamp null": (
        with_cw(replace={"event_timestamp": None}),
        "expect_column_values_to_not_be_null(column=event_timestamp): 1 of 6 rows",
    ),
    "owner not an account": (
        with_cw(plain(9, owner="29459946879a")),
        "expect_column_values_to_match_regex(column=owner, regex=^[0-9]{12}\\z): 1 of 7 rows",
    ),
    "dt not a date": (
        with_cw(plain(9, dt="2024-13-01")),
        "expect_column_values_to_match_regex(column=dt,",
    ),
    "hour not an hour": (
        with_cw(plain(9, hour="24")),
        "expect_column_values_to_match_regex(column=hour,",
    ),
    "session row without target_id": (
        with_cw(cw_row(9, target_id=None)),
        "expect_column_values_to_not_be_null(column=target_id, row_condition=sessionid IS NOT NULL): 1 of 4 rows",
    ),
    "session record without sessionid": (
        with_cw(cw_row(9, message='  {"sessionData":["ls"]}', sessionid=None, target_id=None)),
        "expect_column_values_to_not_be_null(column=sessionid, row_condition=_session_record == True): 1 of 4 rows",
    ),
}


@pytest.mark.parametrize("case", list(CW_VIOLATIONS))
def test_each_cloudwatch_expectation_fails_alone_and_is_named(spark, case):
    rows, expected = CW_VIOLATIONS[case]
    failed = one_pass_failed(spark, "cloudwatch", rows)
    assert len(failed) == 1, failed
    assert same_failure(failed[0], expected), failed[0]


# --------------------------------------------------------------------------- in the writing tasks


def arrow_rows(source: str, rows: list[dict]) -> pa.Table:
    """Rows as a writing task gets them: the file's columns (timestamps naive UTC), then
    the partition columns."""
    table = get_source(source).schema
    arrow = pa.schema([*table.orc_arrow(), *(pa.field(n, pa.string()) for n in table.partition_names)])
    naive = [{k: v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, dt.datetime) else v for k, v in r.items()}
             for r in rows]
    return pa.Table.from_pylist(naive, schema=arrow)


def tally_through_writer(tmp_path, source: str, rows: list[dict], session_log_groups=None) -> quality.QualityResult:
    """The gate as a run takes it: the rows written by orcwrite's writer, which tallies
    them (StagedGate), then judged on the tallies alone."""
    table = get_source(source).schema
    names = tuple(table.partition_names)
    rows = sorted(rows, key=lambda r: tuple(r[n] for n in names))
    layout = orcwrite.Layout(str(tmp_path / source), names, table.orc_arrow(), (), max_rows=1000)
    section = CloudWatchConfig(session_log_groups=tuple(session_log_groups)) if session_log_groups else None
    tally = quality.StagedGate(source, section)()
    orcwrite.write_sorted(iter(arrow_rows(source, rows).to_batches()), layout, 0, tally)
    counts = json.loads(json.dumps(tally.counts()))  # as it travels from the task
    return quality.judge_counts([counts], source, True, [*table.orc_arrow().names, *names])


@pytest.mark.parametrize("source", ["cloudtrail", "cloudwatch"])
def test_the_writing_tasks_tally_passes_clean_data(tmp_path, source):
    rows = clean_ct_rows() if source == "cloudtrail" else clean_cw_rows()
    result = tally_through_writer(tmp_path, source, rows)
    assert result.success, result.failed
    assert result.rows == len(rows)
    assert result.result["meta"]["loglake"]["engine"] == "loglake tallies in the writing tasks"


@pytest.mark.parametrize("case", [("cloudtrail", c) for c in CT_VIOLATIONS]
                         + [("cloudwatch", c) for c in CW_VIOLATIONS], ids=lambda c: f"{c[0]}: {c[1]}")
def test_the_writing_tasks_tally_fails_each_violation_alone(tmp_path, case):
    """What GX failed for each violation above (the expected lines were read off GX's
    reports), the tally of the written rows fails too, and nothing else."""
    source, name = case
    rows, expected = (CT_VIOLATIONS if source == "cloudtrail" else CW_VIOLATIONS)[name]
    result = tally_through_writer(tmp_path, source, rows)
    assert not result.success
    assert len(result.failed) == 1, result.failed
    assert same_failure(result.failed[0], expected), result.failed[0]


def test_the_tally_reads_regexes_as_java_does(tmp_path):
    # Java's \S does not match a vertical tab (RE2's does): an eventname of one is blank
    assert not tally_through_writer(tmp_path, "cloudtrail", with_ct(ct_row(9, eventname="\x0b"))).success
    assert checks.re2_of_java(r"^\s*\{") == r"^[ \t\n\x0B\f\r]*\{"
    with pytest.raises(ValueError, match="inside"):
        checks.re2_of_java(r"[\s,]")
    # a session record's message may start with Java whitespace, \x0b included
    rows = clean_cw_rows() + [cw_row(9, message='\x0b{"sessionData":["ls"]}', sessionid=None, target_id=None)]
    assert [f.split(":")[0] for f in tally_through_writer(tmp_path, "cloudwatch", rows).failed] == [
        "expect_column_values_to_not_be_null(column=sessionid, row_condition=_session_record == True)"]


def test_an_impossible_dt_has_no_deadline_in_either_engine(spark, tmp_path):
    # 2024-02-30 has a date's shape (DATE_RE): Spark's deadline is null, so the pair check
    # skips the row; pyarrow's strptime would roll it over to 03-01 and judge it
    rows = [ct_row(1, dt="2024-02-30", eventtime=ts("2030-01-01T00:00:00"))]
    assert one_pass_failed(spark, "cloudtrail", rows) == []
    assert tally_through_writer(tmp_path, "cloudtrail", rows).success


def test_the_tally_takes_the_session_log_groups_given(tmp_path):
    rows = clean_cw_rows() + [plain(9, loggroup="/custom/sessions", message='{"sessionData":[]}')]
    assert tally_through_writer(tmp_path, "cloudwatch", rows).success
    assert not tally_through_writer(tmp_path, "cloudwatch", rows, [SSM_GROUP, "/custom/sessions"]).success


def test_tasks_that_saw_no_rows_pass_unless_rows_were_expected():
    """A run whose objects yield no rows: its writing tasks tally nothing at all."""
    ct = get_source("cloudtrail").schema
    columns = [*ct.orc_arrow().names, *ct.partition_names]
    nothing = [quality.StagedGate("cloudtrail")().counts() for _ in range(2)]
    assert quality.judge_counts(nothing, "cloudtrail", False, columns).success
    assert quality.judge_counts(nothing, "cloudtrail", True, columns).failed == [
        "expect_table_row_count_to_be_between(min_value=1): observed 0 rows"]


def test_tallies_of_two_tasks_add_up(tmp_path):
    """Each partition is written by one task, so the distinct keys of two tasks add up;
    columns seen by one task and none by the other (no rows) are the staged columns."""
    ct = get_source("cloudtrail").schema
    gate = quality.StagedGate("cloudtrail")
    one, two, empty = gate(), gate(), gate()
    one.add(arrow_rows("cloudtrail", clean_ct_rows()[:4]))
    two.add(arrow_rows("cloudtrail", clean_ct_rows()[4:]))
    columns = [*ct.orc_arrow().names, *ct.partition_names]
    result = quality.judge_counts([one.counts(), empty.counts(), two.counts()], "cloudtrail", True, columns)
    assert result.success and result.rows == len(clean_ct_rows())
    # a repeat within one task's rows fails: that is where all of a partition's rows are
    again = gate()
    again.add(arrow_rows("cloudtrail", clean_ct_rows()[:4] + clean_ct_rows()[:1]))
    merged = quality.judge_counts([again.counts(), two.counts()], "cloudtrail", True, columns)
    assert [f.split("(")[0] for f in merged.failed] == ["expect_compound_columns_to_be_unique"]
    # tasks that saw different columns are not added up
    narrow = checks.Tally(quality.checks_of("cloudtrail"))
    narrow.add(arrow_rows("cloudtrail", clean_ct_rows()[:1]).drop_columns(["sessionid"]))
    with pytest.raises(ValueError, match="different columns"):
        quality.judge_counts([one.counts(), narrow.counts()], "cloudtrail", True, columns)


def test_a_tally_counts_rows_added_in_many_tables_as_if_added_in_one():
    """A tally holds small tables and counts them together (an hourly task adds forty
    partitions of a few rows): the counts, repeats and failures included, must not depend
    on how the rows were split, whether or not the held rows pass the flush size."""
    gate = quality.StagedGate("cloudtrail")
    rows = clean_ct_rows() + clean_ct_rows()[:1] + [ct_row(9, eventname=None), ct_row(10, eventsource="not a source")]
    whole = gate()
    whole.add(arrow_rows("cloudtrail", rows))
    expected = whole.counts()
    # the cases are real: a repeated key and a null column the suite checks
    assert any(k.endswith("_distinct") and v < len(rows) for k, v in expected.items())
    assert any(k.endswith("_bad") and v for k, v in expected.items())
    for flush_at in (2, 3, 10_000):
        pieces = gate()
        pieces.PENDING_ROWS = flush_at
        for row in rows:
            pieces.add(arrow_rows("cloudtrail", [row]))
        assert pieces.counts() == expected, flush_at


def test_a_tally_counts_the_keys_of_complete_partitions_as_it_goes_and_finds_every_repeat():
    """A tally counts the uniqueness keys of the partitions it has all the rows of as it
    goes, and keeps only the last one's (a writer adds a partition's rows together): the
    distinct count must be the one of all keys at once, with a repeat found whether it
    comes before or after a fold, and one event id in two partitions counted twice."""
    gate = quality.StagedGate("cloudtrail")
    a = [ct_row(n) for n in range(1, 6)]
    b = [ct_row(n, dt="2024-05-02") for n in range(1, 8)]
    b += [ct_row(2, dt="2024-05-02"), ct_row(7, dt="2024-05-02")]  # repeats: early in b, and its last row
    c = [ct_row(n, region="eu-west-1") for n in (1, 2)]
    rows = a + b + c
    distinct = len({(r["dt"], r["region"], r["eventid"]) for r in rows})  # computed here: 5 + 7 + 2
    assert distinct == 14 and len(rows) == 16
    index = next(i for i, c in enumerate(quality.checks_of("cloudtrail"))
                 if c.kind == "ExpectCompoundColumnsToBeUnique")
    for fold_at in (1, 2, 3, 6, 10_000):
        tally = gate()
        tally.PENDING_ROWS, tally.FOLD_ROWS = 1, fold_at
        for row in rows:
            tally.add(arrow_rows("cloudtrail", [row]))
        assert tally.counts()[f"c{index}_distinct"] == distinct, fold_at
        if fold_at < 10_000:
            assert tally._folded, fold_at  # the case is real: partitions were counted on the way


# --------------------------------------------------------------------------- one pass vs GX


def verdicts(result: dict) -> list[tuple[str, str, bool]]:
    """(expectation type, its arguments, passed) per expectation, in a fixed order."""
    out = []
    for r in result["results"]:
        config = r["expectation_config"]
        kwargs = {k: v for k, v in config["kwargs"].items()
                  if k in ("column", "column_list", "column_A", "column_B", "regex", "row_condition")}
        out.append((config["type"], json.dumps(kwargs, sort_keys=True), bool(r["success"])))
    return sorted(out)


@pytest.mark.parametrize("source", ["cloudtrail", "cloudwatch"])
def test_on_clean_data_the_one_pass_evaluation_gives_the_verdicts_of_great_expectations(spark, source):
    """The gate decides with checks.evaluate and calls GX only on a failure, so a check the
    one-pass evaluation passed wrongly would never reach GX. Here both pass every check of
    clean data; on each violation (the tests above) the checks the one-pass evaluation
    failed are GX's (``one_pass_failed``)."""
    rows = clean_ct_rows() if source == "cloudtrail" else clean_cw_rows()
    work = quality.with_derived_columns(frame(spark, source, rows), source).persist()
    try:
        fast = checks.evaluate(work, quality.checks_of(source), "t")
        by_gx = quality.gx_validate(work, source, True)
    finally:
        work.unpersist()
    assert verdicts(fast) == verdicts(by_gx)
    assert fast["success"] and by_gx["success"]


def test_a_pass_takes_one_aggregate_and_no_great_expectations(spark, monkeypatch):
    def no_gx():
        raise AssertionError("great_expectations used on a pass")

    monkeypatch.setattr(quality, "_gx", no_gx)
    df = frame(spark, "cloudtrail", clean_ct_rows()).persist()
    df.count()
    spark.sparkContext.setJobGroup("one-pass-gate", "test")
    try:
        result = quality.validate(df, "cloudtrail", True)
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        df.unpersist()
    assert result.success and result.result["meta"]["loglake"]["engine"] == "loglake one-pass aggregate"
    # One aggregate; adaptive execution runs its two shuffle stages (the distinct keys of
    # the uniqueness check) as jobs of their own: 3, where GX alone runs 17.
    assert len(spark.sparkContext.statusTracker().getJobIdsForGroup("one-pass-gate")) <= 3


@pytest.fixture(scope="module")
def judged_failure(spark) -> quality.QualityResult:
    """One failing validation, judged by GX (some 40 Spark jobs), for the tests that read it."""
    return run(spark, "cloudtrail", with_ct(ct_row(9, account="1")))


def test_a_failure_is_judged_and_reported_by_great_expectations(judged_failure):
    result = judged_failure
    assert result.result["meta"]["loglake"]["engine"] == "great_expectations"
    assert result.result["meta"]["great_expectations_version"]


def test_a_check_without_a_one_pass_evaluation_is_refused(spark):
    odd = checks.Check("ExpectColumnValuesToBeInSet", {"column": "eventname", "value_set": ["x"]}, "why")
    with pytest.raises(ValueError, match="ExpectColumnValuesToBeInSet has no one-pass evaluation"):
        checks.evaluate(frame(spark, "cloudtrail", []), [odd], "t")
    mostly = checks.Check("ExpectColumnValuesToNotBeNull", {"column": "eventid", "mostly": 0.9}, "why")
    with pytest.raises(ValueError, match="no one-pass evaluation of mostly"):
        checks.evaluate(frame(spark, "cloudtrail", []), [mostly], "t")


def test_session_log_groups_come_from_the_caller(spark):
    rows = clean_cw_rows() + [plain(9, loggroup="/custom/sessions", message='{"sessionData":[]}')]
    assert run(spark, "cloudwatch", rows).success
    custom = CloudWatchConfig(session_log_groups=(SSM_GROUP, "/custom/sessions"))
    result = run(spark, "cloudwatch", rows, section=custom)
    assert [line.split(":")[0] for line in result.failed] == [
        "expect_column_values_to_not_be_null(column=sessionid, row_condition=_session_record == True)"
    ]


def test_a_schema_change_fails_the_gate(spark):
    df = frame(spark, "cloudtrail", clean_ct_rows()).drop("sessionid").withColumn("extra", quality_lit(1))
    result = quality.validate(df, "cloudtrail", True)
    assert not result.success
    (line,) = [f for f in result.failed if f.startswith("expect_table_columns_to_match_set")]
    assert '"missing": ["sessionid"]' in line and '"unexpected": ["extra"]' in line
    # the conditional sessionid check cannot run without the column: a failure, not a crash
    assert any(f.startswith("expect_column_values_to_not_be_null(column=sessionid") for f in result.failed)


def quality_lit(value):
    from pyspark.sql import functions as F

    return F.lit(value)


@pytest.mark.parametrize("source", ["cloudtrail", "cloudwatch"])
def test_row_count_when_rows_were_expected(spark, source):
    failed = run(spark, source, [], expect_rows=True)
    assert not failed.success
    assert failed.failed == ["expect_table_row_count_to_be_between(min_value=1): observed 0 rows"]
    assert run(spark, source, [], expect_rows=False).success


def test_deadline_is_utc_whatever_the_session_time_zone(spark):
    tz = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        # 2024-03-10 is a DST change in New York: the deadline is still dt + 48 h in UTC.
        rows = [ct_row(1, dt="2024-03-10", eventtime=ts("2024-03-12T00:00:00"))]
        assert run(spark, "cloudtrail", rows).success
        rows = [ct_row(1, dt="2024-03-10", eventtime=ts("2024-03-12T00:00:01"))]
        assert [name_of(f) for f in one_pass_failed(spark, "cloudtrail", rows)] == [
            "expect_column_pair_values_a_to_be_greater_than_b(column_A=_delivery_deadline, column_B=eventtime,"
            " or_equal=True)"]
    finally:
        spark.conf.set("spark.sql.session.timeZone", tz)


def test_unknown_source_is_refused(spark):
    with pytest.raises(ValueError, match="unknown source"):
        quality.validate(frame(spark, "cloudtrail", []), "cloudtrial", False)


# --------------------------------------------------------------------------- results, docs, no network


def test_write_result_round_trips(judged_failure, tmp_path):
    result = judged_failure
    path = tmp_path / "runs" / "r1.json"
    quality.write_result(result, str(path))
    data = json.loads(path.read_text())
    assert data["table"] == CT_TABLE and data["success"] is False and data["failed"] == result.failed
    assert quality.read_result(str(path)) == result
    assert [p.name for p in path.parent.iterdir()] == ["r1.json"]  # no temp file left


def test_build_docs_renders_results_and_suites(spark, tmp_path, monkeypatch):
    # Run in an empty working directory and home, with the network blocked: GX must write
    # only into out_dir and never connect anywhere.
    work, home = tmp_path / "cwd", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    connections = block_network(monkeypatch)

    results = tmp_path / "results"
    ok = run(spark, "cloudtrail", clean_ct_rows())
    bad = run(spark, "cloudwatch", with_cw(replace={"event_id": None}))
    quality.write_result(ok, str(results / "cloudtrail" / "run-1.json"))
    quality.write_result(bad, str(results / "cloudwatch" / "run-1.json"))
    (results / "summary.json").write_text('{"run_id": "not a quality result"}')

    out = tmp_path / "docs"
    index = quality.build_docs(str(results), str(out))

    assert index == str(out / "index.html")
    html = (out / "index.html").read_text()
    assert CT_TABLE in html and CW_TABLE in html
    pages = sorted(p.relative_to(out).as_posix() for p in (out / "validations").rglob("*.html"))
    assert len(pages) == 2 and pages[0].startswith(f"validations/{CT_TABLE}/cloudtrail__run-1/")
    page = (out / pages[1]).read_text()
    assert "event_id" in page and "Failed" in page
    assert (out / "expectations" / f"{CW_TABLE}.html").is_file()
    assert "Session replay orders by event_timestamp" in (out / "expectations" / f"{CW_TABLE}.html").read_text()
    assert list(work.iterdir()) == [] and list(home.iterdir()) == []
    assert connections == []


def block_network(monkeypatch) -> list:
    """Refuse (and record) any connection that is not to this machine (Spark's py4j is)."""
    attempts: list = []
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"network blocked in tests: {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "::1", "localhost", None):
            attempts.append(host)
            raise OSError(f"DNS blocked in tests: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


def test_failure_lines_name_exceptions_instead_of_crashing():
    line = quality.describe_failure(
        {
            "success": False,
            "expectation_config": {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}},
            "result": {},
            "exception_info": {"m": {"raised_exception": True, "exception_message": "no column x"}},
        }
    )
    assert line == "expect_column_values_to_not_be_null(column=x): raised no column x"


def test_every_source_with_a_suite_names_its_table_and_derived_columns():
    for source in SOURCES.values():
        assert source.checks is not None
        [columns] = [c.args["column_set"] for c in source.checks(True) if c.kind == "ExpectTableColumnsToMatchSet"]
        assert columns == [c.name for c in source.schema.all_columns] + list(source.derived_columns)
        assert source.tables["readready"] == f"from_{source.name}_readready"
