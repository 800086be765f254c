"""AWS CloudTrail: gzip JSON ``{"Records": [...]}`` objects under
``[prefix/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/``, one flat readready
row per event."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loglake import keys, transforms
from loglake.schema import CLOUDTRAIL, CLOUDTRAIL_RAW
from loglake.sources.base import FileResult, Source, SourceConfig, row_bytes, with_payload

if TYPE_CHECKING:
    from loglake.config import Config, FiltersConfig, QualityConfig


@dataclass(frozen=True)
class CloudTrailConfig(SourceConfig):
    """``sources.cloudtrail``."""

    # Insights events land under CloudTrail-Insight/ and are skipped unless asked for,
    # since they are not API calls and have another record shape.
    include_insights: bool = False


def process_cloudtrail(
    data: bytes, source_file: str, filters: FiltersConfig, quality: QualityConfig | None = None
) -> FileResult:
    """One CloudTrail object -> flat rows that pass the config's record filters.

    A broken file still yields its complete records (and one file-level problem); a bad
    record is a problem of its own, with the record as payload."""
    if quality is None:
        from loglake.config import QualityConfig

        quality = QualityConfig()
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
            out.problems.append(with_payload(bad, record, quality.max_payload_bytes))
            continue
        row = transforms.flatten_cloudtrail(record)
        unnamed = transforms.check_cloudtrail_row(row, i)
        if unnamed:
            out.problems.append(with_payload(unnamed, record, quality.max_payload_bytes))
            continue
        size = row_bytes(row)
        if size > quality.max_record_bytes:
            too_big = transforms.Problem(
                transforms.RECORD_TOO_LARGE, f"record is {size} bytes flattened, over {quality.max_record_bytes}", i)
            out.problems.append(with_payload(too_big, record, quality.max_payload_bytes))
            continue
        rule = transforms.cloudtrail_filter_rule(row, filters)
        if rule:
            out.filtered[rule] = out.filtered.get(rule, 0) + 1
            continue
        row["source_file"] = source_file
        out.rows.append(row)
    return out


def _cloudtrail_file(data: bytes, source_file: str, config: Config) -> FileResult:
    return process_cloudtrail(data, source_file, config.filters, config.quality)


def _cloudtrail_siblings(location: str, config: Config) -> list[str]:
    """Insight files sit in CloudTrail-Insight/ beside a raw partition's CloudTrail/ folder."""
    if config.sources.cloudtrail.include_insights:
        return [location.replace("/CloudTrail/", "/CloudTrail-Insight/")]
    return []


SOURCE = Source(
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
    config_class=CloudTrailConfig,
    raw_table="from_cloudtrail_raw",
    readready_table="from_cloudtrail_readready",
)
