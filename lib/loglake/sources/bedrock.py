"""Amazon Bedrock model invocation logs: gzip JSON lines (one invocation record a line)
under ``[prefix/]AWSLogs/ACCOUNT/BedrockModelInvocationLogs/REGION/YYYY/MM/DD/HH/``; one
flat readready row per invocation, request and response bodies as JSON text.

Bodies Bedrock moves out of the record (JSON bodies over 100 KB, binary data) are
separate objects under a ``data/`` folder; the record keeps their S3 path
(``inputBodyS3Path``/``outputBodyS3Path``). Those objects are skipped as keys
(:data:`DATA_OBJECT`): they are payloads, not log records."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loglake import keys, transforms
from loglake.checks import (
    DELIVERY_DEADLINE,
    Check,
    check,
    column_set,
    delivered_by_deadline,
    delivery_deadline_arrow,
    key_partition_shapes,
    row_count,
    with_delivery_deadline,
)
from loglake.schema import Column, TableSchema
from loglake.shapes import ACCOUNT_RE as ACCOUNT_SHAPE
from loglake.shapes import REGION_RE as REGION_SHAPE
from loglake.sources.base import FileResult, Source, SourceConfig, row_bytes, with_payload

if TYPE_CHECKING:
    from loglake.config import Config

SERVICE = "BedrockModelInvocationLogs"


@dataclass(frozen=True)
class BedrockConfig(SourceConfig):
    """``sources.bedrock``."""

    # A request or response body whose JSON text is larger than this (UTF-8 bytes) is not
    # copied into input_body/output_body (NULL, bodies_truncated = true): the record's
    # other columns still are. Bedrock itself moves bodies over 100 KB to data/ objects.
    max_body_bytes: int = 256 << 10


def _section(config: Any) -> BedrockConfig:
    """The config's ``sources.bedrock`` (defaults until the source is registered)."""
    section = getattr(getattr(config, "sources", None), "bedrock", None)
    return section if isinstance(section, BedrockConfig) else BedrockConfig()


# --------------------------------------------------------------------------- keys

# Skip reasons (stable names, as keys.py's).
DATA_OBJECT = "data_object"  # a body Bedrock moved out of its record, under data/
PERMISSION_CHECK = "permission_check"  # the marker Bedrock writes to test its access

_LAYOUT_RE = re.compile(
    r"^(?P<prefix>(?:.*/)?)AWSLogs/"
    r"(?P<account>[^/]+)/"
    rf"{SERVICE}/"
    r"(?P<region>[^/]+)/"
    r"(?P<y>[^/]+)/(?P<m>[^/]+)/(?P<d>[^/]+)/(?P<h>[^/]+)/"
    r"(?P<name>[^/]+)$"
)
# Where the Bedrock part of a key starts (the last such folder, as the layout's prefix).
_SERVICE_DIR_RE = re.compile(rf"^(?:.*/)?AWSLogs/[^/]+/{SERVICE}/")
_HOUR_RE = re.compile(r"([01][0-9]|2[0-3])\Z")
_PERMISSION_CHECK_NAME = "amazon-bedrock-logs-permission-check"
_LAYOUT = f"[prefix/]AWSLogs/ACCOUNT/{SERVICE}/REGION/YYYY/MM/DD/HH/FILE.json.gz"


def _skip(key: str, reason: str, detail: str = "") -> keys.KeyResult:
    return keys.KeyResult(key, keys.SKIPPED, reason, detail)


def _error(key: str, reason: str, detail: str) -> keys.KeyResult:
    return keys.KeyResult(key, keys.ERROR, reason, detail)


def _in_data_folder(key: str, prefix: str) -> bool:
    """Is the object below a ``data`` folder: after the Bedrock folder of the layout, or,
    for a key outside the layout, anywhere below the configured prefix?"""
    m = _SERVICE_DIR_RE.match(key)
    if m:
        rest = key[m.end():]
    else:
        rest = key[len(prefix):] if prefix and key.startswith(prefix) else key
    return "data" in rest.split("/")[:-1]


