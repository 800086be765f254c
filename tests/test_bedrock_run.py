"""`loglake run bedrock` as a user runs it: a separate process of the installed command
on a folder with Bedrock's key layout (the published examples, fixtures, a body moved
to S3 under data/, a line that is not JSON); what is checked is read from the ORC files."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.orc as orc
import pytest

from conftest import REPO, SAMPLES, place

LOGLAKE = str(Path(sys.executable).parent / "loglake")
PUBLISHED = SAMPLES / "bedrock" / "published_examples.jsonl"
FIXTURE = REPO / "tests" / "fixtures" / "bedrock_invocations.jsonl"
ACCOUNT = "123456789012"
HOUR = f"AWSLogs/{ACCOUNT}/BedrockModelInvocationLogs/us-east-1/2026/04/17/14/"


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bedrock")
    raw, out = root / "raw", root / "lake"
    published = lines(PUBLISHED)
    for i, line in enumerate(published):  # each where Bedrock delivers it: its account, region and hour
        rec = json.loads(line)
        t = rec["timestamp"]
        key = (f"AWSLogs/{rec['accountId']}/BedrockModelInvocationLogs/{rec['region']}/"
               f"{t[:4]}/{t[5:7]}/{t[8:10]}/{t[11:13]}/{t[:13].replace('-', '')}Z_{i}.json.gz")
        place(raw, key, gzip.compress(line.encode() + b"\n"))
    # a line that is not JSON between two good ones (the fixture's)
    fixture = lines(FIXTURE)
    place(raw, "AWSLogs/494659789341/BedrockModelInvocationLogs/megov-northeast-1r/2024/10/17/20/"
               "20241017T2011Z_b.json.gz",
          gzip.compress("\n".join([fixture[0], "{not json", fixture[1]]).encode() + b"\n"))
    # a body Bedrock moved out of a record: an object of its own, under data/
    place(raw, HOUR + "data/ff4b6c63-5561-4431-93b8-06a817275900_input.json.gz", gzip.compress(b'{"x": 1}'))
    summary_path = root / "s.json"
    done = subprocess.run([LOGLAKE, "run", "bedrock", "--raw", str(raw), "--out", str(out),
                           "--summary-json", str(summary_path)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-4000:]
    return out, json.loads(summary_path.read_text()), published + fixture


def test_every_record_is_read_and_the_run_balances(run):
    _, summary, records = run
    assert summary["files_read"] == 4
    assert summary["records_read"] == len(records) + 1  # and the line that is not JSON
    assert summary["written"] == len(records)
    assert summary["quarantined"]["by_reason"] == {"malformed_json": 1}
    assert summary["skipped_keys"] == {"data_object": 1}
    assert summary["balanced"] is True and summary["status"] == "published"
    assert summary["quality"]["success"] is True


def test_the_files_are_orc_zlib_with_the_table_columns_and_the_values_as_delivered(run):
    out, _, records = run
    files = sorted((out / "from_bedrock_readready").rglob("*.orc"))
    assert files
    by_request = {}
    for path in files:
        f = orc.ORCFile(str(path))
        assert f.compression == "ZLIB"
        schema = f.schema
        assert schema.names[:6] == ["schematype", "schemaversion", "eventtime", "accountid", "identity_arn",
                                    "record_region"]
        for name in ("input_token_count", "output_token_count", "cache_read_input_token_count",
                     "cache_write_input_token_count"):
            assert schema.field(name).type == pa.int64()
        assert schema.field("bodies_truncated").type == pa.bool_()
        for row in f.read().to_pylist():
            by_request[row["requestid"]] = (row, path)
    assert set(by_request) == {json.loads(line)["requestId"] for line in records}
    for line in records:
        rec = json.loads(line)
        row, path = by_request[rec["requestId"]]
        assert row["modelid"] == rec["modelId"]  # as delivered
        assert row["input_token_count"] == rec["input"].get("inputTokenCount")
        assert row["output_token_count"] == (rec.get("output") or {}).get("outputTokenCount")
        assert row["operation"] == rec["operation"] and row["errorcode"] == rec.get("errorCode")
        assert f"account={rec['accountId']}/region={rec['region']}/dt={rec['timestamp'][:10]}/" in str(path)
