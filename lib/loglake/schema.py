"""Table schemas: the single declaration that Spark, Arrow, Glue and the DDL derive from.
Each source's tables are declared in its module (``loglake.sources``); here are the
types and the shared tables (quarantine, runs).

Readready tables are flat: every column is a scalar (string, timestamp, boolean,
bigint). Free-form CloudTrail objects (requestParameters, ...) are JSON strings,
because their shape differs per API and a struct column would make the schema
change whenever AWS adds a field. Column names and types are a public contract:
add columns at the end, never rename or retype one.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Hive/Glue type name: string, timestamp, boolean, bigint
    doc: str = ""


def column(name: str, type_: str = "string", doc: str = "") -> Column:
    return Column(name, type_, doc)


# Every raw record that does not reach readready, and every unusable raw object or key,
# lands here with a reason: the auditors' proof that nothing was silently lost.
RUN_PARTITION_KEYS: tuple[Column, ...] = (
    column("source", doc="the log source (cloudtrail, cloudwatch, bedrock, ...)"),
    column("run_date", doc="UTC date the run started, YYYY-MM-DD"),
)
QUARANTINE_COLUMNS: tuple[Column, ...] = (
    column("raw_key", doc="the raw object (or key) concerned"),
    column("raw_partition", doc="JSON of the raw partition values, when the key parsed"),
    column("record_index", "bigint", "index of the record in the object, where known"),
    column("offset", "bigint", "byte offset in the decompressed object, where known"),
    column("reason", doc="reason code (README: Quarantine reasons)"),
    column("detail", doc="short human-readable detail"),
    column("payload", doc="the raw record or text, truncated to quality.max_payload_bytes"),
    column("payload_size", "bigint", "size in bytes of the whole payload before truncation"),
    column("run_id", doc="the run that quarantined it (see runs)"),
)
RUNS_COLUMNS: tuple[Column, ...] = (
    column("run_id"),
    column("job", doc="the job: <source>_readready"),
    column("selection", doc="JSON of the run's selection"),
    column("status", doc="published, or rejected_unbalanced / rejected_quality (nothing published)"),
    column("started_at", "timestamp"),
    column("finished_at", "timestamp"),
    column("files_read", "bigint"),
    column("records_read", "bigint"),
    column("written", "bigint"),
    column("filtered", "bigint"),
    column("filtered_by_rule", doc="JSON rule -> count"),
    column("quarantined", "bigint", "quarantine rows of this run (keys, objects and records)"),
    column("quarantined_records", "bigint", "records read that went to quarantine"),
    column("quarantined_by_reason", doc="JSON reason -> count"),
    column("duplicates", "bigint", "duplicate events dropped (same id within a partition)"),
    column("control_messages", "bigint"),
    column("balanced", "boolean", "records_read = written + filtered + quarantined_records + duplicates"),
    column("quality_success", "boolean"),
    column("quality_failed", doc="JSON list of failed expectations"),
    column("output", doc="readready table location"),
    column("raw_bytes_read", "bigint", "bytes of the raw objects read, as stored (gzip): the read amplification"),
    column("published_files", doc="JSON array of the readready files this run made current, relative to the "
                                  "table's location: the rows it published (what `loglake alerts` reads)"),
)

def _arrow_type(name: str, tz: str | None = "UTC"):
    # pyarrow is imported here, not at module level: the AddAPart Lambda imports this
    # module (through catalog) and ships without pyarrow.
    import pyarrow as pa

    return {
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz=tz),
        "boolean": pa.bool_(),
        "bigint": pa.int64(),
        "int": pa.int32(),
    }[name]


@dataclass(frozen=True)
class TableSchema:
    columns: tuple[Column, ...]
    partition_keys: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def partition_names(self) -> list[str]:
        return [c.name for c in self.partition_keys]

    @property
    def all_columns(self) -> tuple[Column, ...]:
        return self.columns + self.partition_keys

    def arrow(self, with_partitions: bool = True):
        """The pyarrow.Schema of the table."""
        import pyarrow as pa

        cols = self.all_columns if with_partitions else self.columns
        return pa.schema([pa.field(c.name, _arrow_type(c.type)) for c in cols])

    def orc_arrow(self):
        """The Arrow schema for writing this table's ORC files with pyarrow: the data
        columns, timestamps naive (UTC wall time). pyarrow stores a tz-aware timestamp as
        ORC TIMESTAMP_INSTANT, which Athena refuses for a ``timestamp`` column
        (``loglake.contract``); a naive one is ORC TIMESTAMP, as Spark writes it."""
        import pyarrow as pa

        return pa.schema([pa.field(c.name, _arrow_type(c.type, tz=None)) for c in self.columns])

    def spark_ddl(self, with_partitions: bool = True) -> str:
        """A Spark DDL schema string, e.g. for mapInArrow or spark.read.schema()."""
        cols = self.all_columns if with_partitions else self.columns
        return ", ".join(f"`{c.name}` {c.type}" for c in cols)

    def glue_columns(self) -> list[dict]:
        return [{"Name": c.name, "Type": c.type, "Comment": c.doc[:255]} for c in self.columns]

    def glue_partition_keys(self) -> list[dict]:
        return [{"Name": c.name, "Type": c.type, "Comment": c.doc[:255]} for c in self.partition_keys]


QUARANTINE = TableSchema(QUARANTINE_COLUMNS, RUN_PARTITION_KEYS)
RUNS = TableSchema(RUNS_COLUMNS, RUN_PARTITION_KEYS)
