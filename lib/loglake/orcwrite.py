"""Writing readready ORC files with pyarrow, inside Spark's tasks.

Runs and compaction both write here. Spark's own ORC writer cost some 40-65 ms per
file in local mode, and an hourly run writes one file into every partition it touches
(80 for the benchmark's day): that fixed cost was the largest part of a run. pyarrow's
ORC writer (the C++ one), streamed from the sorted rows, wrote a run's 80 files in
2.1-2.75 s where Spark's took 5.2-6.4 s, and the whole day's 80 files in 14.3 s where
Spark's took 18.3 s (measured once each, 2 cores). The task reports each file with the
rows its footer holds, which the manifests need, and a tally of the rows it was given
(with the quality gate's counts when asked): no second job reads the files back to
count or check them.

The files are what Athena is promised (``loglake.contract``): the table's data columns
in the declared order, ORC types Trino accepts (timestamps as ORC TIMESTAMP: naive UTC
wall time, ``TableSchema.orc_arrow``), ZLIB on every stream (at its default level, but
for a scheduled run's interim files: ``INTERIM_OPTIONS``), bloom filters on the
source's needle columns, at most ``max_rows`` rows a file.

A file is named by the task's Spark partition and a sequence number, so a retried task
writes the names its failed attempt wrote; it appears complete (written under a
temporary name, then renamed; on S3 uploaded whole), and the target must be a fresh
folder (a run's or a compaction's staging folder).
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from loglake import catalog, storage

# What Spark's writer did through options: ZLIB at its default level on every stream
# (not ORC's fast level for data streams: ~2% smaller, written once, read many times),
# dictionaries where a column's distinct values are under 80% of its rows (ORC's
# default threshold; pyarrow's own default, 0, writes no dictionaries at all).
# Stripes of ~4 MiB, not ORC's 64: the writer holds a stripe's streams and dictionaries
# until the stripe is written, so a file's writer grew with its partition, +108 MiB for
# a 98,778-row partition (+42 for 8,192 rows), +74 with 4 MiB stripes; the five stripes
# made that file 0.3% larger, a large ingest's readready 0.11% (files under ~4 MB, most
# of them, are one stripe either way).
ORC_OPTIONS = {
    "compression": "zlib",
    "compression_strategy": "compression",
    "dictionary_key_size_threshold": 0.8,
    "file_version": "0.12",
    "stripe_size": 4 << 20,
}

# A scheduled run's files are interim: the partition's compaction replaces them with one
# file written with ORC_OPTIONS. A run writes one into every partition it touches (80 an
# hour for the benchmark's day), and the writer's set-up per file (a ZLIB stream and
# buffers for each of some 150 streams, dictionary streams for each string column) is
# most of a small file's cost. So interim files take ZLIB's fast level, and no
# dictionaries below INTERIM_DICTIONARY_ROWS rows. Measured on CloudTrail rows of the
# benchmark's day (one process, best of 5 x 20 files), per file:
#   100 rows: 16.1 ms -> 11.7 ms, 5.6% larger;  250 rows: 18.3 ms -> 13.4 ms, 7.8% larger;
#   3,000 rows (fast level only): 41.7 ms -> 35.4 ms, 3.5% larger.
# Dictionaries pay for themselves in size from about 1,000 rows (9% there, 13% at 10,000).
INTERIM_OPTIONS = {"compression_strategy": "speed"}
INTERIM_DICTIONARY_ROWS = 1_000


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_HEAP_KEPT = False


def keep_heap(mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Let this process's C heap keep the memory it frees, up to a bound.

    Each ORC file's writer allocates tens of MB of stream buffers (a 256 KB compression
    buffer for each stream of 50 columns, and more) and frees them when the file closes.
    glibc gives such memory back to the kernel (large blocks are mmapped, a large free
    top of the heap is trimmed), and the next file faults it in again. In an hourly
    run's write tasks (measured with getrusage, 2 cores) one of the two Python workers
    took some 445,000 page faults for its 32-48 small files: 1.2-1.9 s of system time,
    the task 2.4-3.4 s where the other took 0.6-1.4 s. With blocks up to 256 MB kept in
    the heap and no trim below 1 GB free, both took 0.6-1.5 s with 200-15,000 faults
    (thresholds of 64 MB/256 MB, and 256 MB/256 MB, still faulted). A worker's resident
    memory stays at its peak instead of shrinking. Once per process; a no-op (False)
    where the C library has no ``mallopt`` (not glibc)."""
    global _HEAP_KEPT
    if _HEAP_KEPT:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _HEAP_KEPT = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
    return _HEAP_KEPT


