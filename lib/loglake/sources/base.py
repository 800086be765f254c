"""What every log source declares (:class:`Source`) and what converting one raw object
gives (:class:`FileResult`); helpers the sources' conversions share."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loglake import keys, transforms
from loglake.schema import TableSchema

if TYPE_CHECKING:  # loglake.config builds its sections from the registry: no import at run time
    from loglake.config import Config


@dataclass(frozen=True)
class SourceConfig:
    """A source's config section (``sources.<name>``): where its raw objects are. A source
    with more settings declares a subclass in its module."""

    bucket: str = ""  # empty: not configured (AddAPart routes no key to it)
    prefix: str = ""


@dataclass
class FileResult:
    """What one raw object produced. Counts always satisfy
    records_read == len(rows) + sum(filtered.values()) + record-level problems."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    records_read: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    problems: list[transforms.Problem] = field(default_factory=list)
    control_messages: int = 0  # CloudWatch health checks, dropped by design


def with_payload(
    problem: transforms.Problem, record: Any, limit: int, counted: bool = True,
    clean: Callable[[str], str] | None = None,
) -> transforms.Problem:
    """The problem with the record as payload; ``counted``: the record is in records_read;
    ``clean``: applied to the whole text before it is cut to ``limit`` (a redaction, so
    that a secret the cut would split is still found)."""
    text, size = transforms.record_payload(record)
    if clean is not None:
        text = clean(text)
    return dataclasses.replace(
        problem, payload=transforms.text_payload(text, limit), payload_size=size, record=counted)


def row_bytes(row: dict[str, Any]) -> int:
    """Size of a flattened row's text: what a reader of the ORC file has to hold."""
    return len("".join([v for v in row.values() if type(v) is str]))


def no_derived(rows: Any, section: Any) -> Any:
    return rows


def no_siblings(location: str, config: Config) -> list[str]:
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
    sibling_dirs: Callable[[str, Config], list[str]] = no_siblings
    # Its config section's class (``sources.<name>``), and its tables' default names
    # (``catalog.tables.<name>_raw``, ``<name>_readready``).
    config_class: type = SourceConfig
    raw_table: str = ""
    readready_table: str = ""
    # The quality gate: the readready table's suite (expect_rows -> a list of
    # loglake.checks.Check, each with why in its notes), and the columns the suite checks
    # that the table does not have, derived on a copy of the rows by Spark and by Arrow
    # with the same values (given the rows and the source's config section).
    checks: Callable[[bool], list] | None = None
    derived_columns: tuple[str, ...] = ()
    derive_spark: Callable[[Any, Any], Any] = no_derived
    derive_arrow: Callable[[Any, Any], Any] = no_derived
    # The raw table: where it starts below the bucket's prefix (CloudTrail: AWSLogs), how
    # Glue and Athena read it (a catalog.table_input format: StorageDescriptor parts and
    # table parameters, named by ``raw_format``), whether an organization id narrows it.
    raw_subdir: str = ""
    raw_storage: Mapping[str, Any] = field(default_factory=dict)
    raw_table_parameters: Mapping[str, str] = field(default_factory=dict)
    org_scoped: bool = False
    # The header notes of its DDL files, by stage (raw, readready, raw_projected), and
    # a builder of its raw table with Athena partition projection, if it has one.
    ddl_notes: Mapping[str, str] = field(default_factory=dict)
    projected_raw: Callable[..., dict] | None = None
    # An object's records as the raw table's SerDe reads them (bytes -> JSON objects):
    # the local stand-in of the raw table for queries that read it (loglake.sql.register_raw).
    raw_records: Callable[[bytes], list] | None = None

    @property
    def tables(self) -> dict[str, str]:
        """Default table name by stage."""
        return {"raw": self.raw_table or f"from_{self.name}_raw",
                "readready": self.readready_table or f"from_{self.name}_readready"}
