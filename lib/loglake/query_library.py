"""The analysts' query library (``ddl/queries/*.sql``): headers, parameters rendered as
SQL literals (quoted, validated, never raw text), and a run on local Spark."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from loglake.config import Config
from loglake.sources import REGISTRY
from loglake.sql import named_template, register_lake, register_raw, render, template_names, to_spark  # noqa: E402

PARAM_TYPES = ("string", "int", "timestamp", "date")
_PARAM_LINE = re.compile(
    r"^--\s+:(?P<name>[a-z_][a-z0-9_]*)\s+(?P<type>\w+)(?:\s*=\s*(?P<default>\S+))?\s*(?P<doc>.*)$")
_SECTION = re.compile(r"^--\s*(?P<section>Query|Question|Parameters|Returns|Notes):\s*(?P<rest>.*)$")


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None  # as written in the header; None: required
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is None


@dataclasses.dataclass(frozen=True)
class Query:
    name: str
    description: str
    params: tuple[Param, ...]
    sql: str  # the whole file (header comments included): Trino with {placeholders} and :params

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def raw_sources(self) -> list[str]:
        """The sources whose raw table the query reads."""
        return [s.name for s in REGISTRY if "{" + s.name + "_raw}" in self.sql]

    @property
    def uses_raw(self) -> bool:
        return bool(self.raw_sources)


def _connect_users_name() -> str:
    from loglake import lookup

    return lookup.CONNECT_USERS_TABLE


def list_queries() -> list[str]:
    return template_names("queries")


def load_query(name: str) -> Query:
    return parse_query(name, named_template("queries", name, "query"))


def parse_query(name: str, text: str) -> Query:
    """Read the header: ``-- Question:`` (the description) and ``-- Parameters:`` lines
    ``--   :name type [= default]  doc``."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if not line.startswith("--"):
            if line.strip():
                break
            continue
        m = _SECTION.match(line)
        if m:
            current = m.group("section").lower()
            sections.setdefault(current, [])
            if m.group("rest"):
                sections[current].append(m.group("rest").strip())
        elif current:
            sections[current].append(line)
    if "question" not in sections:
        raise ValueError(f"query {name}: the header has no '-- Question:' line")
    description = " ".join(s.lstrip("-").strip() for s in sections["question"] if s.lstrip("-").strip())
    params = []
    for line in sections.get("parameters", []):
        if line.strip() in ("--", "") or line.lstrip("-").strip().lower() == "none":
            continue
        m = _PARAM_LINE.match(line)
        if not m:
            if params and line.startswith("--     "):  # continuation of the previous doc
                params[-1] = dataclasses.replace(params[-1], doc=params[-1].doc + " " + line.lstrip("-").strip())
                continue
            raise ValueError(f"query {name}: bad parameter line {line!r}")
        if m.group("type") not in PARAM_TYPES:
            raise ValueError(f"query {name}: parameter :{m.group('name')} has unknown type {m.group('type')!r}")
        param = Param(m.group("name"), m.group("type"), m.group("default"), m.group("doc").strip())
        if param.default is not None:
            literal(param, param.default)  # a default must be valid
        params.append(param)
    query = Query(name, description, tuple(params), text)
    used = set(placeholders_in(text))
    declared = set(query.param_names)
    if used != declared:
        raise ValueError(f"query {name}: parameters used {sorted(used)} != declared {sorted(declared)}")
    return query


def _scan(sql: str):
    """Yield (start, end, name) of every ``:name`` outside strings, quoted names and comments."""
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "'" or c == '"':
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # '' or "" escape
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == ":" and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] in "_:")):
            m = re.compile(r"[a-z_][a-z0-9_]*").match(sql, i + 1)
            if m:
                yield i, m.end(), m.group(0)
                i = m.end()
            else:
                i += 1
        else:
            i += 1


def placeholders_in(sql: str) -> list[str]:
    return [name for _, _, name in _scan(sql)]


_TS_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?"
                    r"(Z|[+-][0-9]{2}:?[0-9]{2})?\Z")
_SQL_NULL = {"string": "CAST(NULL AS VARCHAR)", "int": "CAST(NULL AS BIGINT)",
             "timestamp": "CAST(NULL AS TIMESTAMP)", "date": "CAST(NULL AS DATE)"}