def prefer_jemalloc() -> str:
    """Make jemalloc this process's Arrow pool, where pyarrow has it and the user chose
    none (``ARROW_DEFAULT_MEMORY_POOL``); returns the pool's backend.

    pyarrow's default, mimalloc, kept much of what a worker freed: building batches of
    converted rows (``RecordBatch.from_pylist``) left ~100 MiB more resident than they
    used, and one task writing a 98,778-row partition peaked at 446 MiB, at 366 with
    jemalloc. A large ingest's Python workers peaked at 1,005 MiB with mimalloc, at 858
    and 837 with jemalloc, and its CloudTrail job took 178-193 s against 202-228.
    Once per process."""
    global _POOL_SET
    if not _POOL_SET:
        _POOL_SET = True
        if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
            try:
                pa.set_memory_pool(pa.jemalloc_memory_pool())
            except NotImplementedError:  # a pyarrow built without it
                pass
    return pa.default_memory_pool().backend_name


_POOL_SET = False


def prepare_writer() -> None:
    """A writing task's allocators, once per process: glibc keeps the ORC writers' freed
    buffers (:func:`keep_heap`) and Arrow allocates with jemalloc (:func:`prefer_jemalloc`)."""
    keep_heap()
    prefer_jemalloc()


# After a partition of at least RELEASE_ROWS rows, a worker holding more than
# RELEASE_RSS_MB gives back what it holds free (release_heap); not in a scheduled run,
# whose many small files are what keep_heap is for: its peak hours' larger partitions
# released the heap once a task or so, and the files after them paid the page faults
# again (the benchmark's 25 runs took 31.8 s where they had taken 27.3).
# A worker's memory after a release is some 190-200 MiB in a medium ingest.
RELEASE_ROWS = 4_096
RELEASE_RSS_MB = 224


def resident_mb() -> float:
    """This process's resident memory (``/proc/self/statm``; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except (OSError, ValueError, IndexError):
        return 0.0


def release_heap() -> None:
    """Give the C heap's free pages back to the kernel (glibc's ``malloc_trim``) and
    Arrow's pool its unused memory, after a large partition is written.

    :func:`keep_heap` keeps what a worker frees, which is what small files need; but
    a worker that goes on to convert partition after partition then keeps the peak of
    each and the holes between them, so its memory grew with the work it was given.
    Measured on the medium benchmark's 12 largest partitions (366k rows) through one
    task's function in one process: a peak of 789 MiB, 500 MiB with this after each
    file, in the same CPU time (22.2 s against 23.2). In a medium ingest a worker's
    memory had climbed from ~190 to ~560 MiB over its partitions of 1-15k rows.
    A no-op where the C library has no ``malloc_trim`` (not glibc)."""
    pa.default_memory_pool().release_unused()
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def release_after(layout: Layout, rows: int) -> bool:
    """After a partition of ``rows`` rows written with ``layout``: :func:`release_heap`
    when the partition and this process are large enough (RELEASE_ROWS, RELEASE_RSS_MB)
    and the files are not a scheduled run's; returns whether it did."""
    if layout.interim or rows < RELEASE_ROWS or resident_mb() <= RELEASE_RSS_MB:
        return False
    release_heap()
    return True


