"""AddAPart against a real moto server: notifications in, Glue partitions out.

Faults (throttling, outages, per-entry errors) are injected at botocore's transport
hook for chosen requests; every other request reaches the moto server for real.
"""
from __future__ import annotations

import datetime as dt
import gzip
import json
from urllib.parse import quote_plus

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config as BotoConfig

from loglake import addapart, catalog, keys
from loglake.addapart import AddAPart, Message
from loglake.catalog import PartitionRegistrar
from loglake.config import config_from_dict
from loglake.sources.cloudtrail import SOURCE as CLOUDTRAIL_SOURCE
from loglake.sources.cloudwatch import SOURCE as CLOUDWATCH_SOURCE

BUCKET = "trail-bucket"


def make_config(**filters):
    return config_from_dict(
        {"sources": {"cloudtrail": {"bucket": BUCKET}}, "catalog": {"database": "lake"}, "filters": filters}
    )


def setup_catalog(glue, config):
    catalog.ensure_database(glue, config.catalog.database)
    catalog.ensure_table(
        glue,
        config.catalog.database,
        catalog.table_input(
            config.table("cloudtrail", "raw"),
            CLOUDTRAIL_SOURCE.raw_schema,
            f"s3://{BUCKET}/AWSLogs/",
            "cloudtrail_json",
        ),
    )


def fresh_glue(endpoint):
    """A client of its own, so fault hooks never leak into other tests; no botocore retries."""
    return boto3.client(
        "glue", endpoint_url=endpoint, region_name="us-east-1", config=BotoConfig(retries={"max_attempts": 1})
    )


def registrar(glue, config):
    return PartitionRegistrar(glue, config.catalog.database, base_delay=0.001, max_delay=0.01)


def ct_key(account="123456789012", region="us-east-1", day=dt.date(2024, 8, 1), org="o-abcdefghij", name="f"):
    org_part = f"{org}/" if org else ""
    return (
        f"AWSLogs/{org_part}{account}/CloudTrail/{region}/{day:%Y/%m/%d}/"
        f"{account}_CloudTrail_{region}_{day:%Y%m%d}T0000Z_{name}.json.gz"
    )


def s3_body(keys, bucket=BUCKET):
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": "us-east-1",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(k, safe="/"), "size": 1}},
                }
                for k in keys
            ]
        }
    )


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


class GlueFaults:
    """Answers chosen requests of one Glue operation before they reach the server.

    ``rule(body, n)`` sees the request body and the call number; it returns None to let
    the request through, or ``(status, payload)`` to answer with that JSON instead.
    """

    def __init__(self, glue, rule, operation="BatchCreatePartition"):
        self.rule = rule
        self.calls = 0
        self.injected = 0
        glue.meta.events.register(f"before-send.glue.{operation}", self._before_send)

    def _before_send(self, request, **_):
        self.calls += 1
        verdict = self.rule(request.body.decode() if request.body else "", self.calls)
        if verdict is None:
            return None
        self.injected += 1
        status, payload = verdict
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        if "__type" in payload:
            headers["x-amzn-ErrorType"] = payload["__type"]
        return AWSResponse(request.url, status, headers, _Raw(json.dumps(payload).encode()))


def throttle(status=400):
    return status, {"__type": "ThrottlingException", "message": "Rate exceeded"}


def partitions_in(glue, config):
    return {
        tuple(p["Values"]): p["StorageDescriptor"]["Location"]
        for p in catalog.list_partitions(glue, config.catalog.database, config.table("cloudtrail", "raw"))
    }


# --------------------------------------------------------------------------- end to end


