"""``loglake alerts run``: detection rules over the rows published since the last alerts run.

Why publish order and not event time: CloudTrail delivers late, and a scheduled run may
publish events hours old. A rule that looked at "events of the last hour" would miss
them; one that looks at the *files published* since the last alerts run misses nothing.
The ``runs`` table says which files each run published (``published_files``), in the
order runs finished; compactions publish the same rows again and are left out.

State, under ``<lake>/_state/alerts/``:

* ``cursor/<rule>.json``: per rule (a run of some rules must not move the others on),
  the latest ``finished_at`` taken and the run ids taken within the overlap before it (a
  run whose row appears late, finished before one taken already, is still taken);
* ``sent/<rule>.json``: the matches sent, by identity (the rule's key columns), with
  when; older than ``alerts.retain_sent_days`` they are forgotten.

Delivery is at least once: a match is recorded after every sink took it, so a crash
between the two sends it again (at most the matches in flight). A sink failure leaves
its matches unrecorded and the cursor where it was: the next run sends them.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loglake import alert_rules, storage, transforms
from loglake.alert_rules import Rule
from loglake.alert_sinks import Sink
from loglake.config import Config
from loglake.sources import SOURCES

log = logging.getLogger("loglake.alerts")

# A run's row can appear after a later run's (another source's, or written after a
# crash): runs finished this long before the latest seen are looked at again.
OVERLAP = dt.timedelta(hours=1)


@dataclass
class Window:
    """The runs an alerts run takes, and the files they published, by readready table."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)  # table key -> file URIs
    since: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"since": self.since.isoformat() + "Z" if self.since else None, "runs": len(self.runs),
                "files": {k: len(v) for k, v in sorted(self.files.items())}}


def _state(lake: str, *parts: str) -> str:
    return storage.join(lake, "_state", "alerts", *parts)


def _read_json(uri: str) -> dict:
    return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else {}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _iso(ts: dt.datetime) -> str:
    return ts.isoformat(timespec="seconds") + "Z"


def parse_time(text: str) -> dt.datetime:
    """ISO 8601 (UTC when no offset) -> naive UTC, as the runs table's timestamps read."""
    ts = transforms.parse_time(text.strip())
    if ts is None:
        raise ValueError(f"{text!r} is not an ISO 8601 time")
    return ts.replace(tzinfo=None)


def _runs_rows(lake: str, config: Config, source: str, since: dt.datetime) -> list[dict[str, Any]]:
    """The runs rows of ``source`` in run_date folders from the day before ``since`` on
    (a run started before midnight finishes after it)."""
    import pyarrow.orc as orc

    root = storage.join(lake, config.catalog.tables.runs, f"source={source}")
    first, today = since.date() - dt.timedelta(days=1), _now().date()
    if (today - first).days > 31:  # a long look back (--since): one listing of the source's runs
        folders = [root]
    else:  # the usual hourly window: a listing of each day's folder, not of every run ever
        folders = [storage.join(root, f"run_date={first + dt.timedelta(days=i)}")
                   for i in range((today - first).days + 1)]
    rows = []
    for folder in folders:
        for obj in storage.list_objects(folder):
            day = obj.uri.rsplit("run_date=", 1)[-1].split("/", 1)[0]
            if obj.uri.endswith(".orc") and day >= first.isoformat():
                rows += orc.ORCFile(io.BytesIO(storage.read_bytes(obj.uri))).read().to_pylist()
    return rows


def _cursor_uri(lake: str, rule: str) -> str:
    return _state(lake, "cursor", f"{rule}.json")


def window(lake: str, config: Config, rule: Rule, since: dt.datetime | None = None,
           now: dt.datetime | None = None, runs_rows: Callable[[str, dt.datetime], list[dict]] | None = None
           ) -> Window:
    """The published runs of ``rule``'s table that the rule has not taken yet (or every
    one since ``since``), and the files they published, as the runs recorded them (a file
    compacted away since: :func:`_still_there`). ``runs_rows(source, since)``: the runs
    rows (default: read from the lake)."""
    cursor = _read_json(_cursor_uri(lake, rule.name))
    now = now or _now()
    runs_rows = runs_rows or (lambda source, cutoff: _runs_rows(lake, config, source, cutoff))
    if since is not None:
        cutoff = since
    elif cursor.get("last_finished_at"):
        cutoff = parse_time(cursor["last_finished_at"]) - OVERLAP
    else:
        cutoff = now - dt.timedelta(hours=config.alerts.first_run_lookback_hours)
    taken = set(cursor.get("taken", {})) if since is None else set()
    source = SOURCES[rule.table.removesuffix("_readready")]
    location = storage.join(lake, config.table(source.name, "readready"))
    out = Window(since=cutoff)
    files: set[str] = set()
    for row in runs_rows(source.name, cutoff):
        if (row["status"] != "published" or row["job"] != rule.table or row["finished_at"] < cutoff
                or row["run_id"] in taken or not row.get("published_files")):
            continue
        out.runs.append({"run_id": row["run_id"], "source": source.name, "finished_at": row["finished_at"]})
        files.update(storage.join(location, f) for f in json.loads(row["published_files"]))
    if files:
        out.files[rule.table] = sorted(files)
    return out