@dataclass(frozen=True)
class Layout:
    """Where rows go and how they are written: everything a task needs, picklable."""

    target: str  # the table's staging folder (local path, file:// or s3://)
    partition_names: tuple[str, ...]
    orc_schema: pa.Schema  # the file's columns, in the table's order
    bloom_columns: tuple[str, ...]
    max_rows: int
    interim: bool = False  # a scheduled run's files, which compaction replaces (INTERIM_OPTIONS)

    def folder(self, values: tuple[str, ...]) -> str:
        return storage.join(self.target, catalog.hive_partition_path(self.partition_names, values).rstrip("/"))

    def options(self, rows: int | None = None) -> dict:
        """The writer's options for a file of about ``rows`` rows (None: not known)."""
        # pyarrow takes ORC column ids: 0 is the root struct, the table's columns 1..n
        index = {name: i + 1 for i, name in enumerate(self.orc_schema.names)}
        missing = [c for c in self.bloom_columns if c not in index]
        if missing:
            raise ValueError(f"bloom filter columns not in the table: {missing}")
        options = {**ORC_OPTIONS, "bloom_filter_columns": [index[c] for c in self.bloom_columns]}
        if self.interim:
            options.update(INTERIM_OPTIONS)
            if rows is not None and rows < INTERIM_DICTIONARY_ROWS:
                options["dictionary_key_size_threshold"] = 0
        return options


def output_schema(partition_names: tuple[str, ...]) -> pa.Schema:
    """What a writing task returns: one row per file, its partition values, name and rows
    (from the file's footer); then one row whose ``tally`` holds the JSON counts of the
    rows the task was given (:class:`loglake.checks.Tally`)."""
    return pa.schema([*(pa.field(n, pa.string()) for n in partition_names),
                      pa.field("file", pa.string()), pa.field("rows", pa.int64()), pa.field("tally", pa.string())])


def _segments(batch: pa.RecordBatch, names: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], int, int]]:
    """(partition values, offset, length) of the runs of equal partition values in a
    batch sorted by them."""
    import pyarrow.compute as pc

    n = batch.num_rows
    if n == 0:
        return
    change = None
    for name in names:
        col = batch.column(name)
        if col.null_count:
            raise ValueError(f"a row has no value for partition column {name}")
        diff = pc.not_equal(col.slice(1), col.slice(0, n - 1))
        change = diff if change is None else pc.or_(change, diff)
    starts = [0] + ([i + 1 for i in pc.indices_nonzero(change).to_pylist()] if change is not None else [])
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else n
        yield tuple(batch.column(name)[start].as_py() for name in names), start, end - start


