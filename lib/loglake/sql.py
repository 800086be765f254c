"""Athena SQL templates (``ddl/``) rendered for Athena, and the same text run on Spark.

Views and analyst queries are written once, in Athena's Trino dialect. Locally and
in tests they run on Spark after ``sqlglot`` transpiles them, so what is tested is
the very SQL analysts get. Templates name tables with ``{database}`` and
``{<table key>}`` placeholders (``{cloudtrail_readready}``, ...) filled from the
config; any other brace is left alone.

Three kinds of templates live in ``ddl/``:

* ``ddl/<table key>.sql``: one ``CREATE EXTERNAL TABLE`` per table loglake owns.
  They are *generated* from the very TableInputs ``catalog.table_inputs`` gives Glue
  (columns from ``schema.py``, formats from ``catalog.py``) by
  ``python -m loglake.sql render-ddl``; a test fails while a committed file is stale,
  so the DDL, the Glue definitions and the jobs' schema cannot drift apart.
* ``ddl/views/*.sql``: views (``sessions``), hand-written Trino.
* ``ddl/queries/*.sql``: the analysts' query library, hand-written Trino with a header
  (question, parameters) and ``:name`` parameters that are substituted as SQL literals
  (quoted, validated), never as raw text.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.resources
import json
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loglake import storage
from loglake.config import CatalogConfig, Config, TablesConfig
from loglake.keys import ORG_RE
from loglake.sources import REGISTRY

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def read_template(name: str) -> str:
    """A template from ddl/, e.g. ``views/sessions.sql``."""
    return importlib.resources.files("loglake.ddl").joinpath(name).read_text(encoding="utf-8")


def render(template: str, config: Config, database: str | None = None, **extra: str) -> str:
    """Fill ``{database}`` and table placeholders. ``database=''`` drops the qualifier
    (Spark temp views have none)."""
    values = {f.name: getattr(config.catalog.tables, f.name) for f in dataclasses.fields(config.catalog.tables)}
    values.update(extra)
    db = config.catalog.database if database is None else database
    if not db:
        template = template.replace("{database}.", "")
    values["database"] = db
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


class DialectGap(ValueError):
    """Trino SQL that sqlglot would translate into Spark SQL with another meaning."""


def to_spark(trino_sql: str) -> str:
    """Trino SQL -> Spark SQL. A CREATE VIEW becomes its SELECT (registered as a temp view).

    Two sqlglot 30 translations change the meaning of the query; they are fixed or
    refused here rather than silently answering something else:

    * ``date_add('hour', n, ts)`` becomes Spark's ``DATE_ADD(ts, n)``, which adds *days*,
      and ``date_add('day', n, ts)`` one that drops the time of day: both are rewritten to
      Spark's ``TIMESTAMPADD(unit, n, ts)``, except days added to what is surely a date
      (a DATE literal or cast, current_date), which stay ``DATE_ADD`` and a date.
    * ``LEFT JOIN UNNEST(...) ON TRUE`` becomes an inner ``LATERAL VIEW`` (rows without
      elements vanish): refused, write ``CROSS JOIN UNNEST(coalesce(...))`` instead.
    """
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(trino_sql, read="trino")
    if isinstance(tree, exp.Create):
        tree = tree.expression
    for join in tree.find_all(exp.Join):
        if isinstance(join.this, exp.Unnest) and join.side in ("LEFT", "RIGHT", "FULL"):
            raise DialectGap(f"{join.side} JOIN UNNEST has no Spark translation that keeps its meaning: "
                             "use CROSS JOIN UNNEST(coalesce(array, ARRAY[NULL]))")

    def is_date(node) -> bool:
        return isinstance(node, exp.CurrentDate) or (
            isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.DATE)

    def fix(node):
        if isinstance(node, exp.DateAdd):
            unit = node.args.get("unit")
            name = unit.name.upper() if unit is not None else "DAY"
            if name not in ("DAY", "DAYS") or not is_date(node.this):
                return exp.TimestampAdd(this=node.this, expression=node.expression, unit=exp.var(name.rstrip("S")))
        return node

    tree = tree.transform(fix)
    return tree.sql(dialect="spark")


def register_lake(spark, config: Config, root: str) -> list[str]:
    """Temp views over the readready tables below ``root`` (empty ones where no data was
    written yet), plus the ``sessions`` view; returns the view names."""
    from loglake import manifest
    from loglake.sources import SOURCES

    names = []
    for source in SOURCES.values():
        table = config.table(source.name, "readready")
        location = storage.join(root, table)
        # The current files of each partition, as its manifest names them: a folder read
        # would also take files a compaction replaced and keeps for running queries.
        files = manifest.table_files(location, source.schema.partition_names) if storage.exists(location) else []
        if files:
            df = spark.read.option("basePath", storage.spark_uri(location)).orc(
                [storage.spark_uri(f) for f in files])  # a list: orc()'s second argument is mergeSchema
        else:
            df = spark.createDataFrame([], source.schema.spark_ddl())
        df.createOrReplaceTempView(table)
        names.append(table)
    sessions = to_spark(render(read_template("views/sessions.sql"), config, database=""))
    spark.sql(sessions).createOrReplaceTempView("sessions")
    names.append("sessions")
    return names


# =========================================================================== DDL

# The DDL files, in the order `loglake ddl` prints them (after CREATE DATABASE): each
# source's raw table (and its projected variant, if it has one), each source's readready
# table, then the shared ones.
TABLE_KEYS = (
    *(key for s in REGISTRY for key in (f"{s.name}_raw", *([f"{s.name}_raw_projected"] if s.projected_raw else []))),
    *(f"{s.name}_readready" for s in REGISTRY),
    "quarantine",
    "runs",
    "connect_users",
)
# DDL key -> the source whose bucket it needs (raw tables) and whether it lives in the lake
_RAW_KEYS = {key: s.name for s in REGISTRY for key in (f"{s.name}_raw", f"{s.name}_raw_projected")}
VIEW_KEYS = ("sessions",)
# Not applied by `ddl --apply` unless asked for by --table: an alternative to the AddAPart table.
OPTIONAL_KEYS = tuple(f"{s.name}_raw_projected" for s in REGISTRY if s.projected_raw)
PROJECTED_SUFFIX = "_projected"
PROJECTION_START = "2020/01/01"
# Regions projected when the config has no filters.regions.allow list (partition
# projection needs the list up front). Edit projection.region.values to add one.
AWS_REGIONS = (
    "af-south-1", "ap-east-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1",
    "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
    "ap-southeast-5", "ap-southeast-7", "ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2",
    "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1",
    "me-central-1", "me-south-1", "mx-central-1", "sa-east-1", "us-east-1", "us-east-2", "us-west-1",
    "us-west-2",
)

_GENERATED = (
    "-- GENERATED by `python -m loglake.sql render-ddl` from the table schemas and formats (schema.py,\n"
    "-- lookup.py, catalog.py, sources/): the same TableInput `loglake ddl --apply` gives Glue.\n"
    "-- Do not edit: tests/test_ddl.py fails while this file differs from what is generated.\n"
)

# Notes of the shared tables; a source's own are in its module (``Source.ddl_notes``).
_SHARED_NOTES: dict[str, str] = {
    "quarantine": """\
