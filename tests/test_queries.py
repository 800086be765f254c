"""The analysts' query library (ddl/queries), proven on readready output the real jobs wrote.

One lake per module: the real stratus-red-team and elastic CloudTrail samples, the
documented console sign-in records of awsdocs, the Session Manager fixture as Firehose
objects, and this repository's Connect and Amazon Q fixtures, converted by
``loglake run``; the Connect ListUsers fixture loaded by ``loglake lookup load``. Every
query's Trino SQL is transpiled by sqlglot and run on local Spark, and its rows are
compared with rows derived here, by hand, from the raw records (never from query output).
"""
from __future__ import annotations

import collections
import datetime as dt
import gzip
import json
import re
from pathlib import Path

import pytest
import sqlglot

from conftest import ELASTIC_GZ, REPO, SAMPLES, STRATUS_GZ, firehose_objects, place, records_of, session_records
from loglake import athena as athena_runs
from loglake import cli, lookup, query_library, sql
from loglake.config import Config, config_from_dict

FIXTURES = REPO / "tests" / "fixtures"
CONNECT = FIXTURES / "connect_cloudtrail_records.json"
AMAZONQ = FIXTURES / "amazonq_cloudtrail_records.json"
LIST_USERS = FIXTURES / "connect_list_users.json"
# Bedrock invocation logs: the published examples, and the invocation log of the stratus
# sample's InvokeModel call (same request id, principal and model as CloudTrail recorded)
# with a failed call after it.
BEDROCK_PUBLISHED = SAMPLES / "bedrock" / "published_examples.jsonl"
BEDROCK_FIXTURE = FIXTURES / "bedrock_invocations.jsonl"
STRATUS_INVOKE_REQUEST = "021634af-f7c2-48a2-b140-98f50d47ede9"
AWSDOCS = SAMPLES / "cloudtrail" / "awsdocs" / "awsdocs_cloudtrail_examples.jsonl"
# Console sign-in examples of the CloudTrail user guide (awsdocs, see SOURCES.md): an IAM user
# with MFA (success and failure) and the root user without MFA (success and failure). Line 6 of
# the file (root with MFA) reuses line 5's eventID, so it is left out: one partition keeps one
# event per id, and which of the two would stay is not defined.
AWSDOCS_LINES = (1, 2, 5, 7)
ORG = "o-abcdefghij"
STRATUS_ACCOUNT = "294599468799"  # the stratus StartSession account (the session fixture's owner)
I1 = "a1b2c3d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d"

# Every query in ddl/queries is run by a test below (test_every_query_is_covered).
COVERED = {
    "connect_instance_deletions", "connect_deleter_activity", "connect_user_management",
    "root_console_logins", "failed_console_logins", "console_logins_without_mfa", "deletions_today",
    "user_activity", "resource_activity", "iam_changes", "amazon_q_activity", "privileged_session",
    "needle_raw", "needle_readready",
    "bedrock_tokens_by_principal", "bedrock_invocations", "bedrock_with_cloudtrail",
}


def ts(text: str) -> dt.datetime:
    """A CloudTrail eventTime as the naive UTC datetime readready stores."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC).replace(tzinfo=None)


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """A timestamp from Spark (naive, in this process's local zone) as naive UTC."""
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value.timestamp(), dt.UTC).replace(tzinfo=None)


def fixture_records(path: Path) -> list[dict]:
    return json.loads(path.read_text())["Records"]


def awsdocs_records() -> list[dict]:
    lines = [json.loads(line) for line in AWSDOCS.read_text().splitlines() if line.strip()]
    return [lines[i] for i in AWSDOCS_LINES]


def gz_records(records: list[dict]) -> bytes:
    return gzip.compress(json.dumps({"Records": records}).encode(), mtime=0)


def elastic_objects() -> dict[str, list[dict]]:
    """The elastic sample as two trail objects: it reuses two eventIDs, and one partition
    keeps one event per id (which one is not defined), so the second use of an id goes to
    a second partition and every record of the sample reaches readready."""
    seen, first, again = set(), [], []
    for rec in records_of(ELASTIC_GZ):
        (again if rec["eventID"] in seen else first).append(rec)
        seen.add(rec["eventID"])
    base = "AWSLogs/111111111111/CloudTrail/{}/2026/01/06/111111111111_CloudTrail_{}_20260106T0000Z_{}.json.gz"
    return {base.format("us-east-1", "us-east-1", "a"): first, base.format("us-east-2", "us-east-2", "b"): again}


def by_delivery(records: list[dict], org: str | None, name: str) -> dict[str, list[dict]]:
    """Group fixture records as a trail delivers them: per account and region, on the day
    after their last event (the quality gate rejects events later than delivery + 1 day)."""
    groups = collections.defaultdict(list)
    for rec in records:
        groups[(rec["recipientAccountId"], rec["awsRegion"])].append(rec)
    out = {}
    for (account, region), recs in sorted(groups.items()):
        day = max(ts(r["eventTime"]) for r in recs).date() + dt.timedelta(days=1)
        org_part = f"{org}/" if org else ""
        out[f"AWSLogs/{org_part}{account}/CloudTrail/{region}/{day:%Y/%m/%d}/"
            f"{account}_CloudTrail_{region}_{day:%Y%m%d}T0000Z_{name}.json.gz"] = recs
    return out


def bedrock_records() -> list[dict]:
    return [json.loads(line) for path in (BEDROCK_PUBLISHED, BEDROCK_FIXTURE)
            for line in path.read_text().splitlines() if line.strip()]


