"""The reader contract: ORC footers as Athena (Trino) reads them, and the append-only columns.

Every other test's lakes are checked too, after each test (conftest._reader_contract);
these tests show the checker itself rejects what Athena would misread, on files written
deliberately wrong by pyarrow, and that the committed column snapshot guards the order.
"""
from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys

import pyarrow as pa
import pyarrow.orc as orc
import pyorc
import pytest

from loglake import contract
from loglake.config import Config
from loglake.schema import RUNS

RUNS_COLUMNS = RUNS.glue_columns()
ROW = {
    "run_id": "r1", "job": "cloudtrail_readready", "selection": "{}", "status": "published",
    "started_at": dt.datetime(2026, 11, 29, 21, 0, 1, 250000), "finished_at": dt.datetime(2026, 11, 29, 21, 0, 9),
    "files_read": 3, "records_read": 10, "written": 9, "filtered": 0, "filtered_by_rule": "{}",
    "quarantined": 1, "quarantined_records": 1, "quarantined_by_reason": "{}", "duplicates": 0,
    "control_messages": 0, "balanced": True, "quality_success": True, "quality_failed": "[]", "output": "x",
}


def _orc(schema: pa.Schema, rows: list[dict]) -> bytes:
    buf = io.BytesIO()
    orc.write_table(pa.Table.from_pylist(rows, schema=schema), buf, compression="zlib")
    return buf.getvalue()


def test_a_tz_aware_timestamp_file_is_rejected():
    # What runs files were before the fix: pyarrow writes tz-aware timestamps as TIMESTAMP_INSTANT.
    aware = {**ROW, "started_at": ROW["started_at"].replace(tzinfo=dt.UTC),
             "finished_at": ROW["finished_at"].replace(tzinfo=dt.UTC)}
    data = _orc(RUNS.arrow(with_partitions=False), [aware])
    assert dict(contract.footer_columns(data))["started_at"] == "TIMESTAMP_INSTANT"
    problems = contract.check_file(data, RUNS_COLUMNS)
    assert len(problems) == 2
    assert "started_at (position 4) is ORC TIMESTAMP_INSTANT" in problems[0]
    assert "finished_at" in problems[1]


def test_the_orc_schema_writes_timestamp_and_values_read_back_exactly():
    data = _orc(RUNS.orc_arrow(), [ROW])
    assert contract.check_file(data, RUNS_COLUMNS) == []
    assert dict(contract.footer_columns(data))["started_at"] == "TIMESTAMP"
    # Read with the ORC C++ reader, not the writer's library: the wall time is what was written.
    row = next(iter(pyorc.Reader(io.BytesIO(data), struct_repr=pyorc.StructRepr.DICT)))
    assert row["started_at"].replace(tzinfo=None) == ROW["started_at"]
    assert (row["files_read"], row["balanced"]) == (3, True)


def test_two_swapped_columns_are_rejected():
    fields = list(RUNS.orc_arrow())
    fields[1], fields[2] = fields[2], fields[1]  # job <-> selection: both strings, Spark would not mind
    data = _orc(pa.schema(fields), [ROW])
    problems = contract.check_file(data, RUNS_COLUMNS)
    assert len(problems) == 1
    assert "are not the table's" in problems[0]
    assert "'selection', 'job'" in problems[0]


def test_an_inserted_column_and_a_wrong_int_kind_are_rejected():
    fields = list(RUNS.orc_arrow())
    narrow = [pa.field(f.name, pa.int32()) if f.name == "written" else f for f in fields]
    assert any("written" in p and "ORC INT" in p for p in contract.check_file(_orc(pa.schema(narrow), [ROW]),
                                                                          RUNS_COLUMNS))
    inserted = pa.schema([*fields[:3], pa.field("extra", pa.string()), *fields[3:]])
    assert "are not the table's" in contract.check_file(_orc(inserted, [ROW]), RUNS_COLUMNS)[0]


def test_a_file_written_before_columns_were_appended_passes_and_a_missing_middle_one_does_not():
    fields = list(RUNS.orc_arrow())
    older = pa.schema(fields[:-2])  # as written before the last two columns were appended
    assert contract.check_file(_orc(older, [ROW]), RUNS_COLUMNS) == []
    gap = pa.schema([*fields[:3], *fields[4:]])
    assert "are not the table's" in contract.check_file(_orc(gap, [ROW]), RUNS_COLUMNS)[0]