Every raw record, object or key that did not reach readready, with a reason (README:
  Quarantine reasons) and the raw payload (truncated): nothing is lost silently.
  Written by both jobs below <readready.location>/{quarantine}/source=/run_date=/.""",
    "runs": """\
One row per job run: selection, counts (records_read = written + filtered +
  quarantined_records + duplicates), the reconciliation and quality-gate outcome.
  Written below <readready.location>/{runs}/source=/run_date=/.""",
    "connect_users": """\
Lookup table: Amazon Connect user id -> user name, loaded from saved
  `aws connect list-users --instance-id ID` output by
  `loglake lookup load connect-users FILE --out <lake>` (one ORC file per instance, below
  <readready.location>/{connect_users}/). Used by the connect_user_management query.""",
}




def ddl_notes() -> dict[str, str]:
    """The header note of each DDL file, by DDL key."""
    notes = {f"{src.name}_{stage}": text for src in REGISTRY for stage, text in src.ddl_notes.items()}
    return {**notes, **_SHARED_NOTES}


@dataclasses.dataclass(frozen=True)
class Locations:
    """Where the tables live: the values of the DDL's location placeholders."""

    readready: str
    # source name -> its raw table's location (s3://bucket/prefix/<raw_subdir>, no trailing
    # slash); a source whose bucket is not configured is absent
    raw: Mapping[str, str] = dataclasses.field(default_factory=dict)
    org: str | None = None  # organization id for the projected table
    regions: tuple[str, ...] = AWS_REGIONS
    projection_start: str = PROJECTION_START

    @classmethod
    def from_config(cls, config: Config, *, readready: str | None = None, org: str | None = None,
                    projection_start: str | None = None) -> Locations:
        def raw(name: str, subdir: str) -> str | None:
            sc = config.source(name)
            if not sc.bucket:
                return None
            prefix = sc.prefix.strip("/")
            return f"s3://{sc.bucket}/" + "/".join(p for p in (prefix, subdir.strip("/")) if p)

        start = projection_start or PROJECTION_START
        if not re.fullmatch(r"[0-9]{4}/[0-9]{2}/[0-9]{2}", start):
            raise ValueError(f"--projection-start {start!r}: expected yyyy/MM/dd")
        if org is not None and not ORG_RE.match(org):
            raise ValueError(f"--org {org!r} is not an organization id (o-...)")
        located = {s.name: raw(s.name, s.raw_subdir) for s in REGISTRY}
        return cls(
            readready=(readready or config.readready.location or "").rstrip("/"),
            raw={name: loc for name, loc in located.items() if loc is not None},
            org=org,
            regions=tuple(config.filters.regions.allow) or AWS_REGIONS,
            projection_start=start,
        )

    def placeholders(self) -> dict[str, str]:
        """Values for the DDL templates; unset locations render as a visible <setting>."""
        unset = {s.name: "/".join(p for p in (f"s3://<sources.{s.name}.bucket>", s.raw_subdir.strip("/")) if p)
                 for s in REGISTRY}
        return {
            "readready_location": self.readready or "s3://<readready.location>",
            **{f"{name}_raw_location": self.raw.get(name) or unset[name] for name in unset},
            "org_prefix": f"/{self.org}" if self.org else "",
            "projection_regions": ",".join(self.regions),
            "projection_start": self.projection_start,
        }


