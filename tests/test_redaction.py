"""Keystroke redaction: secrets typed in Session Manager sessions never reach readready.

Keys are AWS's documented example keys (IAM user guide: AKIAIOSFODNN7EXAMPLE,
wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY); the lines are what people type in a shell.
"""
from __future__ import annotations

import gzip
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
    # what an interactive `aws configure` echoes as the user types (helper review finding)
    (f"AWS Secret Access Key [None]: {SECRET}", "AWS Secret Access Key [None]: [REDACTED:aws_secret_access_key]", 1),
    (f"AWS Secret Access Key [****************EKEY]: {SECRET}",
     "AWS Secret Access Key [****************EKEY]: [REDACTED:aws_secret_access_key]", 1),
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


def test_an_end_line_without_its_begin_takes_only_the_key_lines_above_it():
    """The rest of a key cut across records is base64 lines up to the END line; a command
    or its output above them is not the key, and an END inside a command is no key at all."""
    assert redact.redact("some text\n-----END RSA PRIVATE KEY-----\nls -la") == (
        "some text\n[REDACTED:private_key]\nls -la", 1)
    assert redact.redact("sh-4.2$ tail -2 id_rsa\nQyNTUxOQAAACDx\nabc=\n-----END OPENSSH PRIVATE KEY-----\n$ exit") == (
        "sh-4.2$ tail -2 id_rsa\n[REDACTED:private_key]\n$ exit", 1)
    grep = "sh-4.2$ grep -c -- '-----END RSA PRIVATE KEY-----' id_rsa\n1"
    assert redact.redact(grep) == (grep, 0)
    # a key pasted into a heredoc, an encrypted key's headers, CRLF lines: still the key's lines
    assert redact.redact("> QyNTUxOQAAACDx\n> -----END OPENSSH PRIVATE KEY-----\n> EOF") == (
        "[REDACTED:private_key]\n> EOF", 1)
    assert redact.redact("Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\nMIIEpA==\r\n"
                         "-----END RSA PRIVATE KEY-----\r\n$ ls") == ("[REDACTED:private_key]\r\n$ ls", 1)


def test_a_password_prompt_is_not_followed_into_the_next_line():
    """mysql -p and su prompt for a password that the terminal does not echo: what follows
    the prompt is the program's next output, and stays."""
    for text in ["mysql -h db -p\nEnter password: \nmysql> show databases;",
                 "sh-4.2$ su -\nPassword: \nroot@ip-10-0-0-12:~# id"]:
        assert redact.redact(text) == (text, 0)
    assert redact.redact("password:\thunter2") == ("password:\t[REDACTED:password]", 1)


def _record(lines: list[str], session: str = "ana-0a1b2c3d4e5f6g7h8i9j0k1l2m", second: int = 16) -> dict:
    return {"eventVersion": "1.0", "eventTime": f"2024-08-01T12:19:{second:02d}Z", "awsRegion": "us-east-1",
            "target": {"id": "i-0123456789abcdef0"}, "userIdentity": {"arn": f"arn:aws:iam::{OWNER}:user/ana"},
            "runAsUser": "ssm-user", "sessionId": session, "sessionData": lines}


QUOTED = ['sh-4.2$ mysql --password="my secret pw" -h db.internal', 'sh-4.2$ PGPASSWORD="s3cr3t pass" psql -h db',
          "psql (15.4)"]
QUOTED_REDACTED = ["sh-4.2$ mysql --password=[REDACTED:password] -h db.internal",
                   "sh-4.2$ PGPASSWORD=[REDACTED:pgpassword] psql -h db", "psql (15.4)"]


