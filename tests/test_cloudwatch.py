"""CloudWatch Logs via Firehose: splitter, job, and the join to CloudTrail on sessionid."""
from __future__ import annotations

import base64
import collections
import gzip
import itertools
import json

import pytest

from conftest import (
    CONTROL_MESSAGE,
    CWL,
    FIREHOSE_OBJECT,
    LAMBDA_LOGS,
    SESSION_OWNER,
    STRATUS_GZ,
    firehose_objects,
    place,
    records_of,
    session_records,
)
from loglake import addapart, catalog, cli, firehose, keys, samples, sql
from loglake.config import Config, config_from_dict
from loglake.sources import cloudwatch
from loglake.sources.cloudwatch import SOURCE as CLOUDWATCH_SOURCE
from loglake.sources.cloudwatch import process_cloudwatch
from loglake.transforms import Problem

CT_KEY = "AWSLogs/o-abcdefghij/294599468799/CloudTrail/me-northwest-3r/2024/12/01/a.json.gz"


def documents(data: bytes, **kw):
    return list(firehose.iter_documents(firehose.GzipChunks(data, **kw)))


def originals_of_derived_object() -> list[dict]:
    """The four documents of the derived sample, decoded independently from their sources."""
    lambda_go = json.loads((CWL / "aws-lambda-go" / "cloudwatch-logs-event.json").read_text())
    powertools_file = CWL / "aws-powertools-lambda-python" / "kinesisStreamCloudWatchLogsEvent.json"
    powertools = json.loads(powertools_file.read_text())
    vector = json.loads((CWL / "vector" / "firehose_http_delivery_request_cwl.json").read_text())
    blobs = [lambda_go["awslogs"]["data"]] + [r["kinesis"]["data"] for r in powertools["Records"][:2]]
    blobs.append(vector["records"][0]["data"])
    return [json.loads(gzip.decompress(base64.b64decode(b))) for b in blobs]


# --------------------------------------------------------------------------- splitter


@pytest.mark.parametrize("chunk", [7, 1 << 16])
def test_splitter_on_the_real_multi_member_firehose_object(chunk):
    got = documents(FIREHOSE_OBJECT.read_bytes(), chunk=chunk)
    assert [doc for _, doc in got] == originals_of_derived_object()
    offsets = [offset for offset, _ in got]
    assert offsets[0] == 0 and offsets == sorted(offsets)


def test_splitter_on_every_real_subscription_payload():
    payloads = [json.loads(line) for line in (CWL / "awsdocs" / "awsdocs_cwl_subscription_examples.jsonl").open()]
    payloads += [json.loads(p.read_text()) for p in (LAMBDA_LOGS, CONTROL_MESSAGE)]
    payloads.append(json.loads((CWL / "datadog-serverless-functions" / "cloudwatch_log_cloudtrail.json").read_text()))
    got = documents(samples.build_object(payloads, members=2))
    assert [doc for _, doc in got] == payloads


def test_braces_inside_strings_do_not_split_documents():
    docs = [{"m": "}{"}, {"m": '"}{"', "n": {"x": "{}}{{"}}, {"m": "\\}{\\"}]
    text = "".join(json.dumps(d) for d in docs).encode()
    assert text.count(b"}{") > len(docs)
    assert [d for _, d in documents(gzip.compress(text), chunk=3)] == docs


def test_truncated_json_and_malformed_documents_are_problems_with_offsets():
    good = json.dumps({"messageType": "DATA_MESSAGE", "logEvents": []})
    text = good + '{"messageType": "DATA_MESSAGE", "logEvents": [oops]}' + good + good[:20]
    got = documents(gzip.compress(text.encode()))
    problems = [g for g in got if isinstance(g, Problem)]
    assert [d for d in got if not isinstance(d, Problem)] == [(0, json.loads(good)), (len(good) + 52, json.loads(good))]
    assert [(p.reason, p.offset) for p in problems] == [
        ("malformed_json", len(good)),
        ("truncated_json", 2 * len(good) + 52),
    ]


def test_truncated_gzip_keeps_the_documents_before_the_break():
    data = FIREHOSE_OBJECT.read_bytes()
    stream = firehose.GzipChunks(data[: len(data) - 200])
    got = list(firehose.iter_documents(stream, resync='{"messageType"'))
    docs = [d for d in got if not isinstance(d, Problem)]
    assert [d for _, d in docs] == originals_of_derived_object()[:3]
    assert stream.problem.reason == "truncated_gzip" and stream.problem.offset > docs[-1][0]