def _still_there(f: str) -> list[str]:
    """The file, or if a compaction has replaced (and removed) it, its partition's current
    files: the same rows, with others already looked at (sent ones are known)."""
    from loglake import manifest

    if storage.exists(f):
        return [f]
    return manifest.current_files(f.rsplit("/", 2)[0])  # <partition>/<generation>/<file>


def advance(lake: str, rule: str, win: Window) -> None:
    """Record the window's runs as taken by ``rule`` (after every match was delivered)."""
    uri = _cursor_uri(lake, rule)
    cursor = _read_json(uri)
    taken = {k: parse_time(v) for k, v in cursor.get("taken", {}).items()}
    taken.update({r["run_id"]: r["finished_at"] for r in win.runs})
    last = max([*taken.values(), *([parse_time(cursor["last_finished_at"])] if cursor.get("last_finished_at") else [])],
               default=None)
    if last is None:
        return
    keep = {k: _iso(v) for k, v in taken.items() if v >= last - 2 * OVERLAP}
    storage.write_bytes(uri, json.dumps({"last_finished_at": _iso(last), "taken": keep}, indent=1).encode())


# --------------------------------------------------------------------------- matches


def identity(rule: Rule, row: dict[str, Any]) -> str:
    values = [None if row.get(k) is None else str(row[k]) for k in rule.key]
    return hashlib.sha256(json.dumps([rule.name, values]).encode()).hexdigest()[:32]


def alert_record(rule: Rule, row: dict[str, Any]) -> dict[str, Any]:
    """What a sink gets: rule, severity, the identifying ids, eventtime, message and the row."""
    plain = {k: (_iso(v) if isinstance(v, dt.datetime) else v) for k, v in row.items()}
    out = {"rule": rule.name, "severity": rule.severity, "message": rule.format_message(plain),
           "eventtime": plain.get("eventtime"), "match": plain}
    for k in ("eventid", "sessionid"):
        if k in plain:
            out[k] = plain[k]
    return out


@dataclass
class RuleResult:
    matches: int = 0
    sent: int = 0
    already_sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"matches": self.matches, "sent": self.sent, "already_sent": self.already_sent,
                               "failed": self.failed}
        if self.errors:
            out["errors"] = self.errors[:5]
        return out


def deliver(lake: str, rule: Rule, rows: list[dict[str, Any]], sinks: Sequence[Sink], retain_days: int,
            now: float | None = None) -> RuleResult:
    """Send each row not sent before to every sink; record the ones every sink took."""
    result = RuleResult(matches=len(rows))
    uri = _state(lake, "sent", f"{rule.name}.json")
    now = time.time() if now is None else now
    sent = {k: v for k, v in _read_json(uri).items() if v >= now - retain_days * 86400}
    seen: set[str] = set()
    for row in rows:
        ident = identity(rule, row)
        if ident in sent or ident in seen:
            result.already_sent += 1
            continue
        seen.add(ident)
        alert = alert_record(rule, row)
        problems = [p for p in (s.send(alert) for s in sinks) if p]
        if problems:
            result.failed += 1
            result.errors += problems
            continue
        sent[ident] = now
        result.sent += 1
        # recorded as it goes: a crash resends at most the match in flight
        storage.write_bytes(uri, json.dumps(sent, sort_keys=True).encode())
    return result


# --------------------------------------------------------------------------- engines