def parse_key(key: str, prefix: str = "") -> keys.KeyResult:
    """Parse an (already URL-decoded) Bedrock invocation log key; validates every value.

    Partition values are ``(account, region, dt)``; the hour folder is not a partition,
    so the raw partition is the day folder with its hour folders below. ``prefix``: the
    configured ``sources.bedrock.prefix`` (a ``data`` folder inside it is not a body)."""
    if key.endswith("/"):
        return _skip(key, keys.FOLDER_MARKER)
    name = key.rsplit("/", 1)[-1]
    if name.startswith(_PERMISSION_CHECK_NAME):
        return _skip(key, PERMISSION_CHECK)
    svc = keys.AWSLOGS_SERVICE_RE.match(key)
    if svc and svc.group("service") != SERVICE:
        return _skip(key, keys.OTHER_SERVICE, svc.group("service"))
    if _in_data_folder(key, prefix):
        return _skip(key, DATA_OBJECT)
    m = _LAYOUT_RE.match(key)
    if not m:
        return _error(key, keys.NO_LAYOUT_MATCH, f"expected {_LAYOUT}")
    account = m.group("account")
    if not ACCOUNT_SHAPE.match(account):
        return _error(key, keys.BAD_ACCOUNT, f"account {account!r} is not 12 digits")
    region = m.group("region")
    if not REGION_SHAPE.match(region):
        return _error(key, keys.BAD_REGION, f"region {region!r} does not look like a region")
    y, mo, d, h = m.group("y"), m.group("m"), m.group("d"), m.group("h")
    day = keys.calendar_date(y, mo, d)
    if day is None:
        return _error(key, keys.BAD_DATE, f"{y}/{mo}/{d} is not a calendar date")
    if not _HOUR_RE.match(h):
        return _error(key, keys.BAD_HOUR, f"hour {h!r} is not 00-23")
    if not name.endswith(".json.gz"):
        return _error(key, keys.NOT_JSON_GZ, f"file name {name!r} does not end in .json.gz")
    raw_dir = f"{m.group('prefix')}AWSLogs/{account}/{SERVICE}/{region}/{y}/{mo}/{d}/"
    return keys.KeyResult(key, keys.OK, partition=keys.Partition((account, region, day.isoformat()), raw_dir))


def classify_key(key: str, config: Config) -> keys.KeyResult:
    """Layout parse plus the config's key-level rules (deny patterns, accounts, regions)."""
    for pattern in config.filters.key_deny_patterns:
        if re.search(pattern, key):
            return _skip(key, keys.DENIED_KEY_PATTERN, pattern)
    result = parse_key(key, _section(config).prefix)
    if not result.ok:
        return result
    account, region, _day = result.partition.values
    if not config.filters.accounts.allows(account):
        return _skip(key, keys.DENIED_ACCOUNT, account)
    if not config.filters.regions.allows(region):
        return _skip(key, keys.DENIED_REGION, region)
    return result


# --------------------------------------------------------------------------- tables

PARTITION_KEYS: tuple[Column, ...] = (
    Column("account", "string", "account id from the object key"),
    Column("region", "string", "region from the object key"),
    Column("dt", "string", "delivery date from the object key, YYYY-MM-DD (the key's hour is not a partition)"),
)