def test_a_corrupt_gzip_member_costs_only_its_own_documents():
    """Firehose writes a gzip member per record: damage inside one used to end the object
    there, and every later member's documents were lost to readready."""
    originals = originals_of_derived_object()
    members = [gzip.compress(json.dumps(doc).encode()) for doc in originals]
    broken = bytearray(members[1])
    middle = len(broken) // 2
    broken[middle : middle + 8] = b"\xff" * 8  # inside the deflate data
    data = members[0] + bytes(broken) + members[2] + members[3]
    stream = firehose.GzipChunks(data, chunk=64)
    got = list(firehose.iter_documents(stream, resync='{"messageType"'))
    docs = [doc for item in got if not isinstance(item, Problem) for doc in [item[1]]]
    assert docs[0] == originals[0] and docs[-2:] == originals[2:]
    assert originals[1] not in docs
    assert stream.problem.reason == "truncated_gzip" and stream.skipped_members == 1
    assert f"read on from the next gzip member, at byte {len(members[0]) + len(broken)}" in stream.problem.detail


def test_bytes_that_are_no_gzip_member_cost_only_themselves():
    """A damaged member header (or stray bytes) between members ended the object there:
    every later member was lost (review finding). Zero padding at the end stays harmless."""
    originals = originals_of_derived_object()
    members = [gzip.compress(json.dumps(doc).encode()) for doc in originals]
    damaged = b"\x00\x00" + members[1][2:]  # its magic gone
    stream = firehose.GzipChunks(members[0] + damaged + members[2] + members[3] + b"\x00" * 64)
    docs = [item[1] for item in firehose.iter_documents(stream) if not isinstance(item, Problem)]
    assert docs == [originals[0], originals[2], originals[3]]
    assert stream.problem.reason == "truncated_gzip" and "no gzip member" in stream.problem.detail


def test_a_deep_document_converts_alike_whatever_the_callers_stack(monkeypatch):
    """Python's JSON parser counts nesting against the recursion limit, so a document
    near it parsed in a task's first pass and failed in the deeper re-conversion that
    builds quarantine rows (or the other way): the run could not balance (review finding)."""
    from loglake import objects

    def doc(i, extra=""):
        d = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/app", "logStream": "s",
             "subscriptionFilters": ["f"], "logEvents": [{"id": str(i), "timestamp": 1722513600000, "message": "m"}]}
        return (json.dumps(d)[:-1] + extra + "}").encode()

    deep = "[" * 980 + "]" * 980
    data = b"".join(gzip.compress(doc(i, f', "y": {deep}' if i == 1 else "")) for i in range(3))

    def at_depth(k, fn):
        return fn() if k == 0 else at_depth(k - 1, fn)

    counts = [at_depth(k, lambda: objects.object_rows(CLOUDWATCH_SOURCE, "s3://b/k", ("2024-08-01", "12"),
                                                      Config(), fetch=lambda: data))[1] for k in (0, 40, 200)]
    assert counts[0]["records_read"] == 3 and counts[0]["problems"] == {}
    assert counts[1] == counts[0] and counts[2] == counts[0]


def test_many_gzip_members_are_read_in_linear_time(monkeypatch):
    """zlib's leftovers are copies of the input it was given: handing it the object's rest
    at each member (and each output chunk) copied the object once per member. The input
    zlib is given, counted through a stand-in, must stay within the object plus a bounded
    piece per member."""
    import os
    import zlib

    members = [gzip.compress(json.dumps({"messageType": "DATA_MESSAGE", "logEvents": [
        {"id": str(i), "timestamp": 1, "message": os.urandom(1500).hex()}]}).encode()) for i in range(300)]
    data = b"".join(members)
    fed = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self, **kw):
            self.d = real(**kw)

        def decompress(self, piece, limit):
            fed.append(len(piece))
            return self.d.decompress(piece, limit)

        def __getattr__(self, name):
            return getattr(self.d, name)

    monkeypatch.setattr(firehose.zlib, "decompressobj", Counting)
    assert len(documents(data)) == 300
    assert sum(fed) < len(data) + len(members) * firehose.GzipChunks.IN_PIECE < len(data) * 10


