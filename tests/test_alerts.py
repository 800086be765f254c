"""Alerts: the rules (ddl/alerts), the window by publish order, sent-once state, the sinks.

Expectations come from the raw samples (which records a rule must find), not from the
rules' own SQL; sinks are tested against a local HTTP server and the moto server.
"""
from __future__ import annotations

import gzip
import http.server
import json
import threading

import pytest
import sqlglot
from sqlglot import exp

from conftest import ELASTIC_GZ, STRATUS_GZ, firehose_objects, place, session_records
from loglake import alert_rules, alert_sinks, alerts, cli
from loglake.config import config_from_dict
from loglake.sql import to_spark

# delivery days after each sample's last event (the gate checks events against it)
STRATUS_KEY = "AWSLogs/o-x7k2m9q4z/294599468799/CloudTrail/us-east-1/2024/12/01/294599468799_CloudTrail_a.json.gz"
ELASTIC_KEY = "AWSLogs/111111111111/CloudTrail/eu-west-1/2026/01/06/111111111111_CloudTrail_b.json.gz"
TAMPERING = {"StopLogging", "DeleteTrail", "UpdateTrail", "PutEventSelectors"}


def _raw_records(path) -> list[dict]:
    data = json.loads(gzip.decompress(path.read_bytes()))
    return data["Records"] if isinstance(data, dict) else data


@pytest.mark.parametrize("name", alert_rules.list_rules())
def test_every_rule_parses_names_its_output_columns_and_runs_on_both_engines(name):
    rule = alert_rules.load_rule(name)
    config = config_from_dict({})
    athena_sql = alert_rules.render_rule(rule, config, alert_rules.path_filter(["s3://lake/t/a.orc"]))
    tree = sqlglot.parse_one(athena_sql, read="trino")
    columns = {s.alias_or_name for s in tree.find(exp.Select).expressions}
    assert set(rule.key) <= columns and set(rule.message_fields) <= columns, (rule.key, rule.message_fields, columns)
    assert {"eventid", "sessionid"} & columns and "eventtime" in columns  # what every alert line carries
    assert '"$path" IN (\'s3://lake/t/a.orc\')' in athena_sql
    assert to_spark(alert_rules.render_rule(rule, config, "TRUE", database=""))
    assert rule.severity in alert_rules.SEVERITIES and rule.description


def test_the_rules_the_issue_asks_for_are_there():
    assert {"root_console_signin", "console_signin_without_mfa", "cloudtrail_tampering", "security_service_disabled",
            "root_access_key_created", "iam_privilege_change", "connect_instance_deleted",
            "session_credential_access"} <= set(alert_rules.list_rules())


@pytest.mark.parametrize(("text", "error"), [
    ("-- Alert: x\n-- Severity: high\n-- Description: d\n-- Key: eventid\nSELECT 1", "no message"),
    ("-- Alert: y\n-- Severity: high\n-- Description: d\n-- Key: eventid\n-- Message: m\n"
     "SELECT eventid FROM {database}.{cloudtrail_readready} WHERE {published}", "names it 'y'"),
    ("-- Alert: x\n-- Severity: urgent\n-- Description: d\n-- Key: eventid\n-- Message: m\n"
     "SELECT eventid FROM {database}.{cloudtrail_readready} WHERE {published}", "severity 'urgent'"),
    ("-- Alert: x\n-- Severity: high\n-- Description: d\n-- Key: eventid\n-- Message: m\n"
     "SELECT eventid FROM {database}.{cloudtrail_readready} WHERE true", "no {published}"),
    ("-- Alert: x\n-- Severity: high\n-- Description: d\n-- Key: eventid\n-- Message: m\n"
     "SELECT eventid FROM {database}.{cloudtrail_readready} a JOIN {database}.{cloudwatch_readready} b "
     "ON true WHERE {published}", "one readready table"),
])
def test_a_bad_rule_header_is_refused_naming_the_reason(text, error):
    with pytest.raises(ValueError, match=error.replace("{", r"\{").replace("}", r"\}")):
        alert_rules.parse_rule("x", text)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A lake written by the runs (in this process), CloudTrail from both real samples and
    the Session Manager fixture's keystrokes."""
    root = tmp_path_factory.mktemp("alerts")
    raw, out = root / "raw", root / "lake"
    place(raw, STRATUS_KEY, STRATUS_GZ)
    place(raw, ELASTIC_KEY, ELASTIC_GZ)
    for key, body in firehose_objects().items():
        place(raw, key, body)
    for source in ("cloudtrail", "cloudwatch"):
        assert cli.main(["-q", "run", source, "--raw", str(raw), "--out", str(out)]) == 0
    return out


