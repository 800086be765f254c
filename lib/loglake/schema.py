"""Table schemas: the single declaration that Spark, Arrow, Glue and the DDL derive from.

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


def _c(name: str, type_: str = "string", doc: str = "") -> Column:
    return Column(name, type_, doc)


CLOUDTRAIL_PARTITION_KEYS: tuple[Column, ...] = (
    _c("org", doc="organization id (o-...) of an organization trail, 'none' for an account trail"),
    _c("account", doc="account id from the object key (the account the trail delivered for)"),
    _c("region", doc="region from the object key"),
    _c("dt", doc="delivery date from the object key, YYYY-MM-DD"),
)

CLOUDTRAIL_READREADY: tuple[Column, ...] = (
    _c("eventversion"),
    _c("eventtime", "timestamp", "eventTime, UTC"),
    _c("eventsource"),
    _c("eventname"),
    _c("awsregion"),
    _c("sourceipaddress", doc="as delivered; not validated as an IP (services put names here)"),
    _c("useragent"),
    _c("errorcode"),
    _c("errormessage"),
    _c("requestid"),
    _c("eventid"),
    _c("eventtype"),
    _c("eventcategory"),
    _c("apiversion"),
    _c("managementevent", "boolean"),
    _c("readonly", "boolean"),
    _c("recipientaccountid"),
    _c("sharedeventid"),
    _c("vpcendpointid"),
    _c("vpcendpointaccountid"),
    _c("sessioncredentialfromconsole"),
    _c("useridentity_type"),
    _c("useridentity_arn"),
    _c("useridentity_accountid"),
    _c("useridentity_principalid"),
    _c("useridentity_accesskeyid"),
    _c("useridentity_username"),
    _c("useridentity_invokedby"),
    _c("useridentity_identityprovider"),
    _c("useridentity_sessioncontext_sessionissuer_type"),
    _c("useridentity_sessioncontext_sessionissuer_principalid"),
    _c("useridentity_sessioncontext_sessionissuer_arn"),
    _c("useridentity_sessioncontext_sessionissuer_accountid"),
    _c("useridentity_sessioncontext_sessionissuer_username"),
    _c("useridentity_sessioncontext_attributes_mfaauthenticated", "boolean"),
    _c("useridentity_sessioncontext_attributes_creationdate", "timestamp"),
    _c("useridentity_sessioncontext_sourceidentity"),
    _c("useridentity_sessioncontext_ec2roledelivery"),
    _c("useridentity_onbehalfof_userid"),
    _c("useridentity_onbehalfof_identitystorearn"),
    _c("useridentity_extra", doc="JSON of any other userIdentity content"),
    _c("requestparameters", doc="JSON"),
    _c("responseelements", doc="JSON"),
    _c("additionaleventdata", doc="JSON"),
    _c("resources", doc="JSON array"),
    _c("tlsdetails", doc="JSON"),
    _c("serviceeventdetails", doc="JSON"),
    _c("sessionid", doc="Session Manager session id (StartSession/ResumeSession/TerminateSession)"),
    _c("additional_fields", doc="JSON of top-level fields this schema does not name"),
    _c("source_file", doc="raw object the record came from"),
)

# Every raw record that does not reach readready, and every unusable raw object or key,
# lands here with a reason: the auditors' proof that nothing was silently lost.
RUN_PARTITION_KEYS: tuple[Column, ...] = (
    _c("source", doc="cloudtrail or cloudwatch"),
    _c("run_date", doc="UTC date the run started, YYYY-MM-DD"),
)
QUARANTINE_COLUMNS: tuple[Column, ...] = (
    _c("raw_key", doc="the raw object (or key) concerned"),
    _c("raw_partition", doc="JSON of the raw partition values, when the key parsed"),
    _c("record_index", "bigint", "index of the record in the object, where known"),
    _c("offset", "bigint", "byte offset in the decompressed object, where known"),
    _c("reason", doc="reason code (README: Quarantine reasons)"),
    _c("detail", doc="short human-readable detail"),
    _c("payload", doc="the raw record or text, truncated to quality.max_payload_bytes"),
    _c("payload_size", "bigint", "size in bytes of the whole payload before truncation"),
    _c("run_id", doc="the run that quarantined it (see runs)"),
)
RUNS_COLUMNS: tuple[Column, ...] = (
    _c("run_id"),
    _c("job", doc="the job: <source>_readready"),
    _c("selection", doc="JSON of the run's selection"),
    _c("status", doc="published, or rejected_unbalanced / rejected_quality (nothing published)"),
    _c("started_at", "timestamp"),
    _c("finished_at", "timestamp"),
    _c("files_read", "bigint"),
    _c("records_read", "bigint"),
    _c("written", "bigint"),
    _c("filtered", "bigint"),
    _c("filtered_by_rule", doc="JSON rule -> count"),
    _c("quarantined", "bigint", "quarantine rows of this run (keys, objects and records)"),
    _c("quarantined_records", "bigint", "records read that went to quarantine"),
    _c("quarantined_by_reason", doc="JSON reason -> count"),
    _c("duplicates", "bigint", "duplicate events dropped (same id within a partition)"),
    _c("control_messages", "bigint"),
    _c("balanced", "boolean", "records_read = written + filtered + quarantined_records + duplicates"),
    _c("quality_success", "boolean"),
    _c("quality_failed", doc="JSON list of failed expectations"),
    _c("output", doc="readready table location"),
    _c("raw_bytes_read", "bigint", "bytes of the raw objects read, as stored (gzip): the read amplification"),
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


CLOUDTRAIL = TableSchema(CLOUDTRAIL_READREADY, CLOUDTRAIL_PARTITION_KEYS)
QUARANTINE = TableSchema(QUARANTINE_COLUMNS, RUN_PARTITION_KEYS)
RUNS = TableSchema(RUNS_COLUMNS, RUN_PARTITION_KEYS)

CLOUDWATCH_PARTITION_KEYS: tuple[Column, ...] = (
    _c("dt", doc="delivery date from the Firehose key (UTC), YYYY-MM-DD"),
    _c("hour", doc="delivery hour from the Firehose key (UTC), HH"),
)

# One row per log event. For Session Manager records, sessiondata holds the record's
# sessionData lines joined with newlines: a row stays one log event (so counts
# reconcile 1:1 with the raw logEvents), and "what was typed in session X, in order"
# is a plain ORDER BY event_timestamp, event_id; split(sessiondata, '\n') gives lines.
CLOUDWATCH_READREADY: tuple[Column, ...] = (
    _c("owner", doc="account id that owns the log group"),
    _c("loggroup"),
    _c("logstream"),
    _c("subscriptionfilters", doc="JSON array of subscription filter names"),
    _c("event_id"),
    _c("event_timestamp", "timestamp", "log event time, UTC"),
    _c("message", doc="the log event message as delivered"),
    _c("sessionid", doc="Session Manager session id (session log groups)"),
    _c("target_id", doc="instance the session ran on"),
    _c("useridentity_arn", doc="who ran the session"),
    _c("runasuser", doc="OS user the session ran as"),
    _c("session_eventtime", "timestamp", "eventTime of the session record, UTC"),
    _c("session_awsregion"),
    _c("sessiondata", doc="the record's sessionData lines, joined with newlines, in order"),
    _c("source_file", doc="raw object the event came from"),
)
CLOUDWATCH = TableSchema(CLOUDWATCH_READREADY, CLOUDWATCH_PARTITION_KEYS)

# The raw Firehose objects as a JSON table: Athena can read at most the first document
# of each line, since Firehose runs documents together with no separator.
CLOUDWATCH_RAW = TableSchema(
    (
        _c("messagetype"),
        _c("owner"),
        _c("loggroup"),
        _c("logstream"),
        _c("subscriptionfilters", "array<string>"),
        _c("logevents", "array<struct<id:string,timestamp:bigint,message:string>>"),
    ),
    CLOUDWATCH_PARTITION_KEYS,
)

# The raw CloudTrail table, read by Athena through the CloudTrail SerDe. Nested types
# stay nested here: that is the raw shape analysts should not have to query.
CLOUDTRAIL_RAW_COLUMNS: tuple[Column, ...] = (
    _c("eventversion"),
    _c(
        "useridentity",
        "struct<type:string,principalid:string,arn:string,accountid:string,invokedby:string,"
        "accesskeyid:string,username:string,sessioncontext:struct<attributes:struct<"
        "mfaauthenticated:string,creationdate:string>,sessionissuer:struct<type:string,"
        "principalid:string,arn:string,accountid:string,username:string>,"
        "sourceidentity:string,ec2roledelivery:string>>",
    ),
    _c("eventtime"),
    _c("eventsource"),
    _c("eventname"),
    _c("awsregion"),
    _c("sourceipaddress"),
    _c("useragent"),
    _c("errorcode"),
    _c("errormessage"),
    _c("requestparameters"),
    _c("responseelements"),
    _c("additionaleventdata"),
    _c("requestid"),
    _c("eventid"),
    _c("resources", "array<struct<arn:string,accountid:string,type:string>>"),
    _c("eventtype"),
    _c("apiversion"),
    _c("readonly"),
    _c("recipientaccountid"),
    _c("serviceeventdetails"),
    _c("sharedeventid"),
    _c("vpcendpointid"),
    _c("eventcategory"),
    _c("tlsdetails", "struct<tlsversion:string,ciphersuite:string,clientprovidedhostheader:string>"),
)
CLOUDTRAIL_RAW = TableSchema(CLOUDTRAIL_RAW_COLUMNS, CLOUDTRAIL_PARTITION_KEYS)