def test_invalid_utf8_is_a_problem():
    got = documents(gzip.compress(b'{"a": "x"}{"b": "\xff\xfe"}'))
    assert got[0] == (0, {"a": "x"}) and got[1].reason == "invalid_utf8"


def test_memory_stays_bounded_by_chunk_plus_document():
    """Many documents through small chunks: the splitter never holds the whole text."""
    doc = {"messageType": "DATA_MESSAGE", "logEvents": [{"id": "1", "timestamp": 1, "message": "x" * 500}]}
    data = samples.build_object([doc] * 2000, members=4)
    seen = 0
    for item in firehose.iter_documents(firehose.GzipChunks(data, chunk=4096)):
        assert not isinstance(item, Problem)
        seen += 1
    assert seen == 2000


class CountingDecoder(json.JSONDecoder):
    """Counts the text raw_decode scans: up to the end of a parsed document, or to the
    end of the text when it fails (an incomplete document is read to the end)."""

    calls = 0
    chars = 0

    def raw_decode(self, s, idx=0):
        type(self).calls += 1
        try:
            doc, end = super().raw_decode(s, idx)
        except json.JSONDecodeError:
            type(self).chars += len(s) - idx
            raise
        type(self).chars += end - idx
        return doc, end


@pytest.fixture
def counting(monkeypatch):
    monkeypatch.setattr(CountingDecoder, "calls", 0)
    monkeypatch.setattr(CountingDecoder, "chars", 0)
    monkeypatch.setattr(firehose.json, "JSONDecoder", CountingDecoder)
    return CountingDecoder


def test_a_multi_megabyte_document_is_parsed_in_linear_work(counting):
    """A document far larger than a chunk is not re-parsed from its start after every
    chunk (that is ~size/64 KB full parses, quadratic); retries wait for the text to
    double, so the parse work stays within a few times the document size."""
    events = [{"id": str(i), "timestamp": i, "message": f"line {i} " + "x" * 1000} for i in range(4000)]
    big = {"messageType": "DATA_MESSAGE", "logEvents": events}
    small = {"messageType": "CONTROL_MESSAGE", "logEvents": []}
    text = "".join(json.dumps(d, separators=(",", ":")) for d in (small, big, small))
    size = len(text)
    assert size > 4_000_000 and size > 50 * firehose.CHUNK
    got = documents(gzip.compress(text.encode()))
    first = len(json.dumps(small, separators=(",", ":")))
    assert got == [(0, small), (first, big), (size - first, small)]
    assert counting.chars <= 3 * size
    assert counting.calls <= 12  # log2(size / chunk) + a few, not one per chunk


def test_many_small_documents_across_chunk_boundaries_are_parsed_about_once(counting):
    docs = [{"messageType": "DATA_MESSAGE", "n": i, "logEvents": [{"message": "y" * (i % 97)}]} for i in range(5000)]
    texts = [json.dumps(d, separators=(",", ":")) for d in docs]
    text = "".join(texts)
    got = documents(gzip.compress(text.encode()), chunk=1000)  # ~100 documents straddle a boundary
    starts = [0, *itertools.accumulate(len(t) for t in texts)][:-1]
    assert got == list(zip(starts, docs, strict=True))
    assert counting.calls < len(docs) + len(text) // 1000 + 5
    assert counting.chars <= 3 * len(text)


@pytest.mark.parametrize("chunk", [1, 5, 64, 1 << 16])
def test_problems_and_resync_do_not_depend_on_the_chunk_size(chunk):
    good = json.dumps({"messageType": "DATA_MESSAGE", "logEvents": [{"message": "m" * 300}]})
    text = good + '{"messageType": "DATA_MESSAGE", "logEvents": [oops]}' + good + good[:20]
    got = documents(gzip.compress(text.encode()), chunk=chunk)
    assert [g if isinstance(g, tuple) else (g.reason, g.offset) for g in got] == [
        (0, json.loads(good)),
        ("malformed_json", len(good)),
        (len(good) + 52, json.loads(good)),
        ("truncated_json", 2 * len(good) + 52),
    ]


