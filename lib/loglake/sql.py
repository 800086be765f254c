"""Athena SQL templates (``ddl/``) rendered for Athena, and the same text run on Spark.

Views and analyst queries are written once, in Athena's Trino dialect. Locally and
in tests they run on Spark after ``sqlglot`` transpiles them, so what is tested is
the very SQL analysts get. Templates name tables with ``{database}`` and
``{<table key>}`` placeholders (``{cloudtrail_readready}``, ...) filled from the
config; any other brace is left alone.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import re

from loglake import storage
from loglake.config import Config

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


def to_spark(trino_sql: str) -> str:
    """Trino SQL -> Spark SQL. A CREATE VIEW becomes its SELECT (registered as a temp view)."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(trino_sql, read="trino")
    if isinstance(tree, exp.Create):
        tree = tree.expression
    return tree.sql(dialect="spark")


def register_lake(spark, config: Config, root: str) -> list[str]:
    """Temp views over the readready tables below ``root`` (empty ones where no data was
    written yet), plus the ``sessions`` view; returns the view names."""
    from loglake.sources import SOURCES

    names = []
    for source in SOURCES.values():
        table = config.table(source.name, "readready")
        location = storage.join(root, table)
        if any(True for _ in _orc_files(location)):
            df = spark.read.orc(storage.spark_uri(location))
        else:
            df = spark.createDataFrame([], source.schema.spark_ddl())
        df.createOrReplaceTempView(table)
        names.append(table)
    sessions = to_spark(render(read_template("views/sessions.sql"), config, database=""))
    spark.sql(sessions).createOrReplaceTempView("sessions")
    names.append("sessions")
    return names


def _orc_files(location: str):
    try:
        for obj in storage.list_objects(location):
            if obj.key.endswith(".orc"):
                yield obj
    except FileNotFoundError:
        return
