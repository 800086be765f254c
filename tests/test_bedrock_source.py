"""Amazon Bedrock invocation logs: key layout, per-object conversion and the suite's
declarations, on the published records and on fixtures (pure Python: no Spark)."""
from __future__ import annotations

import datetime as dt
import gzip
import json
from types import SimpleNamespace

import pytest

from conftest import SAMPLES
from loglake import checks, keys, transforms
from loglake.config import Config, FiltersConfig, ListFilter, QualityConfig
from loglake.sources import bedrock
from loglake.sources.bedrock import SOURCE, BedrockConfig, classify_key, parse_key, process_bedrock

PUBLISHED = SAMPLES / "bedrock" / "published_examples.jsonl"
ACCOUNT = "123456789012"
BASE = f"AWSLogs/{ACCOUNT}/BedrockModelInvocationLogs/us-east-1/2025/03/11/00"
KEY = f"{BASE}/20250311T003802123Z_0a1b2c3d4e5f6a7b.json.gz"


def published() -> list[dict]:
    """The published records, read independently of loglake's decoder."""
    return [json.loads(line) for line in PUBLISHED.read_text().splitlines() if line.strip()]


def lines(*items) -> bytes:
    """A Bedrock object: gzip, one JSON record (or given raw line) a line."""
    text = b"".join((i if isinstance(i, bytes) else json.dumps(i).encode()) + b"\n" for i in items)
    return gzip.compress(text)


def config(max_body_bytes: int = 256 << 10, **filters) -> SimpleNamespace:
    """A config with a sources.bedrock section, whether or not the source is registered."""
    return SimpleNamespace(
        sources=SimpleNamespace(bedrock=BedrockConfig(max_body_bytes=max_body_bytes)),
        quality=QualityConfig(),
        filters=FiltersConfig(**filters),
    )


def record(**fields) -> dict:
    base = {
        "schemaType": "ModelInvocationLog",
        "schemaVersion": "1.0",
        "timestamp": "2025-03-11T00:38:02Z",
        "accountId": ACCOUNT,
        "identity": {"arn": f"arn:aws:iam::{ACCOUNT}:user/alice"},
        "region": "us-east-1",
        "requestId": "req-1",
        "operation": "Converse",
        "modelId": "amazon.nova-lite-v1:0",
        "input": {"inputContentType": "application/json", "inputBodyJson": {"messages": []}, "inputTokenCount": 3},
        "output": {"outputContentType": "application/json", "outputBodyJson": {"stopReason": "end_turn"},
                   "outputTokenCount": 5},
    }
    base.update(fields)
    return base


def one_row(rec: dict, cfg=None) -> dict:
    result = process_bedrock(lines(rec), "s3://b/" + KEY, cfg or config())
    assert not result.problems, result.problems
    [row] = result.rows
    return row


def balanced(result) -> bool:
    record_problems = sum(1 for p in result.problems if p.record)
    return result.records_read == len(result.rows) + sum(result.filtered.values()) + record_problems


# --------------------------------------------------------------------------- published records


