"""``loglake generate``: realistic raw CloudTrail and Firehose data for benchmarks.

Records are built from the real published samples in ``../shared/data/external/``
(stratus-red-team detonation logs, elastic integration tests, AWS documentation
examples: every record with an eventID, eventTime and eventName), used as templates:
their field sets, key order and requestParameters/responseElements shapes are kept,
while whatever differs between real events is drawn fresh for each one:

* ``eventID``, request ids, UUIDs, access keys, session tokens and encoded messages
  inside the record (same format and length, new random content);
* ``eventTime`` within the file's 5-minute window; other ISO times in the record
  move with it;
* the principal (``userIdentity``) from a per-account pool of IAM users, SSO and
  workload roles (temporary keys rotate hourly), or an AWS service for
  service-invoked calls; source IPs and user agents from per-principal habits and a
  pool of real agents;
* account ids and the template's (anonymised) region become the file's account and
  region; instance ids come from a per-account fleet, other EC2 ids are new.

The mix is what an organisation trail looks like: mostly read-only
Describe/Get/List calls, some writes, about 4 % errors, mostly assumed roles, some
IAM users, service principals. Files are delivered as a trail delivers them: one
gzip ``{"Records":[...]}`` object per account, region and 5-minute window with
activity, named ``<account>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_<16 alnum>.json.gz``
under ``AWSLogs/<org>/<account>/CloudTrail/<region>/YYYY/MM/DD/`` (delivery date,
never before the events' date).

Session Manager: some principals start sessions (StartSession, later
TerminateSession, sessionId ``<user>-<26 lowercase alnum>``); what was typed in each
session is delivered as CloudWatch Logs documents of ``/aws/ssm/sessionlogs`` in
Firehose objects (several gzip members, no suffix) under ``cwl/YYYY/MM/DD/HH/``,
together with CONTROL_MESSAGE health checks and a Lambda log group's documents.

Two folders come out, one per bucket: ``OUT/cloudtrail/AWSLogs/...`` and
``OUT/cloudwatch/cwl/...``. Output is deterministic for a seed (gzip mtime 0; days
are generated with their own seeds, in parallel when there are several).
"""
from __future__ import annotations

import argparse
import bisect
import datetime as dt
import gzip
import hashlib
import itertools
import json
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from loglake import samples as sample_data

DEFAULT_START = dt.date(2024, 9, 2)
GZIP_LEVEL = 6  # zlib's default, as the AWS SDKs and most producers use
WINDOW = 300  # CloudTrail delivers about every 5 minutes per account and region
SESSION_LOG_GROUP = "/aws/ssm/sessionlogs"
LAMBDA_LOG_GROUP = "/aws/lambda/orders-api-prod-handler"
FIREHOSE_PREFIX = "cwl/"
RATIO_TOLERANCE = 0.25

# The mix of an organisation trail (shares of all events; sessions come on top).
MIX = {"read": 0.70, "service": 0.07, "write": 0.19, "error": 0.04}
SESSIONS_PER_EVENT = 0.002  # Session Manager sessions per CloudTrail event
_READ_NAME = re.compile(r"^(Describe|Get|List|Lookup|Head|Check|Search|BatchGet|Select|Query|Scan)")
_SESSION_EVENTS = {"StartSession", "TerminateSession", "ResumeSession"}
_POOL_IDENTITIES = {"IAMUser", "AssumedRole"}

REAL_USER_AGENTS = (
    "aws-cli/2.18.17 md/awscrt#0.22.0 ua/2.0 os/linux#6.8.0-1016-aws md/arch#x86_64 lang/python#3.12.6 "
    "md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/distrib#ubuntu.24 md/prompt#off "
    "md/command#{command}",
    "aws-cli/2.14.5 Python/3.11.6 Darwin/23.6.0 exe/x86_64 prompt/off command/{command}",
    "Boto3/1.35.50 md/Botocore#1.35.50 ua/2.0 os/linux#6.8.0-1016-aws md/arch#x86_64 lang/python#3.12.3 "
    "md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.35.50",
    "Boto3/1.34.131 md/Botocore#1.34.131 ua/2.0 os/linux#5.10.219-208.866.amzn2.x86_64 md/arch#x86_64 "
    "lang/python#3.12.4 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.131",
    "aws-sdk-go-v2/1.32.3 os/linux lang/go#1.23.1 md/GOOS#linux md/GOARCH#amd64 api/{service}#1.26.2",
    "APN/1.0 HashiCorp/1.0 Terraform/1.9.8 (+https://www.terraform.io) terraform-provider-aws/5.72.1 "
    "(+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.32.2 ua/2.0 os/linux "
    "lang/go#1.23.2 md/GOOS#linux md/GOARCH#amd64 api/{service}#1.36.2",
    "aws-sdk-java/1.11.590 Mac_OS_X/10.14.6 Java_HotSpot(TM)_64-Bit_Server_VM/25.202-b08 java/1.8.0_202 "
    "vendor/Oracle_Corporation",
    "aws-sdk-nodejs/2.1384.0 darwin/v20.16.0 AWS-Toolkit-For-VSCode/3.31.0 Visual-Studio-Code/1.94.2 promise",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 "
    "Safari/537.36",
    "aws-cli/1.16.248 Python/3.4.7 Linux/4.9.184-0.1.ac.235.83.329.metal1.x86_64 botocore/1.12.239",
    "Go-http-client/1.1",
    "console.amazonaws.com",
    "AWS Internal",
)
SERVICE_PRINCIPALS = (
    "lambda.amazonaws.com", "ec2.amazonaws.com", "ecs-tasks.amazonaws.com", "ssm.amazonaws.com",
    "config.amazonaws.com", "cloudformation.amazonaws.com", "autoscaling.amazonaws.com",
    "elasticloadbalancing.amazonaws.com", "eks.amazonaws.com", "glue.amazonaws.com",
)
HUMANS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
          "christophe", "nadia", "oscar", "peggy", "sybil", "trent", "victor", "walter", "yusuf")
