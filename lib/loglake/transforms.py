"""Pure record transforms: raw bytes -> records -> flat rows. No I/O, no Spark.

Everything here works on plain Python values so it can be tested on the real
samples without AWS or a JVM; the Spark job only moves these rows around.
Problems are returned as values (a reason code plus detail), so one bad file or
record never stops its neighbours.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from loglake.config import FiltersConfig

# Problem reason codes (stable names: summaries and, later, the quarantine table use them).
NOT_GZIP = "not_gzip"
TRUNCATED_GZIP = "truncated_gzip"
EMPTY_OBJECT = "empty_object"
INVALID_UTF8 = "invalid_utf8"
MALFORMED_JSON = "malformed_json"
NO_RECORDS = "no_records"
RECORD_NOT_OBJECT = "record_not_object"
MISSING_EVENT_ID = "missing_event_id"
MISSING_EVENT_TIME = "missing_event_time"
BAD_EVENT_TIME = "bad_event_time"
RECORD_TOO_LARGE = "record_too_large"
MISSING_EVENT_NAME = "missing_event_name"
INSIGHT_EVENT = "AwsCloudTrailInsight"

SSM_SESSION_EVENTS = frozenset({"StartSession", "ResumeSession", "TerminateSession"})


@dataclass(frozen=True)
class Problem:
    reason: str
    detail: str
    index: int | None = None  # record index in the file, where known
    offset: int | None = None  # byte offset in the decompressed data, where known
    payload: str | None = None  # the offending record or text, as JSON/text where possible
    payload_size: int | None = None  # its full size in bytes before any truncation
    # True when the problem is one record that was counted in records_read (the
    # reconciliation needs these); False for objects and documents that never got that far.
    record: bool = False


# --------------------------------------------------------------------------- decoding


def gunzip(data: bytes) -> tuple[bytes, Problem | None]:
    """Decompress every gzip member; on a broken stream keep what decompressed before it."""
    if not data:
        return b"", Problem(EMPTY_OBJECT, "object has 0 bytes")
    if data[:2] != b"\x1f\x8b":
        return b"", Problem(NOT_GZIP, f"starts with {data[:4]!r}, not the gzip magic 1f8b")
    out = bytearray()
    rest = data
    while rest:
        d = zlib.decompressobj(wbits=31)
        try:
            out += d.decompress(rest)
        except zlib.error as exc:
            return bytes(out), Problem(TRUNCATED_GZIP, f"corrupt gzip data after {len(out)} bytes: {exc}")
        if not d.eof:
            return bytes(out), Problem(TRUNCATED_GZIP, f"gzip stream ends early after {len(out)} bytes")
        rest = d.unused_data
        if rest and rest[:2] != b"\x1f\x8b":
            if rest.strip(b"\x00"):  # zero padding after the last member is harmless
                return bytes(out), Problem(TRUNCATED_GZIP, "trailing bytes after the last gzip member")
            break
    return bytes(out), None


# orjson is several times faster than json, but turns integers beyond 64 bits into
# floats (and cannot write them back). A number token of 19+ digits is rare in audit
# logs; when one is present, the exact (slower) json module decodes the document.
_DIGITS_AS_9 = bytes.maketrans(b"0123456789", b"9" * 10)
_RUN_19 = b"9" * 19


def has_big_int(raw: bytes) -> bool:
    """Might ``raw`` hold an integer literal of 19+ digits (one orjson would turn into a
    float)? A run of 19 digits not inside a string follows ``:``, ``[`` or ``,``.

    Digit runs are found with ``bytes.translate`` and ``find`` (C loops over the text)
    rather than a regex scan, which cost ~18 µs per event under cProfile against ~2.5
    for this; a false positive only costs the exact (slower) parser."""
    digits = raw.translate(_DIGITS_AS_9)
    at = digits.find(_RUN_19)
    while at != -1:
        i = at
        while i > 0 and digits[i - 1] == 57:  # back to the run's first digit
            i -= 1
        if i > 0 and raw[i - 1] == 45:  # a minus sign
            i -= 1
        while i > 0 and raw[i - 1] in b" \t\r\n":
            i -= 1
        if i > 0 and raw[i - 1] in b":[,":
            return True
        end = at + 19
        while end < len(digits) and digits[end] == 57:  # past this run
            end += 1
        at = digits.find(_RUN_19, end)
    return False


def loads(raw: bytes) -> Any:
    """Parse JSON bytes exactly; raises ValueError (JSONDecodeError, UnicodeDecodeError)."""
    if has_big_int(raw):
        return json.loads(raw)
    return orjson.loads(raw)


def decode_cloudtrail(data: bytes) -> tuple[list[Any], Problem | None]:
    """A CloudTrail object (gzip JSON ``{"Records": [...]}``) -> its records, or a problem.

    When the gzip stream breaks or the JSON is malformed, the complete records before
    the break are still returned (with the problem): a bad tail never costs the records
    that preceded it.
    """
    raw, problem = gunzip(data)
    if problem and problem.reason != TRUNCATED_GZIP:
        return [], problem
    if problem is None:
        try:
            doc = loads(raw)
        except UnicodeDecodeError as exc:
            return [], Problem(INVALID_UTF8, str(exc)[:300], offset=exc.start, payload=text_payload(raw[exc.start :]))
        except ValueError as exc:
            reason = INVALID_UTF8 if "utf-8" in str(exc).lower() else MALFORMED_JSON
            problem = Problem(reason, str(exc)[:300])
        else:
            if not isinstance(doc, dict) or not isinstance(doc.get("Records"), list):
                keys = sorted(doc)[:5] if isinstance(doc, dict) else type(doc).__name__
                return [], Problem(NO_RECORDS, f"JSON has no Records array (found {keys})", payload=text_payload(raw))
            return doc["Records"], None
    records, stop = salvage_records(raw)
    detail = f"{problem.detail}; kept the {len(records)} complete records before byte {stop}"
    return records, dataclasses.replace(
        problem, detail=detail, index=len(records), offset=stop, payload=text_payload(raw[stop:])
    )


_RECORDS_START = re.compile(r'\{\s*"Records"\s*:\s*\[')


def salvage_records(raw: bytes) -> tuple[list[Any], int]:
    """The complete records at the start of a broken ``{"Records": [...`` text, and the
    byte offset where the first incomplete or malformed one begins."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw[: exc.start].decode("utf-8")
    m = _RECORDS_START.match(text.lstrip())
    if not m:
        return [], 0
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip()) + m.end()
    records: list[Any] = []
    while True:
        start = pos
        while start < len(text) and text[start] in " \t\r\n":
            start += 1
        try:
            record, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            return records, len(text[:pos].encode("utf-8"))
        records.append(record)
        pos = end
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
        else:
            return records, len(text[:pos].encode("utf-8"))


def text_payload(data: bytes | str, limit: int = 64 << 10) -> str:
    """Up to ``limit`` bytes of raw data as readable text (undecodable bytes escaped)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return data[:limit].decode("utf-8", "backslashreplace")


def record_payload(record: Any) -> tuple[str, int]:
    """A record as JSON text for the quarantine, and its size in bytes."""
    text = _json(record) or "null"
    return text, len(text.encode("utf-8"))


# --------------------------------------------------------------------------- flattening

# CloudTrail top-level field -> readready column, for fields copied as scalars.
_SCALARS = {
    "eventVersion": "eventversion",
    "eventSource": "eventsource",
    "eventName": "eventname",
    "awsRegion": "awsregion",
    "sourceIPAddress": "sourceipaddress",
    "userAgent": "useragent",
    "errorCode": "errorcode",
    "errorMessage": "errormessage",
    "requestID": "requestid",
    "eventID": "eventid",
    "eventType": "eventtype",
    "eventCategory": "eventcategory",
    "apiVersion": "apiversion",
    "recipientAccountId": "recipientaccountid",
    "sharedEventID": "sharedeventid",
    "vpcEndpointId": "vpcendpointid",
    "vpcEndpointAccountId": "vpcendpointaccountid",
    "sessionCredentialFromConsole": "sessioncredentialfromconsole",
}
_BOOLEANS = {"managementEvent": "managementevent", "readOnly": "readonly"}
_JSON = {
    "requestParameters": "requestparameters",
    "responseElements": "responseelements",
    "additionalEventData": "additionaleventdata",
    "resources": "resources",
    "tlsDetails": "tlsdetails",
    "serviceEventDetails": "serviceeventdetails",
}
_HANDLED = set(_SCALARS) | set(_BOOLEANS) | set(_JSON) | {"eventTime", "userIdentity"}

_IDENTITY_SCALARS = {
    "type": "useridentity_type",
    "arn": "useridentity_arn",
    "accountId": "useridentity_accountid",
    "principalId": "useridentity_principalid",
    "accessKeyId": "useridentity_accesskeyid",
    "userName": "useridentity_username",
    "invokedBy": "useridentity_invokedby",
    "identityProvider": "useridentity_identityprovider",
}
_ISSUER = {
    "type": "useridentity_sessioncontext_sessionissuer_type",
    "principalId": "useridentity_sessioncontext_sessionissuer_principalid",
    "arn": "useridentity_sessioncontext_sessionissuer_arn",
    "accountId": "useridentity_sessioncontext_sessionissuer_accountid",
    "userName": "useridentity_sessioncontext_sessionissuer_username",
}


def parse_time(value: Any) -> dt.datetime | None:
    """CloudTrail ISO-8601 time -> aware UTC datetime; None when absent or unparseable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00, 9999-12-31T23:59-01:00: no UTC time in range
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return _json(value)


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer beyond 64 bits: the json module writes it exactly
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def check_cloudtrail_record(record: Any, index: int) -> Problem | None:
    """The minimum a record needs to be published: an object with an id and a time."""
    if not isinstance(record, dict):
        return Problem(RECORD_NOT_OBJECT, f"record is {type(record).__name__}", index)
    if not record.get("eventID"):
        return Problem(MISSING_EVENT_ID, "record has no eventID", index)
    if "eventTime" not in record or record["eventTime"] in (None, ""):
        return Problem(MISSING_EVENT_TIME, "record has no eventTime", index)
    if parse_time(record["eventTime"]) is None:
        return Problem(BAD_EVENT_TIME, f"eventTime {record['eventTime']!r} is not ISO-8601", index)
    return None


def session_id(record: dict) -> str | None:
    """The Session Manager session a CloudTrail event is about, else None.

    StartSession/ResumeSession return it in responseElements.sessionId. A failed
    TerminateSession/ResumeSession (AccessDenied) has no response, so fall back to
    requestParameters.sessionId: who tried to end or resume which session matters too.
    """
    if record.get("eventSource") != "ssm.amazonaws.com":
        return None
    if record.get("eventName") not in SSM_SESSION_EVENTS:
        return None
    for part in ("responseElements", "requestParameters"):
        section = record.get(part)
        if isinstance(section, dict) and isinstance(section.get("sessionId"), str):
            return section["sessionId"]
    return None


def flatten_cloudtrail(record: dict) -> dict[str, Any]:
    """One CloudTrail record -> one flat readready row (readready column names).

    Unknown top-level fields go to ``additional_fields`` and unknown identity fields
    to ``useridentity_extra`` as JSON, so a new AWS field never breaks the job and
    never silently disappears.
    """
    row: dict[str, Any] = {col: _text(record.get(src)) for src, col in _SCALARS.items()}
    for src, col in _BOOLEANS.items():
        row[col] = _bool(record.get(src))
    for src, col in _JSON.items():
        row[col] = _json(record.get(src))
    row["eventtime"] = parse_time(record.get("eventTime"))
    if record.get("eventType") == INSIGHT_EVENT and isinstance(record.get("insightDetails"), dict):
        # Insights events name the API they are about inside insightDetails; surfacing it
        # lets the same eventsource/eventname queries find them (insightDetails is kept
        # whole in additional_fields).
        details = record["insightDetails"]
        row["eventsource"] = row["eventsource"] or _text(details.get("eventSource"))
        row["eventname"] = row["eventname"] or _text(details.get("eventName"))
    row.update(_flatten_identity(record.get("userIdentity")))
    row["sessionid"] = session_id(record)
    extra = {k: v for k, v in record.items() if k not in _HANDLED}
    row["additional_fields"] = _json(extra) if extra else None
    return row


def _flatten_identity(identity: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if not isinstance(identity, dict):
        identity = {} if identity is None else {"value": identity}
    rest = dict(identity)
    for src, col in _IDENTITY_SCALARS.items():
        row[col] = _text(rest.pop(src, None))
    context = rest.pop("sessionContext", None)
    context = dict(context) if isinstance(context, dict) else ({} if context is None else {"value": context})
    issuer = context.pop("sessionIssuer", None)
    issuer = dict(issuer) if isinstance(issuer, dict) else {}
    for src, col in _ISSUER.items():
        row[col] = _text(issuer.pop(src, None))
    attributes = context.pop("attributes", None)
    attributes = dict(attributes) if isinstance(attributes, dict) else {}
    mfa = attributes.pop("mfaAuthenticated", None)
    row["useridentity_sessioncontext_attributes_mfaauthenticated"] = _bool(mfa)
    if mfa is not None and _bool(mfa) is None:
        attributes["mfaAuthenticated"] = mfa  # unparseable: keep it, in useridentity_extra
    created = attributes.pop("creationDate", None)
    row["useridentity_sessioncontext_attributes_creationdate"] = parse_time(created)
    if created is not None and parse_time(created) is None:
        attributes["creationDate"] = created
    row["useridentity_sessioncontext_sourceidentity"] = _text(context.pop("sourceIdentity", None))
    row["useridentity_sessioncontext_ec2roledelivery"] = _text(context.pop("ec2RoleDelivery", None))
    on_behalf = rest.pop("onBehalfOf", None)
    on_behalf = dict(on_behalf) if isinstance(on_behalf, dict) else {}
    row["useridentity_onbehalfof_userid"] = _text(on_behalf.pop("userId", None))
    row["useridentity_onbehalfof_identitystorearn"] = _text(on_behalf.pop("identityStoreArn", None))
    # Whatever is left, nested where it was, so nothing in userIdentity is lost.
    if issuer:
        context["sessionIssuer"] = issuer
    if attributes:
        context["attributes"] = attributes
    if context:
        rest["sessionContext"] = context
    if on_behalf:
        rest["onBehalfOf"] = on_behalf
    row["useridentity_extra"] = _json(rest) if rest else None
    return row


# --------------------------------------------------------------------------- filters


def check_cloudtrail_row(row: dict[str, Any], index: int) -> Problem | None:
    """After flattening: every published event says which API call it is."""
    if not (row.get("eventsource") and str(row["eventsource"]).strip()):
        return Problem(MISSING_EVENT_NAME, "record has no eventSource", index)
    if not (row.get("eventname") and str(row["eventname"]).strip()):
        return Problem(MISSING_EVENT_NAME, "record has no eventName", index)
    return None


def cloudtrail_filter_rule(row: dict[str, Any], filters: FiltersConfig) -> str | None:
    """The config rule that drops this row, or None to keep it."""
    if not filters.event_sources.allows(row.get("eventsource")):
        return "event_sources"
    if not filters.event_names.allows(row.get("eventname")):
        return "event_names"
    return None


# --------------------------------------------------------------------------- CloudWatch Logs

CONTROL_MESSAGE = "CONTROL_MESSAGE"
NO_LOG_EVENTS = "no_log_events"
BAD_LOG_EVENT = "bad_log_event"
BAD_SESSION_RECORD = "bad_session_record"


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
    identity = rec.get("userIdentity") if isinstance(rec.get("userIdentity"), dict) else {}
    return {
        "sessionid": rec["sessionId"],
        "target_id": _text(target.get("id")),
        "useridentity_arn": _text(identity.get("arn")),
        "runasuser": _text(rec.get("runAsUser")),
        "session_eventtime": parse_time(rec.get("eventTime")),
        "session_awsregion": _text(rec.get("awsRegion")),
        "sessiondata": "\n".join(_text(line) or "" for line in lines),
    }, None


def flatten_log_event(doc: dict, event: Any, session_group: bool, index: int) -> tuple[dict | None, Problem | None]:
    """One logEvents entry of a DATA_MESSAGE -> one readready row, or a problem."""
    if not isinstance(event, dict) or not isinstance(event.get("message"), str):
        return None, Problem(BAD_LOG_EVENT, "log event has no message string", index)
    if not event.get("id"):
        return None, Problem(BAD_LOG_EVENT, "log event has no id", index)
    when = _epoch_ms(event.get("timestamp"))
    if when is None:
        return None, Problem(BAD_LOG_EVENT, f"log event timestamp {event.get('timestamp')!r} is not epoch ms", index)
    row: dict[str, Any] = {
        "owner": _text(doc.get("owner")),
        "loggroup": _text(doc.get("logGroup")),
        "logstream": _text(doc.get("logStream")),
        "subscriptionfilters": _json(doc.get("subscriptionFilters")),
        "event_id": _text(event.get("id")),
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