def test_s3_notifications_through_sqs_register_partitions(aws):
    """Real wiring: put objects, moto sends S3 notifications to SQS, drain registers them."""
    config = make_config()
    setup_catalog(aws.glue, config)
    aws.s3.create_bucket(Bucket=BUCKET)
    queue = aws.sqs.create_queue(QueueName="q")["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    # A prefix with a space and a colon: S3 notifications URL-encode keys.
    prefix = "trail logs/x:y/"
    good = [prefix + ct_key(name="a"), prefix + ct_key(name="b"), prefix + ct_key(region="me-northwest-3r", name="c")]
    junk = [
        prefix + "AWSLogs/o-abcdefghij/123456789012/CloudTrail-Digest/us-east-1/2024/08/01/d.json.gz",
        "random/junk.bin",
    ]
    for key in good + junk:
        aws.s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(b'{"Records":[]}'))

    outcome = addapart.drain(AddAPart(config, glue=aws.glue), queue, sqs=aws.sqs)

    assert outcome.test_events == 1  # sent when the notification was configured
    assert outcome.objects == 5
    assert outcome.key_reasons == {"digest": 1, "no_layout_match": 1}
    assert outcome.created == 2 and outcome.failed == 0
    assert partitions_in(aws.glue, config) == {
        ("o-abcdefghij", "123456789012", "us-east-1", "2024-08-01"):
            f"s3://{BUCKET}/{prefix}AWSLogs/o-abcdefghij/123456789012/CloudTrail/us-east-1/2024/08/01/",
        ("o-abcdefghij", "123456789012", "me-northwest-3r", "2024-08-01"):
            f"s3://{BUCKET}/{prefix}AWSLogs/o-abcdefghij/123456789012/CloudTrail/me-northwest-3r/2024/08/01/",
    }
    left = aws.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
    assert left["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_partition_storage_descriptor_comes_from_the_table(aws):
    config = make_config()
    setup_catalog(aws.glue, config)
    AddAPart(config, glue=aws.glue).process([Message("m1", s3_body([ct_key(org=None)]))])
    part = aws.glue.get_partition(
        DatabaseName="lake", TableName="from_cloudtrail_raw",
        PartitionValues=["none", "123456789012", "us-east-1", "2024-08-01"],
    )["Partition"]
    table = aws.glue.get_table(DatabaseName="lake", Name="from_cloudtrail_raw")["Table"]
    assert part["StorageDescriptor"]["InputFormat"] == table["StorageDescriptor"]["InputFormat"]
    assert part["StorageDescriptor"]["SerdeInfo"] == table["StorageDescriptor"]["SerdeInfo"]
    assert part["StorageDescriptor"]["Location"] == (
        f"s3://{BUCKET}/AWSLogs/123456789012/CloudTrail/us-east-1/2024/08/01/"
    )


def test_every_envelope_and_test_events(aws):
    config = make_config()
    setup_catalog(aws.glue, config)
    k1, k2, k3 = (ct_key(day=dt.date(2024, 8, d)) for d in (1, 2, 3))
    sns = json.dumps({"Type": "Notification", "Message": s3_body([k2])})
    eventbridge = json.dumps(
        {"version": "0", "detail-type": "Object Created", "source": "aws.s3",
         "detail": {"bucket": {"name": BUCKET}, "object": {"key": k3}}}
    )
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET})
    outcome = AddAPart(config, glue=aws.glue).process(
        [Message("a", s3_body([k1])), Message("b", sns), Message("c", eventbridge), Message("d", test_event)]
    )
    assert outcome.created == 3 and outcome.test_events == 1
    assert outcome.lambda_response() == {"batchItemFailures": []}
    assert {v[3] for v in partitions_in(aws.glue, config)} == {"2024-08-01", "2024-08-02", "2024-08-03"}