APPS = ("orders", "billing", "search", "ingest", "payments", "catalog", "auth", "reports")
SSO_SETS = ("AdministratorAccess", "ReadOnlyAccess", "PowerUserAccess", "SecurityAudit")

# Session Manager: what people type, and what comes back ({n} varies).
COMMANDS = (
    ("whoami", ["ssm-user"]),
    ("sudo -i", []),
    ("uptime", [" {hh}:{mm}:{ss} up {n} days,  2 users,  load average: 0.{a}, 0.{b}, 0.{c}"]),
    ("df -h /", ["Filesystem      Size  Used Avail Use% Mounted on", "/dev/nvme0n1p1   30G  {n}G   {m}G  {p}% /"]),
    ("systemctl status nginx --no-pager | head -3",
     ["* nginx.service - The nginx HTTP and reverse proxy server",
      "   Loaded: loaded (/usr/lib/systemd/system/nginx.service; enabled)",
      "   Active: active (running) since {day} {hh}:{mm}:{ss} UTC; {n}h ago"]),
    ("tail -n 2 /var/log/messages",
     ["{mon} {d} {hh}:{mm}:{ss} ip-10-0-{a}-{b} amazon-ssm-agent[{pid}]: INFO [ssm-session-worker] session open",
      "{mon} {d} {hh}:{mm}:{ss} ip-10-0-{a}-{b} systemd[1]: Started Session {n} of user ssm-user."]),
    ("ps aux | grep -c java", ["{n}"]),
    ("cat /etc/os-release | head -2", ['NAME="Amazon Linux"', 'VERSION="2023"']),
    ("curl -s http://169.254.169.254/latest/meta-data/instance-id", ["{instance}"]),
    ("aws sts get-caller-identity --query Arn --output text", ["{arn}"]),
    ("docker ps --format '{{{{.Names}}}}' | head -3", ["{app}-api-{n}", "{app}-worker-{m}", "datadog-agent"]),
    ("sudo cat /etc/shadow | head -2", ["root:*LOCK*:14600::::::", "bin:*:17110:0:99999:7:::"]),
    ("ls -la /opt/{app}", ["total {n}", "drwxr-xr-x  4 root root 4096 {mon} {d} {hh}:{mm} .",
                           "-rw-r--r--  1 root root {pid} {mon} {d} {hh}:{mm} config.yaml"]),
    ("free -m", ["              total        used        free", "Mem:          {pid}        {n}        {m}"]),
    ("exit", []),
)


# --------------------------------------------------------------------------- samples


def template_records(samples: Path) -> list[dict]:
    """Every real CloudTrail record of the shared samples usable as a template."""
    out = []
    for records in sample_data.sample_records(samples).values():
        for rec in records:
            if isinstance(rec, dict) and rec.get("eventID") and rec.get("eventTime") and rec.get("eventName"):
                out.append(rec)
    return out


def real_gzip_ratios(samples: Path) -> dict[str, float]:
    """uncompressed/compressed of the real sample files.

    ``reference``: every real stratus-red-team detonation file and elastic event file
    (each a real burst of activity of 1-56 records, as in one 5-minute trail file),
    wrapped and compressed as the generator writes a trail file (compact
    ``{"Records":[...]}``, gzip level 6), summed over files. ``stratus_files``: the
    stratus ones alone. ``stratus_stored``/``elastic_stored``: the derived
    all-records-in-one-file samples as stored (one 310-record file compresses better
    than any 5-minute file: more repetition within gzip's 32 KiB window)."""
    ct = samples / "cloudtrail"
    stratus = [json.loads(p.read_text()) for p in sorted((ct / "stratus-red-team" / "detonation-logs").glob("*.json"))]
    elastic = []
    for path in sorted((ct / "elastic-integrations").glob("*.log")):
        if "digest" not in path.name:  # a digest file, not events
            elastic.append([json.loads(line) for line in path.read_text().splitlines() if line.strip()])

    def ratio(groups: list[list[dict]]) -> float:
        bodies = [orjson.dumps({"Records": recs}) for recs in groups]
        return round(sum(map(len, bodies)) / sum(len(gzip.compress(b, GZIP_LEVEL, mtime=0)) for b in bodies), 3)

    out = {"reference": ratio(stratus + elastic), "stratus_files": ratio(stratus)}
    for name, path in (("stratus_stored", ct / "stratus-red-team" / "stratus_detonation_logs_all.records.json.gz"),
                       ("elastic_stored", ct / "elastic-integrations" /
                        "elastic_cloudtrail_test_logs_all.records.json.gz")):
        data = path.read_bytes()
        out[name] = round(len(gzip.decompress(data)) / len(data), 3)
    return out


# --------------------------------------------------------------------------- random values

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_UPPER_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _chars(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choices(alphabet, k=n))


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _stable(*parts: Any) -> random.Random:
    """A generator seeded from names, independent of any other random draws."""
    return random.Random(hashlib.blake2b(repr(parts).encode(), digest_size=16).digest())


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", re.sub(r"\d{8}v\d$", "", name)).lower()


def _public_ip(rng: random.Random) -> str:
    first = rng.choice((3, 13, 18, 34, 35, 44, 52, 54, 63, 81, 85, 89, 91, 92, 104, 146, 176, 185, 193, 203, 212))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


# --------------------------------------------------------------------------- templates