def test_a_quoted_secret_leaves_the_message_as_it_leaves_sessiondata():
    """The message is the record's JSON, where quotes are escaped (\\"my secret pw\\"): it is
    redacted in its decoded lines, so nothing sessiondata hides is left in it, and it is the
    delivered record, in its layout, but for the secrets."""
    record = _record(QUOTED)
    [row] = process_cloudwatch(samples.build_object(samples.session_log_documents([record], OWNER)), "s3://b/k",
                               config_from_dict({})).rows
    assert row["sessiondata"].split("\n") == QUOTED_REDACTED and row["redactions"] == 2
    assert "secret pw" not in row["message"] and "cr3t pass" not in row["message"]
    assert row["message"] == json.dumps({**record, "sessionData": QUOTED_REDACTED})


def test_quoted_secrets_in_quarantine_payloads_are_redacted_whole():
    """A payload is the record's JSON again, or the text of a broken document, where the
    quotes are escaped twice (the message is JSON inside JSON)."""
    data = samples.build_object(samples.session_log_documents([_record(QUOTED)], OWNER))
    [problem] = process_cloudwatch(data, "s3://b/k", config_from_dict({"quality": {"max_record_bytes": 200}})).problems
    assert problem.reason == "record_too_large"
    assert "secret pw" not in problem.payload and "cr3t pass" not in problem.payload
    assert json.loads(json.loads(problem.payload)["message"])["sessionData"] == QUOTED_REDACTED

    text = json.dumps(samples.session_log_documents([_record(QUOTED)], OWNER)[0])
    cut = gzip.compress(text[: text.index("psql (15.4)")].encode())  # a document that ends too soon
    [problem] = process_cloudwatch(cut, "s3://b/k", config_from_dict({})).problems
    assert problem.reason == "truncated_json" and "--password=" in problem.payload
    assert "secret pw" not in problem.payload and "cr3t pass" not in problem.payload


BODY = [f"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW{i:02d}" for i in range(6)]


def test_a_private_key_printed_across_records_is_redacted_in_each():
    """`cat id_ed25519` printed in three records of a session (the middle one all base64,
    nothing in it says key) with another session's record delivered in between: the
    session's open key carries from one of its records to the next, and no further than
    the key's lines."""
    a = [_record(["sh-4.2$ cat ~/.ssh/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----", BODY[0]], second=1),
         _record(BODY[1:4], second=2),
         _record([*BODY[4:], "-----END OPENSSH PRIVATE KEY-----", "sh-4.2$ head -2 id_rsa"], second=3),
         _record(["-----BEGIN RSA PRIVATE KEY-----", "MIIEpAIBAAKCAQEA7"], second=4),  # head: no END
         _record(["sh-4.2$ ls", "notes.txt"], second=5),
         _record(["Documents", "sh-4.2$ exit"], second=6)]
    other = _record(["QUJDREVGRw==", "sh-4.2$ exit"], session="bob-0a1b2c3d4e5f6g7h8i9j0k1l2m", second=2)
    doc_a, doc_b = samples.session_log_documents([*a, other], OWNER)
    first, rest = {**doc_a, "logEvents": doc_a["logEvents"][:1]}, {**doc_a, "logEvents": doc_a["logEvents"][1:]}
    rows = process_cloudwatch(samples.build_object([first, doc_b, rest]), "s3://b/k", config_from_dict({})).rows
    assert [(row["sessiondata"], row["redactions"]) for row in rows] == [
        ("sh-4.2$ cat ~/.ssh/id_ed25519\n[REDACTED:private_key]", 1),
        ("QUJDREVGRw==\nsh-4.2$ exit", 0),  # another session: not inside the key
        ("[REDACTED:private_key]", 1),
        ("[REDACTED:private_key]\nsh-4.2$ head -2 id_rsa", 1),
        ("[REDACTED:private_key]", 1),
        ("sh-4.2$ ls\nnotes.txt", 0),  # the key ended where its lines did
        ("Documents\nsh-4.2$ exit", 0),
    ]
    for row in rows:
        assert not any(line[:20] in row["message"] for line in BODY)
        assert json.loads(row["message"])["sessionData"] == row["sessiondata"].split("\n")