def sort_order(table, columns):
    """The row indices of ``table`` sorted as Spark's ascending sort: nulls first. pyarrow
    25 takes the null placement per key (its table-wide one is deprecated); Glue 5.0's
    pyarrow 17 only table-wide."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not columns:
        return pa.array(range(table.num_rows), pa.uint64())
    if int(pa.__version__.split(".")[0]) >= 25:
        return pc.sort_indices(table, sort_keys=[(c, "ascending", "at_start") for c in columns])
    return pc.sort_indices(table, sort_keys=[(c, "ascending") for c in columns], null_placement="at_start")


def distinct_keys(table, key: list[str]) -> int:
    """How many distinct values of ``key`` (nulls one value) the table holds. One key
    column, the common case, is counted by ``count_distinct`` (some 30 µs for an hourly
    file's rows, where a group-by costs 170 µs: twice per partition, 80 partitions a run)."""
    import pyarrow.compute as pc

    if not key:
        return table.num_rows
    if len(key) == 1:
        return pc.count_distinct(table.column(key[0]), mode="all").as_py()
    return table.select(key).group_by(key, use_threads=False).aggregate([]).num_rows


def first_of_each_key(table, key: list[str]):
    """The table without repeats of ``key`` (the first row of each kept), in its order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not key or table.num_rows == 0 or distinct_keys(table, key) == table.num_rows:
        return table
    marked = table.select(key).append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    first = marked.group_by(key, use_threads=False).aggregate([("_row", "min")])["_row_min"]
    if len(first) == table.num_rows:
        return table
    return table.take(pc.take(first, pc.sort_indices(first)))  # the rows kept, in the table's order


def write_partition(batches: list[pa.RecordBatch], schema: pa.Schema, values: tuple[str, ...], layout: Layout,
                    task: int, key: list[str], sort_columns: tuple[str, ...], tally=None,
                    dedup=None) -> tuple[list[tuple], int, int]:
    """One partition's rows (``batches``, of ``schema``: its data columns, partition
    columns added when absent; the list is emptied, so that the table made of it holds
    the only reference to the rows) deduplicated (the first row of each ``key``), sorted as Spark sorts, and written;
    returns (the files :func:`write_sorted` wrote, rows given, repeats). The repeats are
    counted apart from the dedup that drops them, so that a row lost on the way is not
    taken for a repeat (a run's balance, or a compaction's check, then catches it).
    ``dedup``: the dedup to use (default :func:`first_of_each_key`; a task passes its own
    module's binding, which a test can replace)."""
    table = pa.Table.from_batches(batches, schema=schema)
    batches.clear()
    read = table.num_rows
    distinct = distinct_keys(table, key)
    kept = (dedup or first_of_each_key)(table, key)
    del table  # when repeats were dropped, the copy without them is all that is held
    order = sort_order(kept, sort_columns)

    def in_order() -> Iterator[pa.RecordBatch]:
        # taken in sorted slices as they are written: the partition is held once, plus
        # a slice, not twice (a sorted copy of the whole)
        for start in range(0, len(order), WRITE_SLICE_ROWS):
            yield from with_values(kept.take(order.slice(start, WRITE_SLICE_ROWS)), layout, values).to_batches()

    files = write_sorted(in_order(), layout, task, tally, rows=len(order))
    return files, read, read - distinct


# Rows of a partition taken in sorted order at a time while it is written (some 6 MB of
# CloudTrail as Arrow).
WRITE_SLICE_ROWS = 4_096


def with_values(part: pa.Table, layout: Layout, values: tuple[str, ...]) -> pa.Table:
    """A partition's rows with its partition columns, added where absent."""
    for n, v in zip(layout.partition_names, values, strict=True):
        if n not in part.column_names:
            part = part.append_column(n, pa.array([v] * part.num_rows, pa.string()))
    return part


def deal_largest_first(weights: dict, slices: int) -> list[list]:
    """Keys dealt to at most ``slices`` lists, the heaviest first, each to the list with
    the least weight so far (partitions to tasks, by their bytes or rows); keys of equal
    weight in their order."""
    slices = max(1, min(slices, len(weights)))
    loads = [0] * slices
    dealt: list[list] = [[] for _ in range(slices)]
    for k in sorted(weights, key=lambda k: (-weights[k], k)):
        i = loads.index(min(loads))
        loads[i] += weights[k]
        dealt[i].append(k)
    return dealt


class _File:
    """One ORC file being written; complete under its name only once closed."""

    def __init__(self, uri: str, options: dict):
        import pyarrow.orc as orc

        self.uri = uri
        self.rows = 0
        if storage.is_s3(uri):
            fd, self._local = tempfile.mkstemp(suffix=".orc")
            os.close(fd)
        else:
            path = storage.local_path(uri)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # hidden until renamed: Spark and Hive readers skip names starting with "."
            self._local = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
        self._writer = orc.ORCWriter(self._local, **options)
        self._open = True

    def write(self, table: pa.Table) -> None:
        self._writer.write(table)
        self.rows += table.num_rows

    def close(self) -> int:
        """Close and publish the file; returns the rows its footer holds, which is what
        a reader will find (the caller compares them with the rows it wrote)."""
        import pyarrow.orc as orc

        self._writer.close()
        self._open = False
        footer_rows = orc.ORCFile(self._local).nrows
        storage.move_file(self._local, self.uri)
        return footer_rows

    def abort(self) -> None:
        """Leave no temporary file behind (a task failed mid-file)."""
        try:
            if self._open:
                self._open = False
                self._writer.close()
        finally:
            if os.path.exists(self._local):
                os.remove(self._local)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` (the columns of ``schema``, in its order) cast to ``schema``'s types,
    casting only the columns whose type differs (a run's rows differ in their
    timestamps alone): ``Table.cast`` casts every column, 0.5 ms for 50 columns, paid
    for each batch written."""
    if table.schema.equals(schema):
        return table
    return pa.Table.from_arrays([col if col.type == f.type else col.cast(f.type)
                                 for col, f in zip(table.columns, schema, strict=True)], schema=schema)


def write_sorted(batches: Iterator[pa.RecordBatch], layout: Layout, task: int,
                 tally=None, rows: int | None = None) -> list[tuple[tuple[str, ...], str, int]]:
    """Write batches sorted by the partition columns (then the table's sort) as ORC files
    under ``layout.target``; returns (partition values, file name, rows in its footer)
    per file. A partition's rows go to ``part-<task>-<n>.zlib.orc``, a new ``n`` every
    ``max_rows``. ``tally.add`` is given each batch as written (the file's columns, cast
    to the file's types), with its partition columns: once a batch, not once a file,
    as a batch of an hourly run holds some forty partitions' rows. ``rows``: the rows to
    come, when one partition's and known (:meth:`Layout.options`)."""
    options = layout.options(rows)
    data_names = layout.orc_schema.names
    done: list[tuple[tuple[str, ...], str, int]] = []
    current: _File | None = None
    values: tuple[str, ...] | None = None
    seq = 0

    def close() -> None:
        nonlocal current
        if current is not None:
            file, current = current, None
            try:
                footer_rows = file.close()
            except BaseException:
                file.abort()
                raise
            done.append((values, file.uri.rsplit("/", 1)[-1], footer_rows))

    try:
        for batch in batches:
            whole = pa.Table.from_batches([batch])
            data = conform(whole.select(data_names), layout.orc_schema)
            if tally is not None and batch.num_rows:
                with_values = data
                for name in layout.partition_names:
                    with_values = with_values.append_column(name, whole[name])
                tally.add(with_values)
            for seg_values, offset, length in _segments(batch, layout.partition_names):
                if seg_values != values:
                    close()
                    current, values, seq = None, seg_values, 0
                rows = data.slice(offset, length)
                while rows.num_rows:
                    if current is not None and current.rows >= layout.max_rows:
                        close()
                        seq += 1
                    if current is None:
                        name = f"part-{task:05d}-{seq}.zlib.orc"
                        current = _File(storage.join(layout.folder(values), name), options)
                    take = min(rows.num_rows, layout.max_rows - current.rows)
                    current.write(rows.slice(0, take))
                    rows = rows.slice(take)
        close()
    finally:
        if current is not None:  # failed mid-file
            current.abort()
    return done


def task_writer(layout: Layout, tally: Callable[[], Any] | None = None
                ) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The mapInArrow function: sorted rows in, one row per written file out, then the
    task's tally row. ``tally()`` makes the task's tally (default: rows only)."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        from loglake.checks import Tally

        prepare_writer()
        ctx = TaskContext.get()
        counts = tally() if tally is not None else Tally()
        files = write_sorted(batches, layout, ctx.partitionId() if ctx is not None else 0, counts)
        rows = [{**dict(zip(layout.partition_names, values, strict=True)), "file": name, "rows": n}
                for values, name, n in files]
        rows.append({"tally": json.dumps(counts.counts())})
        yield pa.RecordBatch.from_pylist(rows, schema=output_schema(layout.partition_names))

    return run