def test_lambda_handler_module_is_thin_and_works(aws, monkeypatch):
    """addapart/handler.py, imported as Lambda would, against the moto server."""
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("LOGLAKE__CATALOG__DATABASE", "lake")
    monkeypatch.setenv("LOGLAKE__AWS__ENDPOINT_URL", aws.endpoint)
    monkeypatch.setenv("LOGLAKE__SOURCES__CLOUDTRAIL__BUCKET", BUCKET)
    config = make_config()
    setup_catalog(aws.glue, config)
    path = Path(__file__).resolve().parents[1] / "addapart" / "handler.py"
    spec = importlib.util.spec_from_file_location("addapart_handler", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    event = {"Records": [{"messageId": "m1", "body": s3_body([ct_key()])}, {"messageId": "m2", "body": "{not json"}]}
    assert module.handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert len(partitions_in(aws.glue, config)) == 1


# --------------------------------------------------------------------------- batching


def test_250_new_partitions_take_3_calls_and_known_ones_take_none(aws):
    config = make_config()
    setup_catalog(aws.glue, config)
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(250)]
    # 250 partitions spread over 25 messages, each key delivered twice (SQS is at-least-once).
    messages = [Message(f"m{i}", s3_body([ct_key(day=d) for d in days[i * 10 : i * 10 + 10]] * 2)) for i in range(25)]
    app = AddAPart(config, glue=aws.glue)

    first = app.process(messages)
    assert (first.partitions, first.created, first.glue_calls) == (250, 250, 3)
    second = app.process(messages)
    assert (second.created, second.existed, second.glue_calls) == (0, 250, 0)
    # A new container has an empty cache: AlreadyExists entries count as success.
    third = AddAPart(config, glue=aws.glue).process(messages)
    assert (third.created, third.existed, third.failed, third.glue_calls) == (0, 250, 0, 3)
    assert len(partitions_in(aws.glue, config)) == 250


def test_denied_accounts_and_regions_are_not_registered(aws):
    config = make_config(accounts={"deny": ["222222222222"]}, regions={"allow": ["us-east-1"]})
    setup_catalog(aws.glue, config)
    keys = [ct_key(), ct_key(account="222222222222"), ct_key(region="eu-west-1")]
    out = AddAPart(config, glue=aws.glue).process([Message("m", s3_body(keys))])
    assert out.key_reasons == {"denied_account": 1, "denied_region": 1}
    assert list(partitions_in(aws.glue, config)) == [("o-abcdefghij", "123456789012", "us-east-1", "2024-08-01")]


# --------------------------------------------------------------------------- faults


def test_throttling_is_retried_with_backoff(aws):
    config = make_config()
    glue = fresh_glue(aws.endpoint)
    setup_catalog(glue, config)
    faults = GlueFaults(glue, lambda body, n: throttle() if n <= 3 else None)
    app = AddAPart(config, registrar=registrar(glue, config))
    out = app.process([Message("m", s3_body([ct_key(day=dt.date(2024, 8, d)) for d in (1, 2)]))])
    assert faults.injected == 3 and faults.calls == 4
    assert out.created == 2 and out.failed_message_ids == []
    assert len(partitions_in(aws.glue, config)) == 2


def test_per_entry_transient_errors_are_retried(aws):
    config = make_config()
    glue = fresh_glue(aws.endpoint)
    setup_catalog(glue, config)

    def first_call_reports_entry_errors(body, n):
        if n > 1:
            return None
        entries = json.loads(body)["PartitionInputList"]
        return 200, {"Errors": [{"PartitionValues": e["Values"],
                                 "ErrorDetail": {"ErrorCode": "InternalServiceException", "ErrorMessage": "x"}}
                                for e in entries]}

    faults = GlueFaults(glue, first_call_reports_entry_errors)
    out = AddAPart(config, registrar=registrar(glue, config)).process([Message("m", s3_body([ct_key()]))])
    assert faults.calls == 2 and out.created == 1 and out.failed == 0


def test_partial_batch_failure_returns_only_the_failed_messages(aws):
    """Partitions of account 222... keep failing; only messages that need them are retried."""
    config = make_config()
    glue = fresh_glue(aws.endpoint)
    setup_catalog(glue, config)
    GlueFaults(glue, lambda body, n: throttle() if "222222222222" in body else None)
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(100)]
    messages = [Message(f"ok{i}", s3_body([ct_key(day=d) for d in days[i * 20 : i * 20 + 20]])) for i in range(5)]
    messages += [
        Message("bad1", s3_body([ct_key(account="222222222222")])),
        Message("mixed", s3_body([ct_key(day=days[0]), ct_key(account="222222222222", day=days[1])])),
    ]
    out = AddAPart(config, registrar=registrar(glue, config)).process(messages)
    assert out.lambda_response() == {"batchItemFailures": [{"itemIdentifier": "bad1"}, {"itemIdentifier": "mixed"}]}
    assert out.created == 100 and out.failed == 2
    assert {v[1] for v in partitions_in(aws.glue, config)} == {"123456789012"}