def _placeholder_config() -> Config:
    """A Config whose names are the placeholders themselves (dataclasses do not validate)."""
    tables = TablesConfig(**{f.name: "{" + f.name + "}" for f in dataclasses.fields(TablesConfig)})
    return Config(catalog=CatalogConfig(database="{database}", tables=tables))


def table_definitions(config: Config, locations: Locations, *, placeholders: bool = False) -> dict[str, dict]:
    """Glue TableInputs by DDL key: ``catalog.table_inputs`` (raw, readready, quarantine,
    runs), the connect_users lookup and the projected raw variant.

    With ``placeholders``, names and locations are the templates' ``{placeholders}``: the
    committed ddl/*.sql files are exactly these, printed as DDL.
    """
    from loglake import catalog, lookup

    if placeholders:
        cfg = _placeholder_config()
        values = {k: "{" + k + "}" for k in Locations("").placeholders()}
        raw = {s.name: values[f"{s.name}_raw_location"] for s in REGISTRY}
        users = "{connect_users}"
    else:
        cfg = config
        values = locations.placeholders()
        raw = dict(locations.raw)
        users = lookup.CONNECT_USERS_TABLE
    rr = values["readready_location"]
    by_name = {getattr(cfg.catalog.tables, f.name): f.name for f in dataclasses.fields(TablesConfig)}
    out = {by_name[t["Name"]]: t for t in catalog.table_inputs(cfg, rr, raw)}
    out["connect_users"] = lookup.table_input(rr, users)
    for src in REGISTRY:
        if src.projected_raw is not None:
            out[f"{src.name}_raw_projected"] = src.projected_raw(
                cfg.table(src.name, "raw") + PROJECTED_SUFFIX, values[f"{src.name}_raw_location"],
                values["org_prefix"], values["projection_regions"], values["projection_start"])
    return {k: out[k] for k in TABLE_KEYS if k in out}