def bedrock_objects(records: list[dict]) -> dict[str, bytes]:
    """Each record in the object Bedrock would deliver it in: gzip JSON lines below
    AWSLogs/ACCOUNT/BedrockModelInvocationLogs/REGION/YYYY/MM/DD/HH/."""
    out: dict[str, list[str]] = collections.defaultdict(list)
    for rec in records:
        t = ts(rec["timestamp"])
        out[f"AWSLogs/{rec['accountId']}/BedrockModelInvocationLogs/{rec['region']}/{t:%Y/%m/%d/%H}/"
            f"{t:%Y%m%dT%H%M}Z_invocations.json.gz"].append(json.dumps(rec))
    return {key: gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0) for key, lines in out.items()}


class Lake:
    def __init__(self, raw: Path, out: Path, summaries: dict, objects: dict[str, list[dict]]):
        self.raw, self.out, self.summaries = raw, out, summaries
        self.objects = objects  # key -> records, every CloudTrail object placed
        self.records = [r for recs in objects.values() for r in recs]

    def partition_of(self, record: dict) -> tuple[str, str]:
        for key, recs in self.objects.items():
            if any(r is record for r in recs):
                parts = key.split("/")
                i = parts.index("CloudTrail")
                return parts[i - 1], "-".join(parts[i + 2: i + 5])
        raise KeyError(record["eventID"])


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> Lake:
    root = tmp_path_factory.mktemp("querylake")
    raw, fh, out = root / "raw", root / "firehose", root / "lake"
    objects: dict[str, list[dict]] = {
        f"AWSLogs/{ORG}/{STRATUS_ACCOUNT}/CloudTrail/us-east-1/2024/12/01/"
        f"{STRATUS_ACCOUNT}_CloudTrail_us-east-1_20241201T0000Z_stratus.json.gz": records_of(STRATUS_GZ),
        **elastic_objects(),
        **by_delivery(awsdocs_records(), None, "awsdocs"),
        **by_delivery(fixture_records(CONNECT), ORG, "connect"),
        **by_delivery(fixture_records(AMAZONQ), None, "amazonq"),
        # the stratus InvokeModel event delivered again by an account trail: the same event
        # in a second partition (the Bedrock join must still give one row per invocation)
        **by_delivery([r for r in records_of(STRATUS_GZ) if r.get("requestID") == STRATUS_INVOKE_REQUEST],
                      None, "account-trail"),
    }
    stratus_key = next(iter(objects))
    for key, recs in objects.items():
        # The real stratus file byte for byte; the other records re-wrapped as trail objects.
        place(raw, key, STRATUS_GZ if key == stratus_key else gz_records(recs))
    for key, body in firehose_objects().items():
        place(fh, key, body)
    bedrock = root / "bedrock"
    for key, body in bedrock_objects(bedrock_records()).items():
        place(bedrock, key, body)
    summaries = {}
    for source, folder in (("cloudtrail", raw), ("cloudwatch", fh), ("bedrock", bedrock)):
        path = root / f"{source}.json"
        argv = ["-q", "run", source, "--raw", str(folder), "--out", str(out), "--summary-json", str(path)]
        assert cli.main(argv) == 0
        summaries[source] = json.loads(path.read_text())
    assert cli.main(["-q", "lookup", "load", "connect-users", str(LIST_USERS), "--out", str(out)]) == 0
    return Lake(raw, out, summaries, objects)


def run(spark, lake: Lake, name: str, **params) -> list[dict]:
    rows = query_library.run_query(spark, name, params, Config(), str(lake.out), raw_root=str(lake.raw))
    return [{k: utc(v) if isinstance(v, dt.datetime) else v for k, v in r.asDict().items()} for r in rows]


def test_the_lake_holds_every_record(lake):
    ct = lake.summaries["cloudtrail"]
    assert ct["written"] == len(lake.records) and ct["duplicates"] == 0 and ct["status"] == "published"
    assert lake.summaries["cloudwatch"]["written"] == len(session_records())


def test_every_query_is_covered():
    assert set(query_library.list_queries()) == COVERED


# --------------------------------------------------------------------------- hand-derived expectations


def jtext(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False) if value is not None else ""


def account_of(rec: dict, lake: Lake) -> str:
    return rec.get("recipientAccountId") or lake.partition_of(rec)[0]


def identity(rec: dict) -> dict:
    return rec.get("userIdentity") or {}


def order(records: list[dict], reverse_time: bool = False) -> list[dict]:
    by_id = sorted(records, key=lambda r: r["eventID"])
    return sorted(by_id, key=lambda r: ts(r["eventTime"]), reverse=reverse_time)


def ids(rows: list[dict], key: str = "eventid") -> list[str]:
    return [r[key] for r in rows]


# --------------------------------------------------------------------------- 1. Amazon Connect instances deleted


def connect_deletions(lake: Lake) -> list[dict]:
    return order([r for r in lake.records
                  if r["eventSource"] == "connect.amazonaws.com" and r["eventName"] == "DeleteInstance"])


