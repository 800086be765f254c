"""The published samples (``../shared/data/external``), and the realistic raw objects
built from them: CloudTrail trail objects, Firehose objects of CloudWatch Logs, Bedrock
invocation logs, and badly delivered ones. ``loglake demo`` lands them in local S3,
``loglake generate`` takes its templates from them, and the tests use the same builders."""
from __future__ import annotations

import collections
import gzip
import hashlib
import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from loglake.shapes import ACCOUNT_RE, REGION_RE

REPO = Path(__file__).resolve().parents[2]
ORG = "o-demo1a2b3c4d"
SESSION_FIXTURE = REPO / "tests" / "fixtures" / "ssm_session_records.jsonl"
SESSION_OWNER = "294599468799"  # the account of the real stratus StartSession events
FALLBACK_ACCOUNT = "111122223333"  # for sample records whose account id was redacted
SAMPLES_ENV = "LOGLAKE_SAMPLES"
_SHARED = Path("shared") / "data" / "external"


def _origin_checkout() -> Path | None:
    """The local checkout this one was cloned from (``git clone /path/to/loglake``), if any."""
    try:
        url = subprocess.run(["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    url = url.removeprefix("file://")
    return Path(url) if url.startswith("/") else None


def samples_dir(samples: str | os.PathLike | None = None) -> Path:
    """Where the shared real samples are: ``samples`` if given, else ``$LOGLAKE_SAMPLES``,
    else ``../shared/data/external`` beside this checkout or the current folder, else
    beside the local checkout this one was cloned from, so a clone made elsewhere (a
    temporary folder) still finds them. A folder the user named (the argument or the
    variable) is the only one looked at: falling back to the default samples would give
    data, and benchmark figures, from samples other than the ones asked for."""
    if samples or os.environ.get(SAMPLES_ENV):
        named, how = (Path(samples), "--samples") if samples else (Path(os.environ[SAMPLES_ENV]), SAMPLES_ENV)
        if (named / "cloudtrail").is_dir():
            return named
        raise FileNotFoundError(f"no samples found in {named} (from {how}): it has no cloudtrail/ folder")
    candidates = [REPO.parent / _SHARED, Path.cwd().parent / _SHARED]
    origin = _origin_checkout()
    if origin is not None:
        candidates.append(origin.parent / _SHARED)
    for c in dict.fromkeys(candidates):
        if (c / "cloudtrail").is_dir():
            return c
    raise FileNotFoundError(f"no samples found (looked in {', '.join(map(str, dict.fromkeys(candidates)))}); "
                            f"pass --samples DIR or set {SAMPLES_ENV}")


def sample_records(samples: Path) -> dict[str, list[dict]]:
    """Real published CloudTrail records, by the file they came from."""
    ct = samples / "cloudtrail"
    out: dict[str, list[dict]] = {}
    for path in sorted((ct / "stratus-red-team" / "detonation-logs").glob("*.json")):
        out[path.name] = json.loads(path.read_text())
    with gzip.open(ct / "elastic-integrations" / "elastic_cloudtrail_test_logs_all.records.json.gz") as fh:
        out["elastic"] = json.load(fh)["Records"]
    docs = ct / "awsdocs" / "awsdocs_cloudtrail_examples.jsonl"
    out["awsdocs"] = [json.loads(line) for line in docs.open() if line.strip()]
    return out


def trail_objects(records_by_file: dict[str, list[dict]]) -> dict[str, bytes]:
    """Group records as a trail delivers them: one gzip object per account, region and hour."""
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for records in records_by_file.values():
        for rec in records:
            account = str(rec.get("recipientAccountId") or "")
            account = account if ACCOUNT_RE.match(account) else FALLBACK_ACCOUNT
            region = rec.get("awsRegion") if REGION_RE.match(str(rec.get("awsRegion"))) else "us-east-1"
            when = str(rec.get("eventTime") or "2024-08-01T00:00:00Z")
            day, hour = when[:10], when[11:13] if when[11:13].isdigit() else "00"
            groups[(account, region, day, hour)].append(rec)
    objects = {}
    for (account, region, day, hour), recs in sorted(groups.items()):
        body = json.dumps({"Records": recs}).encode()
        digest = hashlib.sha1(body).hexdigest()[:16]
        y, m, d = day.split("-")
        key = (
            f"AWSLogs/{ORG}/{account}/CloudTrail/{region}/{y}/{m}/{d}/"
            f"{account}_CloudTrail_{region}_{y}{m}{d}T{hour}00Z_{digest}.json.gz"
        )
        objects[key] = gzip.compress(body, mtime=0)
    return objects


def session_records(path: Path = SESSION_FIXTURE) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def firehose_objects(samples: Path, prefix: str = "firehose/") -> dict[str, bytes]:
    """Firehose-style objects (no .gz suffix, documents run together, several gzip
    members): Session Manager records from the fixture, a real CONTROL_MESSAGE and a
    real Lambda log group that the default config filters out."""
    sessions = session_log_documents(session_records(), SESSION_OWNER)
    cwl = samples / "cloudwatch_logs"
    control = json.loads((cwl / "vector" / "control_message.json").read_text())
    lambda_logs = json.loads((cwl / "datadog-serverless-functions" / "cloudwatch_logs.json").read_text())
    return {
        f"{prefix}2024/08/01/12/loglake-cwl-1-2024-08-01-12-19-30-0f1e2d3c": build_object(
            [sessions[0], control, lambda_logs, sessions[1]], members=3),
        f"{prefix}2024/08/01/12/loglake-cwl-1-2024-08-01-12-24-30-4b5a6978": build_object(sessions[2:]),
    }


def bad_objects(samples: Path) -> dict[str, bytes]:
    """Real data, badly delivered: each must end in the quarantine with a reason, and
    the good records inside them must still reach readready."""
    ct = samples / "cloudtrail"
    stratus = (ct / "stratus-red-team" / "stratus_detonation_logs_all.records.json.gz").read_bytes()
    otrf = [json.loads(line) for line in (ct / "otrf-security-datasets" /
                                          "ec2_proxy_s3_exfiltration_2020-09-14011940.json").open() if line.strip()]
    day = f"AWSLogs/{ORG}/123456789012/CloudTrail/us-east-1/2024/12/01/123456789012_CloudTrail_us-east-1_20241201T"
    return {
        # cut in the middle of the gzip stream: the records before the cut are kept
        f"{day}0000Z_truncated.json.gz": stratus[: len(stratus) // 3],
        # a real SIEM re-export (Logstash moved eventTime to @timestamp), never gzipped
        f"{day}0100Z_siem-export.json.gz": gzip.compress(json.dumps({"Records": otrf[:5]}).encode()),
        f"{day}0200Z_not-gzip.json.gz": json.dumps({"Records": otrf[5:7]}).encode(),
    }


def junk_objects(samples: Path) -> dict[str, bytes]:
    digest = (samples / "cloudtrail" / "elastic-integrations" / "test-cloudtrail-digest-json.log").read_bytes()
    return {
        f"AWSLogs/{ORG}/123456789012/CloudTrail-Digest/us-east-1/2024/08/01/"
        f"123456789012_CloudTrail-Digest_us-east-1_demo_us-east-1_20240801T000000Z.json.gz": gzip.compress(digest),
        "AWSLogs/123456789012/CloudTrail/ConfigWritabilityCheckFile": b"",
        "AWSLogs/123456789012/CloudTrail/us-east-1/2024/13/45/not-a-date.json.gz": gzip.compress(b"{}"),
        "exports/tmp/junk.bin": b"\x00junk",
    }


def bedrock_objects(samples: Path) -> dict[str, bytes]:
    """The published Bedrock model-invocation records, each in the object Bedrock would
    deliver it in (gzip JSON lines below AWSLogs/ACCOUNT/BedrockModelInvocationLogs/
    REGION/YYYY/MM/DD/HH/), and a body Bedrock moved to its own object under data/,
    which is skipped (the record keeps its S3 path)."""
    out: dict[str, list[str]] = collections.defaultdict(list)
    for line in (samples / "bedrock" / "published_examples.jsonl").read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            t = rec["timestamp"]
            hour = f"AWSLogs/{rec['accountId']}/BedrockModelInvocationLogs/{rec['region']}/" \
                   f"{t[:4]}/{t[5:7]}/{t[8:10]}/{t[11:13]}/"
            out[hour + f"{t[:13].replace('-', '')}Z_demo.json.gz"].append(line)
    objects = {key: gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0) for key, lines in out.items()}
    first = min(out)
    objects[first.rsplit("/", 1)[0] + "/data/demo-body_input.json.gz"] = gzip.compress(b'{"messages": []}', mtime=0)
    return objects


# --------------------------------------------------------------------------- Firehose objects


def build_object(documents: Iterable[object], members: int = 1) -> bytes:
    """A Firehose-style S3 object: the JSON documents run together, gzip-compressed in
    ``members`` gzip members back to back (for fixtures, the demo and benchmarks)."""
    texts = [json.dumps(d, separators=(",", ":")) for d in documents]
    members = max(1, min(members, len(texts) or 1))
    per = -(-len(texts) // members) if texts else 0
    parts = [texts[i : i + per] for i in range(0, len(texts), per)] if texts else [[]]
    return b"".join(gzip.compress("".join(p).encode(), mtime=0) for p in parts)


def session_log_documents(
    records: Iterable[dict], owner: str, log_group: str = "/aws/ssm/sessionlogs"
) -> list[dict]:
    """Session Manager streaming records -> the DATA_MESSAGE documents CloudWatch Logs
    delivers for them: one document per session (Session Manager names the log stream
    after the session id), events 100 ms apart from each record's eventTime, with
    56-digit event ids like CloudWatch's."""
    from loglake.transforms import parse_time

    by_session: dict[str, list[dict]] = {}
    for rec in records:
        by_session.setdefault(rec["sessionId"], []).append(rec)
    docs = []
    for session, recs in by_session.items():
        events = []
        for i, rec in enumerate(recs):
            ms = int(parse_time(rec["eventTime"]).timestamp() * 1000) + 100 * i
            events.append({"id": f"{ms:013d}{i:043d}", "timestamp": ms, "message": json.dumps(rec)})
        docs.append({
            "messageType": "DATA_MESSAGE", "owner": owner, "logGroup": log_group, "logStream": session,
            "subscriptionFilters": ["loglake-firehose"], "logEvents": events,
        })
    return docs
