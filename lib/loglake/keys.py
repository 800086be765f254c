"""S3 key layouts: decide what a raw object key is, and which partition it feeds.

Pure functions, no I/O. A key that cannot be used is a *result* (skipped with a
reason, or an error with a reason), never an exception: AddAPart and the jobs
handle thousands of keys per batch, and one odd key must not cost the others.

CloudTrail partition values are ``(org, account, region, dt)``:

* ``org``: the organization id (``o-...``) for organization trails, ``none`` for
  account trails. Hive and Athena handle empty partition values badly, and
  ``none`` cannot collide with a real id, which always starts with ``o-``.
* ``dt``: the delivery date of the file, ``YYYY-MM-DD``, taken from the key.

Firehose (CloudWatch Logs) partition values are ``(dt, hour)``: ``YYYY-MM-DD`` and
``HH`` from the ``[prefix/]YYYY/MM/DD/HH/`` layout Firehose writes (UTC). The
account is inside the data, not the key.

Raw and readready tables use the same partition columns and values.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loglake.shapes import ACCOUNT_RE, REGION_RE

if TYPE_CHECKING:
    from loglake.config import Config

NO_ORG = "none"

# Outcomes. Skips are expected and counted; errors are keys that look like data but are wrong.
OK = "ok"
SKIPPED = "skipped"
ERROR = "error"

# Skip reasons (stable names: they appear in summaries and logs).
FOLDER_MARKER = "folder_marker"
DIGEST = "digest"
INSIGHT = "insight"
CONFIG_WRITABILITY_CHECK = "config_writability_check"
OTHER_SERVICE = "other_service"
DENIED_KEY_PATTERN = "denied_key_pattern"
DENIED_ACCOUNT = "denied_account"
DENIED_REGION = "denied_region"
# Error reasons.
NO_LAYOUT_MATCH = "no_layout_match"
BAD_ORG = "bad_org"
BAD_ACCOUNT = "bad_account"
BAD_REGION = "bad_region"
BAD_DATE = "bad_date"
BAD_HOUR = "bad_hour"
NOT_JSON_GZ = "not_json_gz"

_CLOUDTRAIL_RE = re.compile(
    r"^(?P<prefix>(?:.*/)?)AWSLogs/"
    r"(?:(?P<org>o-[a-z0-9]+)/)?"
    r"(?P<account>[^/]+)/"
    r"(?P<service>[^/]+)/"
    r"(?P<region>[^/]+)/"
    r"(?P<y>[^/]+)/(?P<m>[^/]+)/(?P<d>[^/]+)/"
    r"(?P<name>[^/]+)$"
)
_DATE_PARTS = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2}\Z")
_ORG_LIKE_RE = re.compile(r"^(?:.*/)?AWSLogs/(?P<org>o-[^/]*)/")
# Organization ids by *shape*, not by AWS's current length rule (10-32): published samples
# are anonymised to other lengths (o- and 9 characters), and a real file must not be
# quarantined for the length of an id that only has to be a safe partition value.
ORG_RE = re.compile(r"o-[a-z0-9]+\Z")
# The service folder of any AWSLogs/ key (CloudTrail, BedrockModelInvocationLogs, vpcflowlogs, ...).
AWSLOGS_SERVICE_RE = re.compile(r"^(?:.*/)?AWSLogs/(?:o-[a-z0-9]+/)?[^/]+/(?P<service>[^/]+)/")


@dataclass(frozen=True)
class Partition:
    """One raw partition: its values, in the table's partition-key order, and where it lives."""

    values: tuple[str, ...]
    raw_dir: str  # key prefix of the raw partition directory, ending in '/'


@dataclass(frozen=True)
class KeyResult:
    key: str
    status: str
    reason: str = ""
    detail: str = ""
    partition: Partition | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK


def _skip(key: str, reason: str, detail: str = "") -> KeyResult:
    return KeyResult(key, SKIPPED, reason, detail)


def _error(key: str, reason: str, detail: str) -> KeyResult:
    return KeyResult(key, ERROR, reason, detail)


