"""Pure record transforms the sources share: decompressing, JSON, payloads for the
quarantine, times and values, and the problem reason codes. No I/O, no Spark. Each
source's own decoding, checks and flattening are in its module (loglake.sources).

Everything here works on plain Python values so it can be tested on the real
samples without AWS or a JVM; the Spark job only moves these rows around.
Problems are returned as values (a reason code plus detail), so one bad file or
record never stops its neighbours.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

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
NO_LOG_EVENTS = "no_log_events"
BAD_LOG_EVENT = "bad_log_event"
BAD_SESSION_RECORD = "bad_session_record"


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


# A \uD800-\uDFFF escape in JSON text (half of a UTF-16 pair, maybe alone), as bytes and as text.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def without_lone_surrogates(value: Any) -> Any:
    """``value`` (parsed JSON) with each lone UTF-16 surrogate in its strings, keys
    included, replaced by U+FFFD; lists and objects are changed in place.

    JSON may escape half a surrogate pair (``"\\ud83d"``: a truncated emoji, or a value an
    attacker chose, such as a user agent); Python's parser then holds a code point that
    has no UTF-8 form, so the ORC writer (and any UTF-8 reader) would fail on it, and with
    it the whole run. The record is kept with the character every UTF-8 decoder
    substitutes for what it cannot read. The walk is a loop, not a recursion: a document
    as deep as the parser accepts must not exhaust the stack here."""
    if isinstance(value, str):
        return _fixed(value)
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, str):
                    node[i] = _fixed(item)
                elif isinstance(item, (list, dict)):
                    stack.append(node[i])
        elif isinstance(node, dict):
            if any(_LONE_SURROGATE.search(k) for k in node):
                items = list(node.items())
                node.clear()
                node.update((_fixed(k), v) for k, v in items)
            for k, item in node.items():
                if isinstance(item, str):
                    node[k] = _fixed(item)
                elif isinstance(item, (list, dict)):
                    stack.append(item)
    return value


def _fixed(text: str) -> str:
    return _LONE_SURROGATE.sub(REPLACEMENT, text) if _LONE_SURROGATE.search(text) else text


def loads(raw: bytes) -> Any:
    """Parse JSON bytes exactly; raises ValueError (JSONDecodeError, UnicodeDecodeError).

    orjson is exact except for integers beyond 64 bits (it gives floats) and rejects an
    escaped lone surrogate; both go to Python's parser, whose strings are then made
    encodable (:func:`without_lone_surrogates`)."""
    if not has_big_int(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if "surrogate" not in str(exc):
                raise
    try:
        doc = json.loads(raw)
    except RecursionError as exc:  # orjson's depth limit is a ValueError; keep them alike
        raise ValueError(f"nested deeper than the parser can follow ({exc})") from None
    return without_lone_surrogates(doc) if SURROGATE_ESCAPE.search(raw) else doc


def text_payload(data: bytes | str, limit: int = 64 << 10) -> str:
    """Up to ``limit`` bytes of raw data as readable text (undecodable bytes escaped)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return data[:limit].decode("utf-8", "backslashreplace")


def record_payload(record: Any) -> tuple[str, int]:
    """A record as JSON text for the quarantine, and its size in bytes."""
    text = as_json(record) or "null"
    return text, len(text.encode("utf-8"))


# --------------------------------------------------------------------------- values


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


def as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return as_json(value)


def as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def as_json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer beyond 64 bits: the json module writes it exactly
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