def test_an_unreadable_file_is_a_problem_not_a_crash():
    assert contract.check_file(b"ORC but not really", RUNS_COLUMNS)[0].startswith("not a readable ORC file")


@pytest.mark.broken_orc
def test_check_lake_finds_the_broken_file_among_good_ones(tmp_path):
    runs = tmp_path / "lake" / "runs" / "source=cloudtrail" / "run_date=2026-11-29"
    runs.mkdir(parents=True)
    (runs / "good.orc").write_bytes(_orc(RUNS.orc_arrow(), [ROW]))
    aware = {**ROW, "started_at": ROW["started_at"].replace(tzinfo=dt.UTC)}
    (runs / "bad.orc").write_bytes(_orc(RUNS.arrow(with_partitions=False), [aware]))
    (runs / "notes.txt").write_text("not ORC, not checked")
    report = contract.check_lake(str(tmp_path / "lake"), Config())
    assert report.files_by_table["runs"] == 2
    assert report.files_checked == 2
    assert [p["file"].rsplit("/", 1)[-1] for p in report.problems] == ["bad.orc", "bad.orc"]
    assert not report.ok


def test_every_owned_orc_table_is_checked():
    assert set(contract.owned_tables(Config())) == {
        "cloudtrail_readready", "cloudwatch_readready", "bedrock_readready", "quarantine", "runs", "connect_users"}


# --------------------------------------------------------------------------- column snapshot

def _recorded() -> contract.Columns:
    return contract.parse_snapshot(contract.SNAPSHOT.read_text())


def test_the_committed_snapshot_is_current():
    assert contract.compare_snapshot(_recorded(), contract.current_columns()) == ([], [])
    # The snapshot is read from the file, not derived: spot-check real entries in it.
    text = contract.SNAPSHOT.read_text()
    assert "runs\t4\tstarted_at\ttimestamp\n" in text
    assert "cloudtrail_readready\t0\teventversion\tstring\n" in text


@pytest.mark.parametrize("change, expected", [
    (lambda c: c["runs"].pop(3), "column 3 was status string, is now started_at timestamp"),
    (lambda c: c["runs"].pop(19), "column 19 was output string, is now raw_bytes_read bigint"),
    (lambda c: c["runs"].__setitem__(0, ("run", "string")), "column 0 was run_id string, is now run string"),
    (lambda c: c["runs"].__setitem__(6, ("files_read", "int")), "(retyped)"),
    (lambda c: c["runs"].insert(2, ("new", "string")), "column 2 was selection string, is now new string"),
    (lambda c: c["runs"].__setitem__(slice(1, 3), [c["runs"][2], c["runs"][1]]), "column 1 was job string"),
    (lambda c: c.pop("quarantine"), "table quarantine was removed"),
])
def test_any_change_but_an_append_breaks(change, expected):
    current = {k: list(v) for k, v in _recorded().items()}
    change(current)
    breaking, _ = contract.compare_snapshot(_recorded(), current)
    assert len(breaking) == 1 and expected in breaking[0], breaking


@pytest.mark.parametrize("table", sorted(contract.parse_snapshot(contract.SNAPSHOT.read_text())))
def test_dropping_the_last_column_breaks(table):
    current = {k: list(v) for k, v in _recorded().items()}
    name, type_ = current[table].pop()
    breaking, _ = contract.compare_snapshot(_recorded(), current)
    assert breaking == [f"{table}: column {len(current[table])} {name} {type_} was removed"]


def test_appended_columns_and_new_tables_are_appends():
    current = {k: list(v) for k, v in _recorded().items()}
    current["runs"].append(("appended_later", "bigint"))
    current["future_readready"] = [("requestid", "string")]
    assert contract.compare_snapshot(_recorded(), current) == (
        [], ["runs: appended_later bigint", "new table future_readready"])


def test_snapshot_command_passes_on_the_checkout():
    done = subprocess.run([sys.executable, "-m", "loglake.contract"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_snapshot_round_trips_and_rejects_gaps():
    recorded = _recorded()
    assert contract.parse_snapshot(contract.render_snapshot(recorded)) == recorded
    with pytest.raises(ValueError, match="position 2 of runs, expected 0"):
        contract.parse_snapshot("runs\t2\trun_id\tstring\n")