READREADY_COLUMNS: tuple[Column, ...] = (
    Column("schematype", "string", "schemaType, e.g. ModelInvocationLog"),
    Column("schemaversion", "string", "schemaVersion"),
    Column("eventtime", "timestamp", "timestamp of the invocation, UTC"),
    Column("accountid", "string", "accountId: the account that invoked the model"),
    Column("identity_arn", "string", "identity.arn: who invoked the model"),
    # Not "region": that is the partition column (from the key), and Hive, Glue and Athena
    # refuse a data column with a partition column's name.
    Column("record_region", "string", "region field of the record (the partition column region is the key's)"),
    Column("requestid", "string", "requestId: the invocation's identity and the dedup key"),
    Column("operation", "string", "operation: InvokeModel, Converse, ConverseStream, ..."),
    Column("modelid", "string", "modelId as delivered (model id, inference profile or ARN)"),
    Column("errorcode", "string", "errorCode of a failed invocation, else null"),
    Column("inference_region", "string", "inferenceRegion: where a cross-region profile ran it"),
    Column("input_content_type", "string", "input.inputContentType"),
    Column("input_token_count", "bigint", "input.inputTokenCount (null unless an integer >= 0)"),
    Column("cache_read_input_token_count", "bigint", "input.cacheReadInputTokenCount (null unless an integer >= 0)"),
    Column("cache_write_input_token_count", "bigint", "input.cacheWriteInputTokenCount (null unless an integer >= 0)"),
    Column("output_content_type", "string", "output.outputContentType"),
    Column("output_token_count", "bigint", "output.outputTokenCount (null unless an integer >= 0)"),
    Column("input_body", "string", "JSON of input.inputBodyJson; null when over sources.bedrock.max_body_bytes"),
    Column("input_body_s3_path", "string", "input.inputBodyS3Path: where Bedrock put a body it moved out"),
    Column("output_body", "string", "JSON of output.outputBodyJson; null when over sources.bedrock.max_body_bytes"),
    Column("output_body_s3_path", "string", "output.outputBodyS3Path: where Bedrock put a body it moved out"),
    Column("bodies_truncated", "boolean", "a body was left out for its size (max_body_bytes)"),
    Column("request_metadata", "string", "JSON of requestMetadata (the caller's tags)"),
    Column("additional_fields", "string", "JSON of fields this schema does not name (nested ones under their parent)"),
    Column("source_file", "string", "raw object the record came from"),
)
BEDROCK = TableSchema(READREADY_COLUMNS, PARTITION_KEYS)

# The raw objects as Athena's OpenX JSON SerDe reads JSON lines (it matches keys without
# regard to case, and gives a nested object to a string column as its JSON text). The
# record's region is read into record_region (RAW_STORAGE's SerDe mapping).
BEDROCK_RAW = TableSchema(
    tuple(Column(name, "string", doc) for name, doc in (
        ("schematype", ""),
        ("schemaversion", ""),
        ("timestamp", "ISO 8601 text"),
        ("accountid", ""),
        ("identity", "JSON text: arn"),
        ("record_region", "the record's region field (SerDe mapping: region is the partition column)"),
        ("requestid", ""),
        ("operation", ""),
        ("modelid", ""),
        ("errorcode", ""),
        ("inferenceregion", ""),
        ("input", "JSON text (content type, body or its S3 path, token counts)"),
        ("output", "JSON text (content type, body or its S3 path, token count)"),
        ("requestmetadata", "JSON text"),
    )),
    PARTITION_KEYS,
)


# --------------------------------------------------------------------------- conversion

# Record-level reasons (stable names: summaries and the quarantine table use them).
MISSING_REQUEST_ID = "missing_request_id"
MISSING_TIMESTAMP = "missing_timestamp"
BAD_TIMESTAMP = "bad_timestamp"
MISSING_MODEL_ID = "missing_model_id"

_SCALARS = {
    "schemaType": "schematype",
    "schemaVersion": "schemaversion",
    "accountId": "accountid",
    "region": "record_region",
    "requestId": "requestid",
    "operation": "operation",
    "modelId": "modelid",
    "errorCode": "errorcode",
    "inferenceRegion": "inference_region",
}
_HANDLED = set(_SCALARS) | {"timestamp", "identity", "input", "output", "requestMetadata"}
_INPUT = {  # field of input -> (column, kind)
    "inputContentType": ("input_content_type", "text"),
    "inputBodyJson": ("input_body", "body"),
    "inputBodyS3Path": ("input_body_s3_path", "text"),
    "inputTokenCount": ("input_token_count", "count"),
    "cacheReadInputTokenCount": ("cache_read_input_token_count", "count"),
    "cacheWriteInputTokenCount": ("cache_write_input_token_count", "count"),
}
_OUTPUT = {
    "outputContentType": ("output_content_type", "text"),
    "outputBodyJson": ("output_body", "body"),
    "outputBodyS3Path": ("output_body_s3_path", "text"),
    "outputTokenCount": ("output_token_count", "count"),
}
_BIGINT_MAX = (1 << 63) - 1