def test_connect_instance_deletions(spark, lake):
    expected = [
        {
            "account": account_of(r, lake), "region": r["awsRegion"],
            "instance_id": r["requestParameters"]["InstanceId"], "eventtime": ts(r["eventTime"]),
            "principal_arn": identity(r)["arn"], "principal_type": identity(r)["type"],
            "principal_account": identity(r)["accountId"], "source_ip": r["sourceIPAddress"],
            "user_agent": r["userAgent"], "requestparameters": r["requestParameters"],
            "errorcode": r.get("errorCode"), "errormessage": r.get("errorMessage"), "eventid": r["eventID"],
        }
        for r in connect_deletions(lake)
    ]
    assert len(expected) == 3 and sum(e["errorcode"] is None for e in expected) == 2
    rows = run(spark, lake, "connect_instance_deletions")
    for row in rows:
        row["requestparameters"] = json.loads(row["requestparameters"])
    assert rows == expected
    assert ids(run(spark, lake, "connect_instance_deletions", region="eu-west-2")) == [
        e["eventid"] for e in expected if e["region"] == "eu-west-2"]
    assert ids(run(spark, lake, "connect_instance_deletions", account="123456789012")) == [
        e["eventid"] for e in expected if e["account"] == "123456789012"]
    later = run(spark, lake, "connect_instance_deletions", from_time="2025-03-10T09:35:00Z",
                to_time="2025-03-11T02:00:00Z")
    assert ids(later) == [e["eventid"] for e in expected
                          if ts("2025-03-10T09:35:00Z") <= e["eventtime"] < ts("2025-03-11T02:00:00Z")]


def test_connect_deleter_activity(spark, lake):
    expected = []
    for d in connect_deletions(lake):
        if d.get("errorCode"):
            continue
        after = order([r for r in lake.records if identity(r).get("arn") == identity(d)["arn"]
                       and ts(r["eventTime"]) >= ts(d["eventTime"]) and r["eventID"] != d["eventID"]])
        assert after, "every deleter in the fixture did something afterwards"
        expected += [(d["requestParameters"]["InstanceId"], identity(d)["arn"], ts(d["eventTime"]),
                      r["eventSource"], r["eventName"], r["eventID"]) for r in after]
    rows = run(spark, lake, "connect_deleter_activity")
    assert [(r["deleted_instance_id"], r["principal_arn"], r["deleted_at"], r["eventsource"], r["eventname"],
             r["eventid"]) for r in rows] == expected
    # What the principal did before the deletion is not "afterwards".
    mallory = [r for r in rows if r["deleted_instance_id"] == I1]
    assert {r["eventname"] for r in mallory} == {"CreateAccessKey", "ListBuckets"}
    assert run(spark, lake, "connect_deleter_activity", account="999999999999") == []


# --------------------------------------------------------------------------- 2. Amazon Connect user management

USER_APIS = {"CreateUser", "DeleteUser", "UpdateUserIdentityInfo", "UpdateUserSecurityProfiles",
             "UpdateUserRoutingProfile", "UpdateUserPhoneConfig"}


def test_connect_user_management_resolves_user_names(spark, lake):
    saved = json.loads(LIST_USERS.read_text())["UserSummaryList"]
    names = {(u["Arn"].split("/")[1], u["Id"]): u["Username"] for u in saved}
    expected = []
    for r in order(fixture_records(CONNECT)):
        if r["eventSource"] != "connect.amazonaws.com":
            continue
        if r["eventName"] not in USER_APIS and not r["eventName"].startswith("UpdateUserHierarchy"):
            continue
        req, resp = r["requestParameters"], r.get("responseElements") or {}
        user = req.get("UserId") or resp.get("UserId")
        expected.append({
            "eventtime": ts(r["eventTime"]), "account": r["recipientAccountId"], "region": r["awsRegion"],
            "instance_id": req["InstanceId"], "eventname": r["eventName"], "actor_arn": identity(r)["arn"],
            "source_ip": r["sourceIPAddress"], "user_id": user,
            "username": names.get((req["InstanceId"], user), req.get("Username")),
            "errorcode": r.get("errorCode"), "eventid": r["eventID"],
        })
    assert len(expected) == 8
    rows = run(spark, lake, "connect_user_management")
    assert rows == expected
    by_event = {r["eventname"]: r["username"] for r in rows if r["region"] == "us-east-1"}
    assert by_event["DeleteUser"] == "kwong" and by_event["CreateUser"] == "new.agent"
    assert by_event["UpdateUserRoutingProfile"] is None  # not in the saved ListUsers output
    emea = run(spark, lake, "connect_user_management", region="eu-west-2")
    assert emea == [e for e in expected if e["region"] == "eu-west-2"]
    window = run(spark, lake, "connect_user_management", from_time="2025-03-10T09:12:00Z",
                 to_time="2025-03-10T09:20:00Z")
    assert [r["eventname"] for r in window] == [
        "UpdateUserRoutingProfile", "UpdateUserPhoneConfig", "UpdateUserIdentityInfo", "UpdateUserHierarchy"]


def test_lookup_table_holds_the_saved_list_users(spark, lake):
    lookup.register(spark, str(lake.out))
    got = sorted(tuple(r) for r in spark.sql("SELECT id, username, instance, arn FROM connect_users").collect())
    saved = json.loads(LIST_USERS.read_text())["UserSummaryList"]
    assert got == sorted((u["Id"], u["Username"], I1, u["Arn"]) for u in saved)


# --------------------------------------------------------------------------- 3. console sign-ins


def console_logins(lake: Lake) -> list[dict]:
    return [r for r in lake.records if r["eventSource"] == "signin.amazonaws.com" and r["eventName"] == "ConsoleLogin"]


def login_result(r: dict) -> str | None:
    return (r.get("responseElements") or {}).get("ConsoleLogin")


def login_account(r: dict, lake: Lake) -> str:
    """The account signed in to: the recipient, else the identity's (old records lack the former)."""
    return r.get("recipientAccountId") or identity(r).get("accountId") or lake.partition_of(r)[0]


def mfa_used(r: dict) -> str | None:
    return (r.get("additionalEventData") or {}).get("MFAUsed")


