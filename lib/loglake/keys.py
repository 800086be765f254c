"""What a raw object key is, for every source: a result (:class:`KeyResult`: ok with its
partition, skipped with a reason, or an error with a reason), never an exception:
AddAPart and the jobs handle thousands of keys per batch, and one odd key must not cost
the others. The reasons are a shared vocabulary (summaries, the quarantine); each
source's layout and partition values are in its module (``loglake.sources``).

Raw and readready tables use the same partition columns and values.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

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

_DATE_PARTS = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2}\Z")
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


def skip(key: str, reason: str, detail: str = "") -> KeyResult:
    return KeyResult(key, SKIPPED, reason, detail)


def error(key: str, reason: str, detail: str) -> KeyResult:
    return KeyResult(key, ERROR, reason, detail)


def calendar_date(y: str, m: str, d: str) -> dt.date | None:
    if not _DATE_PARTS.match(f"{y}/{m}/{d}"):  # ASCII digits only: str.isdigit() takes any script
        return None
    try:
        return dt.date(int(y), int(m), int(d))
    except ValueError:
        return None


def count_reasons(results: Iterable[KeyResult]) -> dict[str, int]:
    """Counts of non-ok results by reason, for summaries."""
    counts: dict[str, int] = {}
    for r in results:
        if not r.ok:
            counts[r.reason] = counts.get(r.reason, 0) + 1
    return dict(sorted(counts.items()))
