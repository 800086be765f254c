"""Log sources: each one declares its key layout, schemas and per-file conversion.

The generic converter (``loglake.convert``) and AddAPart run any source from this
declaration alone; adding a source means adding one entry here, not a new job.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loglake import firehose, keys, transforms
from loglake.config import Config, FiltersConfig, QualityConfig
from loglake.schema import CLOUDTRAIL, CLOUDTRAIL_RAW, CLOUDWATCH, CLOUDWATCH_RAW, TableSchema


@dataclass
class FileResult:
    """What one raw object produced. Counts always satisfy
    records_read == len(rows) + sum(filtered.values()) + record-level problems."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    records_read: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    problems: list[transforms.Problem] = field(default_factory=list)
    control_messages: int = 0  # CloudWatch health checks, dropped by design


def _with_payload(
    problem: transforms.Problem, record: Any, limit: int, counted: bool = True
) -> transforms.Problem:
    """The problem with the record as payload; ``counted``: the record is in records_read."""
    text, size = transforms.record_payload(record)
    return dataclasses.replace(
        problem, payload=transforms.text_payload(text, limit), payload_size=size, record=counted)


def _row_bytes(row: dict[str, Any]) -> int:
    """Size of a flattened row's text: what a reader of the ORC file has to hold."""
    return len("".join([v for v in row.values() if type(v) is str]))


def process_cloudtrail(
    data: bytes, source_file: str, filters: FiltersConfig, quality: QualityConfig | None = None
) -> FileResult:
    """One CloudTrail object -> flat rows that pass the config's record filters.

    A broken file still yields its complete records (and one file-level problem); a bad
    record is a problem of its own, with the record as payload."""
    quality = quality or QualityConfig()
    out = FileResult()
    records, problem = transforms.decode_cloudtrail(data)
    if problem:
        out.problems.append(dataclasses.replace(
            problem, payload=problem.payload and problem.payload[: quality.max_payload_bytes],
            payload_size=problem.payload_size or len(data)))
    out.records_read = len(records)
    for i, record in enumerate(records):
        bad = transforms.check_cloudtrail_record(record, i)
        if bad:
            out.problems.append(_with_payload(bad, record, quality.max_payload_bytes))
            continue
        row = transforms.flatten_cloudtrail(record)
        unnamed = transforms.check_cloudtrail_row(row, i)
        if unnamed:
            out.problems.append(_with_payload(unnamed, record, quality.max_payload_bytes))
            continue
        size = _row_bytes(row)
        if size > quality.max_record_bytes:
            too_big = transforms.Problem(
                transforms.RECORD_TOO_LARGE, f"record is {size} bytes flattened, over {quality.max_record_bytes}", i)
            out.problems.append(_with_payload(too_big, record, quality.max_payload_bytes))
            continue
        rule = transforms.cloudtrail_filter_rule(row, filters)
        if rule:
            out.filtered[rule] = out.filtered.get(rule, 0) + 1
            continue
        row["source_file"] = source_file
        out.rows.append(row)
    return out


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
            out.problems.append(dataclasses.replace(_with_payload(bad, doc, limit, counted=False), offset=offset))
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
            if problem is None and _row_bytes(row) > config.quality.max_record_bytes:
                problem = transforms.Problem(
                    transforms.RECORD_TOO_LARGE, f"log event is over {config.quality.max_record_bytes} bytes", i)
            if problem:
                out.problems.append(dataclasses.replace(_with_payload(problem, event, limit), offset=offset))
                continue
            row["source_file"] = source_file
            out.rows.append(row)
    if stream.problem:
        out.problems.append(dataclasses.replace(
            stream.problem, payload=transforms.text_payload(data, limit), payload_size=len(data)))
    return out


def _cloudtrail_file(data: bytes, source_file: str, config: Config) -> FileResult:
    return process_cloudtrail(data, source_file, config.filters, config.quality)


def _cloudtrail_siblings(location: str, config: Config) -> list[str]:
    """Insight files sit in CloudTrail-Insight/ beside a raw partition's CloudTrail/ folder."""
    if config.sources.cloudtrail.include_insights:
        return [location.replace("/CloudTrail/", "/CloudTrail-Insight/")]
    return []


def _no_siblings(location: str, config: Config) -> list[str]:
    return []


@dataclass(frozen=True)
class Source:
    name: str
    schema: TableSchema  # readready
    raw_schema: TableSchema
    raw_format: str  # a catalog.table_input format name
    classify_key: Callable[[str, Config], keys.KeyResult]
    process_file: Callable[[bytes, str, Config], FileResult]
    # Sort order inside each readready file: groups similar rows for compression and
    # lets ORC min/max indexes skip stripes on the most common predicates.
    sort_columns: tuple[str, ...] = ()
    # Columns that identify one event within a partition; repeats are dropped and counted.
    dedup_key: tuple[str, ...] = ()
    # Columns with an ORC bloom filter per row group: the needles analysts look up by
    # equality (one principal, one key, one event, one session). A reader skips every
    # row group that cannot hold the value, which min/max alone cannot do for columns
    # the file is not sorted by.
    bloom_columns: tuple[str, ...] = ()
    # Other folders that belong to a raw partition besides its catalog location.
    sibling_dirs: Callable[[str, Config], list[str]] = _no_siblings


CLOUDTRAIL_SOURCE = Source(
    name="cloudtrail",
    schema=CLOUDTRAIL,
    raw_schema=CLOUDTRAIL_RAW,
    raw_format="cloudtrail_json",
    classify_key=keys.classify_cloudtrail_key,
    process_file=_cloudtrail_file,
    sort_columns=("eventsource", "eventname", "eventtime"),
    dedup_key=("eventid",),
    bloom_columns=("useridentity_arn", "useridentity_accesskeyid", "sourceipaddress", "eventid", "sessionid"),
    sibling_dirs=_cloudtrail_siblings,
)

CLOUDWATCH_SOURCE = Source(
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
)

SOURCES: dict[str, Source] = {"cloudtrail": CLOUDTRAIL_SOURCE, "cloudwatch": CLOUDWATCH_SOURCE}


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r} (known: {', '.join(SOURCES)})") from None