def test_glue_outage_fails_every_message_and_drain_keeps_them(aws):
    config = make_config()
    glue = fresh_glue(aws.endpoint)
    setup_catalog(glue, config)
    aws.s3.create_bucket(Bucket=BUCKET)
    queue = aws.sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    for i in range(3):
        aws.sqs.send_message(QueueUrl=queue, MessageBody=s3_body([ct_key(day=dt.date(2024, 8, i + 1))]))
    GlueFaults(glue, lambda body, n: (500, {"__type": "InternalServiceException", "message": "down"}))
    out = addapart.drain(AddAPart(config, registrar=registrar(glue, config)), queue, sqs=aws.sqs, wait_seconds=0)
    assert len(out.failed_message_ids) == 3 and out.created == 0
    attrs = aws.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "3"  # not deleted: SQS redelivers


def test_poison_message_is_reported_alone(aws):
    config = make_config()
    setup_catalog(aws.glue, config)
    out = AddAPart(config, glue=aws.glue).process(
        [Message("good", s3_body([ct_key()])), Message("poison", "\x00garbage"), Message("array", "[1,2]")]
    )
    assert out.lambda_response() == {"batchItemFailures": [{"itemIdentifier": "poison"}, {"itemIdentifier": "array"}]}
    assert out.invalid_messages == 2 and out.created == 1


def test_backfill_registers_existing_objects(aws):
    config = make_config()
    setup_catalog(aws.glue, config)
    aws.s3.create_bucket(Bucket=BUCKET)
    for d in (1, 2):
        for name in ("a", "b"):
            aws.s3.put_object(Bucket=BUCKET, Key=ct_key(day=dt.date(2024, 8, d), name=name), Body=b"x")
    aws.s3.put_object(Bucket=BUCKET, Key="AWSLogs/123456789012/CloudTrail/ConfigWritabilityCheckFile", Body=b"")
    out = addapart.backfill(AddAPart(config, glue=aws.glue), CLOUDTRAIL_SOURCE, BUCKET, "AWSLogs/")
    assert (out.objects, out.created, out.glue_calls) == (5, 2, 1)
    assert out.key_reasons == {"config_writability_check": 1}


def test_burst_of_10000_object_events_across_50_partitions_takes_a_handful_of_calls(aws):
    config = make_config()
    setup_catalog(aws.glue, config)
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(50)]
    keys = [ct_key(day=days[i % 50], name=f"f{i}") for i in range(10_000)]
    messages = [Message(f"m{i}", s3_body(keys[i * 10 : i * 10 + 10])) for i in range(1000)]
    app = AddAPart(config, glue=aws.glue)
    total_calls = created = 0
    for i in range(0, len(messages), 10):  # Lambda's default SQS batch: 10 messages
        out = app.process(messages[i : i + 10])
        assert out.failed_message_ids == []
        total_calls += out.glue_calls
        created += out.created
    assert created == 50 and len(partitions_in(aws.glue, config)) == 50
    assert total_calls <= 2  # the container cache answers the other 99 batches


# --------------------------------------------------------------------------- key errors -> quarantine

def lake_config(lake: str, **extra):
    return config_from_dict({"sources": {"cloudtrail": {"bucket": BUCKET}}, "catalog": {"database": "lake"},
                             "readready": {"location": lake}, **extra})


def test_key_errors_are_handed_to_the_sources_next_run(aws, tmp_path):
    from loglake import rejected_keys

    lake = f"file://{tmp_path}/lake"
    config = lake_config(lake)
    setup_catalog(aws.glue, config)
    bad = ["AWSLogs/123456789012/CloudTrail/us-east-1/2024/02/30/x.json.gz",
           "AWSLogs/123456789012/CloudTrail/us-east-1/2024/08/01/x.json", ct_key(org="o-UPPER")]
    out = AddAPart(config, glue=aws.glue).process([Message("m1", s3_body([ct_key(), *bad]))])
    assert out.failed_message_ids == [] and out.created == 1  # acknowledged: retrying cannot fix a key
    assert out.keys_for_quarantine == 3
    claimed = rejected_keys.claim(lake, "cloudtrail")
    assert len(claimed.files) == 1
    assert sorted((k.key, k.reason) for k, _ in claimed.results) == sorted([
        (f"s3://{BUCKET}/{bad[0]}", "bad_date"), (f"s3://{BUCKET}/{bad[1]}", "not_json_gz"),
        (f"s3://{BUCKET}/{bad[2]}", "bad_org")])
    assert rejected_keys.claim(lake, "cloudwatch").files == ()


