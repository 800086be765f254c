"""Log sources: each one declares its key layout, schemas and per-file conversion.

The generic converter (``loglake.convert``) and AddAPart run any source from this
declaration alone; adding a source means adding one entry here, not a new job.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loglake import keys, transforms
from loglake.config import Config, FiltersConfig
from loglake.schema import CLOUDTRAIL, CLOUDTRAIL_RAW, TableSchema


@dataclass
class FileResult:
    """What one raw object produced. Counts always satisfy
    records_read == len(rows) + sum(filtered.values()) + record-level problems."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    records_read: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    problems: list[transforms.Problem] = field(default_factory=list)


def process_cloudtrail(data: bytes, source_file: str, filters: FiltersConfig) -> FileResult:
    """One CloudTrail object -> flat rows that pass the config's record filters."""
    out = FileResult()
    records, problem = transforms.decode_cloudtrail(data)
    if problem:
        out.problems.append(problem)
        return out
    out.records_read = len(records)
    for i, record in enumerate(records):
        bad = transforms.check_cloudtrail_record(record, i)
        if bad:
            out.problems.append(bad)
            continue
        row = transforms.flatten_cloudtrail(record)
        rule = transforms.cloudtrail_filter_rule(row, filters)
        if rule:
            out.filtered[rule] = out.filtered.get(rule, 0) + 1
            continue
        row["source_file"] = source_file
        out.rows.append(row)
    return out


@dataclass(frozen=True)
class Source:
    name: str
    schema: TableSchema  # readready
    raw_schema: TableSchema
    raw_format: str  # a catalog.table_input format name
    classify_key: Callable[[str, Config], keys.KeyResult]
    process_file: Callable[[bytes, str, FiltersConfig], FileResult]
    # Sort order inside each readready file: groups similar rows for compression and
    # lets ORC min/max indexes skip stripes on the most common predicates.
    sort_columns: tuple[str, ...] = ()


CLOUDTRAIL_SOURCE = Source(
    name="cloudtrail",
    schema=CLOUDTRAIL,
    raw_schema=CLOUDTRAIL_RAW,
    raw_format="cloudtrail_json",
    classify_key=keys.classify_cloudtrail_key,
    process_file=process_cloudtrail,
    sort_columns=("eventsource", "eventname", "eventtime"),
)

SOURCES: dict[str, Source] = {"cloudtrail": CLOUDTRAIL_SOURCE}


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r} (known: {', '.join(SOURCES)})") from None