def test_the_published_records_convert():
    expected = published()
    assert len(expected) == 3
    result = process_bedrock(gzip.compress(PUBLISHED.read_bytes()), "s3://b/" + KEY, Config())
    assert result.problems == []
    assert result.records_read == 3 and balanced(result)
    names = SOURCE.schema.names
    for rec, row in zip(expected, result.rows, strict=True):
        assert list(row) == names  # the partition columns are added by the job, from the key
        assert row["requestid"] == rec["requestId"]
        assert row["modelid"] == rec["modelId"]  # as delivered
        assert row["operation"] == rec["operation"]
        assert row["accountid"] == rec["accountId"]
        assert row["record_region"] == rec["region"]
        assert row["schematype"] == rec["schemaType"]
        assert row["schemaversion"] == rec.get("schemaVersion")
        assert row["identity_arn"] == rec.get("identity", {}).get("arn")
        when = dt.datetime.strptime(rec["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        assert row["eventtime"] == when
        assert type(row["input_token_count"]) is int and row["input_token_count"] == rec["input"]["inputTokenCount"]
        assert type(row["output_token_count"]) is int
        assert row["output_token_count"] == rec["output"]["outputTokenCount"]
        assert json.loads(row["input_body"]) == rec["input"]["inputBodyJson"]
        assert json.loads(row["output_body"]) == rec["output"]["outputBodyJson"]
        assert row["input_content_type"] == rec["input"].get("inputContentType")
        assert row["bodies_truncated"] is False
        assert row["input_body_s3_path"] is None and row["output_body_s3_path"] is None
        assert row["errorcode"] is None and row["additional_fields"] is None
        assert row["source_file"] == "s3://b/" + KEY
    first, _second, third = result.rows
    assert first["cache_read_input_token_count"] == 0 and first["cache_write_input_token_count"] == 0
    assert json.loads(third["request_metadata"]) == expected[2]["requestMetadata"]
    assert third["identity_arn"] is None  # this published record has no identity


def test_row_columns_are_the_schema_minus_the_partition_columns():
    row = one_row(record())
    assert list(row) == SOURCE.schema.names
    assert not set(row) & set(SOURCE.schema.partition_names)
    assert [c.name for c in SOURCE.schema.partition_keys] == ["account", "region", "dt"]
    assert all(c.doc for c in SOURCE.schema.all_columns)


# --------------------------------------------------------------------------- fixtures


def test_an_error_record_keeps_its_error_code():
    rec = record(errorCode="ThrottlingException", output={})
    del rec["output"]
    row = one_row(rec)
    assert row["errorcode"] == "ThrottlingException"
    assert row["output_body"] is None and row["output_token_count"] is None
    assert row["additional_fields"] is None


def test_bodies_moved_to_s3_keep_their_paths_and_no_body():
    in_path = f"s3://logs/{BASE}/data/7c1e_input.json.gz"
    out_path = f"s3://logs/{BASE}/data/7c1e_output.json.gz"
    row = one_row(record(
        input={"inputContentType": "application/json", "inputBodyS3Path": in_path, "inputTokenCount": 90000},
        output={"outputContentType": "application/json", "outputBodyS3Path": out_path, "outputTokenCount": 12},
    ))
    assert row["input_body"] is None and row["output_body"] is None
    assert row["input_body_s3_path"] == in_path and row["output_body_s3_path"] == out_path
    assert row["bodies_truncated"] is False  # Bedrock moved them; loglake left nothing out
    assert row["input_token_count"] == 90000


def test_a_body_larger_than_max_body_bytes_is_null_and_flagged():
    big = {"messages": [{"role": "user", "content": [{"text": "é" * 100}]}]}
    size = len(json.dumps(big, separators=(",", ":"), ensure_ascii=False).encode())
    rec = record(input={"inputBodyJson": big, "inputTokenCount": 1})
    row = one_row(rec, config(max_body_bytes=size - 1))
    assert row["input_body"] is None and row["bodies_truncated"] is True
    assert json.loads(row["output_body"]) == rec["output"]["outputBodyJson"]  # the small one is kept
    exactly = one_row(rec, config(max_body_bytes=size))  # UTF-8 bytes, not characters
    assert json.loads(exactly["input_body"]) == big and exactly["bodies_truncated"] is False


def test_cache_token_counts():
    row = one_row(record(input={"inputTokenCount": 10, "cacheReadInputTokenCount": 2048,
                                "cacheWriteInputTokenCount": 512}))
    assert (row["input_token_count"], row["cache_read_input_token_count"],
            row["cache_write_input_token_count"]) == (10, 2048, 512)
    assert all(type(row[c]) is int for c in bedrock.TOKEN_COUNTS)


def test_a_token_count_that_is_not_an_integer_is_null_and_kept_aside():
    row = one_row(record(input={"inputTokenCount": "12"}, output={"outputTokenCount": 3.5}))
    assert row["input_token_count"] is None and row["output_token_count"] is None
    assert json.loads(row["additional_fields"]) == {"input": {"inputTokenCount": "12"},
                                                    "output": {"outputTokenCount": 3.5}}


def test_request_metadata_inference_region_and_unknown_fields():
    row = one_row(record(requestMetadata={"team": "search", "trace": "t-1"}, inferenceRegion="us-west-2",
                         performanceConfig={"latency": "optimized"},
                         identity={"arn": "arn:aws:iam::123456789012:role/r", "extra": 1}))
    assert json.loads(row["request_metadata"]) == {"team": "search", "trace": "t-1"}
    assert row["inference_region"] == "us-west-2"
    assert row["identity_arn"] == "arn:aws:iam::123456789012:role/r"
    assert json.loads(row["additional_fields"]) == {"performanceConfig": {"latency": "optimized"},
                                                    "identity": {"extra": 1}}


def test_a_line_that_is_not_json_is_a_problem_and_its_neighbours_are_kept():
    data = lines(record(requestId="a"), b'{"requestId": "broken", ', b"", b"   ", record(requestId="b"))
    result = process_bedrock(data, "f", config())
    assert [r["requestid"] for r in result.rows] == ["a", "b"]
    [problem] = result.problems
    assert problem.reason == transforms.MALFORMED_JSON and problem.record and problem.index == 1
    assert problem.payload == '{"requestId": "broken", '
    assert result.records_read == 3 and balanced(result)  # blank lines are no records


def test_a_line_that_is_not_an_object_is_a_problem():
    result = process_bedrock(lines([record()], "text", record()), "f", config())
    assert [p.reason for p in result.problems] == [transforms.RECORD_NOT_OBJECT] * 2
    assert len(result.rows) == 1 and balanced(result)


@pytest.mark.parametrize("change, reason", [
    ({"requestId": None}, bedrock.MISSING_REQUEST_ID),
    ({"requestId": ""}, bedrock.MISSING_REQUEST_ID),
    ({"timestamp": None}, bedrock.MISSING_TIMESTAMP),
    ({"timestamp": "yesterday"}, bedrock.BAD_TIMESTAMP),
    ({"timestamp": 1741653482}, bedrock.BAD_TIMESTAMP),
])
def test_records_without_identity_or_time_are_problems(change, reason):
    bad = record(**change)
    result = process_bedrock(lines(record(requestId="ok"), bad), "f", config())
    [problem] = result.problems
    assert problem.reason == reason and problem.record and problem.index == 1
    assert json.loads(problem.payload) == bad
    assert [r["requestid"] for r in result.rows] == ["ok"] and balanced(result)


def test_a_missing_timestamp_field_is_a_problem():
    rec = record()
    del rec["timestamp"], rec["requestId"]
    [problem] = process_bedrock(lines(rec), "f", config()).problems
    assert problem.reason == bedrock.MISSING_REQUEST_ID
    rec["requestId"] = "r"
    [problem] = process_bedrock(lines(rec), "f", config()).problems
    assert problem.reason == bedrock.MISSING_TIMESTAMP


def test_a_record_too_large_flattened_is_a_problem():
    cfg = config()
    cfg.quality = QualityConfig(max_record_bytes=200)
    result = process_bedrock(lines(record(requestMetadata={"note": "x" * 300}), record(requestId="small")), "f", cfg)
    assert [p.reason for p in result.problems] == [transforms.RECORD_TOO_LARGE]
    assert [r["requestid"] for r in result.rows] == ["small"] and balanced(result)


def test_counts_add_up_over_a_mixed_object():
    data = lines(record(requestId="1"), b"nope", 7, record(requestId=None), record(timestamp="x"),
                 record(requestId="2"))
    result = process_bedrock(data, "f", config())
    assert result.records_read == 6 and len(result.rows) == 2 and len(result.problems) == 4
    assert balanced(result)


def test_file_level_problems():
    result = process_bedrock(b"plain text", "f", config())
    assert [p.reason for p in result.problems] == [transforms.NOT_GZIP]
    assert not result.problems[0].record and result.records_read == 0
    assert [p.reason for p in process_bedrock(b"", "f", config()).problems] == [transforms.EMPTY_OBJECT]


def test_a_truncated_object_keeps_its_complete_lines():
    second = lines(record(requestId="2"))
    data = lines(record(requestId="1")) + second[: len(second) // 2]  # two gzip members, the second cut
    result = process_bedrock(data, "f", config())
    assert [p.reason for p in result.problems] == [transforms.TRUNCATED_GZIP]
    assert not result.problems[0].record
    assert [r["requestid"] for r in result.rows] == ["1"] and balanced(result)


# --------------------------------------------------------------------------- keys


def test_a_good_key_gives_its_partition():
    result = classify_key(KEY, config())
    assert result.ok
    assert result.partition.values == (ACCOUNT, "us-east-1", "2025-03-11")
    assert result.partition.raw_dir == f"AWSLogs/{ACCOUNT}/BedrockModelInvocationLogs/us-east-1/2025/03/11/"
    prefixed = parse_key("logs/bedrock/" + KEY)
    assert prefixed.ok and prefixed.partition.raw_dir.startswith("logs/bedrock/AWSLogs/")


def test_an_anonymised_region_passes():
    result = parse_key(f"AWSLogs/{ACCOUNT}/BedrockModelInvocationLogs/me-northwest-3r/2024/02/29/23/f.json.gz")
    assert result.ok and result.partition.values == (ACCOUNT, "me-northwest-3r", "2024-02-29")


@pytest.mark.parametrize("key", [
    f"{BASE}/data/7c1e_input.json.gz",
    f"{BASE}/data/7c1e_output.json.gz",
    f"{BASE}/data/images/7c1e.png",
    f"AWSLogs/{ACCOUNT}/BedrockModelInvocationLogs/us-east-1/2025/03/11/data/x.json.gz",
    "large-data/data/7c1e_input.json.gz",
])
def test_data_objects_are_skipped(key):
    result = classify_key(key, config())
    assert (result.status, result.reason) == (keys.SKIPPED, bedrock.DATA_OBJECT)


def test_a_data_folder_in_the_configured_prefix_is_not_a_body():
    assert parse_key("data/" + KEY, prefix="data/").ok
    assert parse_key("data/" + KEY).ok  # the layout's own folders follow the prefix


@pytest.mark.parametrize("key, service", [
    (f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2025/03/11/{ACCOUNT}_CloudTrail_us-east-1_x.json.gz", "CloudTrail"),
    (f"AWSLogs/o-abc123/{ACCOUNT}/CloudTrail/us-east-1/2025/03/11/f.json.gz", "CloudTrail"),
    (f"p/AWSLogs/{ACCOUNT}/elasticloadbalancing/us-east-1/2025/03/11/f.log.gz", "elasticloadbalancing"),
])
def test_other_services_are_skipped(key, service):
    result = classify_key(key, config())
    assert (result.status, result.reason, result.detail) == (keys.SKIPPED, keys.OTHER_SERVICE, service)


@pytest.mark.parametrize("part, value, reason", [
    ("account", "12345678901", keys.BAD_ACCOUNT),
    ("account", "12345678901a", keys.BAD_ACCOUNT),
    ("region", "US-EAST-1", keys.BAD_REGION),
    ("region", "useast1", keys.BAD_REGION),
    ("date", "2025/02/29", keys.BAD_DATE),
    ("date", "2025/13/01", keys.BAD_DATE),
    ("date", "25/03/11", keys.BAD_DATE),
    ("hour", "24", keys.BAD_HOUR),
    ("hour", "7", keys.BAD_HOUR),
    ("hour", "ab", keys.BAD_HOUR),
    ("name", "f.json", keys.NOT_JSON_GZ),
])
def test_bad_keys_are_errors(part, value, reason):
    values = {"account": ACCOUNT, "region": "us-east-1", "date": "2025/03/11", "hour": "00", "name": "f.json.gz"}
    values[part] = value
    key = "AWSLogs/{account}/BedrockModelInvocationLogs/{region}/{date}/{hour}/{name}".format(**values)
    result = parse_key(key)
    assert (result.status, result.reason) == (keys.ERROR, reason)


@pytest.mark.parametrize("key", [
    f"AWSLogs/{ACCOUNT}/BedrockModelInvocationLogs/us-east-1/2025/03/11/f.json.gz",  # no hour
    f"AWSLogs/{ACCOUNT}/BedrockModelInvocationLogs/us-east-1/2025/03/11/00/extra/f.json.gz",
    "random/object.json.gz",
])
def test_keys_outside_the_layout_are_errors(key):
    result = parse_key(key)
    assert (result.status, result.reason) == (keys.ERROR, keys.NO_LAYOUT_MATCH)


def test_folder_markers_and_the_permission_check_object_are_skipped():
    assert parse_key(f"{BASE}/").reason == keys.FOLDER_MARKER
    marker = parse_key(f"AWSLogs/{ACCOUNT}/BedrockModelInvocationLogs/amazon-bedrock-logs-permission-check")
    assert (marker.status, marker.reason) == (keys.SKIPPED, bedrock.PERMISSION_CHECK)


def test_key_filters_of_the_config_apply():
    assert classify_key(KEY, config(key_deny_patterns=(r"/2025/03/",))).reason == keys.DENIED_KEY_PATTERN
    assert classify_key(KEY, config(accounts=ListFilter(deny=(ACCOUNT,)))).reason == keys.DENIED_ACCOUNT
    assert classify_key(KEY, config(regions=ListFilter(allow=("eu-west-1",)))).reason == keys.DENIED_REGION
    assert classify_key(KEY, config(regions=ListFilter(allow=("us-east-1",)))).ok
    assert classify_key(KEY, Config()).ok  # with or without a sources.bedrock section


# --------------------------------------------------------------------------- declarations


def test_the_source_declaration():
    assert SOURCE.name == "bedrock" and SOURCE.tables == {"raw": "from_bedrock_raw",
                                                          "readready": "from_bedrock_readready"}
    assert SOURCE.dedup_key == ("requestid",)
    assert SOURCE.config_class is BedrockConfig and BedrockConfig().max_body_bytes == 262144
    names = set(SOURCE.schema.names)
    assert set(SOURCE.sort_columns) <= names and set(SOURCE.bloom_columns) <= names
    assert SOURCE.raw_schema.partition_keys == SOURCE.schema.partition_keys
    raw_names = SOURCE.raw_schema.names
    assert len(set(raw_names + SOURCE.raw_schema.partition_names)) == len(raw_names) + 3
    assert set(SOURCE.ddl_notes) == {"raw", "readready"}
    # the DDL takes {word} for a placeholder: column docs must not hold one
    assert not [c.name for s in (SOURCE.schema, SOURCE.raw_schema) for c in s.all_columns if "{" in c.doc]


def test_the_suite_is_evaluable_in_one_pass_and_names_its_columns():
    suite = SOURCE.checks(True)
    [columns] = [c.args["column_set"] for c in suite if c.kind == "ExpectTableColumnsToMatchSet"]
    assert columns == [c.name for c in SOURCE.schema.all_columns] + list(SOURCE.derived_columns)
    assert all(c.notes for c in suite)
    checks.Tally(suite)  # refuses kinds and regexes the one-pass evaluation does not know
    for c in suite:
        checks._check_supported(c)


def _arrow_rows(rows: list[dict]):
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=SOURCE.schema.arrow())


def test_the_suite_passes_the_published_records_and_catches_negative_counts():
    result = process_bedrock(gzip.compress(PUBLISHED.read_bytes()), "f", Config())
    good = [{**r, "account": ACCOUNT, "region": "us-east-1", "dt": r["eventtime"].date().isoformat()}
            for r in result.rows]
    suite = SOURCE.checks(True)

    def verdict(rows):
        tally = checks.Tally(suite, lambda t: SOURCE.derive_arrow(t, BedrockConfig()))
        tally.add(_arrow_rows(rows))
        values, seen = checks.merge([tally.counts()], [])
        return checks.judge(suite, values, seen, "bedrock")

    assert verdict(good)["success"], [r for r in verdict(good)["results"] if not r["success"]]
    bad = [dict(good[0], requestid="neg", cache_read_input_token_count=-1), *good]
    failed = [r["expectation_config"]["kwargs"].get("column_A") for r in verdict(bad)["results"] if not r["success"]]
    assert failed == ["cache_read_input_token_count"]
    late = [dict(good[0], eventtime=dt.datetime(2025, 3, 14, tzinfo=dt.UTC)), *good[1:]]
    failed = [r["expectation_config"]["kwargs"].get("column_A") for r in verdict(late)["results"] if not r["success"]]
    assert failed == [bedrock.DELIVERY_DEADLINE]


def test_a_record_without_a_model_id_is_quarantined_not_left_to_fail_the_gate():
    rec = {"timestamp": "2025-03-11T00:38:02Z", "accountId": "123456789012", "region": "us-east-1",
           "requestId": "r-1", "operation": "InvokeModel"}
    result = process_bedrock(gzip.compress(json.dumps(rec).encode()), "f", Config())
    assert result.rows == [] and [p.reason for p in result.problems] == [bedrock.MISSING_MODEL_ID]
    assert result.records_read == 1


@pytest.mark.parametrize("request_id", [False, 0, {"a": 1}, "  "])
def test_a_request_id_that_is_no_string_is_missing(request_id):
    rec = {"timestamp": "2025-03-11T00:38:02Z", "requestId": request_id, "modelId": "m"}
    result = process_bedrock(gzip.compress(json.dumps(rec).encode()), "f", Config())
    assert [p.reason for p in result.problems] == [bedrock.MISSING_REQUEST_ID]


@pytest.mark.parametrize("count", [True, 2 ** 63, 1.5])
def test_a_token_count_that_is_a_bool_or_out_of_range_is_null(count):
    rec = {"timestamp": "2025-03-11T00:38:02Z", "requestId": "r-1", "modelId": "m",
           "input": {"inputTokenCount": count}}
    [row] = process_bedrock(gzip.compress(json.dumps(rec).encode()), "f", Config()).rows
    assert row["input_token_count"] is None
    assert json.loads(row["additional_fields"])["input"]["inputTokenCount"] == count


def test_a_timestamp_with_no_utc_equivalent_is_bad_not_a_crash():
    rec = {"timestamp": "9999-12-31T23:59:59-01:00", "requestId": "r-1", "modelId": "m"}
    result = process_bedrock(gzip.compress(json.dumps(rec).encode()), "f", Config())
    assert [p.reason for p in result.problems] == [bedrock.BAD_TIMESTAMP]



def test_a_lone_surrogate_escape_in_a_body_is_kept_as_u_fffd():
    """A prompt cut inside an emoji: JSON escapes the half pair (\\ud83d), which has no
    UTF-8 form; the body's size check raised UnicodeEncodeError and the run failed."""
    cut = record(input={"inputBodyJson": {"messages": ["hi \ud83d"]}, "inputTokenCount": 3})
    result = process_bedrock(lines(cut, record(requestId="req-2")), "f", config())
    assert not result.problems and balanced(result)
    first, second = result.rows
    assert json.loads(first["input_body"]) == {"messages": ["hi \ufffd"]}
    assert second["requestid"] == "req-2"


def test_a_negative_token_count_is_kept_aside_not_a_gate_failure():
    """A negative count failed the gate's token-count rule, and so the whole run."""
    row = one_row(record(input={"inputTokenCount": -3}, output={"outputTokenCount": 5}))
    assert row["input_token_count"] is None and row["output_token_count"] == 5
    assert json.loads(row["additional_fields"]) == {"input": {"inputTokenCount": -3}}


def test_an_invocation_after_its_files_delivery_day_is_quarantined_by_object_rows():
    """The gate's delivery rule needs the partition's day, which only the key gives: an
    invocation later than dt + 48 h is one quarantined record, not a failed run."""
    from loglake import objects

    data = lines(record(requestId="on-time"), record(requestId="late", timestamp="2025-03-13T00:00:01Z"))
    rows, counts = objects.object_rows(SOURCE, "s3://b/" + KEY, (ACCOUNT, "us-east-1", "2025-03-11"), Config(),
                                       fetch=lambda: data)
    events = [r for r in rows if r["_kind"] == objects.KIND_EVENT]
    assert [r["requestid"] for r in events] == ["on-time"]
    assert counts["records_read"] == 2 and counts["kept"] == 1 and counts["quarantined_records"] == 1
    assert counts["problems"] == {"event_after_delivery": 1}
    [problem] = [json.loads(r["_detail"]) for r in rows if r["_kind"] == objects.KIND_PROBLEM]
    assert '"requestid":"late"' in problem["payload"] and problem["file"] == "s3://b/" + KEY