def test_a_key_error_that_cannot_be_written_fails_its_message_for_a_retry(aws):
    config = lake_config("s3://no-such-lake-bucket/lake")
    setup_catalog(aws.glue, config)
    bad_date = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/02/30/x.json.gz"
    out = AddAPart(config, glue=aws.glue).process(
        [Message("good", s3_body([ct_key()])), Message("bad", s3_body([bad_date]))])
    # Neither the key error nor the good key's inbox entry could be written: both retried.
    assert out.failed_message_ids == ["good", "bad"] and out.keys_for_quarantine == 0
    assert out.inbox_objects == 0 and out.created == 1


def test_new_objects_go_to_their_sources_inbox_for_the_next_scheduled_run(aws, tmp_path):
    from loglake import inbox

    lake = f"file://{tmp_path}/lake"
    config = lake_config(lake)
    setup_catalog(aws.glue, config)
    keys_ = [ct_key(name="a"), ct_key(name="b"), "AWSLogs/123456789012/CloudTrail-Digest/x.json.gz",
             "AWSLogs/123456789012/CloudTrail/us-east-1/2024/02/30/x.json.gz"]
    body = json.loads(s3_body(keys_))
    for i, rec in enumerate(body["Records"]):
        rec["s3"]["object"]["size"] = 100 + i
    app = AddAPart(config, glue=aws.glue)
    out = app.process([Message("m1", json.dumps(body)), Message("m2", s3_body([ct_key(name="a")]))])
    assert out.failed_message_ids == [] and out.inbox_objects == 3  # a repeat is written; the run skips it
    files, objects, left = inbox.claim(lake, "cloudtrail")
    assert left == 0
    assert len(files) == 1  # one file per batch and source
    assert sorted((o.uri, o.size) for o in objects) == [  # each once; digests and key errors are not data
        (f"s3://{BUCKET}/{ct_key(name='a')}", 100), (f"s3://{BUCKET}/{ct_key(name='b')}", 101)]
    assert inbox.claim(lake, "cloudwatch") == ([], [], 0)
    inbox.release(files)
    assert inbox.claim(lake, "cloudtrail") == ([], [], 0)
    # Without a lake in the config there is no inbox: scheduled runs list instead.
    out = AddAPart(lake_config(""), glue=aws.glue).process([Message("m3", s3_body([ct_key(name="c")]))])
    assert out.failed_message_ids == [] and out.inbox_objects == 0


def test_the_inbox_is_written_before_glue_is_asked_and_a_lambda_near_its_end_does_not_retry(aws, tmp_path):
    """A Glue that throttles or hangs until the function times out used to cost the batch
    its inbox file, written after registration: the scheduled run never saw the objects.
    The hand-off comes first, and with the Lambda's context no retry starts within
    LAMBDA_RESERVE_S of its end, so the batch still answers which messages failed."""
    from types import SimpleNamespace

    from loglake import inbox

    lake = f"file://{tmp_path}/lake"
    config = lake_config(lake)
    glue = fresh_glue(aws.endpoint)
    setup_catalog(glue, config)
    seen_at_glue = []

    def throttled_after_looking(body, n):
        seen_at_glue.append(len(list((tmp_path / "lake" / "_state" / "cloudtrail" / "inbox").glob("*"))))
        return throttle()

    faults = GlueFaults(glue, throttled_after_looking)
    app = AddAPart(config, registrar=registrar(glue, config))
    event = {"Records": [{"messageId": "m1", "body": s3_body([ct_key(name="a"), ct_key(name="b")])}]}
    roomy = SimpleNamespace(get_remaining_time_in_millis=lambda: 60_000)
    assert addapart.handle_lambda_event(event, app, roomy) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    tried = faults.calls
    assert tried >= 6 and seen_at_glue[0] == 1  # retried; the inbox file was there before Glue
    files, objects, _ = inbox.claim(lake, "cloudtrail")
    assert sorted(o.uri for o in objects) == [f"s3://{BUCKET}/{ct_key(name=n)}" for n in "ab"]
    inbox.release(files)
    # SQS delivers it again to a function near its end: handed over, and Glue not tried
    ending = SimpleNamespace(get_remaining_time_in_millis=lambda: addapart.LAMBDA_RESERVE_S * 1000 - 1)
    assert addapart.handle_lambda_event(event, app, ending) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert faults.calls == tried and len(inbox.claim(lake, "cloudtrail")[1]) == 2