def test_root_console_logins_in_the_last_hours(spark, lake):
    now = ts("2022-11-10T20:00:00Z")

    def expected(hours: int) -> list[dict]:
        picked = [r for r in console_logins(lake) if identity(r).get("type") == "Root"
                  and now - dt.timedelta(hours=hours) < ts(r["eventTime"]) <= now]
        return [{"eventtime": ts(r["eventTime"]), "account": login_account(r, lake),
                 "principal_arn": identity(r)["arn"], "source_ip": r["sourceIPAddress"], "user_agent": r["userAgent"],
                 "result": login_result(r), "mfa_used": mfa_used(r), "errormessage": r.get("errorMessage"),
                 "region": r["awsRegion"], "eventid": r["eventID"]} for r in order(picked, reverse_time=True)]

    four = run(spark, lake, "root_console_logins", hours=4, now="2022-11-10T20:00:00Z")
    assert four == expected(4) and {r["result"] for r in four} == {"Success", "Failure"}
    assert run(spark, lake, "root_console_logins", hours="3", now="2022-11-10T22:00:00+02:00") == expected(3) == []
    assert run(spark, lake, "root_console_logins") == []  # the default window ends now: no root sign-in since


def test_failed_console_logins(spark, lake):
    failed = order([r for r in console_logins(lake) if login_result(r) == "Failure" or r.get("errorMessage")])
    expected = [{"eventtime": ts(r["eventTime"]), "account": login_account(r, lake),
                 "principal_type": identity(r)["type"], "principal": identity(r).get("arn") or identity(r)["userName"],
                 "source_ip": r["sourceIPAddress"], "errormessage": r.get("errorMessage"), "mfa_used": mfa_used(r),
                 "user_agent": r["userAgent"], "eventid": r["eventID"]} for r in failed]
    assert len(expected) == 4  # elastic: JaneDoe and an assumed role; awsdocs: an IAM user and root
    assert run(spark, lake, "failed_console_logins") == expected


def test_console_logins_without_mfa(spark, lake):
    picked = order([r for r in console_logins(lake)
                    if login_result(r) == "Success" and (mfa_used(r) or "").lower() == "no"])
    expected = [{"eventtime": ts(r["eventTime"]), "account": login_account(r, lake),
                 "principal_type": identity(r)["type"], "principal": identity(r).get("arn") or identity(r)["userName"],
                 "source_ip": r["sourceIPAddress"], "login_to": r["additionalEventData"]["LoginTo"],
                 "user_agent": r["userAgent"], "eventid": r["eventID"]} for r in picked]
    assert {e["principal_type"] for e in expected} == {"IAMUser", "Root"} and len(expected) == 3
    assert run(spark, lake, "console_logins_without_mfa") == expected
    assert run(spark, lake, "console_logins_without_mfa", from_time="2020-01-01T00:00:00Z",
               to_time="2023-01-01T00:00:00Z") == [e for e in expected if e["eventtime"].year == 2022]


# --------------------------------------------------------------------------- 4. deletions of a day


def test_deletions_of_a_day_by_account_and_principal(spark, lake):
    deletes = [r for r in lake.records if r["eventName"].startswith("Delete")]
    days = sorted({ts(r["eventTime"]).date() for r in deletes})
    assert len(days) >= 5
    for day in days:
        groups = collections.defaultdict(list)
        for r in deletes:
            if ts(r["eventTime"]).date() == day:
                who = identity(r).get("arn") or identity(r).get("invokedBy") or identity(r).get("principalId")
                groups[(account_of(r, lake), who)].append(r)
        expected = [{"account": account, "principal": who,
                     "deletions": sum(not r.get("errorCode") for r in recs),
                     "failed": sum(bool(r.get("errorCode")) for r in recs),
                     "apis": ", ".join(sorted({f"{r['eventSource']}:{r['eventName']}" for r in recs})),
                     "first_at": min(ts(r["eventTime"]) for r in recs),
                     "last_at": max(ts(r["eventTime"]) for r in recs)}
                    for (account, who), recs in sorted(groups.items())]
        assert run(spark, lake, "deletions_today", day=day.isoformat()) == expected, day
    connect_day = run(spark, lake, "deletions_today", day="2025-03-10")
    assert [(r["principal"].rsplit("/", 1)[-1], r["deletions"], r["failed"]) for r in connect_day] == [
        ("bob", 0, 1), ("mallory", 2, 0)]
    assert run(spark, lake, "deletions_today") == []  # nothing in the samples happened today


# --------------------------------------------------------------------------- 5. one user, one resource


def test_user_activity_by_name_role_or_arn(spark, lake):
    def expected(user: str) -> list[str]:
        def matches(r):
            ui = identity(r)
            issuer = (ui.get("sessionContext") or {}).get("sessionIssuer") or {}
            return user in (ui.get("arn"), ui.get("userName"), issuer.get("arn"), issuer.get("userName"))
        return [r["eventID"] for r in order([r for r in lake.records if matches(r)])]

    for user in ("christophe", "arn:aws:iam::123456789012:user/bob", "ConnectAdmin",
                 "arn:aws:sts::123456789012:assumed-role/ConnectAdmin/mallory"):
        rows = run(spark, lake, "user_activity", user=user)
        assert ids(rows) == expected(user) and rows, user
    mallory = run(spark, lake, "user_activity", user="arn:aws:sts::123456789012:assumed-role/ConnectAdmin/mallory",
                  from_time="2025-03-10T09:25:00Z")
    assert [r["eventname"] for r in mallory] == ["DeleteInstance", "CreateAccessKey", "ListBuckets"]