def _count(value: Any) -> int | None:
    """A token count: a JSON integer from 0 that fits a bigint, else None (the value is
    then kept aside; a negative count would fail the quality gate, and the whole run)."""
    if type(value) is int and 0 <= value <= _BIGINT_MAX:
        return value
    return None


def check_record(record: Any, index: int) -> transforms.Problem | None:
    """The minimum a record needs to be published: an object with a requestId, a modelId
    and a time."""
    if not isinstance(record, dict):
        return transforms.Problem(transforms.RECORD_NOT_OBJECT, f"record is {type(record).__name__}", index)
    request_id = record.get("requestId")
    if not isinstance(request_id, str) or not request_id.strip():
        return transforms.Problem(MISSING_REQUEST_ID, f"record has no requestId string (got {request_id!r:.80})",
                                  index)
    model_id = record.get("modelId")
    if not isinstance(model_id, str) or not model_id.strip():  # the gate would fail the whole run
        return transforms.Problem(MISSING_MODEL_ID, f"record has no modelId string (got {model_id!r:.80})", index)
    if record.get("timestamp") in (None, ""):
        return transforms.Problem(MISSING_TIMESTAMP, "record has no timestamp", index)
    if transforms.parse_time(record["timestamp"]) is None:
        return transforms.Problem(BAD_TIMESTAMP, f"timestamp {record['timestamp']!r} is not ISO-8601", index)
    return None


def _section_fields(part: Any, fields: dict[str, tuple[str, str]], row: dict[str, Any],
                    max_body_bytes: int) -> tuple[Any, bool]:
    """Fill ``row`` from the input or output object; returns what is left of it (None if
    nothing) and whether a body was left out for its size."""
    if not isinstance(part, dict):
        for column, _kind in fields.values():
            row[column] = None
        return part, False
    rest = dict(part)
    truncated = False
    for src, (column, kind) in fields.items():
        value = rest.pop(src, None)
        if kind == "text":
            row[column] = transforms.as_text(value)
        elif kind == "count":
            row[column] = _count(value)
            if value is not None and row[column] is None:
                rest[src] = value  # not a count: kept, in additional_fields
        else:
            text = transforms.as_json(value)
            if text is not None and len(text.encode("utf-8")) > max_body_bytes:
                text, truncated = None, True
            row[column] = text
    return (rest or None), truncated


def flatten_record(record: dict, max_body_bytes: int) -> dict[str, Any]:
    """One invocation record -> one flat readready row (without source_file).

    Fields the schema does not name go to ``additional_fields`` as JSON (those inside
    identity, input and output under their parent's name), so a new AWS field never
    breaks the job and never silently disappears."""
    row: dict[str, Any] = {col: transforms.as_text(record.get(src)) for src, col in _SCALARS.items()}
    row["eventtime"] = transforms.parse_time(record.get("timestamp"))
    extra = {k: v for k, v in record.items() if k not in _HANDLED}
    identity = record.get("identity")
    if isinstance(identity, dict):
        rest = dict(identity)
        row["identity_arn"] = transforms.as_text(rest.pop("arn", None))
        if rest:
            extra["identity"] = rest
    else:
        row["identity_arn"] = None
        if identity is not None:
            extra["identity"] = identity
    in_rest, in_cut = _section_fields(record.get("input"), _INPUT, row, max_body_bytes)
    out_rest, out_cut = _section_fields(record.get("output"), _OUTPUT, row, max_body_bytes)
    if in_rest is not None:
        extra["input"] = in_rest
    if out_rest is not None:
        extra["output"] = out_rest
    row["bodies_truncated"] = in_cut or out_cut
    row["request_metadata"] = transforms.as_json(record.get("requestMetadata"))
    row["additional_fields"] = transforms.as_json(extra) if extra else None
    return {c: row[c] for c in BEDROCK.names if c != "source_file"}


