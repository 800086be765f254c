"""Object-created notifications as they arrive in an SQS message body.

Three envelopes reach the AddAPart queue, depending on how the bucket is wired:

* an S3 event notification ``{"Records": [{"eventSource": "aws:s3", ...}]}``;
* the same, wrapped by SNS ``{"Type": "Notification", "Message": "<json>"}``;
* an EventBridge event ``{"detail-type": "Object Created", "source": "aws.s3", ...}``.

S3 event notifications URL-encode object keys (form encoding: ``+`` for space,
``%3A`` for ``:``), so they are decoded here, exactly once. EventBridge events carry
the key as stored and are not decoded (decoding them would corrupt keys that hold a
literal ``+`` or ``%``). ``s3:TestEvent`` messages, sent when a notification is
configured, are acknowledged and ignored. A body that is none of these is an
``invalid`` envelope, never an exception.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

S3 = "s3"
SNS = "sns"
EVENTBRIDGE = "eventbridge"
TEST_EVENT = "test_event"
INVALID = "invalid"


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str  # decoded
    # Bytes, as the notification says (0 when it does not): a hint for the run's read-ahead,
    # not part of which object it is.
    size: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Envelope:
    kind: str
    objects: tuple[ObjectRef, ...] = ()
    ignored: int = 0  # events that are not object creations (deletes, restores, ...)
    error: str = ""


def parse_body(body: str) -> Envelope:
    try:
        doc = json.loads(body)
    except (TypeError, ValueError, RecursionError) as exc:
        return Envelope(INVALID, error=f"body is not JSON: {str(exc)[:200]}")
    if not isinstance(doc, dict):
        return Envelope(INVALID, error="body is not a JSON object")
    if doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):
        inner = parse_body(doc["Message"])
        if inner.kind in (S3, TEST_EVENT):
            return Envelope(SNS if inner.kind == S3 else TEST_EVENT, inner.objects, inner.ignored)
        return Envelope(INVALID, error=f"SNS message: {inner.error or 'not an S3 event'}")
    if doc.get("Event") == "s3:TestEvent":
        return Envelope(TEST_EVENT)
    if doc.get("source") == "aws.s3" and "detail-type" in doc:
        return _eventbridge(doc)
    if isinstance(doc.get("Records"), list):
        return _s3_records(doc["Records"])
    return Envelope(INVALID, error="not an S3, SNS or EventBridge S3 notification")


def _s3_records(records: list) -> Envelope:
    objects, ignored = [], 0
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or rec.get("eventSource") != "aws:s3":
            return Envelope(INVALID, error=f"Records[{i}] is not an aws:s3 event")
        if not str(rec.get("eventName", "")).startswith("ObjectCreated:"):
            ignored += 1
            continue
        try:
            bucket = rec["s3"]["bucket"]["name"]
            key = rec["s3"]["object"]["key"]
        except (KeyError, TypeError):
            return Envelope(INVALID, error=f"Records[{i}] has no s3.bucket.name / s3.object.key")
        if not (isinstance(bucket, str) and isinstance(key, str) and bucket and key):
            return Envelope(INVALID, error=f"Records[{i}] s3.bucket.name / s3.object.key are not strings")
        objects.append(ObjectRef(bucket, unquote_plus(key), _size(rec["s3"]["object"].get("size"))))
    return Envelope(S3, tuple(objects), ignored)


def _eventbridge(doc: dict) -> Envelope:
    if doc.get("detail-type") != "Object Created":
        return Envelope(EVENTBRIDGE, ignored=1)
    try:
        bucket = doc["detail"]["bucket"]["name"]
        key = doc["detail"]["object"]["key"]
    except (KeyError, TypeError):
        return Envelope(INVALID, error="EventBridge event has no detail.bucket.name / detail.object.key")
    if not (isinstance(bucket, str) and isinstance(key, str) and bucket and key):
        return Envelope(INVALID, error="EventBridge detail.bucket.name / detail.object.key are not strings")
    return Envelope(EVENTBRIDGE, (ObjectRef(bucket, key, _size(doc["detail"]["object"].get("size"))),))


def _size(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
