"""Keystroke redaction: secrets typed in Session Manager sessions never reach readready.

Keys are AWS's documented example keys (IAM user guide: AKIAIOSFODNN7EXAMPLE,
wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY); the lines are what people type in a shell.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.orc as orc
import pytest

from conftest import place
from loglake import redact, samples
from loglake.config import ConfigError, config_from_dict
from loglake.sources.cloudwatch import process_cloudwatch

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
LOGLAKE = str(Path(sys.executable).parent / "loglake")
OWNER = "294599468799"
KEY = "cwl/2024/08/01/12/loglake-cwl-1-2024-08-01-12-20-00-redaction"


@pytest.mark.parametrize(("line", "expected", "count"), [
    (f"aws configure set aws_access_key_id {KEY_ID}",
     "aws configure set aws_access_key_id [REDACTED:aws_access_key_id]", 1),
    (f"aws_secret_access_key = {SECRET}", "aws_secret_access_key = [REDACTED:aws_secret_access_key]", 1),
    (f"export AWS_SECRET_ACCESS_KEY={SECRET}", "export AWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_access_key]", 1),
    (f'{{"AccessKeyId": "{KEY_ID}", "SecretAccessKey": "{SECRET}"}}',
     '{"AccessKeyId": "[REDACTED:aws_access_key_id]", "SecretAccessKey": "[REDACTED:aws_secret_access_key]"}', 2),
    ("mysql -u admin -pS3cr3t! -h db.internal shop", "mysql -u admin -p[REDACTED:mysql_password] -h db.internal shop",
     1),
    ("PGPASSWORD=hunter2 psql -h db -U app", "PGPASSWORD=[REDACTED:pgpassword] psql -h db -U app", 1),
    ("psql 'host=db user=app password=hunter2'", "psql 'host=db user=app password=[REDACTED:password]'", 1),
    ("echo passwd: hunter2", "echo passwd: [REDACTED:password]", 1),
    # environment variables and config keys with a prefix: `\b` does not fire after `_`
    ("export DB_PASSWORD=hunter2", "export DB_PASSWORD=[REDACTED:password]", 1),
    ("docker run -e MYSQL_ROOT_PASSWORD=hunter2 mysql", "docker run -e MYSQL_ROOT_PASSWORD=[REDACTED:password] mysql",
     1),
    ("POSTGRES_PASSWORD='hunter2'", "POSTGRES_PASSWORD=[REDACTED:password]", 1),
    ("MYSQL_PWD=hunter2 mysql -u app", "MYSQL_PWD=[REDACTED:password] mysql -u app", 1),
    ('curl -H "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig" https://api.example.com/v1',
     'curl -H "Authorization: Bearer [REDACTED:bearer_token]" https://api.example.com/v1', 1),
    ("git clone https://bob:ghp_tok3nvalue@github.com/acme/app.git",
     "git clone https://bob:[REDACTED:basic_auth_url]@github.com/acme/app.git", 1),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nabc=\n-----END RSA PRIVATE KEY-----\n$ ls",
     "[REDACTED:private_key]\n$ ls", 1),
    # a key cut short (a truncated payload), and the rest of one pasted across two records
    ("$ cat id_rsa\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",
     "$ cat id_rsa\n[REDACTED:private_key]", 1),
    ("QyNTUxOQAAACDx\n-----END OPENSSH PRIVATE KEY-----\n$ exit", "[REDACTED:private_key]\n$ exit", 1),
])
def test_each_kind_of_secret_is_replaced_and_its_context_kept(line, expected, count):
    assert redact.redact(line) == (expected, count)


@pytest.mark.parametrize("line", [
    "git log -p",
    "git show 9fceb02d0ae598e95dc970b74767f19372d61af8",  # a 40-character hash, no context naming a secret
    f"echo {SECRET}",  # a bare 40-character string: it could be anything
    "aws ec2 describe-instances --instance-ids i-0123456789abcdef0",
    "curl http://169.254.169.254/latest/meta-data/instance-id",
    "docker run 3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    "sudo passwd bob",
    "cat /etc/passwd: No such file or directory",
    "mysql -u admin -p -h db.internal",  # -p alone: mysql asks for the password
    "ls -p /var/log",
    "ssh ec2-user@10.0.0.12",
    "sudo su -",
])
def test_ordinary_commands_are_left_alone(line):
    assert redact.redact(line) == (line, 0)


def test_patterns_from_the_config_and_a_bad_one_named():
    assert redact.redact("token tok-12345 used", ["tok-[0-9]+"]) == ("token [REDACTED:custom] used", 1)
    assert redact.redact("pin=4321", [r"pin=(?P<secret>\d+)"]) == ("pin=[REDACTED:custom]", 1)
    with pytest.raises(ConfigError, match=r"redaction.patterns\[1\] is not a regex"):
        config_from_dict({"redaction": {"patterns": ["ok", "(unclosed"]}})


def _session_object(lines: list[str], extra_records: list[dict] = ()) -> bytes:
    record = {"eventVersion": "1.0", "eventTime": "2024-08-01T12:19:16Z", "awsRegion": "us-east-1",
              "target": {"id": "i-0123456789abcdef0"}, "userIdentity": {"arn": f"arn:aws:iam::{OWNER}:user/ana"},
              "runAsUser": "ssm-user", "sessionId": "ana-0a1b2c3d4e5f6g7h8i9j0k1l2m", "sessionData": lines}
    return samples.build_object(samples.session_log_documents([record, *extra_records], OWNER))


LINES = [
    f"sh-4.2$ aws configure set aws_access_key_id {KEY_ID}",
    f"sh-4.2$ aws configure set aws_secret_access_key {SECRET}",
    "sh-4.2$ mysql -u admin -pS3cr3t! -h db.internal shop",
    "sh-4.2$ git log --oneline -1",
    "9fceb02 Fix the build",
]
REDACTED = [
    "sh-4.2$ aws configure set aws_access_key_id [REDACTED:aws_access_key_id]",
    "sh-4.2$ aws configure set aws_secret_access_key [REDACTED:aws_secret_access_key]",
    "sh-4.2$ mysql -u admin -p[REDACTED:mysql_password] -h db.internal shop",
    "sh-4.2$ git log --oneline -1",
    "9fceb02 Fix the build",
]


def test_a_session_row_and_its_message_are_redacted_and_counted():
    [row] = process_cloudwatch(_session_object(LINES), "s3://b/k", config_from_dict({})).rows
    assert row["sessiondata"].split("\n") == REDACTED and row["redactions"] == 3
    assert KEY_ID not in row["message"] and SECRET not in row["message"] and "S3cr3t!" not in row["message"]
    assert json.loads(row["message"])["sessionData"] == REDACTED  # still the record's JSON

    [plain] = process_cloudwatch(_session_object(LINES), "s3://b/k",
                                 config_from_dict({"redaction": {"enabled": False}})).rows
    assert plain["sessiondata"].split("\n") == LINES and plain.get("redactions") is None


def test_quarantine_payloads_of_session_log_groups_are_redacted():
    # a session record without a sessionData array is quarantined, with its message as payload
    broken = {"sessionId": "ana-x", "eventTime": "2024-08-01T12:20:00Z",
              "typed": f"export AWS_SECRET_ACCESS_KEY={SECRET}"}
    result = process_cloudwatch(_session_object(LINES, [broken]), "s3://b/k", config_from_dict({}))
    [problem] = result.problems
    assert problem.reason == "bad_session_record" and SECRET not in problem.payload
    assert "AWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_access_key]" in problem.payload
    assert len(result.rows) == 1
    # redacted before the payload is cut to quality.max_payload_bytes: a secret at the cut
    # is still found whole (cut first, its first characters would be left)
    unredacted = process_cloudwatch(_session_object(LINES, [broken]), "s3://b/k",
                                    config_from_dict({"redaction": {"enabled": False}})).problems[0].payload
    cut = unredacted.index(SECRET) + 10  # the limit falls inside the secret
    config = config_from_dict({"quality": {"max_payload_bytes": cut}})
    [problem] = process_cloudwatch(_session_object(LINES, [broken]), "s3://b/k", config).problems
    assert unredacted[:cut].endswith(SECRET[:10]) and SECRET[:10] not in problem.payload
    assert problem.payload.startswith(unredacted[:unredacted.index("AWS_SECRET_ACCESS_KEY")])


def test_the_published_row_as_a_user_runs_the_job(tmp_path):
    """`loglake run cloudwatch` in its own process: the readready file holds the redacted
    lines and redactions = 3 in the appended int column (ORC INT, what Athena's int reads)."""
    raw, out = tmp_path / "raw", tmp_path / "lake"
    place(raw, KEY, _session_object(LINES))
    done = subprocess.run([LOGLAKE, "run", "cloudwatch", "--raw", str(raw), "--out", str(out)], capture_output=True,
                          text=True, timeout=600, env=os.environ.copy(), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["written"] == 1
    [path] = [p for p in (out / "from_cloudwatch_readready").rglob("*.orc")]
    table = orc.ORCFile(str(path))
    assert table.schema.names[-1] == "redactions" and str(table.schema.field("redactions").type) == "int32"
    [row] = table.read().to_pylist()
    assert row["sessiondata"].split("\n") == REDACTED and row["redactions"] == 3
    assert KEY_ID not in row["message"] and SECRET not in row["message"]
    ok = subprocess.run([LOGLAKE, "contract", "--lake", str(out)], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