_UUID_RE = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_GENERIC = [
    ("SENT", r'"@@IDENT@@"|@@[A-Z]+@@'),
    # (a token may follow a JSON escape such as \n, but never starts on its letter)
    ("TOKEN64", r"(?:(?<=\\n)|(?<![A-Za-z0-9+/\\]))[A-Za-z0-9+/]{60,}={0,2}"),
    ("TOKENURL", r"(?:(?<=\\n)|(?<![A-Za-z0-9_\\-]))[A-Za-z0-9_-]{100,}"),
    ("UUID", r"(?<![0-9a-zA-Z])" + _UUID_RE + r"(?![0-9a-zA-Z])"),
    ("INST", r"(?<![A-Za-z0-9-])i-[0-9a-fA-F]{8,17}(?![0-9a-zA-Z])"),
    ("EC2", r"(?<![A-Za-z0-9-])(?:vol|snap|sg|ami|subnet|vpc|eni|igw|rtb)-[0-9a-fA-F]{8,17}(?![0-9a-zA-Z])"),
    ("AKEY", r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    ("TS", r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"),
    ("DIGITS", r"(?<![\d.])\d{13,19}(?![\d.])"),
]


class Template:
    """A real record turned into literal text with holes for what varies per event."""

    def __init__(self, rec: dict):
        self.source = rec.get("eventSource") or ""
        self.name = rec["eventName"]
        self.error = bool(rec.get("errorCode"))
        identity = rec.get("userIdentity") if isinstance(rec.get("userIdentity"), dict) else {}
        self.identity_type = identity.get("type")
        self.pool_identity = self.identity_type in _POOL_IDENTITIES
        read = rec.get("readOnly") is True or bool(_READ_NAME.match(self.name))
        if self.name in _SESSION_EVENTS:
            self.category = "session"
        elif self.error:
            self.category = "error"
        else:
            self.category = "read" if read else "write"
        self.session_id = None
        for part in ("responseElements", "requestParameters"):
            section = rec.get(part)
            if isinstance(section, dict) and isinstance(section.get("sessionId"), str):
                self.session_id = section["sessionId"]
        shaped = dict(rec)
        shaped["eventID"] = "@@EID@@"
        shaped["eventTime"] = "@@TIME@@"
        if "requestID" in rec:
            shaped["requestID"] = "@@RID@@"
        rid = str(rec.get("requestID") or "")
        self.rid_uuid = bool(re.fullmatch(_UUID_RE, rid))
        self.rid_shape = (len(rid) or 36, _UPPER_ALNUM if rid.isupper() else _ALNUM)
        ip = str(rec.get("sourceIPAddress") or "")
        self.service_ip = bool(re.search(r"[a-zA-Z]", ip))  # a service name, kept
        if not self.service_ip and "sourceIPAddress" in rec:
            shaped["sourceIPAddress"] = "@@IP@@"
        ua = rec.get("userAgent")
        self.service_ua = not isinstance(ua, str) or ua.endswith(".amazonaws.com") or ua == "AWS Internal"
        if not self.service_ua:
            shaped["userAgent"] = "@@UA@@"
        if self.pool_identity:
            shaped["userIdentity"] = "@@IDENT@@"
        shaped["recipientAccountId"] = "@@ACCT@@"
        if isinstance(rec.get("awsRegion"), str):
            shaped["awsRegion"] = "@@REGION@@"
        text = orjson.dumps(shaped).decode()
        if self.session_id:
            text = text.replace(self.session_id, "@@SID@@")
        # the template's own account ids (some samples use placeholders of 9-13 digits)
        issuer = (identity.get("sessionContext") or {}).get("sessionIssuer") or {}
        accounts = {str(a) for a in (rec.get("recipientAccountId"), identity.get("accountId"), issuer.get("accountId"))
                    if a and re.fullmatch(r"\d{9,13}", str(a))}
        region = rec.get("awsRegion") if isinstance(rec.get("awsRegion"), str) else None
        patterns = [_GENERIC[0]]
        if accounts:
            patterns.append(("ACCT", r"(?<!\d)(?:" + "|".join(sorted(accounts)) + r")(?!\d)"))
        if region:
            patterns.append(("REGION", r"(?<![a-z0-9-])" + re.escape(region) + r"(?![a-z0-9-])"))
        patterns += _GENERIC[1:]
        regex = re.compile("|".join(f"(?P<{k}>{p})" for k, p in patterns))
        self.segments: list[Any] = []
        pos = 0
        for m in regex.finditer(text):
            if m.start() > pos:
                self.segments.append(text[pos:m.start()])
            kind, value = m.lastgroup, m.group()
            if kind == "SENT":
                kind, value = value.strip('"@'), ""
            self.segments.append((kind, value))
            pos = m.end()
        if pos < len(text):
            self.segments.append(text[pos:])
        # join adjacent literals
        merged: list[Any] = []
        for seg in self.segments:
            if isinstance(seg, str) and merged and isinstance(merged[-1], str):
                merged[-1] += seg
            else:
                merged.append(seg)
        self.segments = merged
        self.command = f"{self.source.split('.')[0]}.{_kebab(self.name)}"

    def render(self, memo: dict, fill) -> str:
        out = []
        for seg in self.segments:
            if seg.__class__ is str:
                out.append(seg)
                continue
            value = memo.get(seg)
            if value is None:
                value = memo[seg] = fill(seg)
            out.append(value)
        return "".join(out)


# --------------------------------------------------------------------------- principals


class Principal:
    __slots__ = ("account", "kind", "arn", "name", "identity", "weight", "ua", "ips", "human", "session_user",
                 "key_prefix", "pid")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


def _principals(seed: int, account: str) -> list[Principal]:
    """The users, SSO sessions and workload roles active in one account (stable per seed)."""
    rng = _stable(seed, "principals", account)
    out: list[Principal] = []
    humans = rng.sample(HUMANS, 8)
    ips = [_public_ip(rng) for _ in range(24)]

    def ua_for(kind: str) -> str:
        if kind == "console":
            return rng.choice(REAL_USER_AGENTS[8:10])
        if kind == "sdk":
            return rng.choice(REAL_USER_AGENTS[2:8])
        return rng.choice(REAL_USER_AGENTS[:2])

    for name in humans[:3] + ["terraform", "backup-agent"]:
        human = name in humans
        ident = {"type": "IAMUser", "principalId": "AIDA" + _chars(rng, _UPPER_ALNUM, 17),
                 "arn": f"arn:aws:iam::{account}:user/{name}", "accountId": account,
                 "accessKeyId": "AKIA" + _chars(rng, _UPPER_ALNUM, 16), "userName": name}
        out.append(Principal(account=account, kind="IAMUser", arn=ident["arn"], name=name, identity=ident,
                             weight=0, ua=ua_for("cli" if human else "sdk"), ips=rng.sample(ips, 2), human=human,
                             session_user=name, key_prefix=None, pid=ident["principalId"]))
    for perm in rng.sample(SSO_SETS, 2):
        role = f"AWSReservedSSO_{perm}_{_hex(rng, 16)}"
        role_id = "AROA" + _chars(rng, _UPPER_ALNUM, 17)
        for person in humans[3:7]:
            session = f"{person}@example.com"
            out.append(_role_principal(account, role, "aws-reserved/sso.amazonaws.com/", role_id, session,
                                       ua_for(rng.choice(("console", "cli"))), rng.sample(ips, 2), True, person))
    for app in rng.sample(APPS, 3):
        role = f"{app}-lambda-exec"
        out.append(_role_principal(account, role, "", "AROA" + _chars(rng, _UPPER_ALNUM, 17),
                                   f"{app}-prod-handler", ua_for("sdk"), [], False, app))
        role = f"{app}-eks-node-role"
        role_id = "AROA" + _chars(rng, _UPPER_ALNUM, 17)
        for _ in range(2):
            inst = "i-" + _hex(rng, 17)
            p = _role_principal(account, role, "", role_id, inst, ua_for("sdk"), rng.sample(ips, 1), False, app)
            p.identity["sessionContext"]["ec2RoleDelivery"] = "2.0"
            out.append(p)
    out.append(_role_principal(account, "github-actions-deploy", "", "AROA" + _chars(rng, _UPPER_ALNUM, 17),
                               "GitHubActions", REAL_USER_AGENTS[5], [_public_ip(rng)], False, "deploy"))
    out.append(_role_principal(account, "OrganizationAccountAccessRole", "", "AROA" + _chars(rng, _UPPER_ALNUM, 17),
                               f"{humans[7]}-admin", ua_for("cli"), rng.sample(ips, 1), True, humans[7]))
    order = list(range(len(out)))
    rng.shuffle(order)
    for rank, i in enumerate(order):
        out[i].weight = 1.0 / (rank + 1) ** 0.9
    return out


def _role_principal(account, role, path, role_id, session, ua, ips, human, user) -> Principal:
    ident = {"type": "AssumedRole", "principalId": f"{role_id}:{session}",
             "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}", "accountId": account,
             "accessKeyId": "", "sessionContext": {
                 "sessionIssuer": {"type": "Role", "principalId": role_id,
                                   "arn": f"arn:aws:iam::{account}:role/{path}{role}", "accountId": account,
                                   "userName": role},
                 "attributes": {"creationDate": "", "mfaAuthenticated": "false"}}}
    return Principal(account=account, kind="AssumedRole", arn=ident["arn"], name=role, identity=ident, weight=0,
                     ua=ua, ips=ips, human=human, session_user=user.split("@")[0], key_prefix="ASIA",
                     pid=ident["principalId"])


def _identity_text(p: Principal, seed: int, hour: int, cache: dict) -> str:
    """userIdentity JSON; temporary credentials and their creation time rotate hourly."""
    key = (p.pid, hour)
    text = cache.get(key)
    if text is None:
        if p.kind == "AssumedRole":
            rng = _stable(seed, "session", p.pid, hour)
            ident = json.loads(json.dumps(p.identity))
            ident["accessKeyId"] = "ASIA" + _chars(rng, _UPPER_ALNUM, 16)
            ident["sessionContext"]["attributes"]["creationDate"] = _iso(hour * 3600 + rng.randrange(0, 600))
            text = orjson.dumps(ident).decode()
        else:
            text = orjson.dumps(p.identity).decode()
        cache[key] = text
    return text


# --------------------------------------------------------------------------- one day


class _Day:
    """Generates one day's files; every random draw comes from this day's own seed."""

    def __init__(self, out: Path, seed: int, org: str, accounts: list[str], regions: list[str], day: dt.date,
                 day_index: int, events: int, templates: list[Template], lambda_doc: dict):
        self.out, self.seed, self.org = out, seed, org
        self.accounts, self.regions, self.day = accounts, regions, day
        self.events = events
        self.rng = random.Random(f"loglake-generate:{seed}:{day.isoformat()}")
        self.day_start = dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()
        self.principals = {a: _principals(seed, a) for a in accounts}
        self.pcum = {a: list(itertools.accumulate(p.weight for p in ps)) for a, ps in self.principals.items()}
        self.fleet = {a: ["i-" + _hex(_stable(seed, "fleet", a, n), 17) for n in range(40)] for a in accounts}
        self.by_cat: dict[str, list[Template]] = {}
        for t in templates:
            self.by_cat.setdefault(t.category, []).append(t)
        self.by_cat["service"] = [t for t in templates
                                  if t.name == "AssumeRole" and not t.error and t.pool_identity]
        self.cat_cum: dict[str, list[float]] = {}
        for cat, ts in self.by_cat.items():
            kinds = Counter((t.source, t.name) for t in ts)
            self.cat_cum[cat] = list(itertools.accumulate(kinds[(t.source, t.name)] ** 0.75 / kinds[(t.source, t.name)]
                                                          for t in ts))
        self.mix = list(MIX)
        self.mix_cum = list(itertools.accumulate(MIX.values()))
        self.ident_cache: dict = {}
        self.repertoires: dict = {}
        self._arns: list[str] = []  # principals of the records of the file being built
        self.lambda_doc = lambda_doc
        self.stats: dict[str, Any] = {
            "ct_files": 0, "ct_bytes": 0, "ct_raw_bytes": 0, "ct_events": 0, "ct_file_sizes": [],
            "cw_files": 0, "cw_bytes": 0, "cw_raw_bytes": 0, "cw_log_events": 0, "cw_session_events": 0,
            "cw_documents": 0, "control_messages": 0, "sessions": 0, "errors": 0,
            "identity_types": Counter(), "categories": Counter(), "principal_events": Counter(),
        }

    # ------------------------------------------------------------------ values

    def _fill_factory(self, account: str, region: str, ts: float):
        rng = self.rng
        fleet = self.fleet[account]

        def fill(seg):
            kind, orig = seg
            if kind == "ACCT":
                return account
            if kind == "REGION":
                return region
            if kind == "UUID":
                return _uuid(rng)
            if kind == "INST":
                return rng.choice(fleet)
            if kind == "EC2":  # subnets, security groups, AMIs...: a few per account
                prefix = orig.split("-", 1)[0]
                return f"{prefix}-{_hex(_stable(self.seed, account, prefix, rng.randrange(6)), 17)}"
            if kind == "AKEY":
                return orig[:4] + _chars(rng, _UPPER_ALNUM, 16)
            if kind == "TOKEN64":
                body = orig.rstrip("=")
                return _chars(rng, _B64, len(body)) + orig[len(body):]
            if kind == "TOKENURL":
                return _chars(rng, _B64URL, len(orig))
            if kind == "TS":
                return _iso(ts - rng.randrange(0, 900))
            if kind == "DIGITS":
                return str(rng.randrange(10 ** (len(orig) - 1), 10 ** len(orig)))
            raise KeyError(kind)

        return fill

    def _pick(self, cat: str) -> Template:
        ts = self.by_cat[cat]
        return ts[bisect.bisect(self.cat_cum[cat], self.rng.random() * self.cat_cum[cat][-1])]

    def _principal(self, account: str) -> Principal:
        cum = self.pcum[account]
        return self.principals[account][bisect.bisect(cum, self.rng.random() * cum[-1])]

    def _record(self, t: Template, account: str, region: str, ts: float, principal: Principal | None,
                service: str | None = None, fixed: dict | None = None) -> str:
        rng = self.rng
        memo: dict = {("EID", ""): _uuid(rng), ("TIME", ""): _iso(ts)}
        if t.rid_uuid:
            memo[("RID", "")] = _uuid(rng)
        else:
            memo[("RID", "")] = _chars(rng, t.rid_shape[1], t.rid_shape[0])
        if service:
            memo[("IDENT", "")] = orjson.dumps({"type": "AWSService", "invokedBy": service}).decode()
            memo[("IP", "")] = service
            memo[("UA", "")] = service
            self.stats["identity_types"]["AWSService"] += 1
        elif principal is not None:
            hour = int(ts // 3600)
            memo[("IDENT", "")] = _identity_text(principal, self.seed, hour, self.ident_cache)
            r = rng.random()
            if principal.ips and r < 0.85:
                ip = principal.ips[0] if r < 0.6 or len(principal.ips) == 1 else principal.ips[1]
            elif not principal.ips and principal.kind == "AssumedRole" and "lambda" in principal.name:
                ip = f"{rng.choice((3, 18, 34, 52, 54))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
            else:
                ip = _public_ip(rng)
            memo[("IP", "")] = ip
            ua = principal.ua if rng.random() < 0.9 else rng.choice(REAL_USER_AGENTS)
            memo[("UA", "")] = ua.replace("{command}", t.command).replace("{service}", t.source.split(".")[0])
            self.stats["identity_types"][principal.kind] += 1
            self._arns.append(principal.arn)
        else:  # the template's own identity (Root, SAML, federated, service...)
            memo[("IP", "")] = _public_ip(rng)
            memo[("UA", "")] = rng.choice(REAL_USER_AGENTS).replace("{command}", t.command).replace(
                "{service}", t.source.split(".")[0])
            self.stats["identity_types"][t.identity_type or "none"] += 1
        if fixed:
            memo.update(fixed)
        return t.render(memo, self._fill_factory(account, region, ts))

    def _event(self, account: str, region: str, ts: float) -> str:
        rng = self.rng
        cat = self.mix[bisect.bisect(self.mix_cum, rng.random() * self.mix_cum[-1])]
        self.stats["categories"][cat] += 1
        if cat == "error":
            self.stats["errors"] += 1
        if cat == "service":
            return self._record(self._pick(cat), account, region, ts, None, service=rng.choice(SERVICE_PRINCIPALS))
        p = self._active[bisect.bisect(self._active_cum, rng.random() * self._active_cum[-1])]
        templates, cum = self._repertoire(p, cat)
        t = templates[bisect.bisect(cum, rng.random() * cum[-1])]
        return self._record(t, account, region, ts, p if t.pool_identity else None)

    def _repertoire(self, p: Principal, cat: str) -> tuple[list[Template], list[float]]:
        """The few calls a principal keeps making (a role's code, a person's habits):
        drawn once per principal from the category's realistic mix, used with Zipf weights."""
        key = (p.pid, cat)
        rep = self.repertoires.get(key)
        if rep is None:
            rng = _stable(self.seed, "repertoire", p.pid, cat)
            ts = self.by_cat[cat]
            size = {"read": 8, "write": 4, "error": 2}.get(cat, 4)
            chosen: list[Template] = []
            for _ in range(size * 3):
                t = ts[bisect.bisect(self.cat_cum[cat], rng.random() * self.cat_cum[cat][-1])]
                if t not in chosen:
                    chosen.append(t)
                if len(chosen) == size:
                    break
            weights = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(chosen))))
            rep = self.repertoires[key] = (chosen, weights)
        return rep

    # ------------------------------------------------------------------ sessions

    def _sessions(self, n: int) -> list[dict]:
        rng = self.rng
        out = []
        # real session events of a person, that name their session (one sample's response is redacted)
        usable = [t for t in self.by_cat.get("session", []) if t.pool_identity and t.session_id]
        starts = [t for t in usable if t.name == "StartSession"]
        ends = [t for t in usable if t.name == "TerminateSession"]
        for _ in range(n):
            account = rng.choices(self.accounts, weights=self._account_weights())[0]
            region = self.regions[0] if rng.random() < 0.7 else rng.choice(self.regions)
            humans = [p for p in self.principals[account] if p.human]
            p = rng.choice(humans)
            start = self.day_start + rng.uniform(7 * 3600, 21 * 3600)
            commands = [rng.choice(COMMANDS[:-1]) for _ in range(rng.randint(2, 10))] + [COMMANDS[-1]]
            times = sorted(start + rng.uniform(5, 600 * len(commands) / 4) for _ in commands)
            end = times[-1] + rng.uniform(1, 30)
            sid = f"{p.session_user}-{_chars(rng, _LOWER_ALNUM, 26)}"
            target = rng.choice(self.fleet[account])
            records = []
            for (cmd, output), when in zip(commands, times, strict=True):
                values = self._command_values(rng, when, target, p, account)
                lines = [f"sh-5.2$ {cmd}"] + [line.format(**values) for line in output]
                records.append({"eventVersion": "1.0", "eventTime": _iso(when), "awsRegion": region,
                                "target": {"id": target}, "userIdentity": {"arn": p.arn}, "runAsUser": "ssm-user",
                                "sessionId": sid, "sessionData": lines})
            out.append({"account": account, "region": region, "principal": p, "sid": sid, "target": target,
                        "start": start, "end": end, "records": records, "terminated": rng.random() < 0.9,
                        "start_template": rng.choice(starts), "end_template": rng.choice(ends)})
        return out

    def _command_values(self, rng, when, target, p, account):
        t = time.gmtime(when)
        return {"hh": f"{t.tm_hour:02d}", "mm": f"{t.tm_min:02d}", "ss": f"{t.tm_sec:02d}",
                "day": time.strftime("%a %Y-%m-%d", t), "mon": time.strftime("%b", t), "d": t.tm_mday,
                "n": rng.randint(1, 99), "m": rng.randint(1, 99), "p": rng.randint(5, 95),
                "a": rng.randint(0, 99), "b": rng.randint(1, 254), "c": rng.randint(0, 99),
                "pid": rng.randint(300, 32000), "instance": target, "arn": p.arn,
                "app": rng.choice(APPS)}

    def _account_weights(self) -> list[float]:
        return [1.0 / (i + 1) ** 0.8 for i in range(len(self.accounts))]

    # ------------------------------------------------------------------ files

    def run(self) -> dict:
        import numpy as np

        rng = self.rng
        nprng = np.random.default_rng([self.seed, self.day.toordinal()])
        n_windows = 86400 // WINDOW
        hour_w = np.array([0.35] * 6 + [0.8, 1.2] + [1.8] * 10 + [1.2, 0.9, 0.7, 0.6, 0.5, 0.4])
        acct_w = np.array(self._account_weights())
        region_w = np.array([0.6] + [0.4 / max(1, len(self.regions) - 1)] * (len(self.regions) - 1))
        region_w = region_w / region_w.sum()
        window_w = np.repeat(hour_w, 3600 // WINDOW)
        cells = acct_w[:, None, None] * region_w[None, :, None] * window_w[None, None, :]
        cells = cells * nprng.lognormal(0.0, 0.6, size=cells.shape)  # bursts
        sessions = self._sessions(max(1, round(self.events * SESSIONS_PER_EVENT)) if self.events else 0)
        n_regular = max(0, self.events - sum(1 + s["terminated"] for s in sessions))
        counts = nprng.multinomial(n_regular, (cells / cells.sum()).ravel()).reshape(cells.shape)
        extra: dict[tuple[int, int, int], list[tuple[float, str, list[str]]]] = {}
        for s in sessions:
            a, r = self.accounts.index(s["account"]), self.regions.index(s["region"])
            for t, when, kind in ((s["start_template"], s["start"], "start"), (s["end_template"], s["end"], "end")):
                if kind == "end" and not s["terminated"]:
                    continue
                fixed = {("SID", ""): s["sid"]}
                fixed.update({seg: s["target"] for seg in t.segments if isinstance(seg, tuple) and seg[0] == "INST"})
                self._arns = []
                text = self._record(t, s["account"], s["region"], when, s["principal"], fixed=fixed)
                self.stats["categories"]["session"] += 1
                w = int((when - self.day_start) // WINDOW)
                extra.setdefault((a, r, w), []).append((when, text, self._arns))
        self.stats["sessions"] = len(sessions)
        for w in range(n_windows):
            for a, account in enumerate(self.accounts):
                for r, region in enumerate(self.regions):
                    n = int(counts[a, r, w])
                    special = extra.get((a, r, w), [])
                    if not n and not special:
                        continue
                    base = self.day_start + w * WINDOW
                    items = [(base + rng.random() * WINDOW, None, None) for _ in range(n)] + special
                    items.sort(key=lambda x: x[0])
                    self._arns = []
                    # who is busy in this account during these 5 minutes: a few principals
                    # make most calls (a role's code polling, a person at work)
                    active = list({self._principal(account).pid: self._principal(account)
                                   for _ in range(rng.randint(2, 6))}.values())
                    self._active = active
                    self._active_cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(active))))
                    records = []
                    for ts, text, arns in items:
                        if text is None:
                            text = self._event(account, region, ts)
                        else:
                            self._arns.extend(arns)
                        records.append(text)
                    self._write_trail_file(account, region, base + WINDOW, records)
        self._write_firehose(sessions)
        st = self.stats
        st["identity_types"] = dict(st["identity_types"])
        st["categories"] = dict(st["categories"])
        st["principal_events"] = dict(st["principal_events"])
        st["session_ids"] = [s["sid"] for s in sessions]
        return st

    def _write_trail_file(self, account: str, region: str, window_end: float, records: list[str]) -> None:
        rng = self.rng
        delivered = window_end + rng.randrange(0, 240)
        t = time.gmtime(delivered)
        day = time.strftime("%Y/%m/%d", t)
        stamp = time.strftime("%Y%m%dT%H%MZ", t)
        name = f"{account}_CloudTrail_{region}_{stamp}_{_chars(rng, _ALNUM, 16)}.json.gz"
        key = f"AWSLogs/{self.org}/{account}/CloudTrail/{region}/{day}/{name}"
        body = ('{"Records":[' + ",".join(records) + "]}").encode()
        data = gzip.compress(body, GZIP_LEVEL, mtime=0)
        path = self.out / "cloudtrail" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        st = self.stats
        st["ct_files"] += 1
        st["ct_bytes"] += len(data)
        st["ct_raw_bytes"] += len(body)
        st["ct_events"] += len(records)
        st["ct_file_sizes"].append(len(data))
        dt_ = day.replace("/", "-")
        st.setdefault("ct_events_by_dt", Counter())[dt_] += len(records)
        # per principal and delivery date (the partition a needle query reads)
        for arn in self._arns:
            st["principal_events"][f"{dt_} {arn}"] += 1

    def _write_firehose(self, sessions: list[dict]) -> None:
        rng = self.rng
        windows: dict[int, list[dict]] = {}
        for s in sessions:
            docs = sample_data.session_log_documents(s["records"], s["account"], SESSION_LOG_GROUP)
            w = int((s["end"] + 60 - self.day_start) // WINDOW)
            windows.setdefault(w, []).extend(docs)
            self.stats["cw_session_events"] += sum(len(d["logEvents"]) for d in docs)
        lam = self.lambda_doc
        for w in range(86400 // WINDOW):
            if rng.random() < 0.5:
                windows.setdefault(w, []).append(self._lambda_doc(lam, self.day_start + w * WINDOW))
            if w % 72 == 0:  # CloudWatch Logs checks the destination now and then
                windows.setdefault(w, []).append({
                    "messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "", "logStream": "",
                    "subscriptionFilters": [], "logEvents": [{
                        "id": "", "timestamp": int((self.day_start + w * WINDOW) * 1000),
                        "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose."}]})
                self.stats["control_messages"] += 1
        for w in sorted(windows):
            docs = windows[w]
            delivered = self.day_start + (w + 1) * WINDOW + rng.randrange(0, 60)
            t = time.gmtime(delivered)
            key = (f"{FIREHOSE_PREFIX}{time.strftime('%Y/%m/%d/%H', t)}/"
                   f"loglake-cwl-1-{time.strftime('%Y-%m-%d-%H-%M-%S', t)}-{_uuid(rng)}")
            data = sample_data.build_object(docs, members=len(docs))
            path = self.out / "cloudwatch" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            st = self.stats
            st["cw_files"] += 1
            st["cw_bytes"] += len(data)
            st["cw_raw_bytes"] += sum(len(json.dumps(d, separators=(",", ":"))) for d in docs)
            st["cw_documents"] += len(docs)
            st["cw_log_events"] += sum(len(d["logEvents"]) for d in docs if d["messageType"] == "DATA_MESSAGE")

    def _lambda_doc(self, lam: dict, base: float) -> dict:
        """A Lambda function's log lines for a few invocations (real lines, new ids and times)."""
        rng = self.rng
        events = []
        stream = f"{time.strftime('%Y/%m/%d', time.gmtime(base))}/[$LATEST]{_hex(rng, 32)}"
        for _ in range(rng.randint(1, 6)):
            ts = base + rng.random() * WINDOW
            request = _uuid(rng)
            lines = [f"START RequestId: {request} Version: $LATEST\n"]
            for msg in rng.sample(lam["messages"], min(len(lam["messages"]), rng.randint(1, 4))):
                text = re.sub(_UUID_RE, request, msg)
                text = re.sub(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                              time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{rng.randrange(1000):03d}Z",
                              text)
                text = re.sub(r"\d{15,}", lambda m: str(rng.randrange(10 ** (len(m.group()) - 1),
                                                                       10 ** len(m.group()))), text)
                lines.append(text)
            d = rng.uniform(1, 900)
            lines.append(f"END RequestId: {request}\n")
            lines.append(f"REPORT RequestId: {request}\tDuration: {d:.2f} ms\tBilled Duration: {int(d) + 1} ms\t"
                         f"Memory Size: 1024 MB\tMax Memory Used: {rng.randint(80, 300)} MB\t\n")
            for i, line in enumerate(lines):
                ms = int(ts * 1000) + i
                events.append({"id": f"{ms:013d}{rng.getrandbits(128) % 10 ** 43:043d}", "timestamp": ms,
                               "message": line})
        self.stats["cw_log_events_other"] = self.stats.get("cw_log_events_other", 0) + len(events)
        return {"messageType": "DATA_MESSAGE", "owner": lam["owner"], "logGroup": LAMBDA_LOG_GROUP,
                "logStream": stream, "subscriptionFilters": ["loglake-firehose"], "logEvents": events}


def _lambda_template(samples: Path, owner: str) -> dict:
    path = samples / "cloudwatch_logs" / "datadog-serverless-functions" / "cloudwatch_logs.json"
    doc = json.loads(path.read_text())
    messages = [e["message"] for e in doc["logEvents"]
                if not e["message"].startswith(("START", "END", "REPORT"))]
    return {"owner": owner, "messages": messages}


def _day_job(args: tuple) -> dict:
    out, seed, org, accounts, regions, day, index, events, samples = args
    templates = [Template(r) for r in template_records(Path(samples))]
    lam = _lambda_template(Path(samples), accounts[0])
    return _Day(Path(out), seed, org, accounts, regions, day, index, events, templates, lam).run()


# --------------------------------------------------------------------------- API


def account_ids(seed: int, n: int) -> list[str]:
    rng = _stable(seed, "accounts")
    ids: list[str] = []
    while len(ids) < n:
        a = f"{rng.randrange(10 ** 11, 10 ** 12):012d}"
        if a not in ids:
            ids.append(a)
    return ids


DEFAULT_REGIONS = ("us-east-1", "eu-west-1", "us-west-2", "eu-central-1", "ap-southeast-2", "ap-northeast-1",
                   "eu-west-2", "ca-central-1", "sa-east-1", "ap-south-1")


def generate(out: str | os.PathLike, events: int, accounts: int = 5, regions: int = 3, days: int = 2,
             seed: int = 1, start_date: dt.date | str = DEFAULT_START, samples: str | os.PathLike | None = None,
             workers: int | None = None) -> dict[str, Any]:
    """Write ``events`` CloudTrail events (and the Session Manager keystrokes of the
    sessions among them) below ``out``; returns statistics (files, bytes, events per
    source, gzip ratios next to the real samples', a needle principal)."""
    started = time.time()
    if isinstance(start_date, str):
        start_date = dt.date.fromisoformat(start_date)
    if not 1 <= regions <= len(DEFAULT_REGIONS):
        raise ValueError(f"regions must be 1..{len(DEFAULT_REGIONS)}")
    if accounts < 1 or days < 1 or events < 0:
        raise ValueError("accounts and days must be >= 1, events >= 0")
    samples_path = sample_data.samples_dir(samples)
    out = Path(out)
    accts = account_ids(seed, accounts)
    regs = list(DEFAULT_REGIONS[:regions])
    org = "o-" + _chars(_stable(seed, "org"), _LOWER_ALNUM, 10)
    per_day = [events // days + (1 if i < events % days else 0) for i in range(days)]
    jobs = [(str(out), seed, org, accts, regs, start_date + dt.timedelta(days=i), i, per_day[i], str(samples_path))
            for i in range(days)]
    workers = workers or min(days, os.cpu_count() or 1)
    if workers > 1 and days > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_day_job, jobs, chunksize=1)
    else:
        results = [_day_job(j) for j in jobs]
    return _summarize(results, seed, start_date, accts, regs, org, days, samples_path, time.time() - started)


def _summarize(results, seed, start_date, accts, regs, org, days, samples_path, seconds) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(r.get(key, 0) for r in results)

    def merged(key: str) -> dict:
        c: Counter = Counter()
        for r in results:
            c.update(r.get(key, {}))
        return dict(sorted(c.items()))

    sizes = sorted(s for r in results for s in r["ct_file_sizes"])

    def pct(p: float) -> int:
        return sizes[min(len(sizes) - 1, int(p * len(sizes)))] if sizes else 0

    ct_ratio = total("ct_raw_bytes") / total("ct_bytes") if total("ct_bytes") else 0.0
    real = real_gzip_ratios(samples_path)
    # within 25 % of the real files, taken together and the stratus ones alone
    deviation = max(abs(ct_ratio / real[k] - 1) for k in ("reference", "stratus_files")) if ct_ratio else 1.0
    # the needle: the busiest person (IAM user or SSO session) of the first account on the
    # first delivery date: a few hundred events among the day's tens of thousands
    by_dt_arn = merged("principal_events")
    first = start_date.isoformat()
    first_day = {k.split(" ", 1)[1]: n for k, n in by_dt_arn.items() if k.startswith(first + " ")}
    people = [a for a in first_day if f"::{accts[0]}:" in a
              and ("@example.com" in a or any(a.endswith(f":user/{h}") for h in HUMANS))]
    needle_arn = max(people, key=lambda a: (first_day[a], a), default=None)
    ct_events = total("ct_events")
    return {
        "seed": seed, "start_date": start_date.isoformat(), "days": days, "org": org,
        "accounts": accts, "regions": regs, "seconds": round(seconds, 2),
        "cloudtrail": {
            "files": total("ct_files"), "bytes": total("ct_bytes"), "uncompressed_bytes": total("ct_raw_bytes"),
            "events": ct_events, "gzip_ratio": round(ct_ratio, 3),
            "events_per_file": round(ct_events / max(1, total("ct_files")), 1),
            "file_bytes": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": sizes[-1] if sizes else 0},
            "events_by_dt": merged("ct_events_by_dt"),
            "errors": total("errors"), "identity_types": merged("identity_types"), "mix": merged("categories"),
        },
        "cloudwatch": {
            "files": total("cw_files"), "bytes": total("cw_bytes"), "uncompressed_bytes": total("cw_raw_bytes"),
            "log_events": total("cw_log_events"), "session_log_events": total("cw_session_events"),
            "other_log_events": total("cw_log_events_other"), "documents": total("cw_documents"),
            "control_messages": total("control_messages"),
            "gzip_ratio": round(total("cw_raw_bytes") / total("cw_bytes"), 3) if total("cw_bytes") else 0.0,
        },
        "sessions": total("sessions"),
        "session_ids": [s for r in results for s in r["session_ids"]],
        "gzip_ratio": {"generated_cloudtrail": round(ct_ratio, 3), "real": real,
                       "deviation": round(deviation, 3), "within_25pct": deviation <= RATIO_TOLERANCE},
        "needle": {"arn": needle_arn, "dt": first, "events": first_day.get(needle_arn, 0)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="loglake generate",
        description="Write realistic raw CloudTrail files (organisation trail layout, one file per account, "
        "region and 5-minute window) and Firehose CloudWatch Logs objects (Session Manager keystrokes of "
        "the generated StartSession events, CONTROL_MESSAGEs, a Lambda log group), built from the real "
        "samples in ../shared/data/external/ as templates. Writes OUT/cloudtrail/AWSLogs/... and "
        "OUT/cloudwatch/cwl/...; prints statistics as JSON (files, bytes, events, gzip ratio next to "
        "the real samples'). Same seed, same bytes.",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (two buckets below it)")
    parser.add_argument("--events", type=int, default=100_000,
                        help="CloudTrail events in total, spread over the days (default 100000)")
    parser.add_argument("--accounts", type=int, default=5, help="member accounts of the organisation (default 5)")
    parser.add_argument("--regions", type=int, default=3,
                        help=f"regions per account, 1-{len(DEFAULT_REGIONS)}; the first is the busiest (default 3)")
    parser.add_argument("--days", type=int, default=2, help="days of activity (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives identical files")
    parser.add_argument("--start-date", default=DEFAULT_START.isoformat(), metavar="YYYY-MM-DD",
                        help=f"first day (UTC, default {DEFAULT_START.isoformat()})")
    parser.add_argument("--samples", metavar="DIR",
                        help="real samples folder (default: $LOGLAKE_SAMPLES, else ../shared/data/external)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes generating days in parallel (default: one per core, at most one per day)")
    args = parser.parse_args(argv)
    try:
        stats = generate(args.out, args.events, args.accounts, args.regions, args.days, args.seed,
                         args.start_date, samples=args.samples, workers=args.workers)
    except (ValueError, FileNotFoundError) as exc:
        print(f"loglake generate: {exc}", file=sys.stderr)
        return 2
    stats = {k: v for k, v in stats.items() if k != "session_ids"}
    print(json.dumps(stats, indent=2))
    if not stats["gzip_ratio"]["within_25pct"]:
        print("loglake generate: generated files compress differently from the real samples by more than 25%",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