def test_addapart_waits_for_glue_at_most_a_fraction_of_the_lambda_timeout():
    from loglake.deploy import LAMBDA_TIMEOUT_S

    glue = AddAPart(make_config()).registrar.glue
    assert glue.meta.config.read_timeout == glue.meta.config.connect_timeout == addapart.GLUE_TIMEOUT_S
    # a retry started just before the reserve ends (connect + answer) before the function does
    assert 2 * addapart.GLUE_TIMEOUT_S < addapart.LAMBDA_RESERVE_S < LAMBDA_TIMEOUT_S / 2


def test_backfill_of_one_source_classifies_keys_against_that_source_only(aws):
    config = config_from_dict({"sources": {"cloudtrail": {"bucket": BUCKET}, "cloudwatch": {"bucket": BUCKET}},
                               "catalog": {"database": "lake"}})
    setup_catalog(aws.glue, config)
    catalog.ensure_table(aws.glue, "lake", catalog.table_input(
        config.table("cloudwatch", "raw"), CLOUDWATCH_SOURCE.raw_schema, f"s3://{BUCKET}/", "cloudwatch_json"))
    aws.s3.create_bucket(Bucket=BUCKET)
    aws.s3.put_object(Bucket=BUCKET, Key=ct_key(), Body=b"x")
    aws.s3.put_object(Bucket=BUCKET, Key="2024/08/01/12/stream-1-2024-08-01-12-00-00-abc", Body=b"x")
    out = addapart.backfill(AddAPart(config, glue=aws.glue), CLOUDWATCH_SOURCE, BUCKET, "")
    assert (out.objects, out.created) == (2, 1)
    assert out.key_reasons == {"no_layout_match": 1}  # the CloudTrail key is not a Firehose object
    assert [p["Values"] for p in catalog.list_partitions(aws.glue, "lake", config.table("cloudwatch", "raw"))] == [
        ["2024-08-01", "12"]]
    assert list(catalog.list_partitions(aws.glue, "lake", config.table("cloudtrail", "raw"))) == []


# --------------------------------------------------------------------------- routing


def _ref(key: str, bucket: str = BUCKET):
    from loglake import notifications

    return notifications.ObjectRef(bucket, key, 1)


def test_a_source_without_a_bucket_receives_no_key():
    """Only CloudTrail names the bucket: a Firehose-shaped key there is CloudTrail's to
    judge (no layout match, quarantined), not CloudWatch's, whose bucket is not set."""
    firehose_key = "2024/12/01/10/stream-1-2024-12-01-10-00-00-abc"
    source, result = addapart.classify(_ref(firehose_key), make_config())
    assert source.name == "cloudtrail" and result.reason == keys.NO_LAYOUT_MATCH
    source, result = addapart.classify(_ref(ct_key(), bucket="another-bucket"), make_config())
    assert source is None and result.reason == addapart.UNKNOWN_BUCKET


