"""The reader contract: what Athena (Trino) and bulk ORC readers get from loglake's files.

Spark reads ORC by column *name* and converts types it is given; Athena does neither.
Its Hive connector reads an ORC file's columns by *position* (Athena's default for
ORC) and its ORC reader accepts only certain ORC type kinds for each declared type:
a ``timestamp`` column must be stored as ORC ``TIMESTAMP``, not ``TIMESTAMP_INSTANT``
(``timestamp with local time zone``), which is what pyarrow writes for a tz-aware
column. So a file can read back perfectly in Spark and fail, or silently shift every
column, in Athena. Two guards, both checked by the test suite:

* :func:`check_file` / :func:`check_lake`: every ORC file of a table loglake owns has,
  in its footer, exactly the table's columns (partition columns aside), in the
  table's order, each with a type kind in :data:`ACCEPTED_KINDS` for its declared type.
  Footers are read with pyorc (the ORC C++ library), not Spark, which forgives both.
* the column snapshot ``ddl/columns.tsv``: every owned table's columns in order. Old
  partitions keep their files, and Athena reads them by position, so a column may only
  ever be appended: :func:`compare_snapshot` rejects a removed, renamed, retyped,
  reordered or inserted column. ``python -m loglake.contract --update-snapshot`` (``make
  columns``) records appended columns and refuses anything else.

``loglake contract --lake DIR`` runs :func:`check_lake` on a lake.
"""
from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from loglake import storage
from loglake.config import Config

SNAPSHOT = Path(__file__).resolve().parents[2] / "ddl" / "columns.tsv"
_SNAPSHOT_HEADER = (
    "# Every column of every ORC table loglake writes, in file order (partition columns are not in\n"
    "# the files). Athena reads ORC columns by position: columns are only ever appended.\n"
    "# Checked by tests/test_contract.py; after appending a column: make columns\n"
    "# table\tposition\tcolumn\ttype\n"
)

# The ORC type kinds a declared (Glue/Hive) type may be stored as. Trino's ORC reader
# picks a column reader by the ORC kind and then checks the declared type: a timestamp
# reader maps TIMESTAMP only to `timestamp` and TIMESTAMP_INSTANT only to `timestamp with
# time zone`; its slice reader also takes CHAR (trailing spaces dropped) and BINARY for
# varchar, and its long reader widens INT and SHORT to bigint. loglake promises the exact
# kind: what a reader gets is what was written, value for value.
ACCEPTED_KINDS: dict[str, frozenset[str]] = {
    "string": frozenset({"STRING", "VARCHAR"}),
    "bigint": frozenset({"LONG"}),
    "int": frozenset({"INT"}),
    "smallint": frozenset({"SHORT"}),
    "tinyint": frozenset({"BYTE"}),
    "boolean": frozenset({"BOOLEAN"}),
    "double": frozenset({"DOUBLE"}),
    "float": frozenset({"FLOAT"}),
    "date": frozenset({"DATE"}),
    "timestamp": frozenset({"TIMESTAMP"}),
}


def footer_columns(data: bytes | BinaryIO) -> list[tuple[str, str]]:
    """(name, ORC type kind) of each top-level column, from the file's footer."""
    import pyorc

    fh = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    schema = pyorc.Reader(fh).schema
    return [(name, pyorc.TypeKind(sub.kind).name) for name, sub in schema.fields.items()]


def check_columns(found: Sequence[tuple[str, str]], declared: Sequence[Mapping[str, str]]) -> list[str]:
    """What a position-reading reader would get wrong: names or order that differ from
    the declared columns (a file may lack the last ones, appended after it was written),
    and type kinds the declared type does not accept."""
    problems = []
    names = [n for n, _ in found]
    want = [c["Name"] for c in declared]
    # A file written before a column was appended holds the first columns only: a reader
    # by position reads the missing last ones as NULL (why columns are only appended).
    if not names or names != want[: len(names)]:
        problems.append(f"columns {names} are not the table's {want}")
    for position, ((name, kind), col) in enumerate(zip(found, declared, strict=False)):
        accepted = ACCEPTED_KINDS.get(col["Type"])
        if accepted is None:
            problems.append(f"column {col['Name']}: declared type {col['Type']!r} has no ORC contract")
        elif kind not in accepted:
            problems.append(f"column {name} (position {position}) is ORC {kind}, "
                            f"table declares {col['Type']} (needs {' or '.join(sorted(accepted))})")
    return problems


def check_file(data: bytes | BinaryIO, declared: Sequence[Mapping[str, str]]) -> list[str]:
    try:
        found = footer_columns(data)
    except Exception as exc:  # noqa: BLE001 - any unreadable footer is the finding
        return [f"not a readable ORC file: {exc}"]
    return check_columns(found, declared)


