"""Amazon CloudWatch Logs delivered by Firehose: gzip objects (no ``.gz``) under
``[prefix/]YYYY/MM/DD/HH/``, several JSON documents run together; one readready row per
log event, Session Manager keystroke records as columns."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loglake import firehose, keys, shapes
from loglake.checks import ACCOUNT_RE, DATE_RE, HOUR_RE, Check, Equals, Null, check, column_set, row_count
from loglake.redact import RedactionConfig, redact, redact_continued
from loglake.schema import Column, TableSchema, column
from loglake.sources.base import FileResult, Source, SourceConfig, row_bytes, with_payload
from loglake.transforms import (
    BAD_LOG_EVENT,
    BAD_SESSION_RECORD,
    NO_LOG_EVENTS,
    RECORD_TOO_LARGE,
    Problem,
    as_json,
    as_text,
    loads,
    parse_time,
    text_payload,
)

if TYPE_CHECKING:
    from loglake.config import Config

SSM_SESSION_LOG_GROUP = "/aws/ssm/sessionlogs"


@dataclass(frozen=True)
class CloudWatchConfig(SourceConfig):
    """``sources.cloudwatch``."""

    # Log groups whose messages are Session Manager session records (JSON with sessionId
    # and sessionData); their fields become columns. Other groups keep plain messages.
    session_log_groups: tuple[str, ...] = (SSM_SESSION_LOG_GROUP,)


# --------------------------------------------------------------------------- CloudWatch Logs

CONTROL_MESSAGE = "CONTROL_MESSAGE"
BAD_OWNER = "bad_owner"  # a document whose owner is no account id: its events are quarantined


# --------------------------------------------------------------------------- tables' columns

CLOUDWATCH_PARTITION_KEYS: tuple[Column, ...] = (
    column("dt", doc="delivery date from the Firehose key (UTC), YYYY-MM-DD"),
    column("hour", doc="delivery hour from the Firehose key (UTC), HH"),
)

# One row per log event. For Session Manager records, sessiondata holds the record's
# sessionData lines joined with newlines: a row stays one log event (so counts
# reconcile 1:1 with the raw logEvents), and "what was typed in session X, in order"
# is a plain ORDER BY event_timestamp, event_id; split(sessiondata, '\n') gives lines.
CLOUDWATCH_READREADY: tuple[Column, ...] = (
    column("owner", doc="account id that owns the log group"),
    column("loggroup"),
    column("logstream"),
    column("subscriptionfilters", doc="JSON array of subscription filter names"),
    column("event_id"),
    column("event_timestamp", "timestamp", "log event time, UTC"),
    column("message", doc="the log event message as delivered"),
    column("sessionid", doc="Session Manager session id (session log groups)"),
    column("target_id", doc="instance the session ran on"),
    column("useridentity_arn", doc="who ran the session"),
    column("runasuser", doc="OS user the session ran as"),
    column("session_eventtime", "timestamp", "eventTime of the session record, UTC"),
    column("session_awsregion"),
    column("sessiondata", doc="the record's sessionData lines, joined with newlines, in order"),
    column("source_file", doc="raw object the event came from"),
    column("redactions", "int", "secrets replaced by [REDACTED:<kind>] in this row's session text (sessiondata, "
                                "else message); NULL outside session log groups or with redaction.enabled false"),
)
CLOUDWATCH = TableSchema(CLOUDWATCH_READREADY, CLOUDWATCH_PARTITION_KEYS)

# The raw Firehose objects as a JSON table: Athena can read at most the first document
# of each line, since Firehose runs documents together with no separator.
CLOUDWATCH_RAW = TableSchema(
    (
        column("messagetype"),
        column("owner"),
        column("loggroup"),
        column("logstream"),
        column("subscriptionfilters", "array<string>"),
        column("logevents", "array<struct<id:string,timestamp:bigint,message:string>>"),
    ),
    CLOUDWATCH_PARTITION_KEYS,
)


# --------------------------------------------------------------------------- keys

_DIGITS = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2}/[0-9]{2}\Z")


def parse_firehose_key(key: str) -> keys.KeyResult:
    """Parse a Firehose object key ``[prefix/]YYYY/MM/DD/HH/<stream>-<n>-<time>-<uuid>``.

    The layout is the last five path parts, whatever prefix (or local folder) comes
    before them. Firehose writes gzip objects *without* a .gz suffix, so the name is
    not checked.

    Another AWS service's own layout, ``AWSLogs/ACCOUNT/SERVICE/REGION/YYYY/MM/DD/HH/f``
    (Bedrock's invocation logs), ends in the same five parts: in a bucket shared with
    those sources it is skipped as ``other_service``, or it would tie with the source
    whose key it is. Only that shape is: a region folder right above the date folders,
    below ``AWSLogs/ACCOUNT/SERVICE/``. A Firehose prefix such as ``AWSLogs/ACCOUNT/`` or
    ``AWSLogs/ACCOUNT/NAME/`` (date folders right below it) is still Firehose's.
    """
    if key.endswith("/"):
        return keys.skip(key, keys.FOLDER_MARKER)
    parts = key.split("/")
    service = keys.AWSLOGS_SERVICE_RE.match(key)
    if service and len(parts) >= 6 and shapes.REGION_RE.match(parts[-6]) \
            and service.end() == len("/".join(parts[:-6])) + 1:
        return keys.skip(key, keys.OTHER_SERVICE, service.group("service"))
    if len(parts) < 5 or not _DIGITS.match("/".join(parts[-5:-1])):
        return keys.error(key, keys.NO_LAYOUT_MATCH, "expected [prefix/]YYYY/MM/DD/HH/FILE")
    y, mo, d, h, name = parts[-5:]
    day = keys.calendar_date(y, mo, d)
    if day is None:
        return keys.error(key, keys.BAD_DATE, f"{y}/{mo}/{d} is not a calendar date")
    if int(h) > 23:
        return keys.error(key, keys.BAD_HOUR, f"hour {h!r} is not 00-23")
    return keys.KeyResult(key, keys.OK, partition=keys.Partition((day.isoformat(), h), key[: len(key) - len(name)]))


def classify_firehose_key(key: str, config: Config) -> keys.KeyResult:
    """Layout parse plus the config's key deny patterns (accounts live in the data)."""
    for pattern in config.filters.key_deny_patterns:
        if re.search(pattern, key):
            return keys.skip(key, keys.DENIED_KEY_PATTERN, pattern)
    return parse_firehose_key(key)


def _epoch_ms(value: Any) -> dt.datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def check_log_document(doc: Any) -> Problem | None:
    """A CloudWatch Logs subscription document must be an object with a logEvents array."""
    if not isinstance(doc, dict):
        return Problem(NO_LOG_EVENTS, f"document is {type(doc).__name__}, not an object")
    if not isinstance(doc.get("logEvents"), list):
        return Problem(NO_LOG_EVENTS, f"document has no logEvents array (keys: {sorted(doc)[:6]})")
    return None


def parse_session_record(message: str) -> tuple[dict[str, Any] | None, Problem | None]:
    """A Session Manager streaming record -> session columns.

    Plain text (the non-streaming upload format) is not a session record and yields
    nothing; text that starts like JSON claims to be one, so failing to parse it, or
    missing sessionId/sessionData, is a problem.
    """
    if not message.lstrip().startswith("{"):
        return None, None
    try:
        rec = loads(message.encode("utf-8"))
    except ValueError as exc:
        return None, Problem(BAD_SESSION_RECORD, f"session record is not JSON: {str(exc)[:200]}")
    if not isinstance(rec, dict) or not isinstance(rec.get("sessionId"), str):
        return None, Problem(BAD_SESSION_RECORD, "session record has no sessionId")
    lines = rec.get("sessionData")
    if not isinstance(lines, list):
        return None, Problem(BAD_SESSION_RECORD, "session record has no sessionData array")
    target = rec.get("target") if isinstance(rec.get("target"), dict) else {}
    if as_text(target.get("id")) is None:  # the gate's rule: every session row names its target
        return None, Problem(BAD_SESSION_RECORD, "session record has no target.id")
    identity = rec.get("userIdentity") if isinstance(rec.get("userIdentity"), dict) else {}
    return {
        "sessionid": rec["sessionId"],
        "target_id": as_text(target.get("id")),
        "useridentity_arn": as_text(identity.get("arn")),
        "runasuser": as_text(rec.get("runAsUser")),
        "session_eventtime": parse_time(rec.get("eventTime")),
        "session_awsregion": as_text(rec.get("awsRegion")),
        "sessiondata": "\n".join(as_text(line) or "" for line in lines),
    }, None


def redact_session_row(row: dict[str, Any], redaction: RedactionConfig, key_open: bool = False) -> bool:
    """A session log group's row with the secrets in ``message`` and ``sessiondata``
    replaced (:mod:`loglake.redact`), and ``redactions`` set: the count in the session
    text (sessiondata for a session record, else the plain message; the message of a
    record holds the same secrets again, as JSON).

    ``key_open``: the session's record before this one ended inside a private key; the
    value returned says whether this one does (:func:`loglake.redact.redact_continued`).
    """
    if not redaction.enabled:
        return False
    if row.get("sessiondata") is None:
        row["message"], row["redactions"], key_open = redact_continued(row.get("message"), redaction.patterns, key_open)
        return key_open
    text, count, key_open = redact_continued(row["sessiondata"], redaction.patterns, key_open)
    row["sessiondata"], row["redactions"] = text, count
    row["message"] = _redacted_record(row["message"], text if count else None, redaction.patterns)
    return key_open


def _redacted_record(message: str, lines: str | None, patterns: tuple[str, ...]) -> str:
    """A session record's message with the secrets of its decoded strings replaced.

    Redacting the JSON text itself misses what its escapes hide (``--password=\\"my
    secret\\"`` keeps "my secret") and may leave it no longer JSON, so the record is
    decoded, its sessionData becomes ``lines`` (the row's redacted sessiondata, split
    again: a key across lines is replaced as one, the lines it took become one), every
    other string is redacted on its own, and the record is written again in the layout it
    came in. A record with nothing to replace keeps its text as delivered.
    """
    try:
        rec = loads(message.encode("utf-8"))
    except ValueError:  # parse_session_record decoded the same text: not reached
        return redact(message, patterns)[0] or message
    changed = lines is not None
    if changed:
        rec["sessionData"] = lines.split("\n")
    rest = {k: v for k, v in rec.items() if k != "sessionData"}
    if redact("\n".join(_strings(rest)), patterns)[1]:  # one pass over the rest, nearly always clean
        rest, more = _redacted_json(rest, patterns)
        changed = changed or more
        rec = {k: rec["sessionData"] if k == "sessionData" else rest[k] for k in rec}
    return _json_like(rec, message) if changed else message


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [s for item in items for s in _strings(item)]


def _redacted_json(value: Any, patterns: tuple[str, ...], key_open: list[bool] | None = None) -> tuple[Any, bool]:
    """A decoded JSON value with the secrets of its strings replaced, and whether any was.

    A string that is itself a JSON document (a log event's message) is decoded and written
    again; a list of one-line strings (sessionData) is redacted as the lines of one text, as
    the row's sessiondata is, so that a key across them is found; ``key_open`` carries an
    open key from one string to the next, in document order.
    """
    state = [False] if key_open is None else key_open
    if isinstance(value, str):
        if value.lstrip()[:1] in ("{", "["):
            try:
                doc = loads(value.encode("utf-8"))
            except ValueError:
                doc = None
            if isinstance(doc, (dict, list)):
                doc, changed = _redacted_json(doc, patterns, state)
                return (_json_like(doc, value), True) if changed else (value, False)
        text, count, state[0] = redact_continued(value, patterns, state[0])
        return (text, True) if count else (value, False)
    if isinstance(value, list):
        if value and all(isinstance(v, str) and "\n" not in v for v in value):
            text, count, state[0] = redact_continued("\n".join(value), patterns, state[0])
            return (text.split("\n"), True) if count else (value, False)
        pairs = [_redacted_json(v, patterns, state) for v in value]
        return [v for v, _ in pairs], any(c for _, c in pairs)
    if isinstance(value, dict):
        pairs = {k: _redacted_json(v, patterns, state) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(c for _, c in pairs.values())
    return value, False


_FIRST_KEY = re.compile(r'\s*\{\s*"(?:[^"\\]|\\.)*"(\s*):(\s*)')
_INDENT = re.compile(r"\n([ \t]+)\S")


def _json_like(value: Any, original: str) -> str:
    """``value`` as JSON text laid out as ``original`` was (indented, spaced or compact;
    ASCII only or not), so that a rewritten record differs from the delivered one only
    where a secret was."""
    ascii_only = original.isascii()
    if "\n" in original.strip():  # JSON strings hold no raw newline: it is indented
        indent = _INDENT.search(original)
        return json.dumps(value, ensure_ascii=ascii_only, indent=indent.group(1) if indent else 2)
    first = _FIRST_KEY.match(original)
    spaced = first is not None and first.group(2) != ""
    return json.dumps(value, ensure_ascii=ascii_only, separators=(", ", ": ") if spaced else (",", ":"))


def _redactor(redaction: RedactionConfig) -> Callable[[str], str] | None:
    """A text with its secrets replaced (None with redaction off): ``with_payload``'s
    ``clean``, which redacts a record's whole text before it is cut, and
    :func:`redact_payload`'s. A payload that is JSON (a record's) is redacted in its
    decoded strings, for the reason :func:`_redacted_record` gives; any other text as it is."""
    if not redaction.enabled:
        return None
    patterns = redaction.patterns

    def clean(text: str) -> str:
        if text.lstrip()[:1] in ("{", "["):
            try:
                doc = loads(text.encode("utf-8"))
            except ValueError:
                pass
            else:
                doc, changed = _redacted_json(doc, patterns)
                return _json_like(doc, text) if changed else text
        return redact(text, patterns)[0] or text

    return clean


def redact_payload(problem: Problem, clean: Callable[[str], str] | None) -> Problem:
    """A quarantine row's payload (already cut to its limit) through ``clean``
    (:func:`_redactor`)."""
    if clean is None or not problem.payload:
        return problem
    return dataclasses.replace(problem, payload=clean(problem.payload))


def flatten_log_event(doc: dict, event: Any, session_group: bool, index: int) -> tuple[dict | None, Problem | None]:
    """One logEvents entry of a DATA_MESSAGE -> one readready row, or a problem."""
    if not isinstance(event, dict) or not isinstance(event.get("message"), str):
        return None, Problem(BAD_LOG_EVENT, "log event has no message string", index)
    if not event.get("id"):
        return None, Problem(BAD_LOG_EVENT, "log event has no id", index)
    when = _epoch_ms(event.get("timestamp"))
    if when is None:
        return None, Problem(BAD_LOG_EVENT, f"log event timestamp {event.get('timestamp')!r} is not epoch ms", index)
    owner = as_text(doc.get("owner"))
    if owner is not None and not shapes.ACCOUNT_RE.match(owner):  # the gate's rule, per record
        return None, Problem(BAD_OWNER, f"document owner {owner[:40]!r} is not a 12-digit account", index)
    row: dict[str, Any] = {
        "owner": owner,
        "loggroup": as_text(doc.get("logGroup")),
        "logstream": as_text(doc.get("logStream")),
        "subscriptionfilters": as_json(doc.get("subscriptionFilters")),
        "event_id": as_text(event.get("id")),
        "event_timestamp": when,
        "message": event["message"],
    }
    if session_group:
        fields, problem = parse_session_record(event["message"])
        if problem:
            return None, dataclasses.replace(problem, index=index)
        if fields:
            row.update(fields)
    return row, None



def process_cloudwatch(data: bytes, source_file: str, config: Config) -> FileResult:
    """One Firehose object of CloudWatch Logs documents -> one row per kept log event.

    Documents are streamed out of the (multi-member) gzip one at a time; a broken
    document or stream is a problem with its byte offset, and every document before
    it, or after it where the splitter can resynchronise, is still converted.
    """
    out = FileResult()
    sessions = set(config.sources.cloudwatch.session_log_groups)
    redaction = config.redaction
    clean = _redactor(redaction)
    allowed = config.filters.log_groups
    limit = config.quality.max_payload_bytes
    # Sessions whose last record so far ended inside a private key (BEGIN, no END yet): a
    # session's records arrive in order, in one log stream, so the next one in this object
    # starts with the key's rest. A record in the next object is not known to; only the
    # key lines above its END line are found there.
    open_keys: set[tuple] = set()
    stream = firehose.GzipChunks(data)
    for item in firehose.iter_documents(stream, resync='{"messageType"'):
        if isinstance(item, Problem):  # its document's log group is unknown: it may be a session's
            out.problems.append(redact_payload(item, clean))
            continue
        offset, doc = item
        bad = check_log_document(doc)
        if bad:
            group = doc.get("logGroup") if isinstance(doc, dict) else None
            secret = group in sessions or group is None
            out.problems.append(dataclasses.replace(
                with_payload(bad, doc, limit, counted=False, clean=clean if secret else None), offset=offset))
            continue
        if doc.get("messageType") == CONTROL_MESSAGE:
            out.control_messages += 1
            continue
        group = doc.get("logGroup")
        events = doc["logEvents"]
        out.records_read += len(events)
        if not allowed.allows(group):
            out.filtered["log_groups"] = out.filtered.get("log_groups", 0) + len(events)
            continue
        session_group = group in sessions
        log_stream = (doc.get("owner"), group, doc.get("logStream"))
        for i, event in enumerate(events):
            row, problem = flatten_log_event(doc, event, session_group, i)
            if problem is None and row_bytes(row) > config.quality.max_record_bytes:
                problem = Problem(
                    RECORD_TOO_LARGE, f"log event is over {config.quality.max_record_bytes} bytes", i)
            if problem:
                out.problems.append(dataclasses.replace(
                    with_payload(problem, event, limit, clean=clean if session_group else None), offset=offset))
                continue
            if session_group:  # a key printed across a session's records: see open_keys
                session = (*log_stream, row.get("sessionid"))
                if redact_session_row(row, redaction, session in open_keys):
                    open_keys.add(session)
                else:
                    open_keys.discard(session)
            row["source_file"] = source_file
            out.rows.append(row)
    if stream.problem:  # the raw object's text: whatever log groups it held
        out.problems.append(redact_payload(dataclasses.replace(
            stream.problem, payload=text_payload(data, limit), payload_size=len(data)), clean))
    return out


# --------------------------------------------------------------------------- quality gate

# An event id is unique within its log stream, and stream names (Session Manager uses
# session ids) repeat across accounts: the owning account is part of the identity.
DEDUP_KEY = ("owner", "loggroup", "logstream", "event_id")
# Derived by the gate on a copy of the rows, never published: the row is a session record.
SESSION_RECORD = "_session_record"


def quality_checks(expect_rows: bool = True) -> list[Check]:
    """The from_cloudwatch_readready suite: one expectation per rule, with why in its notes."""
    schema = CLOUDWATCH
    return [
        column_set([c.name for c in schema.all_columns] + [SESSION_RECORD]),
        row_count(expect_rows),
        check(
            "ExpectColumnValuesToNotBeNull",
            column="event_id",
            notes="The log event id is the row's identity and the dedup key; events without one"
            " are quarantined, so a null here is a bug.",
        ),
        check(
            "ExpectCompoundColumnsToBeUnique",
            column_list=[*schema.partition_names, *DEDUP_KEY],
            notes="Dedup by (partition, log group, stream, event id) runs before the gate and a"
            " rerun replaces its partitions: a duplicate here means one of them is broken.",
        ),
        check(
            "ExpectColumnValuesToNotBeNull",
            column="event_timestamp",
            notes="Session replay orders by event_timestamp; events without a valid timestamp"
            " are quarantined, so a null here is a bug.",
        ),
        check(
            "ExpectColumnValuesToMatchRegex",
            column="owner",
            regex=ACCOUNT_RE,
            notes="owner is the account that owns the log group: a 12-digit account id.",
        ),
        check(
            "ExpectColumnValuesToMatchRegex",
            column="dt",
            regex=DATE_RE,
            notes="dt is the delivery date YYYY-MM-DD from the Firehose key.",
        ),
        check(
            "ExpectColumnValuesToMatchRegex",
            column="hour",
            regex=HOUR_RE,
            notes="hour is the delivery hour HH (00-23) from the Firehose key.",
        ),
        check(
            "ExpectColumnValuesToNotBeNull",
            column="target_id",
            where=(Null("sessionid", is_null=False),),
            notes="A session record names the instance it ran on; a session row without"
            " target_id cannot be tied to a machine.",
        ),
        check(
            "ExpectColumnValuesToNotBeNull",
            column="sessionid",
            where=(Equals(SESSION_RECORD, True),),
            notes=f"{SESSION_RECORD} = the row is in a session log group and its message starts"
            " with '{'. Such a message is a session record and must yield a sessionid (one"
            " that cannot be parsed is quarantined); plain-text messages are not checked.",
        ),
    ]


def derive_spark(df, section: CloudWatchConfig):
    """The suite's derived column on a Spark DataFrame: a row of a session log group whose
    message starts, after whitespace, with '{'."""
    from pyspark.sql import functions as F

    groups = list(section.session_log_groups)
    if not groups or not {"loggroup", "message"} <= set(df.columns):
        return df.withColumn(SESSION_RECORD, F.lit(False))
    # parse_session_record: message.lstrip().startswith("{"). Java's \s is a subset
    # of Python's whitespace, so this never flags a row the converter treated as plain text.
    flag = F.col("loggroup").isin(groups) & F.col("message").rlike(r"^\s*\{")
    return df.withColumn(SESSION_RECORD, F.coalesce(flag, F.lit(False)))


def derive_arrow(table, section: CloudWatchConfig):
    """:func:`derive_spark` for an Arrow table (what a writing task tallies), with the same
    values (Java's whitespace)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    groups = list(section.session_log_groups)
    if not groups or not {"loggroup", "message"} <= set(table.column_names):
        return table.append_column(SESSION_RECORD, pa.array([False] * n, pa.bool_()))
    in_group = pc.is_in(table["loggroup"], value_set=pa.array(groups, pa.string()))
    json_like = pc.match_substring_regex(table["message"], r"^[ \t\n\x0B\f\r]*\{")
    return table.append_column(SESSION_RECORD, pc.fill_null(pc.and_(in_group, json_like), False))


# --------------------------------------------------------------------------- tables

RAW_STORAGE = {  # one JSON document a line, gzip (what Athena can and cannot read: DDL_NOTES)
    "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe"},
}

DDL_NOTES = {
    "raw": """\
Raw CloudWatch Logs delivered by Firehose: below s3://<sources.cloudwatch.bucket>/<prefix>,
  one object per Firehose buffer, keyed YYYY/MM/DD/HH/ (partitions dt, hour, registered by
  AddAPart like {cloudtrail_raw}).
What Athena can read here, and what it cannot (which is why {cloudwatch_readready} exists):
  - CloudWatch Logs gzips every document, and Firehose writes the objects with NO .gz suffix.
    Athena picks a text file's codec from its name, so objects without a suffix are read as
    plain text: nothing usable comes back unless the stream adds a suffix or decompresses.
  - Firehose runs the documents together with no separator ({...}{...}{...}) and, one per
    Firehose record, in several gzip members. The JSON SerDe reads one document per line:
    at most the first document of each object, or a malformed-JSON error.
  - logevents is an array: one row per document, not per log event. Session Manager records
    stay JSON text inside logevents[].message.
  - CONTROL_MESSAGE health checks are rows like any other.
{cloudwatch_readready} has one row per log event, with the session fields as columns.""",
    "readready": """\
Readready CloudWatch Logs: one row per log event (CONTROL_MESSAGEs dropped), ORC/ZLIB, written
  by the cloudwatch job below <readready.location>/{cloudwatch_readready}/dt=/hour=/.
For Session Manager log groups the session record's fields are columns (sessionid,
  target_id, useridentity_arn, runasuser, session_eventtime) and sessiondata holds its lines
  joined with newlines: the keystrokes of a session, in order, are
  ORDER BY event_timestamp, event_id (see the sessions view).""",
}


SOURCE = Source(
    name="cloudwatch",
    schema=CLOUDWATCH,
    raw_schema=CLOUDWATCH_RAW,
    raw_format="cloudwatch_json",
    raw_storage=RAW_STORAGE,
    raw_table_parameters={"classification": "json", "compressionType": "gzip"},
    ddl_notes=DDL_NOTES,
    classify_key=classify_firehose_key,
    process_file=process_cloudwatch,
    # A session's keystrokes end up together and in order inside each file.
    sort_columns=("loggroup", "sessionid", "event_timestamp", "event_id"),
    dedup_key=DEDUP_KEY,
    bloom_columns=("sessionid", "useridentity_arn"),
    config_class=CloudWatchConfig,
    raw_table="from_cloudwatch_raw",
    readready_table="from_cloudwatch_readready",
    checks=quality_checks,
    derived_columns=(SESSION_RECORD,),
    derive_spark=derive_spark,
    derive_arrow=derive_arrow,
)