def process_bedrock(data: bytes, source_file: str, config: Config) -> FileResult:
    """One Bedrock log object (gzip JSON lines) -> one row per good record.

    Every non-blank line is a record. A bad line is a problem of its own (with the line
    as payload) and its neighbours are still converted; a gzip stream that breaks keeps
    the complete lines before the break (one file-level problem for the rest)."""
    out = FileResult()
    limit = config.quality.max_payload_bytes
    max_body = _section(config).max_body_bytes
    raw, problem = transforms.gunzip(data)
    if problem and problem.reason != transforms.TRUNCATED_GZIP:
        out.problems.append(dataclasses.replace(
            problem, payload=transforms.text_payload(data, limit), payload_size=len(data)))
        return out
    if problem:  # truncated: the last line, unless it ended, is incomplete
        stop = raw.rfind(b"\n") + 1
        tail = raw[stop:]
        out.problems.append(dataclasses.replace(
            problem, detail=f"{problem.detail}; kept the complete lines before byte {stop}", offset=stop,
            payload=transforms.text_payload(tail, limit), payload_size=len(tail)))
        raw = raw[:stop]
    offset = 0
    for line in raw.split(b"\n"):
        at, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        i = out.records_read
        out.records_read += 1
        try:
            record = transforms.loads(line)
        except ValueError as exc:
            reason = transforms.INVALID_UTF8 if "utf-8" in str(exc).lower() else transforms.MALFORMED_JSON
            out.problems.append(transforms.Problem(
                reason, f"line is not JSON: {str(exc)[:200]}", i, offset=at,
                payload=transforms.text_payload(line, limit), payload_size=len(line), record=True))
            continue
        bad = check_record(record, i)
        if bad:
            out.problems.append(dataclasses.replace(with_payload(bad, record, limit), offset=at))
            continue
        row = flatten_record(record, max_body)
        size = row_bytes(row)
        if size > config.quality.max_record_bytes:
            limit_bytes = config.quality.max_record_bytes
            too_big = transforms.Problem(
                transforms.RECORD_TOO_LARGE, f"record is {size} bytes flattened, over {limit_bytes}", i, offset=at)
            out.problems.append(with_payload(too_big, record, limit))
            continue
        row["source_file"] = source_file
        out.rows.append(row)
    return out


# --------------------------------------------------------------------------- quality gate

DEDUP_KEY = ("requestid",)
# Derived by the gate on a copy of the rows, never published. _delivery_deadline: the
# latest eventtime a file delivered on dt can hold (dt 00:00 UTC + 48 h, as CloudTrail's).
# _zero: the bigint 0 that token counts are compared with, since the one-pass evaluation
# (loglake.checks) has no ExpectColumnValuesToBeBetween.
ZERO = "_zero"
TOKEN_COUNTS = ("input_token_count", "cache_read_input_token_count", "cache_write_input_token_count",
                "output_token_count")


def quality_checks(expect_rows: bool = True) -> list[Check]:
    """The from_bedrock_readready suite: one expectation per rule, with why in its notes."""
    schema = BEDROCK
    return [
        column_set([c.name for c in schema.all_columns] + [DELIVERY_DEADLINE, ZERO]),
        row_count(expect_rows),
        check(
            "ExpectColumnValuesToNotBeNull",
            column="requestid",
            notes="requestId is the invocation's identity and the dedup key; records without one"
            " are quarantined before the gate, so a null here is a flattening bug.",
        ),
        check(
            "ExpectCompoundColumnsToBeUnique",
            column_list=[*schema.partition_names, *DEDUP_KEY],
            notes="Dedup by (partition, requestid) runs before the gate, and a rerun replaces its"
            " partitions: a duplicate here means the dedup or the publish step is broken.",
        ),
        check(
            "ExpectColumnValuesToNotBeNull",
            column="eventtime",
            notes="Usage and cost queries filter and order by eventtime; records without a"
            " parseable timestamp are quarantined, so a null here is a bug.",
        ),
        delivered_by_deadline("Bedrock"),
        *key_partition_shapes(),
        *(
            check(
                "ExpectColumnPairValuesAToBeGreaterThanB",
                column_A=column,
                column_B=ZERO,
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                notes=f"{column} >= 0 ({ZERO} is 0): a token count is never negative; the conversion"
                " keeps a negative one aside (null here, the value in additional_fields), so one"
                " here means a mis-mapped field. Null is not checked.",
            )
            for column in TOKEN_COUNTS
        ),
        check(
            "ExpectColumnValuesToNotBeNull",
            column="modelid",
            notes="Every invocation names its model; per-model usage and cost need it, so a null"
            " means the record or the flattening is broken.",
        ),
    ]


