"""A partition sorted in spilled runs (loglake.spill) is written as one held in memory:
the first row of each key, sorted as Spark sorts (nulls first, ties in arrival order),
read back with pyorc."""
from __future__ import annotations

import os

import pyarrow as pa
import pytest

from loglake import orcwrite, spill
from test_orcwrite import NAMES, PARTS, SOURCE, read_back, sample_rows

SORT = tuple(SOURCE.sort_columns)


def partition_rows() -> list[dict]:
    """300 rows of PARTS[0] built from the stratus sample: new event ids, a principal
    missing on some (a null sort key), and repeats of earlier ids far apart (the first
    must win wherever the two land)."""
    base = sample_rows()
    rows = []
    for i in range(300):
        r = dict(base[i % len(base)], **dict(zip(NAMES, PARTS[0], strict=True)), eventid=f"id-{i % 280:05d}")
        if i % 7 == 0:
            r["useridentity_arn"] = None
        if i >= 280:
            r["eventname"] = f"repeat {i}"  # a repeat of row i - 280: dropped
        rows.append(r)
    return rows


def expected(rows: list[dict]) -> list[tuple]:
    first: dict = {}
    for r in rows:
        first.setdefault(r["eventid"], r)

    def key(r):
        return tuple((r[c] is not None, r[c] if r[c] is not None else "") for c in SORT)

    return [(r["eventid"], r["eventname"]) for r in sorted(first.values(), key=key)]


def layout(tmp_path, name: str) -> orcwrite.Layout:
    return orcwrite.Layout(str(tmp_path / name), NAMES, SOURCE.schema.orc_arrow(), tuple(SOURCE.bloom_columns),
                           max_rows=2_000_000)


def written(tmp_path, name: str, files) -> list[tuple]:
    [(_, file, n)] = files
    folder = tmp_path / name / "/".join(f"{k}={v}" for k, v in zip(NAMES, PARTS[0], strict=True))
    _, got = read_back(folder / file)
    assert n == len(got)
    return [(r["eventid"], r["eventname"]) for r in got]


@pytest.mark.parametrize(("limit", "batch", "slice_rows"), [(1, 1, 4_096), (37, 10, 5), (64, 64, 4_096)])
def test_a_spilled_partition_is_written_deduplicated_and_sorted_like_a_held_one(tmp_path, monkeypatch, limit, batch,
                                                                                 slice_rows):
    monkeypatch.setattr(orcwrite, "WRITE_SLICE_ROWS", slice_rows)
    rows = partition_rows()
    want = expected(rows)
    assert len(want) == 280 and any(r["useridentity_arn"] is None for r in rows)
    schema = SOURCE.schema.arrow()
    batches = pa.Table.from_pylist(rows, schema=schema).to_batches(max_chunksize=batch)

    held = spill.PartitionRows(schema, ["eventid"], SORT, limit)
    for b in batches:
        held.add(b)
    assert held.spilled and held.rows == 300
    folder = held._folder
    with held:
        files, read, repeats = spill.write(held, PARTS[0], layout(tmp_path, "spilled"), 0)
    assert (read, repeats) == (300, 20)
    assert not os.path.exists(folder)  # the runs are removed once written
    assert written(tmp_path, "spilled", files) == want

    files, read, repeats = orcwrite.write_partition(list(batches), schema, PARTS[0], layout(tmp_path, "held"), 0,
                                                    ["eventid"], SORT)
    assert (read, repeats) == (300, 20)
    assert written(tmp_path, "held", files) == want


def test_a_partition_under_the_limit_is_held_not_spilled():
    schema = SOURCE.schema.arrow()
    batches = pa.Table.from_pylist(partition_rows()[:50], schema=schema).to_batches(max_chunksize=10)
    with spill.PartitionRows(schema, ["eventid"], SORT, limit=51) as held:
        for b in batches:
            held.add(b)
        assert not held.spilled
        assert sum(b.num_rows for b in held.held()) == 50


def test_a_merge_that_does_not_give_the_sorted_rows_fails(tmp_path, monkeypatch):
    """The merge checks each slice against the order decided from the index: a run whose
    file lost rows is an error, not a shorter file."""
    schema = SOURCE.schema.arrow()
    held = spill.PartitionRows(schema, ["eventid"], SORT, limit=50)
    for b in pa.Table.from_pylist(partition_rows(), schema=schema).to_batches(max_chunksize=50):
        held.add(b)
    path, _ = held._runs[0]
    with pa.OSFile(path, "rb") as f:
        run = pa.ipc.open_file(f).read_all()
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, run.schema) as out:
        out.write_table(run.slice(1))  # one row gone
    with held, pytest.raises(RuntimeError, match="spilled run ended|sorted order"):
        spill.write(held, PARTS[0], layout(tmp_path, "broken"), 0)
