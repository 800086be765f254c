"""Amazon CloudWatch Logs delivered by Firehose: gzip objects (no ``.gz``) under
``[prefix/]YYYY/MM/DD/HH/``, several JSON documents run together; one readready row per
log event, Session Manager keystroke records as columns."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loglake import firehose, keys, transforms
from loglake.schema import CLOUDWATCH, CLOUDWATCH_RAW
from loglake.sources.base import FileResult, Source, SourceConfig, row_bytes, with_payload

if TYPE_CHECKING:
    from loglake.config import Config

SSM_SESSION_LOG_GROUP = "/aws/ssm/sessionlogs"


@dataclass(frozen=True)
class CloudWatchConfig(SourceConfig):
    """``sources.cloudwatch``."""

    # Log groups whose messages are Session Manager session records (JSON with sessionId
    # and sessionData); their fields become columns. Other groups keep plain messages.
    session_log_groups: tuple[str, ...] = (SSM_SESSION_LOG_GROUP,)


def process_cloudwatch(data: bytes, source_file: str, config: Config) -> FileResult:
    """One Firehose object of CloudWatch Logs documents -> one row per kept log event.

    Documents are streamed out of the (multi-member) gzip one at a time; a broken
    document or stream is a problem with its byte offset, and every document before
    it, or after it where the splitter can resynchronise, is still converted.
    """
    out = FileResult()
    sessions = set(config.sources.cloudwatch.session_log_groups)
    allowed = config.filters.log_groups
    limit = config.quality.max_payload_bytes
    stream = firehose.GzipChunks(data)
    for item in firehose.iter_documents(stream, resync='{"messageType"'):
        if isinstance(item, transforms.Problem):
            out.problems.append(item)
            continue
        offset, doc = item
        bad = transforms.check_log_document(doc)
        if bad:
            out.problems.append(dataclasses.replace(with_payload(bad, doc, limit, counted=False), offset=offset))
            continue
        if doc.get("messageType") == transforms.CONTROL_MESSAGE:
            out.control_messages += 1
            continue
        group = doc.get("logGroup")
        events = doc["logEvents"]
        out.records_read += len(events)
        if not allowed.allows(group):
            out.filtered["log_groups"] = out.filtered.get("log_groups", 0) + len(events)
            continue
        for i, event in enumerate(events):
            row, problem = transforms.flatten_log_event(doc, event, group in sessions, i)
            if problem is None and row_bytes(row) > config.quality.max_record_bytes:
                problem = transforms.Problem(
                    transforms.RECORD_TOO_LARGE, f"log event is over {config.quality.max_record_bytes} bytes", i)
            if problem:
                out.problems.append(dataclasses.replace(with_payload(problem, event, limit), offset=offset))
                continue
            row["source_file"] = source_file
            out.rows.append(row)
    if stream.problem:
        out.problems.append(dataclasses.replace(
            stream.problem, payload=transforms.text_payload(data, limit), payload_size=len(data)))
    return out


SOURCE = Source(
    name="cloudwatch",
    schema=CLOUDWATCH,
    raw_schema=CLOUDWATCH_RAW,
    raw_format="cloudwatch_json",
    classify_key=keys.classify_firehose_key,
    process_file=process_cloudwatch,
    # A session's keystrokes end up together and in order inside each file.
    sort_columns=("loggroup", "sessionid", "event_timestamp", "event_id"),
    # An event id is unique within its log stream, and stream names (Session Manager uses
    # session ids) repeat across accounts: the owning account is part of the identity.
    dedup_key=("owner", "loggroup", "logstream", "event_id"),
    bloom_columns=("sessionid", "useridentity_arn"),
    config_class=CloudWatchConfig,
    raw_table="from_cloudwatch_raw",
    readready_table="from_cloudwatch_readready",
)