def test_a_document_without_an_end_is_too_large_and_the_next_one_is_found():
    """The memory bound: an unfinished document over max_document_chars is dropped
    as soon as the text passes the bound, and the splitter resynchronises."""
    good = {"messageType": "DATA_MESSAGE", "logEvents": []}
    text = json.dumps(good) + '{"messageType": "DATA_MESSAGE", "pad": "' + "z" * 5000 + json.dumps(good)
    stream = firehose.iter_documents(firehose.GzipChunks(gzip.compress(text.encode()), chunk=256),
                                     resync='{"messageType"', max_document_chars=1000)
    got = list(stream)
    problems = [g for g in got if isinstance(g, Problem)]
    assert [g for g in got if not isinstance(g, Problem)] == [(0, good), (len(text) - len(json.dumps(good)), good)]
    assert problems[0].reason == "document_too_large" and problems[0].offset == len(json.dumps(good))
    assert 1000 < len(problems[0].payload) <= 1000 + 256
    assert {p.reason for p in problems} <= {"document_too_large", "malformed_json"}


def test_offsets_count_bytes_of_multibyte_text():
    docs = [{"m": "é" * 3000}, {"m": "日本" * 10}, {"m": "x"}]
    texts = [json.dumps(d, ensure_ascii=False) for d in docs]
    got = documents(gzip.compress("".join(texts).encode()), chunk=1000)
    assert got == [(0, docs[0]), (len(texts[0].encode()), docs[1]), (len((texts[0] + texts[1]).encode()), docs[2])]


# --------------------------------------------------------------------------- per-file conversion


def test_process_cloudwatch_counts_controls_filters_and_sessions():
    data = firehose_objects()["firehose/2024/08/01/12/loglake-cwl-1-2024-08-01-12-19-30-0f1e2d3c"]
    result = process_cloudwatch(data, "s3://b/k", Config())
    lambda_events = len(json.loads(LAMBDA_LOGS.read_text())["logEvents"])
    sessions = samples.session_log_documents(session_records(), SESSION_OWNER)
    session_events = sum(len(d["logEvents"]) for d in sessions[:2])
    assert result.control_messages == 1
    assert result.filtered == {"log_groups": lambda_events}
    assert result.records_read == lambda_events + session_events
    assert len(result.rows) == session_events and result.problems == []
    row = result.rows[0]
    assert row["owner"] == SESSION_OWNER and row["loggroup"] == "/aws/ssm/sessionlogs"
    assert row["sessionid"] == row["logstream"] and row["target_id"].startswith("i-")
    assert row["sessiondata"] == "\n".join(json.loads(row["message"])["sessionData"])


def test_other_log_groups_are_kept_when_the_config_allows_them():
    config = config_from_dict({"filters": {"log_groups": {"allow": []}}})
    data = samples.build_object([json.loads(LAMBDA_LOGS.read_text())])
    result = process_cloudwatch(data, "f", config)
    assert len(result.rows) == result.records_read == 19
    assert all(r.get("sessionid") is None for r in result.rows)  # plain messages, not session records


def test_bad_session_records_are_problems_and_neighbours_survive():
    records = session_records()[:2]
    doc = samples.session_log_documents(records, SESSION_OWNER)[0]
    doc["logEvents"].insert(1, {"id": "9", "timestamp": 1722514756000, "message": '{"sessionId": '})
    doc["logEvents"].append({"id": "10", "timestamp": 1722514756000, "message": '{"no": "session id"}'})
    doc["logEvents"].append({"id": "11", "timestamp": 1722514756000, "message": "plain text upload line"})
    result = process_cloudwatch(samples.build_object([doc]), "f", Config())
    assert [(p.reason, p.index) for p in result.problems] == [("bad_session_record", 1), ("bad_session_record", 3)]
    assert len(result.rows) == len(doc["logEvents"]) - 2
    assert result.rows[-1]["message"] == "plain text upload line" and result.rows[-1].get("sessionid") is None


# --------------------------------------------------------------------------- keys and AddAPart


