"""Detection rules (``ddl/alerts/*.sql``): Athena SQL over one readready table, with a header.

A rule is what a security engineer would otherwise paste into a scheduled Lambda: a
SELECT whose rows are matches. Its header says how to report them::

    -- Alert: cloudtrail_tampering
    -- Severity: high
    -- Description: CloudTrail logging stopped, a trail deleted or reconfigured ...
    -- Key: eventid
    -- Message: {eventname} on trail {trail} by {principal} in account {account}

``Key`` names the output columns that identify a match (a match already sent is never
sent again); ``Message`` is a one-line template over the output columns. The SQL reads
one readready table (``{database}.{cloudtrail_readready}`` or ``{cloudwatch_readready}``)
and keeps ``{published}`` in its WHERE clause: the runner replaces it with the filter
that limits the rule to the rows published since the last alerts run (on Spark, the
table itself holds only those files; on Athena, a ``"$path"`` filter).
"""
from __future__ import annotations

import dataclasses
import re
import string
from typing import Any

from loglake.config import Config
from loglake.sql import named_template, render, template_names

SEVERITIES = ("low", "medium", "high", "critical")
_FIELD = re.compile(r"^--\s*(?P<field>Alert|Severity|Description|Key|Message):\s*(?P<rest>.*)$")
_TABLE = re.compile(r"\{database\}\.\{(\w+)\}")


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    severity: str
    description: str
    key: tuple[str, ...]  # output columns identifying a match
    message: str  # template over output columns: {column}
    table: str  # the table key it reads (cloudtrail_readready, ...)
    sql: str  # the whole file: Trino with {database}, the table placeholder and {published}

    @property
    def message_fields(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.message) if f]

    def format_message(self, row: dict[str, Any]) -> str:
        return self.message.format_map({k: "-" if v is None else v for k, v in row.items()})

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "severity": self.severity, "table": self.table, "key": list(self.key),
                "message": self.message, "description": self.description}


def list_rules() -> list[str]:
    return template_names("alerts")


def load_rule(name: str) -> Rule:
    return parse_rule(name, named_template("alerts", name, "alert rule"))


def parse_rule(name: str, text: str) -> Rule:
    """The header's fields (a field may go on over ``--   `` lines) and checks of the SQL."""
    fields: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        m = _FIELD.match(line)
        if m:
            current = m.group("field").lower()
            fields[current] = [m.group("rest").strip()]
        elif current:
            fields[current].append(line.lstrip("-").strip())
    missing = [f for f in ("alert", "severity", "description", "key", "message") if f not in fields]
    if missing:
        raise ValueError(f"alert rule {name}: the header has no {', '.join(missing)} line")
    value = {k: " ".join(x for x in v if x) for k, v in fields.items()}
    if value["alert"] != name:
        raise ValueError(f"alert rule {name}: the header names it {value['alert']!r}")
    if value["severity"] not in SEVERITIES:
        raise ValueError(f"alert rule {name}: severity {value['severity']!r} is not one of {', '.join(SEVERITIES)}")
    key = tuple(k.strip() for k in value["key"].split(",") if k.strip())
    tables = set(_TABLE.findall(text))
    if len(tables) != 1:
        raise ValueError(f"alert rule {name}: reads {sorted(tables) or 'no table'}; a rule reads one readready table")
    if "{published}" not in text:
        raise ValueError(f"alert rule {name}: the SQL has no {{published}} filter")
    if not key:
        raise ValueError(f"alert rule {name}: the Key line names no column")
    return Rule(name, value["severity"], value["description"], key, value["message"], tables.pop(), text)


def render_rule(rule: Rule, config: Config, published: str, database: str | None = None) -> str:
    """The rule's Trino SQL: tables from the config, ``{published}`` as given."""
    return render(rule.sql, config, database, published=published)


def path_filter(uris: list[str]) -> str:
    """Athena's filter for rows of these files only (the Hive connector's ``"$path"``)."""
    if not uris:
        return "FALSE"
    return '"$path" IN (' + ", ".join("'" + u.replace("'", "''") + "'" for u in sorted(uris)) + ")"