def spark_matches(spark, rule: Rule, config: Config, lake: str, files: list[str]) -> list[dict[str, Any]]:
    """The rule on local Spark over a view of only ``files`` (their table's declared
    columns: a file written before a column was appended reads it as NULL)."""
    from loglake.sql import to_spark

    source = SOURCES[rule.table.removesuffix("_readready")]
    location = storage.join(lake, config.table(source.name, "readready"))
    df = (spark.read.schema(source.schema.spark_ddl()).option("basePath", storage.spark_uri(location))
          .orc([storage.spark_uri(f) for f in files]))
    df.createOrReplaceTempView(config.table(source.name, "readready"))
    sql_text = alert_rules.render_rule(rule, config, "TRUE", database="")
    return [r.asDict() for r in spark.sql(to_spark(sql_text)).collect()]


def athena_matches(athena, rule: Rule, config: Config, files: list[str], **kw) -> list[dict[str, Any]]:
    """The rule through Athena, limited to ``files`` with ``"$path"`` (strings come back)."""
    from loglake.athena import run_athena

    sql_text = alert_rules.render_rule(rule, config, alert_rules.path_filter(files))
    columns, rows = run_athena(athena, sql_text, database=config.catalog.database, **kw)
    return [dict(zip(columns, r, strict=True)) for r in rows]


def athena_engine(config: Config, output_location: str | None = None, workgroup: str | None = None):
    """``matches`` for :func:`run`: each rule through Athena (the CLI's ``--engine athena``,
    the alerts job)."""
    athena = storage.client("athena", config.aws.endpoint_url, config.aws.region)

    def matches(rule: Rule, files: list[str]) -> list[dict[str, Any]]:
        return athena_matches(athena, rule, config, files, output_location=output_location, workgroup=workgroup)

    return matches


def sinks_of(specs: Sequence[str], config: Config) -> list[Sink]:
    """``--sink`` values -> sinks (an SNS client from the config's endpoint and region)."""
    from loglake.alert_sinks import parse_sink

    return [parse_sink(s, lambda: storage.client("sns", config.aws.endpoint_url, config.aws.region)) for s in specs]


def run(config: Config, lake: str, sinks: Sequence[Sink], matches: Callable[[Rule, list[str]], list[dict]],
        rules: Sequence[str] | None = None, since: dt.datetime | None = None) -> dict[str, Any]:
    """Every rule (or ``rules``) over the window; the JSON summary. ``matches(rule, files)``
    runs one rule over the files (:func:`spark_matches`, :func:`athena_matches`)."""
    chosen = [alert_rules.load_rule(n) for n in (rules or alert_rules.list_rules())]
    read: dict[tuple[str, dt.date], list[dict]] = {}

    def runs_rows(source: str, cutoff: dt.datetime) -> list[dict]:  # each source's rows read once
        key = (source, cutoff.date())
        if key not in read:
            read[key] = _runs_rows(lake, config, source, cutoff)
        return read[key]

    current: dict[str, list[str]] = {}  # a published file -> what to read for it, checked once a run

    def readable(files: list[str]) -> list[str]:
        for f in files:
            if f not in current:
                current[f] = _still_there(f)
        return sorted({c for f in files for c in current[f]})

    results: dict[str, dict] = {}
    taken: dict[str, dict] = {}
    files_seen: dict[str, set[str]] = {}
    earliest = None
    failed = 0
    for rule in chosen:
        win = window(lake, config, rule, since=since, runs_rows=runs_rows)
        earliest = win.since if earliest is None else min(earliest, win.since)
        taken.update({r["run_id"]: r for r in win.runs})
        files = readable(win.files.get(rule.table, []))
        if files:
            files_seen.setdefault(rule.table, set()).update(files)
        try:
            rows = matches(rule, files) if files else []
        except Exception as exc:  # noqa: BLE001 - one rule's failure must not stop the others
            log.error("alert rule %s failed: %s", rule.name, exc)
            results[rule.name] = {**RuleResult().as_dict(), "error": str(exc)[:500]}
            failed += 1
            continue
        res = deliver(lake, rule, rows, sinks, config.alerts.retain_sent_days)
        for e in res.errors[:3]:
            log.error("alert rule %s: %s", rule.name, e)
        results[rule.name] = res.as_dict()
        failed += res.failed
        if not res.failed:  # else its window stays, and the next run sends what this one could not
            advance(lake, rule.name, win)
    summary = Window(runs=list(taken.values()), files={k: sorted(v) for k, v in files_seen.items()}, since=earliest)
    log.info("alerts: %d runs since %s, files %s", len(taken), earliest, summary.as_dict()["files"])
    return {"window": summary.as_dict(), "rules": results, "sinks": [s.name for s in sinks], "failed": failed}