def test_resource_activity(spark, lake):
    for resource in ("i-d3720C7af6fCfF2B2", I1):
        picked = order([r for r in lake.records if any(
            resource in jtext(r.get(f)) for f in ("resources", "requestParameters", "responseElements"))])
        expected = [(r["eventID"], resource in jtext(r.get("resources")), resource in jtext(r.get("requestParameters")),
                     resource in jtext(r.get("responseElements"))) for r in picked]
        rows = run(spark, lake, "resource_activity", resource=resource)
        assert [(r["eventid"], r["in_resources"], r["in_request"], r["in_response"]) for r in rows] == expected
        assert len(expected) >= 3, resource


# --------------------------------------------------------------------------- 6. IAM changes

IAM_CHANGES = {
    # policies attached, detached, put or deleted, and managed policy versions
    "AttachUserPolicy", "AttachRolePolicy", "AttachGroupPolicy", "DetachUserPolicy", "DetachRolePolicy",
    "DetachGroupPolicy", "PutUserPolicy", "PutRolePolicy", "PutGroupPolicy", "DeleteUserPolicy", "DeleteRolePolicy",
    "DeleteGroupPolicy", "CreatePolicy", "CreatePolicyVersion", "DeletePolicy", "DeletePolicyVersion",
    "SetDefaultPolicyVersion", "PutUserPermissionsBoundary", "PutRolePermissionsBoundary",
    # principals and their credentials
    "CreateUser", "DeleteUser", "CreateRole", "DeleteRole", "UpdateAssumeRolePolicy", "CreateAccessKey",
    "UpdateAccessKey", "DeleteAccessKey", "CreateLoginProfile", "UpdateLoginProfile", "DeleteLoginProfile",
    "AddUserToGroup", "RemoveUserFromGroup",
}


def test_iam_changes(spark, lake):
    picked = order([r for r in lake.records
                    if r["eventSource"] == "iam.amazonaws.com" and r["eventName"] in IAM_CHANGES])
    expected = []
    for r in picked:
        req, resp = r.get("requestParameters") or {}, r.get("responseElements") or {}
        expected.append({
            "eventtime": ts(r["eventTime"]), "account": account_of(r, lake), "eventname": r["eventName"],
            "actor_arn": identity(r).get("arn"), "target_user": req.get("userName"), "target_role": req.get("roleName"),
            "target_group": req.get("groupName"), "policy_arn": req.get("policyArn"),
            "policy_name": req.get("policyName"),
            "access_key_id": req.get("accessKeyId") or (resp.get("accessKey") or {}).get("accessKeyId"),
            "source_ip": r["sourceIPAddress"], "errorcode": r.get("errorCode"), "eventid": r["eventID"],
        })
    assert len(expected) >= 10 and {"AttachUserPolicy", "CreateAccessKey", "CreateRole"} <= {
        e["eventname"] for e in expected}
    assert run(spark, lake, "iam_changes") == expected


# --------------------------------------------------------------------------- 7. Amazon Q Developer


def test_amazon_q_activity_split_into_reads_and_writes(spark, lake):
    groups = collections.defaultdict(list)
    for r in lake.records:
        ua = r.get("userAgent") or ""
        if "AmazonQ-For-CLI" in ua or "AmazonQ-For-IDE" in ua:
            client = "cli" if "AmazonQ-For-CLI" in ua else "ide"
            access = {True: "read", False: "write"}.get(r.get("readOnly"), "unknown")
            groups[(identity(r)["arn"], client, access, r["eventSource"], r["eventName"])].append(r)
    expected = [{"principal_arn": arn, "client": client, "access": access, "eventsource": source,
                 "eventname": name, "calls": len(recs), "failed": sum(bool(r.get("errorCode")) for r in recs),
                 "first_at": min(ts(r["eventTime"]) for r in recs), "last_at": max(ts(r["eventTime"]) for r in recs)}
                for (arn, client, access, source, name), recs in groups.items()]
    expected.sort(key=lambda e: (e["principal_arn"], e["client"], e["eventsource"], e["eventname"]))
    expected.sort(key=lambda e: e["access"], reverse=True)
    assert run(spark, lake, "amazon_q_activity") == expected
    # The same CLI without the Q marker is not Q activity.
    assert sum(e["calls"] for e in expected) == len(fixture_records(AMAZONQ)) - 1
    assert {(e["client"], e["access"]) for e in expected} == {("cli", "read"), ("cli", "write"), ("ide", "read")}


# --------------------------------------------------------------------------- 8. privileged sessions


def test_privileged_session_lines_in_order(spark, lake):
    starts = [r for r in records_of(STRATUS_GZ) if r["eventName"] == "StartSession"]
    for start in starts:
        sid = start["responseElements"]["sessionId"]
        rows = run(spark, lake, "privileged_session", sessionid=sid)
        lines = [line for rec in session_records() if rec["sessionId"] == sid for line in rec["sessionData"]]
        assert [r["line"] for r in rows] == lines
        assert {(r["started_by_arn"], r["source_ip"], r["target"], r["start_time"]) for r in rows} == {
            (identity(start)["arn"], start["sourceIPAddress"], start["requestParameters"]["target"],
             ts(start["eventTime"]))}
        ends = [ts(r["eventTime"]) for r in records_of(STRATUS_GZ)
                if r["eventName"] == "TerminateSession" and r["responseElements"]["sessionId"] == sid]
        assert {r["end_time"] for r in rows} == {min(ends)}
    # By user: every session that principal started, each in order.
    arn = identity(starts[0])["arn"]
    by_user = run(spark, lake, "privileged_session", user=arn)
    sids = sorted(s["responseElements"]["sessionId"] for s in starts if identity(s)["arn"] == arn)
    assert [r["line"] for r in by_user] == [
        line for sid in sids for rec in session_records() if rec["sessionId"] == sid for line in rec["sessionData"]]
    # A session nobody logged keystrokes for (the Amazon Q fixture's) still shows its StartSession.
    [q_start] = [r for r in fixture_records(AMAZONQ) if r["eventName"] == "StartSession"]
    [row] = run(spark, lake, "privileged_session", sessionid=q_start["responseElements"]["sessionId"])
    assert row["line"] is None and row["keystroke_time"] is None
    assert (row["started_by_arn"], row["target"], row["start_time"]) == (
        identity(q_start)["arn"], q_start["requestParameters"]["target"], ts(q_start["eventTime"]))
    assert run(spark, lake, "privileged_session") == []  # neither a session nor a user given