def parse_cloudtrail_key(key: str, include_insights: bool = False) -> KeyResult:
    """Parse an (already URL-decoded) CloudTrail object key; validates every value."""
    if key.endswith("/"):
        return _skip(key, FOLDER_MARKER)
    name = key.rsplit("/", 1)[-1]
    if name == "ConfigWritabilityCheckFile":
        return _skip(key, CONFIG_WRITABILITY_CHECK)
    org_like = _ORG_LIKE_RE.match(key)
    if org_like and not ORG_RE.match(org_like.group("org")):
        return _error(key, BAD_ORG,
                      f"organization id {org_like.group('org')!r} is not o- and lowercase letters or digits")
    m = _CLOUDTRAIL_RE.match(key)
    if not m:
        svc = AWSLOGS_SERVICE_RE.match(key)
        if svc and not svc.group("service").startswith("CloudTrail"):
            return _skip(key, OTHER_SERVICE, svc.group("service"))
        return _error(
            key,
            NO_LAYOUT_MATCH,
            "expected [prefix/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/FILE",
        )
    service = m.group("service")
    if service == "CloudTrail-Digest":
        return _skip(key, DIGEST)
    if service == "CloudTrail-Insight" and not include_insights:
        return _skip(key, INSIGHT)
    if service not in ("CloudTrail", "CloudTrail-Insight"):
        return _skip(key, OTHER_SERVICE, service)
    account = m.group("account")
    if not ACCOUNT_RE.match(account):
        return _error(key, BAD_ACCOUNT, f"account {account!r} is not 12 digits")
    region = m.group("region")
    if not REGION_RE.match(region):
        return _error(key, BAD_REGION, f"region {region!r} does not look like a region")
    y, mo, d = m.group("y"), m.group("m"), m.group("d")
    day = _calendar_date(y, mo, d)
    if day is None:
        return _error(key, BAD_DATE, f"{y}/{mo}/{d} is not a calendar date")
    if not name.endswith(".json.gz"):
        return _error(key, NOT_JSON_GZ, f"file name {name!r} does not end in .json.gz")
    org = m.group("org") or NO_ORG
    org_part = f"{m.group('org')}/" if m.group("org") else ""
    # Insight files sit beside CloudTrail/; the partition is the CloudTrail directory.
    raw_dir = f"{m.group('prefix')}AWSLogs/{org_part}{account}/CloudTrail/{region}/{y}/{mo}/{d}/"
    return KeyResult(key, OK, partition=Partition((org, account, region, day.isoformat()), raw_dir))


def _calendar_date(y: str, m: str, d: str) -> dt.date | None:
    if not _DATE_PARTS.match(f"{y}/{m}/{d}"):  # ASCII digits only: str.isdigit() takes any script
        return None
    try:
        return dt.date(int(y), int(m), int(d))
    except ValueError:
        return None


def classify_cloudtrail_key(key: str, config: Config) -> KeyResult:
    """Layout parse plus the config's key-level rules (deny patterns, accounts, regions)."""
    for pattern in config.filters.key_deny_patterns:
        if re.search(pattern, key):
            return _skip(key, DENIED_KEY_PATTERN, pattern)
    result = parse_cloudtrail_key(key, config.sources.cloudtrail.include_insights)
    if not result.ok:
        return result
    _org, account, region, _day = result.partition.values
    if not config.filters.accounts.allows(account):
        return _skip(key, DENIED_ACCOUNT, account)
    if not config.filters.regions.allows(region):
        return _skip(key, DENIED_REGION, region)
    return result


_DIGITS = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2}/[0-9]{2}\Z")


def parse_firehose_key(key: str) -> KeyResult:
    """Parse a Firehose object key ``[prefix/]YYYY/MM/DD/HH/<stream>-<n>-<time>-<uuid>``.

    The layout is the last five path parts, whatever prefix (or local folder) comes
    before them. Firehose writes gzip objects *without* a .gz suffix, so the name is
    not checked.
    """
    if key.endswith("/"):
        return _skip(key, FOLDER_MARKER)
    parts = key.split("/")
    if len(parts) < 5 or not _DIGITS.match("/".join(parts[-5:-1])):
        return _error(key, NO_LAYOUT_MATCH, "expected [prefix/]YYYY/MM/DD/HH/FILE")
    y, mo, d, h, name = parts[-5:]
    day = _calendar_date(y, mo, d)
    if day is None:
        return _error(key, BAD_DATE, f"{y}/{mo}/{d} is not a calendar date")
    if int(h) > 23:
        return _error(key, BAD_HOUR, f"hour {h!r} is not 00-23")
    return KeyResult(key, OK, partition=Partition((day.isoformat(), h), key[: len(key) - len(name)]))


def classify_firehose_key(key: str, config: Config) -> KeyResult:
    """Layout parse plus the config's key deny patterns (accounts live in the data)."""
    for pattern in config.filters.key_deny_patterns:
        if re.search(pattern, key):
            return _skip(key, DENIED_KEY_PATTERN, pattern)
    return parse_firehose_key(key)


def count_reasons(results: Iterable[KeyResult]) -> dict[str, int]:
    """Counts of non-ok results by reason, for summaries."""
    counts: dict[str, int] = {}
    for r in results:
        if not r.ok:
            counts[r.reason] = counts.get(r.reason, 0) + 1
    return dict(sorted(counts.items()))