def test_firehose_keys_and_cloudwatch_partitions_through_addapart(aws):
    config = config_from_dict({
        "sources": {"cloudtrail": {"bucket": "trail"}, "cloudwatch": {"bucket": "cwl", "prefix": "firehose/"}},
        "catalog": {"database": "lake"},
    })
    catalog.ensure_database(aws.glue, "lake")
    for tinput in catalog.table_inputs(config, "s3://lake", {"cloudtrail": "s3://trail/AWSLogs/", "cloudwatch": "s3://cwl/firehose/"}):
        catalog.ensure_table(aws.glue, "lake", tinput)
    objects = list(firehose_objects()) + ["firehose/2024/08/01/24/bad-hour"]
    body = json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                    "s3": {"bucket": {"name": "cwl"}, "object": {"key": k}}} for k in objects]})
    out = addapart.AddAPart(config, glue=aws.glue).process([addapart.Message("m", body)])
    assert out.created == 1 and out.key_reasons == {"bad_hour": 1}
    [part] = catalog.list_partitions(aws.glue, "lake", "from_cloudwatch_raw")
    assert part["Values"] == ["2024-08-01", "12"]
    assert part["StorageDescriptor"]["Location"] == "s3://cwl/firehose/2024/08/01/12/"


def test_firehose_key_layout():
    assert cloudwatch.parse_firehose_key("p/q/2024/08/01/07/s-1-2024-08-01-07-00-00-u").partition == keys.Partition(
        ("2024-08-01", "07"), "p/q/2024/08/01/07/")
    assert cloudwatch.parse_firehose_key("2024/02/30/07/x").reason == "bad_date"
    assert cloudwatch.parse_firehose_key(CT_KEY).reason == "no_layout_match"


# --------------------------------------------------------------------------- job + join


@pytest.fixture
def lake(spark, tmp_path):
    """CloudTrail (real stratus samples) and CloudWatch (fixture) raw data, converted."""
    raw = tmp_path / "raw"
    place(raw, CT_KEY, STRATUS_GZ)
    for key, body in firehose_objects().items():
        place(raw, key, body)
    out = tmp_path / "lake"
    summaries = {}
    for source in ("cloudtrail", "cloudwatch"):
        path = tmp_path / f"{source}.json"
        argv = ["-q", "run", source, "--raw", str(raw), "--out", str(out), "--summary-json", str(path)]
        assert cli.main(argv) == 0
        summaries[source] = json.loads(path.read_text())
    return raw, out, summaries


def test_cloudwatch_job_summary(lake):
    _, _, summaries = lake
    cw = summaries["cloudwatch"]
    events = len(session_records())
    assert cw["files_read"] == 2 and cw["control_messages"] == 1
    assert cw["written"] == events and cw["filtered_by_rule"] == {"log_groups": 19}
    assert cw["records_read"] == events + 19
    assert cw["skipped_keys"] == {"no_layout_match": 1}  # the CloudTrail file is not a Firehose object
    assert cw["quarantined"]["by_reason"] == {"no_layout_match": 1} and cw["balanced"] is True


def test_sessions_join_returns_the_fixture_keystrokes_in_order(spark, lake):
    _, out, _ = lake
    sql.register_lake(spark, Config(), str(out))
    starts = [r for r in records_of(STRATUS_GZ) if r["eventName"] == "StartSession"]
    assert len(starts) == 3
    for start in starts:
        sid = start["responseElements"]["sessionId"]
        rows = spark.sql(
            f"SELECT * FROM sessions WHERE sessionid = '{sid}' ORDER BY keystroke_time, event_id"
        ).collect()
        expected = [line for rec in session_records() if rec["sessionId"] == sid for line in rec["sessionData"]]
        assert [line for r in rows for line in r["sessiondata"].split("\n")] == expected
        assert {r["started_by_arn"] for r in rows} == {start["userIdentity"]["arn"]}
        assert {r["source_ip"] for r in rows} == {start["sourceIPAddress"]}
        assert {r["target"] for r in rows} == {start["requestParameters"]["target"]}
        terminate = [r for r in records_of(STRATUS_GZ)
                     if r["eventName"] == "TerminateSession" and r["responseElements"]["sessionId"] == sid]
        assert {r["end_time"].strftime("%Y-%m-%dT%H:%M:%SZ") for r in rows} == {terminate[0]["eventTime"]}