def derive_spark(df, section: BedrockConfig):
    """The suite's derived columns on a Spark DataFrame."""
    from pyspark.sql import functions as F

    return with_delivery_deadline(df.withColumn(ZERO, F.lit(0).cast("bigint")))


def derive_arrow(table, section: BedrockConfig):
    """:func:`derive_spark` for an Arrow table (what a writing task tallies), with the same
    values."""
    import pyarrow as pa

    return delivery_deadline_arrow(table.append_column(ZERO, pa.array([0] * table.num_rows, pa.int64())))


RAW_STORAGE = {  # one JSON document a line, gzip, as cloudwatch.py's
    "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe",
        # the record's "region" key, read into a column that is not the partition column
        # and a line that is no JSON object (a binary body under data/, inside the day's
        # folder) read as a row of nulls, not a failed query
        "Parameters": {"mapping.record_region": "region", "ignore.malformed.json": "true"},
    },
}

DDL_NOTES = {
    "raw": """\
Raw Amazon Bedrock model invocation logs as delivered: gzip JSON lines, one invocation a
  line, below s3://<sources.bedrock.bucket>/<prefix>AWSLogs/ACCOUNT/BedrockModelInvocationLogs/
  REGION/YYYY/MM/DD/HH/, read with the OpenX JSON SerDe.
Partitions (account, region, dt) are registered by AddAPart as objects arrive (or by
  `loglake addapart backfill`); a partition is a day folder, its hour folders below it.
Caveats: bodies Bedrock moved out of their record (over 100 KB, binary) are objects in a
  data/ folder (below the hour folders, as seen); Athena reads them too, as rows without
  requestid (ignore.malformed.json: binary ones too): filter requestid IS NOT NULL.
Shape: identity, input, output and requestmetadata are JSON text, timestamp is ISO 8601
  text, record_region is the record's region field.
  {bedrock_readready} has the same records, flat and typed.""",
    "readready": """\
Readready Bedrock invocation logs: one flat row per invocation, ORC/ZLIB, written by the
  bedrock job below <readready.location>/{bedrock_readready}/account=/region=/dt=/. Same
  partition columns and values as {bedrock_raw}.
eventtime is a UTC timestamp, token counts are bigints (null when absent or not an
  integer), input_body/output_body are the JSON bodies as text, NULL when larger than
  sources.bedrock.max_body_bytes (bodies_truncated = true) or moved by Bedrock to S3
  (*_body_s3_path). Invocations with the same requestid in one partition are stored once.
  Columns are only ever added at the end.""",
}


SOURCE = Source(
    name="bedrock",
    schema=BEDROCK,
    raw_schema=BEDROCK_RAW,
    raw_format="bedrock_json",
    raw_subdir="AWSLogs",
    raw_storage=RAW_STORAGE,
    raw_table_parameters={"classification": "json", "compressionType": "gzip"},
    org_scoped=False,
    ddl_notes=DDL_NOTES,
    classify_key=classify_key,
    process_file=process_bedrock,
    # One model's calls by one principal end up together and in time order.
    sort_columns=("modelid", "identity_arn", "eventtime"),
    dedup_key=DEDUP_KEY,
    bloom_columns=("requestid", "identity_arn"),
    config_class=BedrockConfig,
    raw_table="from_bedrock_raw",
    readready_table="from_bedrock_readready",
    checks=quality_checks,
    derived_columns=(DELIVERY_DEADLINE, ZERO),
    derive_spark=derive_spark,
    derive_arrow=derive_arrow,
)