def _hive_string(text: str) -> str:
    """A Hive DDL string literal (Athena DDL is HiveQL: backslash escapes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _column_lines(columns: Sequence[Mapping[str, str]]) -> str:
    lines = []
    for c in columns:
        line = f"  `{c['Name']}` {c['Type']}"
        if c.get("Comment"):
            line += f" COMMENT {_hive_string(c['Comment'])}"
        lines.append(line)
    return ",\n".join(lines)


def ddl_from_table_input(tinput: Mapping[str, Any], database: str = "{database}") -> str:
    """CREATE EXTERNAL TABLE for a Glue TableInput (Athena's Hive DDL)."""
    sd = tinput["StorageDescriptor"]
    serde = sd["SerdeInfo"]
    parts = [f"CREATE EXTERNAL TABLE IF NOT EXISTS {database}.{tinput['Name']} (\n{_column_lines(sd['Columns'])}\n)"]
    if tinput.get("Description"):
        parts.append(f"COMMENT {_hive_string(tinput['Description'])}")
    if tinput.get("PartitionKeys"):
        parts.append(f"PARTITIONED BY (\n{_column_lines(tinput['PartitionKeys'])}\n)")
    parts.append(f"ROW FORMAT SERDE {_hive_string(serde['SerializationLibrary'])}")
    if serde.get("Parameters"):
        props = ",\n".join(f"  {_hive_string(k)} = {_hive_string(v)}" for k, v in serde["Parameters"].items())
        parts.append(f"WITH SERDEPROPERTIES (\n{props}\n)")
    parts.append(f"STORED AS INPUTFORMAT {_hive_string(sd['InputFormat'])}")
    parts.append(f"OUTPUTFORMAT {_hive_string(sd['OutputFormat'])}")
    parts.append(f"LOCATION {_hive_string(sd['Location'])}")
    params = {k: v for k, v in tinput.get("Parameters", {}).items() if k != "EXTERNAL"}
    if params:
        props = ",\n".join(f"  {_hive_string(k)} = {_hive_string(v)}" for k, v in params.items())
        parts.append(f"TBLPROPERTIES (\n{props}\n)")
    return "\n".join(parts) + "\n"


def _comment(text: str) -> str:
    return "".join(f"-- {line}\n" if line else "--\n" for line in text.splitlines())


def generated_ddl_files() -> dict[str, str]:
    """``{file name: text}`` of every generated ddl/<key>.sql."""
    defs = table_definitions(Config(), Locations(""), placeholders=True)
    files = {}
    for key, tinput in defs.items():
        header = _comment(f"Table {{{key}}} (config: catalog.tables.{key})" if key in _table_fields()
                          else f"Table {tinput['Name']}")
        header += _comment(ddl_notes()[key])
        header += _comment("Placeholders, filled from the config by `loglake ddl`: "
                           f"{', '.join(_placeholders_of(tinput))}.")
        files[f"{key}.sql"] = header + _GENERATED + ddl_from_table_input(tinput)
    return files


def _table_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(TablesConfig)}


def _placeholders_of(tinput: Mapping[str, Any]) -> list[str]:
    text = "{database} " + json.dumps(tinput)
    seen: list[str] = []
    for m in _PLACEHOLDER.finditer(text):
        name = m.group(1)
        if name not in ("account", "region", "dt") and name not in seen:
            seen.append(name)
    return seen


def write_ddl_files(directory: Path | None = None) -> list[str]:
    """Write the generated DDL into ddl/ (the package directory); returns changed files."""
    directory = directory or Path(str(importlib.resources.files("loglake.ddl")))
    changed = []
    for name, text in generated_ddl_files().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    return changed


def stale_ddl_files() -> list[str]:
    """Committed ddl/<key>.sql files that differ from what is generated."""
    stale = []
    for name, text in generated_ddl_files().items():
        try:
            committed = read_template(name)
        except FileNotFoundError:
            committed = None
        if committed != text:
            stale.append(name)
    return stale


@dataclasses.dataclass(frozen=True)
class Statement:
    key: str  # DDL key (cloudtrail_readready, sessions, database)
    name: str  # the table or view name it creates
    kind: str  # database, table, view
    sql: str


def ddl_statements(config: Config, locations: Locations, tables: Iterable[str] | None = None,
                   database: str | None = None) -> list[Statement]:
    """The rendered DDL, in dependency order; ``tables`` selects by key, configured
    name or view name (all when None; CREATE DATABASE only then)."""
    db = config.catalog.database if database is None else database
    extra = {"connect_users": _connect_users_name(), **locations.placeholders()}
    names = {key: _name_of(config, key) for key in (*TABLE_KEYS, *VIEW_KEYS)}
    wanted = None if tables is None else {_resolve_key(t, names) for t in tables}
    out = []
    if wanted is None:
        out.append(Statement("database", db, "database", f"CREATE DATABASE IF NOT EXISTS {db}\n"))
    for key in TABLE_KEYS:
        if wanted is None or key in wanted:
            out.append(Statement(key, names[key], "table", render(read_template(f"{key}.sql"), config, db, **extra)))
    for key in VIEW_KEYS:
        if wanted is None or key in wanted:
            out.append(Statement(key, names[key], "view",
                                 render(read_template(f"views/{key}.sql"), config, db, **extra)))
    return out