# --------------------------------------------------------------------------- 9. the needle, raw and readready


@pytest.mark.parametrize("params", [
    {"event_name": "StopLogging", "from_day": "2024-12-01", "to_day": "2024-12-01"},
    {"event_name": "AssumeRole", "from_day": "2026-01-01", "to_day": "2026-01-31"},
    {"event_name": "GetPasswordData", "from_day": "2024-11-30", "to_day": "2024-12-02",
     "user_arn": "arn:aws:sts::457448411975:assumed-role/stratus-red-team-ec2-get-password-data-role/"
                 "aws-go-sdk-1722375070115152000"},
], ids=["one-event", "elastic-duplicates-in-two-partitions", "one-caller"])
def test_needle_on_raw_and_readready_answers_the_same(spark, lake, params):
    def wanted(rec):
        account, day = lake.partition_of(rec)
        return (rec["eventName"] == params["event_name"] and params["from_day"] <= day <= params["to_day"]
                and params.get("user_arn") in (None, identity(rec).get("arn")))

    picked = order([r for r in lake.records if wanted(r)])
    expected = [{"eventid": r["eventID"], "eventtime": ts(r["eventTime"]), "eventname": r["eventName"],
                 "principal_arn": identity(r).get("arn"), "source_ip": r["sourceIPAddress"],
                 "region": r["awsRegion"], "account": lake.partition_of(r)[0], "dt": lake.partition_of(r)[1]}
                for r in picked]
    assert expected
    assert run(spark, lake, "needle_readready", **params) == expected
    assert run(spark, lake, "needle_raw", **params) == expected


# --------------------------------------------------------------------------- parameters are literals, never SQL


def test_parameters_are_quoted_literals_not_sql(spark, lake):
    christophe = run(spark, lake, "user_activity", user="christophe")
    assert christophe
    for evil in ("christophe' OR '1'='1", "christophe' --", "christophe\\' OR 1=1 --", "x'); DROP TABLE t; --"):
        assert run(spark, lake, "user_activity", user=evil) == [], evil
    query = query_library.load_query("user_activity")
    text = query_library.render_query(query, {"user": "o'brien"}, Config())
    assert "useridentity_arn = 'o''brien'" in text
    # The rendered Athena SQL is one statement that parses as Trino.
    assert sqlglot.parse_one(text, read="trino") is not None


