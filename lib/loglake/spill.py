"""A partition's rows deduplicated and sorted in bounded memory: sorted runs on local
disk, merged while its file is written.

A run's task converts a partition's objects and writes its one sorted file
(:mod:`loglake.onepass`). Holding every row until then made a worker's memory grow with
the largest partition: the medium benchmark's 69,099-row partition was 96 MiB as Arrow
and took its worker some 270 MiB more than an empty one (bench/README.md, "Memory"),
the largest part of the growth from the small scale to the medium. Here a partition
holds at most ``limit`` rows; past that, the rows held are sorted and written to a local
Arrow file (a *run*), and the file is written by merging the runs, a slice at a time.

What stays in memory for every row is its dedup key, its sort columns and its number
(some 150 bytes of CloudTrail's 1.4 KB), so that which rows are repeats, and the order
of those kept, are decided exactly as :func:`loglake.orcwrite.write_partition` decides
them: the first row of each key kept, then a stable sort (nulls first). The merge
checks that each slice holds the rows that order names, in that order.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa

from loglake import orcwrite

# Rows a partition holds before it spills (some 11 MiB of CloudTrail as Arrow). The
# benchmark's hourly files hold a few hundred rows and never spill; the small scale's
# largest partition holds 11,705 rows, the medium's 69,099. Measured with the medium and
# small ingests (process tree, twice each): the largest worker 366-408 MiB with 8,192
# (both scales), 340-430 with 16,384, 505 for the medium without spilling; the medium's
# ingest took 42-46 s whichever.
SPILL_ROWS = 8_192
RUN_BATCH_ROWS = 1_024  # rows per batch of a run's file: what a run's reader holds at once
# Rows merged and written at a time: each slice is gathered from every run, reordered and
# given its partition columns, a few copies of it held at once. A worker writing a
# 98,778-row partition peaked 18 MiB lower with 1,024 than with write_partition's 4,096
# (318-323 MiB against 333-338, three runs each); merging and writing it took 2.14-2.45 s
# of CPU against 1.91-2.33 (four alternations in one process), about 10% more.
MERGE_SLICE_ROWS = 1_024
ROW = "_row"  # the number of a row in the partition, in the order it was added


class _Run:
    """One sorted run: the kept rows in its order, read back a batch at a time."""

    def __init__(self, path: str, keep: np.ndarray):
        self._file = pa.OSFile(path)
        self._reader = pa.ipc.open_file(self._file)
        self._next = 0
        self._keep = keep
        self._held: list[pa.Table] = []
        self._rows = 0

    def take(self, n: int) -> pa.Table:
        """The next ``n`` kept rows."""
        while self._rows < n:
            if self._next >= self._reader.num_record_batches:
                raise RuntimeError(f"a spilled run ended {n - self._rows} rows short of the merge's order")
            batch = self._reader.get_batch(self._next)
            self._next += 1
            batch = batch.filter(pa.array(self._keep[batch.column(ROW).to_numpy()]))
            if batch.num_rows:
                self._held.append(pa.Table.from_batches([batch]))
                self._rows += batch.num_rows
        held = pa.concat_tables(self._held)
        self._held = [held.slice(n)] if held.num_rows > n else []
        self._rows -= n
        return held.slice(0, n)

    def close(self) -> None:
        self._file.close()


class PartitionRows:
    """The rows of one partition as they are converted (``add``), then written sorted and
    deduplicated (:func:`write`). Use as a context manager: the runs are removed on exit."""

    def __init__(self, schema: pa.Schema, key: list[str], sort_columns: tuple[str, ...], limit: int = SPILL_ROWS):
        self.schema, self.key, self.sort_columns, self.limit = schema, list(key), tuple(sort_columns), limit
        self.rows = 0
        self._held: list[pa.RecordBatch] = []
        self._held_rows = 0
        self._index: list[pa.Table] = []  # key and sort columns of the rows spilled, with their numbers
        self._runs: list[tuple[str, int]] = []  # (file, first row number)
        self._folder: str | None = None

    def __enter__(self) -> PartitionRows:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def spilled(self) -> bool:
        return bool(self._runs)

    def add(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self._held.append(batch)
        self._held_rows += batch.num_rows
        self.rows += batch.num_rows
        if self._held_rows >= self.limit:
            self._spill()

    def held(self) -> list[pa.RecordBatch]:
        """The rows, when none spilled (the list is handed over: the caller's table then
        holds the only reference to them)."""
        if self.spilled:
            raise RuntimeError("the partition spilled: write it with spill.write")
        held, self._held, self._held_rows = self._held, [], 0
        return held

    def _index_columns(self) -> list[str]:
        return list(dict.fromkeys([*self.key, *self.sort_columns]))

    def _spill(self) -> None:
        if not self._held:
            return
        table = pa.Table.from_batches(self._held, schema=self.schema)
        self._held, self._held_rows = [], 0
        first = self.rows - table.num_rows
        table = table.append_column(ROW, pa.array(np.arange(first, first + table.num_rows), pa.int64()))
        self._index.append(table.select([*self._index_columns(), ROW]))
        ordered = table.take(orcwrite.sort_order(table, (*self.sort_columns, ROW)))
        del table
        if self._folder is None:
            self._folder = tempfile.mkdtemp(prefix="loglake-spill-")
        path = os.path.join(self._folder, f"run-{len(self._runs):05d}.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, ordered.schema) as out:
            for batch in ordered.to_batches(max_chunksize=RUN_BATCH_ROWS):
                out.write_batch(batch)
        self._runs.append((path, first))

    def sorted_slices(self, dedup: Callable | None = None, slice_rows: int | None = None
                      ) -> tuple[Iterator[pa.Table], int, int]:
        """(the kept rows in the written order, ``slice_rows`` at a time; the rows added;
        the repeats among them). ``dedup``: as :func:`loglake.orcwrite.write_partition`'s."""
        self._spill()  # what is still held becomes the last run
        index = pa.concat_tables(self._index)
        self._index = []
        distinct = orcwrite.distinct_keys(index, self.key)
        kept = (dedup or orcwrite.first_of_each_key)(index, self.key)
        order = kept.take(orcwrite.sort_order(kept, (*self.sort_columns, ROW))).column(ROW).to_numpy()
        del kept, index
        keep = np.zeros(self.rows, dtype=bool)
        keep[order] = True
        starts = np.array([first for _, first in self._runs], dtype=np.int64)
        runs = [_Run(path, keep) for path, _ in self._runs]
        step = slice_rows or MERGE_SLICE_ROWS

        def slices() -> Iterator[pa.Table]:
            try:
                yield from merged()
            finally:
                for run in runs:
                    run.close()

        def merged() -> Iterator[pa.Table]:
            for at in range(0, len(order), step):
                want = order[at:at + step]
                which = np.searchsorted(starts, want, side="right") - 1
                grouped = np.argsort(which, kind="stable")  # the slice's rows, run by run, each run's in order
                pieces = [runs[r].take(int(n)) for r, n in zip(*np.unique(which, return_counts=True), strict=True)]
                joined = pa.concat_tables(pieces)
                back = np.empty_like(grouped)
                back[grouped] = np.arange(len(grouped))
                part = joined.take(pa.array(back))
                if not np.array_equal(part.column(ROW).to_numpy(), want):
                    raise RuntimeError("a spilled partition's merge does not give the rows in their sorted order")
                yield part.drop_columns([ROW])

        return slices(), self.rows, self.rows - distinct

    def close(self) -> None:
        self._held, self._index = [], []
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self._runs = []


def write(rows: PartitionRows, values: tuple[str, ...], layout: orcwrite.Layout, task: int, tally=None,
          dedup: Callable | None = None) -> tuple[list[tuple], int, int]:
    """A spilled partition written as :func:`loglake.orcwrite.write_partition` writes a
    held one: (the files written, rows added, repeats)."""
    slices, read, repeats = rows.sorted_slices(dedup)
    batches = (batch for part in slices for batch in orcwrite.with_values(part, layout, values).to_batches())
    files = orcwrite.write_sorted(batches, layout, task, tally, rows=read - repeats)
    return files, read, repeats
