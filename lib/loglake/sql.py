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
  so the DDL, the Glue definitions and the jobs' schema cannot drift apart
  (:mod:`loglake.catalog_ddl`).
* ``ddl/views/*.sql``: views (``sessions``), hand-written Trino.
* ``ddl/queries/*.sql``: the analysts' query library, hand-written Trino with a header
  (question, parameters) and ``:name`` parameters that are substituted as SQL literals
  (quoted, validated), never as raw text (:mod:`loglake.query_library`).

This module renders templates, transpiles Trino to Spark and gives local Spark the
lake's tables (readready, and a raw table's stand-in); Athena runs are in
:mod:`loglake.athena`.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from loglake import storage
from loglake.config import Config

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def read_template(name: str) -> str:
    """A template from ddl/, e.g. ``views/sessions.sql``."""
    return importlib.resources.files("loglake.ddl").joinpath(name).read_text(encoding="utf-8")


_TEMPLATE_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def template_names(folder: str) -> list[str]:
    """The ``.sql`` templates of a ddl/ folder (``queries``, ``alerts``), without the suffix."""
    found = importlib.resources.files("loglake.ddl").joinpath(folder)
    return sorted(p.name[:-4] for p in found.iterdir() if p.name.endswith(".sql"))


def named_template(folder: str, name: str, what: str) -> str:
    """The text of ``<folder>/<name>.sql``; a name that is not one of them (or not a plain
    name: it never becomes a path) is a ValueError naming the known ones."""
    known = template_names(folder)
    if not _TEMPLATE_NAME.match(name or "") or name not in known:
        raise ValueError(f"no {what} {name!r} (known: {', '.join(known)})")
    return read_template(f"{folder}/{name}.sql")


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



# =========================================================================== python -m loglake.sql


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m loglake.sql render-ddl [--check]``: (re)generate ddl/<table>.sql."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m loglake.sql")
    sub = parser.add_subparsers(dest="command", required=True)
    rd = sub.add_parser("render-ddl", help="write ddl/<table>.sql from schema.py and catalog.py")
    rd.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    args = parser.parse_args(argv)
    from loglake.catalog_ddl import stale_ddl_files, write_ddl_files

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