def test_sessions_view_keeps_unmatched_sides(spark, tmp_path):
    raw = tmp_path / "raw"
    place(raw, CT_KEY, STRATUS_GZ)
    orphan = dict(session_records()[0], sessionId="nobody-started-this")
    docs = samples.session_log_documents([orphan], SESSION_OWNER)
    place(raw, "fh/2024/08/01/13/orphan", samples.build_object(docs))
    out = tmp_path / "lake"
    for source in ("cloudtrail", "cloudwatch"):
        assert cli.main(["-q", "run", source, "--raw", str(raw), "--out", str(out)]) == 0
    sql.register_lake(spark, Config(), str(out))
    rows = {r["sessionid"]: r for r in spark.sql("SELECT * FROM sessions").collect()}
    assert rows["nobody-started-this"]["has_start"] is False
    assert rows["nobody-started-this"]["sessiondata"] == "\n".join(orphan["sessionData"])
    starts = {r["responseElements"]["sessionId"] for r in records_of(STRATUS_GZ) if r["eventName"] == "StartSession"}
    assert all(rows[s]["has_keystrokes"] is False and rows[s]["start_time"] is not None for s in starts)


def test_cloudwatch_rerun_is_idempotent(spark, lake, tmp_path):
    raw, out, summaries = lake
    assert cli.main(["-q", "run", "cloudwatch", "--raw", str(raw), "--out", str(out)]) == 0
    df = spark.read.orc(f"file://{out}/from_cloudwatch_readready")
    assert df.count() == summaries["cloudwatch"]["written"]
    assert df.select("event_id", "sessionid").distinct().count() == df.count()


def test_truncated_objects_are_reported_with_file_and_reason(spark, tmp_path):
    raw = tmp_path / "raw"
    data = FIREHOSE_OBJECT.read_bytes()
    place(raw, "fh/2024/08/01/12/cut", data[: len(data) - 200])
    place(raw, "fh/2024/08/01/12/empty", b"")
    summary_file = tmp_path / "s.json"
    argv = ["-q", "run", "cloudwatch", "--raw", str(raw), "--out", str(tmp_path / "lake"),
            "--summary-json", str(summary_file), "--config", str(_allow_all(tmp_path))]
    assert cli.main(argv) == 0
    summary = json.loads(summary_file.read_text())
    assert summary["quarantined"]["by_reason"]["truncated_gzip"] == 1
    assert summary["quarantined"]["by_reason"]["empty_object"] == 1
    rows = spark.read.orc(f"file://{tmp_path}/lake/quarantine").collect()
    by_file = {(r["raw_key"].rsplit("/", 1)[-1], r["reason"]): r for r in rows}
    assert ("empty", "empty_object") in by_file
    assert by_file[("cut", "truncated_gzip")]["offset"] > 0
    assert by_file[("cut", "truncated_gzip")]["payload_size"] == len(data) - 200
    # The three documents before the break were still converted.
    assert summary["written"] == sum(len(d["logEvents"]) for d in originals_of_derived_object()[:3])


def _allow_all(tmp_path):
    path = tmp_path / "allow-all.yaml"
    path.write_text("filters:\n  log_groups:\n    allow: []\n")
    return path


def test_schema_of_cloudwatch_readready(spark, lake):
    _, out, _ = lake
    df = spark.read.orc(f"file://{out}/from_cloudwatch_readready")
    assert [f.name for f in df.schema.fields] == [c.name for c in CLOUDWATCH_SOURCE.schema.all_columns]


def test_two_accounts_with_the_same_stream_and_event_ids_keep_both(spark, tmp_path, stage_path):
    # Session Manager names streams after session ids, and two accounts' streams can carry the
    # same names and event ids: the owner is part of an event's identity. A real repeat (same
    # owner) is still dropped once.
    docs = samples.session_log_documents(session_records(), SESSION_OWNER)
    other = [dict(d, owner="111122223333") for d in docs]
    raw = tmp_path / "raw"
    place(raw, "fh/2024/08/01/12/two-accounts", samples.build_object(docs + other + docs[:1]))
    summary_file = tmp_path / "s.json"
    argv = ["-q", "run", "cloudwatch", "--raw", str(raw), "--out", str(tmp_path / "lake"),
            "--summary-json", str(summary_file)]
    assert cli.main(argv) == 0
    summary = json.loads(summary_file.read_text())
    events = len(session_records())
    assert summary["duplicates"] == len(docs[0]["logEvents"])
    assert summary["written"] == 2 * events and summary["balanced"] is True
    rows = spark.read.orc(f"file://{tmp_path}/lake/from_cloudwatch_readready").collect()
    assert sorted(collections.Counter(r["owner"] for r in rows).items()) == [
        ("111122223333", events), (SESSION_OWNER, events)]