def _connect_users_name() -> str:
    from loglake import lookup

    return lookup.CONNECT_USERS_TABLE


def _name_of(config: Config, key: str) -> str:
    if key in _table_fields():
        return getattr(config.catalog.tables, key)
    if key in OPTIONAL_KEYS:  # a projected raw table
        return config.table(_RAW_KEYS[key], "raw") + PROJECTED_SUFFIX
    if key == "connect_users":
        return _connect_users_name()
    return key


def _resolve_key(wanted: str, names: Mapping[str, str]) -> str:
    if wanted in names:
        return wanted
    for key, name in names.items():
        if name == wanted:
            return key
    raise ValueError(f"--table {wanted!r}: not a loglake table or view "
                     f"(known: {', '.join(sorted(set(names) | set(names.values())))})")


def apply_ddl(glue, config: Config, locations: Locations, tables: Iterable[str] | None = None,
              athena=None, athena_output: str | None = None, workgroup: str | None = None) -> dict[str, Any]:
    """Create or update the tables in the config's Glue database (``loglake ddl --apply``).

    Tables go through the Glue API (``catalog.ensure_table``), from the same TableInputs
    the DDL files print. Views cannot: Glue stores an Athena view as Presto-encoded view
    text that only Athena writes, so views are created through Athena when ``athena`` (a
    client) is given, and otherwise returned as statements to run in Athena.
    """
    from loglake import catalog

    names = {key: _name_of(config, key) for key in (*TABLE_KEYS, *VIEW_KEYS)}
    wanted = None if tables is None else {_resolve_key(t, names) for t in tables}
    defs = table_definitions(config, locations)
    outcome: dict[str, Any] = {"database": config.catalog.database, "tables": {}, "skipped": {}, "views": {}}
    catalog.ensure_database(glue, config.catalog.database)
    for key in TABLE_KEYS:
        if wanted is None and key in OPTIONAL_KEYS or wanted is not None and key not in wanted:
            continue
        tinput = defs.get(key)
        if key in _RAW_KEYS and _RAW_KEYS[key] not in locations.raw:
            outcome["skipped"][names[key]] = f"sources.{_RAW_KEYS[key]}.bucket is not set"
            continue
        if not locations.readready and key not in _RAW_KEYS:
            outcome["skipped"][names[key]] = "readready.location is not set"
            continue
        outcome["tables"][tinput["Name"]] = catalog.ensure_table(glue, config.catalog.database, tinput)
    views = [s for s in ddl_statements(config, locations, tables) if s.kind == "view"]
    for view in views:
        if athena is None:
            outcome["views"][view.name] = "not applied: Glue cannot store Athena views; run it in Athena " \
                                          "(`loglake ddl --table sessions`) or pass --athena"
            outcome.setdefault("athena_statements", []).append(view.sql)
        else:
            run_athena(athena, view.sql, database=config.catalog.database,
                       output_location=athena_output, workgroup=workgroup)
            outcome["views"][view.name] = "created (Athena)"
    return outcome


# =========================================================================== queries

PARAM_TYPES = ("string", "int", "timestamp", "date")
_QUERY_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
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


def list_queries() -> list[str]:
    folder = importlib.resources.files("loglake.ddl").joinpath("queries")
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".sql"))


def load_query(name: str) -> Query:
    if not _QUERY_NAME.match(name or "") or name not in list_queries():
        raise ValueError(f"no query {name!r} (known: {', '.join(list_queries())})")
    return parse_query(name, read_template(f"queries/{name}.sql"))


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