def test_in_a_shared_bucket_the_source_whose_layout_claims_a_key_gets_it(monkeypatch):
    """Several AWSLogs/ services in one bucket: CloudTrail skips another service's key
    (other_service), and the source whose layout it is takes it, whatever their order."""
    import dataclasses

    from loglake import sources

    def service_layout(key, config):  # a second AWSLogs/ source, as Bedrock's will be
        if "/BedrockModelInvocationLogs/" not in key:
            return keys.KeyResult(key, keys.SKIPPED, keys.OTHER_SERVICE, "")
        if "/9999/" in key:
            return keys.KeyResult(key, keys.ERROR, keys.BAD_DATE, "9999")
        return keys.KeyResult(key, keys.OK, partition=keys.Partition(("123456789012",), "AWSLogs/x/"))

    other = dataclasses.replace(CLOUDWATCH_SOURCE, classify_key=service_layout)
    config = config_from_dict({"sources": {"cloudtrail": {"bucket": BUCKET}, "cloudwatch": {"bucket": BUCKET}}})
    bedrock_key = "AWSLogs/123456789012/BedrockModelInvocationLogs/us-east-1/2024/12/01/10/f.json.gz"
    for order in ([CLOUDTRAIL_SOURCE, other], [other, CLOUDTRAIL_SOURCE]):
        monkeypatch.setattr(addapart, "SOURCES", {s.name: s for s in order})
        assert addapart.classify(_ref(bedrock_key), config)[0] is other
        assert addapart.classify(_ref(ct_key()), config)[0] is CLOUDTRAIL_SOURCE
        # its layout, with a bad date: quarantined by it, not skipped as another service
        source, result = addapart.classify(_ref(bedrock_key.replace("/2024/", "/9999/")), config)
        assert source is other and result.reason == keys.BAD_DATE
        # a third service: skipped
        source, result = addapart.classify(_ref("AWSLogs/123456789012/vpcflowlogs/us-east-1/2024/12/01/f.gz"), config)
        assert result.status == keys.SKIPPED and result.reason == keys.OTHER_SERVICE
    assert sources.SOURCES["cloudwatch"] is CLOUDWATCH_SOURCE  # the registry itself is untouched



def test_the_real_sources_sharing_one_bucket_each_get_their_own_keys():
    """CloudTrail, Firehose and Bedrock in one bucket, with the real registry: Firehose's
    YYYY/MM/DD/HH/FILE tail also fits Bedrock's (and VPC flow logs') hourly AWSLogs/ keys,
    which used to go to CloudWatch, the first of equals, and be lost to its quarantine."""
    names = ("cloudtrail", "cloudwatch", "bedrock")
    config = config_from_dict({"sources": {name: {"bucket": BUCKET} for name in names}})
    bedrock_key = "AWSLogs/123456789012/BedrockModelInvocationLogs/us-east-1/2024/12/01/10/20241201T101010Z_ab.json.gz"
    source, result = addapart.classify(_ref(bedrock_key), config)
    assert source.name == "bedrock" and result.partition.values == ("123456789012", "us-east-1", "2024-12-01")
    source, result = addapart.classify(_ref(bedrock_key.replace("/10/", "/24/")), config)
    assert source.name == "bedrock" and result.reason == keys.BAD_HOUR
    source, result = addapart.classify(_ref(ct_key()), config)
    assert source.name == "cloudtrail" and result.ok
    firehose_key = "firehose/2024/12/01/10/stream-1-2024-12-01-10-00-00-abc"
    source, result = addapart.classify(_ref(firehose_key), config)
    assert source.name == "cloudwatch" and result.partition.values == ("2024-12-01", "10")
    vpc_key = "AWSLogs/123456789012/vpcflowlogs/us-east-1/2024/12/01/10/123456789012_vpcflowlogs_fl-1_abc.log.gz"
    source, result = addapart.classify(_ref(vpc_key), config)
    assert result.status == keys.SKIPPED and result.reason == keys.OTHER_SERVICE
    # a Firehose prefix that happens to end in AWSLogs/ACCOUNT/[NAME/] stays Firehose's (review finding)
    for prefix in ("AWSLogs/123456789012/firehose/", "AWSLogs/123456789012/", "logs/AWSLogs/cwl-stream/"):
        source, result = addapart.classify(_ref(prefix + "2024/12/01/10/s-1-abc"), config)
        assert source.name == "cloudwatch" and result.ok, prefix
