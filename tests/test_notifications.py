"""SQS message bodies (loglake.notifications): pure unit tests.

The envelopes follow the structures documented by AWS: S3 event notifications
(event message structure 2.1), the SNS notification wrapper, S3 events delivered
through EventBridge, and the s3:TestEvent sent when a notification is configured.
"""
from __future__ import annotations

import json
from urllib.parse import quote_plus

import pytest

from loglake import notifications as n
from loglake.notifications import Envelope, ObjectRef, parse_body

BUCKET = "org-trail-bucket"
KEY = (
    "AWSLogs/o-a1b2c3d4e5/123456789012/CloudTrail/us-east-1/2024/01/31/"
    "123456789012_CloudTrail_us-east-1_20240131T2355Z_AbCd.json.gz"
)


def s3_record(key: str, event_name: str = "ObjectCreated:Put", bucket: str = BUCKET, size: int = 1024) -> dict:
    """One record of an S3 event notification; ``key`` is put in as S3 sends it (already encoded)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-01-31T23:55:12.345Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AROAEXAMPLEID:regionalDeliverySession"},
        "requestParameters": {"sourceIPAddress": "192.0.2.10"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "loglake-addapart",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {
                "key": key,
                "size": size,
                "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
                "sequencer": "0055AED6DCD90281E5",
            },
        },
    }


def s3_event(*records: dict) -> str:
    return json.dumps({"Records": list(records)})


def sns_wrap(message: str) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:trail-objects",
            "Subject": "Amazon S3 Notification",
            "Message": message,
            "Timestamp": "2024-01-31T23:55:13.001Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2eg==",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:trail-objects:0",
        }
    )


def eventbridge(key: str, detail_type: str = "Object Created", bucket: str = BUCKET, reason: str = "PutObject") -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": detail_type,
            "source": "aws.s3",
            "account": "111122223333",
            "time": "2024-01-31T23:55:12Z",
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": {
                    "key": key,
                    "size": 5,
                    "etag": "b1946ac92492d2347c6235b4d2611184",
                    "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                    "sequencer": "617f08299329d189",
                },
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "source-ip-address": "1.2.3.4",
                "reason": reason,
            },
        }
    )


TEST_EVENT = json.dumps(
    {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2024-01-31T15:57:02.089Z",
        "Bucket": BUCKET,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }
)


# --------------------------------------------------------------------------- plain S3


def test_s3_event_with_several_records():
    keys = [KEY, KEY.replace("2024/01/31", "2024/02/01"), "trail/AWSLogs/123456789012/CloudTrail/eu-west-2r/x.json.gz"]
    body = s3_event(*(s3_record(k, bucket=f"bucket-{i}") for i, k in enumerate(keys)))
    env = parse_body(body)
    assert env == Envelope(n.S3, tuple(ObjectRef(f"bucket-{i}", k) for i, k in enumerate(keys)), 0, "")


@pytest.mark.parametrize(
    "encoded, decoded",
    [
        ("a+b.json.gz", "a b.json.gz"),  # form encoding: + is a space
        ("t%3A10%3A47.json.gz", "t:10:47.json.gz"),
        ("c%2B%2B.json.gz", "c++.json.gz"),
        ("100%25.json.gz", "100%.json.gz"),
        ("literal%2541.json.gz", "literal%41.json.gz"),  # decoded once: %2541 -> %41, never -> A
        ("x%252B.json.gz", "x%2B.json.gz"),  # and %252B -> %2B, never -> +
        ("%C3%BC%E6%97%A5.json.gz", "ü日.json.gz"),  # UTF-8 percent-encoding
        ("dt%3D2024-01-31/part.json.gz", "dt=2024-01-31/part.json.gz"),
        (KEY, KEY),
    ],
)
def test_s3_keys_are_url_decoded_exactly_once(encoded, decoded):
    env = parse_body(s3_event(s3_record(encoded)))
    assert env.kind == n.S3
    assert env.objects == (ObjectRef(BUCKET, decoded),)


@pytest.mark.parametrize(
    "key", ["a b+c:d%e.json.gz", "100%.json.gz", "%41", "c++/ü 日本/x=1&y.json.gz", "a%2Bb", "~!@#$^*()[]{}"]
)
def test_s3_decoding_inverts_s3s_encoding(key):
    # S3 encodes keys like quote_plus; whatever the key, one decode gives it back.
    assert parse_body(s3_event(s3_record(quote_plus(key, safe="/")))).objects[0].key == key


def test_non_creation_records_are_counted_in_ignored():
    body = s3_event(
        s3_record("a.json.gz"),
        s3_record("b.json.gz", event_name="ObjectRemoved:Delete"),
        s3_record("c.json.gz", event_name="ObjectRemoved:DeleteMarkerCreated"),
        s3_record("d.json.gz", event_name="ObjectRestore:Completed"),
        s3_record("e.json.gz", event_name="ObjectCreated:CompleteMultipartUpload"),
        s3_record("f.json.gz", event_name="ObjectCreated:Copy"),
    )
    env = parse_body(body)
    assert env.kind == n.S3
    assert [o.key for o in env.objects] == ["a.json.gz", "e.json.gz", "f.json.gz"]
    assert env.ignored == 3


def test_only_deletes():
    env = parse_body(s3_event(s3_record("a", event_name="ObjectRemoved:Delete")))
    assert (env.kind, env.objects, env.ignored) == (n.S3, (), 1)


def test_empty_records_list():
    assert parse_body(s3_event()) == Envelope(n.S3)


def test_bytes_body_is_accepted():
    assert parse_body(s3_event(s3_record("a+b")).encode()).objects == (ObjectRef(BUCKET, "a b"),)


# --------------------------------------------------------------------------- SNS


def test_sns_wrapped_s3_event():
    body = sns_wrap(s3_event(s3_record("x%3Ay+z.json.gz"), s3_record("k", event_name="ObjectRemoved:Delete")))
    env = parse_body(body)
    assert env.kind == n.SNS
    assert env.objects == (ObjectRef(BUCKET, "x:y z.json.gz"),)
    assert env.ignored == 1
    assert env.error == ""


def test_sns_wrapped_keys_are_decoded_once_only():
    # SNS JSON-escapes the message; it does not URL-encode it again.
    assert parse_body(sns_wrap(s3_event(s3_record("100%25")))).objects[0].key == "100%"


# --------------------------------------------------------------------------- EventBridge


def test_eventbridge_object_created():
    env = parse_body(eventbridge(KEY))
    assert env == Envelope(n.EVENTBRIDGE, (ObjectRef(BUCKET, KEY),), 0, "")


def test_the_object_size_is_taken_when_the_notification_gives_one():
    # A hint for the run's read-ahead budget (the inbox carries it); not part of identity.
    assert [o.size for o in parse_body(s3_event(s3_record(KEY, size=777))).objects] == [777]
    assert [o.size for o in parse_body(eventbridge(KEY)).objects] == [5]
    record = s3_record(KEY)
    record["s3"]["object"]["size"] = "big"
    assert [o.size for o in parse_body(s3_event(record)).objects] == [0]
    del record["s3"]["object"]["size"]
    assert [o.size for o in parse_body(s3_event(record)).objects] == [0]


@pytest.mark.parametrize("key", ["c++/a+b.json.gz", "100%25.json.gz", "t:10:47 x.json.gz", "%41"])
def test_eventbridge_keys_are_not_decoded(key):
    assert parse_body(eventbridge(key)).objects == (ObjectRef(BUCKET, key),)


@pytest.mark.parametrize(
    "detail_type", ["Object Deleted", "Object Restore Completed", "Object Tags Added", "Object Storage Class Changed"]
)
def test_eventbridge_other_events_are_ignored(detail_type):
    env = parse_body(eventbridge(KEY, detail_type=detail_type, reason="DeleteObject"))
    assert (env.kind, env.objects, env.ignored, env.error) == (n.EVENTBRIDGE, (), 1, "")


def test_eventbridge_from_another_source_is_invalid():
    doc = json.loads(eventbridge(KEY))
    doc["source"] = "aws.ec2"
    assert parse_body(json.dumps(doc)).kind == n.INVALID


# --------------------------------------------------------------------------- test events


def test_s3_test_event():
    assert parse_body(TEST_EVENT) == Envelope(n.TEST_EVENT)


def test_sns_wrapped_test_event():
    env = parse_body(sns_wrap(TEST_EVENT))
    assert (env.kind, env.objects, env.error) == (n.TEST_EVENT, (), "")


# --------------------------------------------------------------------------- invalid bodies


def _record_without(*path: str) -> str:
    rec = s3_record("k")
    node = rec
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return s3_event(rec)


EB_CREATED = {"source": "aws.s3", "detail-type": "Object Created"}

INVALID_BODIES = {
    "not json": "this is not json",
    "empty": "",
    "truncated json": s3_event(s3_record("k"))[:-5],
    "json array": json.dumps([json.loads(s3_event(s3_record("k")))]),
    "json string": json.dumps("Records"),
    "json number": "42",
    "json null": "null",
    "object without Records": json.dumps({"Message": "hello"}),
    "Records not a list": json.dumps({"Records": {"s3": {}}}),
    "non-s3 eventSource": s3_event({**s3_record("k"), "eventSource": "aws:sqs"}),
    "one bad record among good": s3_event(s3_record("a"), {**s3_record("b"), "eventSource": "aws:kinesis"}),
    "record not an object": json.dumps({"Records": ["aws:s3"]}),
    "sns with non-JSON message": sns_wrap("not json at all"),
    "sns with JSON array message": sns_wrap("[1, 2]"),
    "sns with a non-S3 message": sns_wrap(json.dumps({"alarm": "ALARM"})),
    "sns wrapping eventbridge": sns_wrap(eventbridge(KEY)),
    "missing s3.object.key": _record_without("s3", "object", "key"),
    "missing s3.object": _record_without("s3", "object"),
    "missing s3.bucket.name": _record_without("s3", "bucket", "name"),
    "missing s3": _record_without("s3"),
    "s3 not an object": s3_event({**s3_record("k"), "s3": "nope"}),
    "eventbridge without detail.object": json.dumps({**EB_CREATED, "detail": {"bucket": {"name": BUCKET}}}),
    "eventbridge detail not an object": json.dumps({**EB_CREATED, "detail": 1}),
}


@pytest.mark.parametrize("body", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
def test_invalid_bodies_are_results_not_exceptions(body):
    env = parse_body(body)
    assert env.kind == n.INVALID
    assert isinstance(env.error, str) and env.error
    assert env.objects == ()


def test_invalid_error_says_which_record():
    body = s3_event(s3_record("a"), s3_record("b"), {**s3_record("c"), "eventSource": "aws:sqs"})
    assert "Records[2]" in parse_body(body).error


def test_none_body_is_invalid():
    assert parse_body(None).kind == n.INVALID


WRONG_TYPED_KEYS = {
    "s3 key null": s3_event({**s3_record("k"), "s3": {"bucket": {"name": BUCKET}, "object": {"key": None}}}),
    "s3 key number": s3_event({**s3_record("k"), "s3": {"bucket": {"name": BUCKET}, "object": {"key": 123}}}),
    "s3 key list": s3_event({**s3_record("k"), "s3": {"bucket": {"name": BUCKET}, "object": {"key": ["a"]}}}),
    "eventbridge key null": json.dumps({**EB_CREATED, "detail": {"bucket": {"name": BUCKET}, "object": {"key": None}}}),
    "deeply nested json": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("body", WRONG_TYPED_KEYS.values(), ids=WRONG_TYPED_KEYS.keys())
def test_wrong_typed_keys_and_deep_nesting_are_invalid(body):
    env = parse_body(body)
    assert env.kind == n.INVALID and env.error