def register_raw(spark, config: Config, raw_root: str, source: str) -> str:
    """Temp view of a source's raw table below ``raw_root``, shaped as its SerDe presents
    it (the source's raw schema: CloudTrail's nested identity, JSON text for free-form
    objects, eventtime as text; partitions from the keys). Local stand-in for
    {<source>_raw}, so raw-table queries are tested like the others."""
    from loglake.sources import get_source

    src = get_source(source)
    if src.raw_records is None:
        raise ValueError(f"source {source!r} has no local stand-in for its raw table")
    schema = spark.createDataFrame([], src.raw_schema.spark_ddl()).schema
    fields = schema.fields[: len(src.raw_schema.columns)]
    rows = []
    for obj in storage.list_objects(raw_root):
        result = src.classify_key(obj.key, config)
        if not result.ok:
            continue
        for record in src.raw_records(storage.read_bytes(obj.uri)):
            if not isinstance(record, dict):
                continue
            low = {k.lower(): v for k, v in record.items()}
            rows.append(tuple(_serde_value(low.get(f.name), f.dataType) for f in fields)
                        + tuple(result.partition.values))
    table = config.table(source, "raw")
    spark.createDataFrame(rows, schema).createOrReplaceTempView(table)
    return table


def _serde_value(value: Any, dtype) -> Any:
    """A JSON value as the Hive JSON SerDe reads it into a column of ``dtype``."""
    from pyspark.sql.types import ArrayType, StructType

    if value is None:
        return None
    if isinstance(dtype, StructType):
        if not isinstance(value, dict):
            return None
        low = {k.lower(): v for k, v in value.items()}
        return tuple(_serde_value(low.get(f.name), f.dataType) for f in dtype.fields)
    if isinstance(dtype, ArrayType):
        if not isinstance(value, list):
            return None
        return [_serde_value(v, dtype.elementType) for v in value]
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))


# =========================================================================== Athena


class AthenaQueryFailed(RuntimeError):
    pass


def run_athena(athena, sql_text: str, *, database: str, output_location: str | None = None,
               workgroup: str | None = None, poll_seconds: float = 0.25, max_poll_seconds: float = 2.0,
               timeout: float = 1800.0, sleep=time.sleep) -> tuple[list[str], list[tuple]]:
    """Run one statement through Athena (StartQueryExecution, poll, GetQueryResults);
    returns (column names, rows of strings or None). Polls back off from ``poll_seconds``
    to ``max_poll_seconds``."""
    kwargs: dict[str, Any] = {"QueryString": sql_text, "QueryExecutionContext": {"Database": database}}
    if output_location:
        kwargs["ResultConfiguration"] = {"OutputLocation": output_location}
    if workgroup:
        kwargs["WorkGroup"] = workgroup
    qid = athena.start_query_execution(**kwargs)["QueryExecutionId"]
    deadline = time.monotonic() + timeout
    while True:
        status = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]
        state = status["State"]
        if state == "SUCCEEDED":
            break
        if state in ("FAILED", "CANCELLED"):
            raise AthenaQueryFailed(f"Athena query {qid} {state}: {status.get('StateChangeReason', '')}")
        if time.monotonic() > deadline:
            athena.stop_query_execution(QueryExecutionId=qid)
            raise AthenaQueryFailed(f"Athena query {qid} still {state} after {timeout:.0f}s; stopped")
        sleep(poll_seconds)
        poll_seconds = min(max_poll_seconds, poll_seconds * 2)
    columns: list[str] = []
    rows: list[tuple] = []
    first = True
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=qid):
        result = page["ResultSet"]
        if not columns:
            info = result.get("ResultSetMetadata", {}).get("ColumnInfo", [])
            columns = [c.get("Label") or c.get("Name") for c in info]
        for row in result.get("Rows", []):
            values = tuple(d.get("VarCharValue") for d in row.get("Data", []))
            if first and columns and list(values) == columns:  # Athena repeats the header as row 1
                first = False
                continue
            first = False
            rows.append(values)
    return columns, rows


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as an aligned text table (NULL for None), one line per row."""
    def cell(v: Any) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, dt.datetime):
            return v.isoformat(sep=" ")
        return str(v).replace("\n", "\\n")

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


# =========================================================================== python -m loglake.sql


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m loglake.sql render-ddl [--check]``: (re)generate ddl/<table>.sql."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m loglake.sql")
    sub = parser.add_subparsers(dest="command", required=True)
    rd = sub.add_parser("render-ddl", help="write ddl/<table>.sql from schema.py and catalog.py")
    rd.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_ddl_files()
        for name in stale:
            print(f"stale: ddl/{name}", file=sys.stderr)
        return 1 if stale else 0
    for name in write_ddl_files():
        print(f"wrote ddl/{name}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