def _run(spark, lake, sinks, **kw):
    config = config_from_dict(kw.pop("config", {}))
    return alerts.run(config, str(lake), sinks, lambda rule, files: alerts.spark_matches(spark, rule, config,
                                                                                        str(lake), files), **kw)


def test_rules_find_what_the_raw_samples_hold_once(spark, lake, tmp_path):
    sink = alert_sinks.FileSink(str(tmp_path / "alerts.jsonl"))
    first = _run(spark, lake, [sink], rules=["cloudtrail_tampering", "session_credential_access"])
    assert first["failed"] == 0 and first["window"]["runs"] == 2
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    raw = _raw_records(STRATUS_GZ) + _raw_records(ELASTIC_GZ)
    tampering = {r["eventID"] for r in raw
                 if r.get("eventSource") == "cloudtrail.amazonaws.com" and r.get("eventName") in TAMPERING}
    assert {a["eventid"] for a in lines if a["rule"] == "cloudtrail_tampering"} == tampering and len(tampering) >= 3
    shadow = {r["sessionId"] for r in session_records() if any("/etc/shadow" in x for x in r["sessionData"])}
    assert {a["sessionid"] for a in lines if a["rule"] == "session_credential_access"} >= shadow and shadow
    for a in lines:
        assert a["severity"] == "high" and a["eventtime"].startswith("20") and a["message"] and a["match"]
    deleted = next(a for a in lines if a["match"].get("eventname") == "DeleteTrail")
    assert deleted["message"].startswith("DeleteTrail on trail ") and deleted["match"]["trail"] in deleted["message"]

    again = _run(spark, lake, [sink], rules=["cloudtrail_tampering", "session_credential_access"])
    assert again["window"]["runs"] == 0 and all(r["sent"] == 0 for r in again["rules"].values())
    # each rule keeps its own place: a rule not run yet still takes the runs the others took
    others = _run(spark, lake, [sink], rules=["cloudtrail_tampering", "console_signin_without_mfa"])
    assert others["window"]["runs"] == 1 and others["rules"]["cloudtrail_tampering"]["matches"] == 0
    mfa = others["rules"]["console_signin_without_mfa"]
    assert mfa["sent"] == mfa["matches"] >= 1
    lines = [a for a in (json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines())]
    # a window over the same runs again (--since): every match is known, nothing is sent
    since = _run(spark, lake, [sink], rules=["cloudtrail_tampering"], since=alerts.parse_time("2000-01-01"))
    assert since["rules"]["cloudtrail_tampering"] == {"matches": len(tampering), "sent": 0,
                                                      "already_sent": len(tampering), "failed": 0}
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == len(lines)


def test_a_first_run_looks_back_only_as_far_as_configured(spark, lake, tmp_path):
    fresh = tmp_path / "lake"
    import shutil

    shutil.copytree(lake, fresh, ignore=shutil.ignore_patterns("_state"))
    out = _run(spark, fresh, [alert_sinks.FileSink(str(tmp_path / "a.jsonl"))],
               config={"alerts": {"first_run_lookback_hours": 0}})
    assert out["window"]["runs"] == 0 and not (tmp_path / "a.jsonl").exists()