def literal(param: Param, value: Any) -> str:
    """The Trino SQL literal for a parameter value (validated; strings quoted)."""
    if value is None or (isinstance(value, str) and value.lower() == "null"):
        return _SQL_NULL[param.type]
    if param.type == "string":
        text = str(value)
        if any(ord(ch) < 32 and ch not in "\t" for ch in text):
            raise ValueError(f"--param {param.name}: control characters are not allowed")
        return "'" + text.replace("'", "''") + "'"
    if param.type == "int":
        if isinstance(value, bool) or not re.fullmatch(r"-?[0-9]{1,18}", str(value).strip()):
            raise ValueError(f"--param {param.name}={value!r}: expected a whole number")
        return str(int(str(value).strip()))
    if param.type == "timestamp":
        if isinstance(value, str) and value.lower() == "now":
            return "current_timestamp"
        ts = _parse_timestamp(param, value)
        return f"TIMESTAMP '{ts:%Y-%m-%d %H:%M:%S.%f}'"
    if param.type == "date":
        if isinstance(value, str) and value.lower() == "today":
            return "current_date"
        if isinstance(value, dt.datetime):
            value = value.date()
        if isinstance(value, dt.date):
            return f"DATE '{value.isoformat()}'"
        try:
            day = dt.date.fromisoformat(str(value).strip()) if re.fullmatch(
                r"[0-9]{4}-[0-9]{2}-[0-9]{2}", str(value).strip()) else None
        except ValueError:
            day = None
        if day is None:
            raise ValueError(f"--param {param.name}={value!r}: expected a date YYYY-MM-DD or 'today'")
        return f"DATE '{day.isoformat()}'"
    raise AssertionError(param.type)  # pragma: no cover - parse_query checks types


def _parse_timestamp(param: Param, value: Any) -> dt.datetime:
    """ISO 8601, 'Z' or an offset (converted to UTC), or naive (taken as UTC)."""
    if isinstance(value, dt.datetime):
        ts = value
    else:
        text = str(value).strip()
        if not _TS_RE.match(text):
            raise ValueError(f"--param {param.name}={value!r}: expected an ISO 8601 timestamp "
                             "(2024-12-01T08:00:00Z) or 'now'")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            ts = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"--param {param.name}={value!r}: not a valid timestamp") from None
    if ts.tzinfo is not None:
        ts = ts.astimezone(dt.UTC).replace(tzinfo=None)
    return ts


def parse_params(pairs: Iterable[str]) -> dict[str, str]:
    """``key=value`` strings (``--param``) -> dict; a key given twice is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--param {pair!r}: expected KEY=VALUE")
        if key in out:
            raise ValueError(f"--param {key} given twice")
        out[key] = value
    return out


def render_query(query: Query, params: Mapping[str, Any], config: Config, database: str | None = None) -> str:
    """The query as Trino SQL for ``database`` (``''``: unqualified, for Spark): table
    placeholders from the config, then every ``:param`` as a literal."""
    unknown = sorted(set(params) - set(query.param_names))
    if unknown:
        raise ValueError(f"query {query.name}: unknown parameter {unknown[0]!r} "
                         f"(known: {', '.join(query.param_names) or 'none'})")
    values = {}
    for p in query.params:
        if p.name in params:
            values[p.name] = literal(p, params[p.name])
        elif p.required:
            raise ValueError(f"query {query.name}: parameter {p.name!r} ({p.type}) is required")
        else:
            values[p.name] = literal(p, p.default)
    text = render(query.sql, config, database, connect_users=_connect_users_name())
    out, last = [], 0
    for start, end, name in _scan(text):
        out.append(text[last:start])
        out.append(values[name])
        last = end
    out.append(text[last:])
    return "".join(out)


def run_query(spark, name: str, params: Mapping[str, Any], config: Config, lake_root: str,
              raw_root: str | None = None) -> list:
    """Run a library query on local Spark over the readready tables below ``lake_root``
    (plus the connect_users lookup and, for queries of a raw table, the source's raw
    objects below ``raw_root``); returns the rows."""
    from loglake import lookup

    query = load_query(name)
    sql_text = render_query(query, params, config, database="")
    register_lake(spark, config, lake_root)
    lookup.register(spark, lake_root)
    for source in query.raw_sources:
        if not raw_root:
            raise ValueError(f"query {name} reads the raw table: give the raw {source} folder (--raw)")
        register_raw(spark, config, raw_root, source)
    return spark.sql(to_spark(sql_text)).collect()