def owned_tables(config: Config, lake_root: str = "") -> dict[str, dict]:
    """Glue TableInputs of every ORC table loglake writes, by DDL key (cloudtrail_readready,
    quarantine, runs, connect_users, ...): the same definitions the catalog and DDL use."""
    from loglake import catalog, catalog_ddl

    locations = catalog_ddl.Locations.from_config(config, readready=lake_root or "s3://lake")
    return {key: t for key, t in catalog_ddl.table_definitions(config, locations).items()
            if t["StorageDescriptor"]["InputFormat"] == catalog.ORC_FORMAT["InputFormat"]}


@dataclass
class LakeReport:
    files_checked: int = 0
    files_by_table: dict[str, int] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)  # {"file", "table", "problem"}

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "files_checked": self.files_checked, "files_by_table": self.files_by_table,
                "problems": self.problems}


def check_lake(lake_root: str, config: Config) -> LakeReport:
    """Check every ORC file below each owned table's folder of a lake (local or s3://)."""
    report = LakeReport()
    for key, tinput in owned_tables(config, lake_root).items():
        location = storage.join(lake_root, tinput["Name"])
        declared = tinput["StorageDescriptor"]["Columns"]
        count = 0
        for obj in _orc_objects(location):
            count += 1
            for problem in check_file(storage.read_bytes(obj.uri), declared):
                report.problems.append({"file": obj.uri, "table": key, "problem": problem})
        report.files_by_table[key] = count
        report.files_checked += count
    return report


def _orc_objects(location: str) -> Iterable[storage.ObjectInfo]:
    try:
        yield from (o for o in storage.list_objects(location) if o.key.endswith(".orc"))
    except FileNotFoundError:
        return


# --------------------------------------------------------------------------- column snapshot

Columns = dict[str, list[tuple[str, str]]]  # table key -> [(column, type)] in file order


def current_columns(config: Config | None = None) -> Columns:
    return {key: [(c["Name"], c["Type"]) for c in t["StorageDescriptor"]["Columns"]]
            for key, t in owned_tables(config or Config()).items()}


def parse_snapshot(text: str) -> Columns:
    out: Columns = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            table, position, column, type_ = line.split("\t")
        except ValueError:
            raise ValueError(f"snapshot line {n}: expected table<TAB>position<TAB>column<TAB>type") from None
        cols = out.setdefault(table, [])
        if int(position) != len(cols):
            raise ValueError(f"snapshot line {n}: position {position} of {table}, expected {len(cols)}")
        cols.append((column, type_))
    return out


def render_snapshot(columns: Columns) -> str:
    lines = [f"{table}\t{i}\t{name}\t{type_}" for table in sorted(columns)
             for i, (name, type_) in enumerate(columns[table])]
    return _SNAPSHOT_HEADER + "\n".join(lines) + "\n"


def compare_snapshot(recorded: Columns, current: Columns) -> tuple[list[str], list[str]]:
    """(breaking changes, appended columns) from the recorded snapshot to the current
    tables. Breaking: a table or column removed, renamed, retyped, reordered or inserted
    before the end; appended: new columns after the recorded ones, or a new table."""
    breaking, appended = [], []
    for table, old in recorded.items():
        new = current.get(table)
        if new is None:
            breaking.append(f"table {table} was removed")
            continue
        for i, (name, type_) in enumerate(old):
            if i >= len(new):
                breaking.append(f"{table}: column {i} {name} {type_} was removed")
                break
            if new[i] != (name, type_):
                what = "retyped" if new[i][0] == name else "renamed, reordered or moved by an insert"
                breaking.append(f"{table}: column {i} was {name} {type_}, is now {new[i][0]} {new[i][1]} ({what})")
                break
        else:
            appended += [f"{table}: {name} {type_}" for name, type_ in new[len(old):]]
    appended += [f"new table {table}" for table in current if table not in recorded]
    return breaking, appended


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loglake.contract",
        description="Check or update the column snapshot (ddl/columns.tsv). Columns may only be appended.")
    parser.add_argument("--update-snapshot", action="store_true",
                        help="record appended columns and new tables; refuses any other change")
    args = parser.parse_args(argv)
    recorded = parse_snapshot(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}
    current = current_columns()
    breaking, appended = compare_snapshot(recorded, current)
    for line in breaking:
        print(f"breaking: {line}", file=sys.stderr)
    if breaking:
        print("Athena reads ORC by position: append new columns at the end of the schema instead.", file=sys.stderr)
        return 1
    for line in appended:
        print(f"appended: {line}")
    if args.update_snapshot and appended:
        SNAPSHOT.write_text(render_snapshot(current))
        print(f"wrote {SNAPSHOT}")
    elif appended:
        print("the snapshot is stale: run `make columns`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