@pytest.mark.parametrize("name,params,message", [
    ("root_console_logins", {"hours": "24; DROP TABLE x"}, "whole number"),
    ("root_console_logins", {"hours": "1e3"}, "whole number"),
    ("root_console_logins", {"now": "yesterday"}, "ISO 8601"),
    ("root_console_logins", {"now": "2024-02-30T00:00:00Z"}, "not a valid timestamp"),
    ("deletions_today", {"day": "2024-13-01"}, "expected a date"),
    ("deletions_today", {"day": "2024-12-01' OR 1=1"}, "expected a date"),
    ("user_activity", {}, "'user' (string) is required"),
    ("user_activity", {"user": "x", "usr": "y"}, "unknown parameter 'usr'"),
    ("user_activity", {"user": "line\nbreak"}, "control characters"),
    ("no_such_query", {}, "no query"),
    ("../views/sessions", {}, "no query"),
])
def test_bad_parameters_are_refused_before_any_sql_runs(name, params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        query_library.render_query(query_library.load_query(name), params, Config())


def test_timestamps_and_dates_render_as_utc_literals():
    q = query_library.load_query("root_console_logins")
    text = query_library.render_query(q, {"hours": "6", "now": "2024-12-01T08:30:00+02:00"}, Config())
    assert "TIMESTAMP '2024-12-01 06:30:00.000000' - 6 * INTERVAL '1' HOUR" in text
    assert "current_timestamp" in query_library.render_query(q, {}, Config())
    assert "current_date" in query_library.render_query(query_library.load_query("deletions_today"), {}, Config())
    deletions = query_library.load_query("connect_instance_deletions")
    with_null = query_library.render_query(deletions, {"region": "null"}, Config())
    assert "CAST(NULL AS VARCHAR) IS NULL" in with_null


def test_every_query_has_a_header_and_runs_through_sqlglot():
    for name in query_library.list_queries():
        query = query_library.load_query(name)
        assert len(query.description) > 40, name
        assert all(p.doc for p in query.params), name
        samples = {"string": "x", "int": "1", "timestamp": "2024-01-01T00:00:00Z", "date": "2024-01-01"}
        required = {p.name: samples[p.type] for p in query.params if p.required}
        athena = query_library.render_query(query, required, config_from_dict({"catalog": {"database": "secdb"}}))
        tree = sqlglot.parse_one(athena, read="trino")
        ctes = {cte.alias for cte in tree.find_all(sqlglot.exp.CTE)}
        tables = [t for t in tree.find_all(sqlglot.exp.Table) if t.name not in ctes]
        assert tables and all(t.db == "secdb" for t in tables), (name, [t.sql() for t in tables])
        assert sql.to_spark(query_library.render_query(query, required, Config(), database=""))


# --------------------------------------------------------------------------- sqlglot dialect gaps


def test_hour_arithmetic_means_hours_on_spark(spark):
    spark_sql = sql.to_spark("SELECT date_add('hour', -30, TIMESTAMP '2024-12-02 00:00:00') AS t, "
                             "date_add('day', -1, TIMESTAMP '2024-12-02 06:30:00') AS td, "
                             "date_add('day', -1, DATE '2024-12-02') AS d, "
                             "CAST(date_add('day', -1, CAST(TIMESTAMP '2024-12-02 06:30:00' AS date)) AS varchar) AS s")
    [row] = spark.sql(spark_sql).collect()
    assert utc(row["t"]) == dt.datetime(2024, 11, 30, 18) and utc(row["td"]) == dt.datetime(2024, 12, 1, 6, 30)
    assert row["d"] == dt.date(2024, 12, 1) and row["s"] == "2024-12-01"


def test_left_join_unnest_is_refused_not_mistranslated():
    with pytest.raises(sql.DialectGap):
        sql.to_spark("SELECT s.x, l.v FROM s LEFT JOIN UNNEST(s.arr) AS l(v) ON TRUE")


# --------------------------------------------------------------------------- the command


def test_query_command_prints_a_table_or_json(lake, capsys):
    lake_dir = str(lake.out)
    argv = ["-q", "query", "iam_changes", "--lake", lake_dir, "--param", "from_time=2025-01-01T00:00:00Z"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["eventtime", "account", "eventname"] and out[-1] == "(1 row)"
    assert "CreateAccessKey" in out[2] and "AKIA4EXAMPLENEWKEY01" in out[2]
    argv = ["-q", "query", "user_activity", "--lake", lake_dir, "-p", "user=bob", "--format", "json"]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["eventname"] for r in result["rows"]] == ["DeleteInstance"] and result["columns"][0] == "eventtime"
    assert cli.main(["query", "needle_raw", "--lake", lake_dir, "-p", "event_name=StopLogging",
                     "-p", "from_day=2024-12-01", "-p", "to_day=2024-12-01"]) == 2
    assert "--raw" in capsys.readouterr().err
    assert cli.main(["query", "user_activity", "--lake", lake_dir, "-p", "user"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_query_command_lists_and_shows_sql(capsys):
    assert cli.main(["query", "--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in query_library.list_queries()) and "--param hours=<int>" in listing
    assert cli.main(["query", "user_activity", "--sql", "-p", "user=o'brien"]) == 0
    text = capsys.readouterr().out
    assert "FROM loglake.from_cloudtrail_readready" in text and "'o''brien'" in text


def _moto_athena_results(endpoint: str, columns: list[str], rows: list[list[str]]) -> None:
    """Queue canned results, shaped like Athena's: the header repeated as the first row."""
    import urllib.request

    body = {"results": [{"rows": [{"Data": [{"VarCharValue": v} for v in row]} for row in [columns, *rows]],
                         "column_info": [{"Name": c, "Label": c, "Type": "varchar"} for c in columns]}]}
    req = urllib.request.Request(f"{endpoint}/moto-api/static/athena/query-results", method="POST",
                                 data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(req, timeout=10).status == 201


def test_query_through_athena(aws, monkeypatch, capsys):
    """Against moto, which records the query and returns canned rows: the SQL Athena gets
    is the library's, rendered for the config's database; the rows are printed."""
    monkeypatch.setenv("LOGLAKE__AWS__ENDPOINT_URL", aws.endpoint)
    monkeypatch.setenv("LOGLAKE__CATALOG__DATABASE", "secdb")
    _moto_athena_results(aws.endpoint, ["eventname", "calls"], [["StopLogging", "1"]])
    argv = ["-q", "query", "deletions_today", "--engine", "athena", "-p", "day=2024-12-01",
            "--athena-output", "s3://athena-results/loglake/", "--format", "json"]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == [{"eventname": "StopLogging", "calls": "1"}]
    athena = sql.storage.client("athena", aws.endpoint, "us-east-1")
    [qid] = athena.list_query_executions()["QueryExecutionIds"]
    execution = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
    config = config_from_dict({"catalog": {"database": "secdb"}})
    deletions_today = query_library.load_query("deletions_today")
    assert execution["Query"] == query_library.render_query(deletions_today, {"day": "2024-12-01"}, config)
    assert execution["QueryExecutionContext"]["Database"] == "secdb"
    assert execution["ResultConfiguration"]["OutputLocation"].startswith("s3://athena-results/loglake/")


class _FailingAthena:
    def start_query_execution(self, **kwargs):
        return {"QueryExecutionId": "q-1"}

    def get_query_execution(self, QueryExecutionId):  # noqa: N803 - boto3's name
        return {"QueryExecution": {"Status": {"State": "FAILED", "StateChangeReason": "SYNTAX_ERROR: line 1:8"}}}


def test_a_failed_athena_query_says_why():
    with pytest.raises(athena_runs.AthenaQueryFailed, match="SYNTAX_ERROR"):
        athena_runs.run_athena(_FailingAthena(), "SELECT", database="d", sleep=lambda s: None)


# --------------------------------------------------------------------------- the lookup loader


def test_lookup_load_replaces_an_instance_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "lake"
    argv = ["-q", "lookup", "load", "connect-users", str(LIST_USERS), "--out", str(out)]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 3 and summary["instances"] == {I1: 3}
    smaller = tmp_path / "users.json"
    saved = json.loads(LIST_USERS.read_text())
    smaller.write_text(json.dumps({"UserSummaryList": saved["UserSummaryList"][:1]}))
    assert cli.main(["-q", "lookup", "load", "connect-users", str(smaller), "--out", str(out)]) == 0
    import pyarrow.orc as orc

    [file] = (out / "connect_users").glob("*.orc")
    assert orc.ORCFile(str(file)).compression == "ZLIB"
    assert orc.read_table(str(file)).to_pylist() == [
        {"id": saved["UserSummaryList"][0]["Id"], "username": "jdoe", "instance": I1,
         "arn": saved["UserSummaryList"][0]["Arn"]}]
    capsys.readouterr()
    no_arn = tmp_path / "no-arn.json"
    no_arn.write_text(json.dumps({"UserSummaryList": [{"Id": "u-1", "Username": "x"}]}))
    assert cli.main(["lookup", "load", "connect-users", str(no_arn), "--out", str(out)]) == 2
    assert f"{no_arn}: UserSummaryList[0] (u-1): no instance in its Arn; pass --instance" in capsys.readouterr().err
    assert cli.main(["-q", "lookup", "load", "connect-users", str(no_arn), "--out", str(out),
                     "--instance", "i-other"]) == 0
    assert cli.main(["lookup", "load", "connect-users", str(LIST_USERS), "--out", str(out),
                     "--instance", "i-other"]) == 2
    assert "belongs to instance" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"Users": []}')
    assert cli.main(["lookup", "load", "connect-users", str(bad), "--out", str(out)]) == 2
    assert f"{bad}: page 0: expected the JSON output of `aws connect list-users`" in capsys.readouterr().err


def test_lookup_load_registers_the_glue_table(aws, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOGLAKE__AWS__ENDPOINT_URL", aws.endpoint)
    out = tmp_path / "lake"
    argv = ["-q", "lookup", "load", "connect-users", str(LIST_USERS), "--out", str(out), "--catalog"]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["catalog"] == "created"
    table = aws.glue.get_table(DatabaseName="loglake", Name="connect_users")["Table"]
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == lookup.CONNECT_USERS.names
    assert table["StorageDescriptor"]["Location"] == f"{out}/connect_users/"


# --------------------------------------------------------------------------- Bedrock


def test_bedrock_tokens_by_principal_model_and_day(spark, lake):
    assert lake.summaries["bedrock"]["written"] == len(bedrock_records())
    rows = run(spark, lake, "bedrock_tokens_by_principal", days=1000, now="2026-04-18T00:00:00Z")
    expected = collections.defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    for rec in bedrock_records():
        k = (ts(rec["timestamp"]).date().isoformat(), (rec.get("identity") or {}).get("arn"), rec["modelId"])
        inp, out = rec.get("input") or {}, rec.get("output") or {}
        e = expected[k]
        e[0] += 1
        e[1] += "errorCode" in rec
        e[2] += inp.get("inputTokenCount", 0)
        e[3] += out.get("outputTokenCount", 0)
        e[4] += inp.get("cacheReadInputTokenCount", 0)
        e[5] += inp.get("cacheWriteInputTokenCount", 0)
    got = {(r["day"], r["principal_arn"], r["model_id"]): [
        r["invocations"], r["errors"], r["input_tokens"], r["output_tokens"], r["cache_read_input_tokens"],
        r["cache_write_input_tokens"]] for r in rows}
    assert got == dict(expected)
    assert [r["day"] for r in rows] == sorted((r["day"] for r in rows), reverse=True)
    # the window: the :days delivery days up to the day of :now, that day included
    assert run(spark, lake, "bedrock_tokens_by_principal", days=2, now="2024-10-18T12:00:00Z") == [
        r for r in rows if r["day"] == "2024-10-17"]
    assert run(spark, lake, "bedrock_tokens_by_principal", days=1, now="2024-10-18T12:00:00Z") == []


def test_bedrock_invocations_with_errors_newest_first(spark, lake):
    rows = run(spark, lake, "bedrock_invocations", hours=24, now="2024-10-18T00:00:00Z")
    fixture = [json.loads(line) for line in BEDROCK_FIXTURE.read_text().splitlines()]
    assert [r["requestid"] for r in rows] == [rec["requestId"] for rec in reversed(fixture)]
    assert [r["errorcode"] for r in rows] == ["ValidationException", None]
    assert {r["model_id"] for r in rows} == {"anthropic.claude-3-sonnet-20240229-v1:0"}
    assert rows[1]["eventtime"] == ts("2024-10-17T20:11:24Z") and rows[1]["input_token_count"] == 12
    assert {r["principal_arn"] for r in rows} == {"arn:aws:sts::494659789341:assumed-role/test-role/cli"}


def test_bedrock_invocations_joined_to_cloudtrail_by_request_id(spark, lake):
    rows = run(spark, lake, "bedrock_with_cloudtrail", hours=24, now="2024-10-18T00:00:00Z")
    [invoke] = [r for r in records_of(STRATUS_GZ) if r.get("requestID") == STRATUS_INVOKE_REQUEST]
    assert len(rows) == 2  # one row per invocation, though CloudTrail holds the event twice
    by_request = {r["requestid"]: r for r in rows}
    joined = by_request[STRATUS_INVOKE_REQUEST]
    assert (joined["cloudtrail_eventname"], joined["source_ip"], joined["user_agent"], joined["access_key_id"],
            joined["cloudtrail_eventid"]) == (invoke["eventName"], invoke["sourceIPAddress"], invoke["userAgent"],
                                              invoke["userIdentity"]["accessKeyId"], invoke["eventID"])
    [failed] = [r for r in rows if r["requestid"] != STRATUS_INVOKE_REQUEST]
    assert failed["errorcode"] == "ValidationException" and failed["cloudtrail_eventid"] is None