class _Hook(http.server.BaseHTTPRequestHandler):
    fail_first = 0
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if _Hook.fail_first > 0:
            _Hook.fail_first -= 1
            self.send_response(503)
        else:
            _Hook.received.append(body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_fails_then_the_next_run_sends_what_was_not_recorded(spark, lake, tmp_path):
    fresh = tmp_path / "lake"
    import shutil

    shutil.copytree(lake, fresh, ignore=shutil.ignore_patterns("_state"))
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    try:
        _Hook.fail_first, _Hook.received = 10**6, []  # down: every attempt answers 503
        hook = alert_sinks.WebhookSink(url, attempts=2, pause=0.01)
        down = _run(spark, fresh, [hook], rules=["cloudtrail_tampering"])
        matches = down["rules"]["cloudtrail_tampering"]["matches"]
        assert down["failed"] == matches > 0 and down["rules"]["cloudtrail_tampering"]["sent"] == 0
        assert "HTTP 503 after 2 attempt(s)" in down["rules"]["cloudtrail_tampering"]["errors"][0]
        _Hook.fail_first = 1  # back up, after one more 503 (retried)
        up = _run(spark, fresh, [hook], rules=["cloudtrail_tampering"])
        assert up["failed"] == 0 and up["rules"]["cloudtrail_tampering"]["sent"] == matches
        assert len(_Hook.received) == matches
        assert all(b["text"].startswith("[high] cloudtrail_tampering: ") for b in _Hook.received)
        assert _run(spark, fresh, [hook], rules=["cloudtrail_tampering"])["window"]["runs"] == 0
    finally:
        server.shutdown()


def test_sns_sink_publishes_to_the_topic_on_moto(aws):
    sns = alerts.storage.client("sns", aws.endpoint, "us-east-1")
    topic = sns.create_topic(Name="loglake-alerts")["TopicArn"]
    queue = aws.sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    queue_arn = aws.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    sink = alert_sinks.parse_sink(f"sns:{topic}", lambda: sns)
    rule = alert_rules.load_rule("root_console_signin")
    row = {"eventid": "e-1", "eventtime": None, "account": "111122223333", "source_ip": "198.51.100.7",
           "result": "Success", "mfa_used": "No", "principal_arn": "arn:aws:iam::111122223333:root"}
    assert sink.send(alerts.alert_record(rule, row)) is None
    [msg] = aws.sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    body = json.loads(msg["Body"])
    assert body["Subject"] == "loglake high: root_console_signin"
    assert body["Message"].startswith("[high] root_console_signin: Root console sign-in (Success) to account "
                                      "111122223333 from 198.51.100.7, MFA used: No")
    bad = alert_sinks.parse_sink("sns:arn:aws:sns:us-east-1:123456789012:nope", lambda: sns)
    assert "nope" in bad.send(alerts.alert_record(rule, row))


@pytest.mark.parametrize(("spec", "error"), [
    ("slack", "expected file:PATH"), ("sns:topic", "topic ARN"), ("webhook:ftp://x", "http"), ("mail:x", "unknown")])
def test_bad_sinks_are_refused(spec, error):
    with pytest.raises(ValueError, match=error):
        alert_sinks.parse_sink(spec)


def _s3_lake(aws) -> tuple[str, str, str]:
    """A lake on the moto S3: one readready file and the runs row of the run that
    published it; an SNS topic with an SQS queue subscribed (raw delivery). Returns the
    file's partition path, the topic ARN and the queue URL."""
    import datetime as dt
    import io

    import pyarrow as pa
    import pyarrow.orc as orc

    from loglake.schema import RUNS
    from loglake.sources.cloudtrail import CLOUDTRAIL

    aws.s3.create_bucket(Bucket="lake")
    part = "org=o-x7k2m9q4z/account=294599468799/region=us-east-1/dt=2024-12-01"
    data = io.BytesIO()  # a readready file as the run wrote it (its rows do not matter here: Athena is canned)
    orc.write_table(pa.Table.from_pylist([], schema=CLOUDTRAIL.orc_arrow()), data, compression="zlib")
    aws.s3.put_object(Bucket="lake", Key=f"from_cloudtrail_readready/{part}/g-1/i-1-0.zlib.orc", Body=data.getvalue())
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    row = {c.name: None for c in RUNS.columns} | {
        "run_id": "20261130T000000Z-abc", "job": "cloudtrail_readready", "status": "published",
        "started_at": now, "finished_at": now, "published_files": json.dumps([f"{part}/g-1/i-1-0.zlib.orc"])}
    buf = io.BytesIO()
    orc.write_table(pa.Table.from_pylist([row], schema=RUNS.orc_arrow()), buf, compression="zlib")
    aws.s3.put_object(Bucket="lake", Key=f"runs/source=cloudtrail/run_date={now.date()}/r.orc", Body=buf.getvalue())
    sns = alerts.storage.client("sns", aws.endpoint, "us-east-1")
    topic = sns.create_topic(Name="loglake-alarms")["TopicArn"]
    queue = aws.sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return part, topic, queue


def _canned_tampering(aws) -> None:
    from test_queries import _moto_athena_results

    columns = ["eventid", "eventtime", "eventname", "trail", "principal", "account", "outcome"]
    _moto_athena_results(aws.endpoint, columns, [["e-1", "2024-12-01 10:00:00.000", "StopLogging", "org-trail",
                                                  "arn:aws:iam::294599468799:user/mallory", "294599468799",
                                                  "succeeded"]])


def test_the_athena_engine_limits_each_rule_to_the_published_files_on_moto(aws, monkeypatch, capsys):
    """The lake on the moto S3 (a runs row naming the file a run published), Athena on moto
    (canned rows: it runs no SQL), the matches to the SNS topic: the query Athena gets reads
    only that file ("$path"), and the match is recorded in the lake's alert state."""
    monkeypatch.setenv("LOGLAKE__AWS__ENDPOINT_URL", aws.endpoint)
    part, topic, queue = _s3_lake(aws)
    _canned_tampering(aws)
    argv = ["-q", "alerts", "run", "--lake", "s3://lake", "--engine", "athena", "--rule", "cloudtrail_tampering",
            "--sink", f"sns:{topic}", "--athena-output", "s3://athena-results/"]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rules"]["cloudtrail_tampering"] == {"matches": 1, "sent": 1, "already_sent": 0, "failed": 0}
    athena = alerts.storage.client("athena", aws.endpoint, "us-east-1")
    [qid] = athena.list_query_executions()["QueryExecutionIds"]
    query = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Query"]
    assert f"\"$path\" IN ('s3://lake/from_cloudtrail_readready/{part}/g-1/i-1-0.zlib.orc')" in query
    assert "FROM loglake.from_cloudtrail_readready" in query
    [msg] = aws.sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    assert msg["Body"].startswith("[high] cloudtrail_tampering: StopLogging on trail org-trail by "
                                  "arn:aws:iam::294599468799:user/mallory")
    state = json.loads(aws.s3.get_object(Bucket="lake", Key="_state/alerts/sent/cloudtrail_tampering.json")["Body"]
                       .read())
    assert len(state) == 1
    assert cli.main(argv) == 0  # the run was taken: nothing new, no query
    assert json.loads(capsys.readouterr().out)["window"]["runs"] == 0
    assert len(athena.list_query_executions()["QueryExecutionIds"]) == 1


def test_the_alerts_glue_job_publishes_to_its_topic_and_fails_when_it_cannot(aws, tmp_path, capsys):
    """glue_jobs/alerts.py's entry point with the arguments the stack gives it (Glue's
    argument parser, the config from a file): all rules through Athena on moto."""
    from loglake import jobs

    _, topic, queue = _s3_lake(aws)
    config = tmp_path / "loglake.yaml"
    config.write_text(json.dumps({"readready": {"location": "s3://lake"},
                                  "aws": {"endpoint_url": aws.endpoint, "region": "us-east-1"}}))
    base = ["alerts.py", "--JOB_NAME", "alerts", "--config", str(config), "--athena-output", "s3://athena-results/",
            "--workgroup", "primary"]
    gone = "arn:aws:sns:us-east-1:123456789012:deleted-topic"
    _canned_tampering(aws)  # the first rule Athena answers (cloudtrail_tampering, in name order)
    with pytest.raises(RuntimeError, match="1 failed"):
        jobs.alerts([*base, "--sink", f"sns:{gone}"])
    failed = json.loads(capsys.readouterr().out)  # the summary, printed before the job fails
    assert failed["rules"]["cloudtrail_tampering"] == {**failed["rules"]["cloudtrail_tampering"], "matches": 1,
                                                       "sent": 0, "failed": 1}
    assert not aws.s3.list_objects_v2(Bucket="lake", Prefix="_state/alerts/sent/").get("Contents")
    _canned_tampering(aws)  # the same match, Athena answering again
    summary = jobs.alerts([*base, "--sink", f"sns:{topic}"])
    assert summary["failed"] == 0 and summary["rules"]["cloudtrail_tampering"]["sent"] == 1
    [msg] = aws.sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    assert msg["Body"].startswith("[high] cloudtrail_tampering: StopLogging")
