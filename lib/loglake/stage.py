"""A run's staging: its objects converted, repeats dropped and counted, the rows written
as readready ORC/ZLIB to a staging folder by tasks that count what they were given (and
the gate's checks) and report each file's rows from its footer, the quarantine written;
then the staged files listed once and checked against the tasks' reports, and the gate
judged. Two ways: in one pass, each task taking whole partitions (:mod:`loglake.onepass`),
or, for a partition too large for one task, converted everywhere and shuffled to writers."""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from loglake import catalog, orcwrite, storage
from loglake.objects import (  # noqa: E402
    BATCH_ROWS,
    KIND_EVENT,
    KIND_FILE,
    KIND_PROBLEM,
    FileTotals,
    _convert_partition,
    _spark_output_ddl,
)
from loglake.planning import Plan  # noqa: E402
from loglake.schema import QUARANTINE
from loglake.sources import Source

log = logging.getLogger("loglake.stage")

MAX_RECORDS_PER_FILE = 2_000_000
SLICE_BYTES = 16 << 20  # raw (gzip) bytes per Spark partition of the file list, at most


class _Progress:
    """Logs task progress of the running Spark job every few seconds (long runs)."""

    def __init__(self, spark, label: str, every: float = 10.0):
        self.tracker = spark.sparkContext.statusTracker()
        self.label, self.every = label, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            done = total = 0
            for sid in self.tracker.getActiveStageIds():
                info = self.tracker.getStageInfo(sid)
                if info:
                    done += info.numCompletedTasks
                    total += info.numTasks
            if total:
                log.info("%s: %d/%d tasks of the running stage(s) done", self.label, done, total)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


@dataclass
class _Staged:
    file_stats: FileTotals
    written: dict[tuple[str, ...], int]  # rows per partition, as the writing tasks counted them
    duplicates: int
    quarantine_rows: int
    quality: Any = None  # loglake.quality.QualityResult, when the gate ran
    per_file: dict[tuple[tuple[str, ...], str], int] = field(default_factory=dict)  # (values, file name) -> rows
    staged_rows: int | None = None  # rows the writing tasks were given (None: none written)
    unreported: list[str] = field(default_factory=list)  # staged files no task reported, or reported ones missing
    staged_files: dict[tuple[str, ...], list[str]] = field(default_factory=dict)  # partition values -> staged URIs



@dataclass
class _Converted:
    """What converting and writing a run's objects gives, either way."""

    file_stats: FileTotals
    written: Written
    duplicates: int
    quarantined: int  # quarantine rows written (problems and rejected keys)


def _stage(spark, source, config, plan, staging, table, run_id, run_date, interim: bool = False) -> _Staged:
    """Convert, dedup, and write rows and quarantine to the staging folder; count and check.
    ``interim``: the files are a scheduled run's, which compaction replaces
    (:data:`loglake.orcwrite.INTERIM_OPTIONS`)."""
    from loglake import onepass, quality

    names = source.schema.partition_names
    quarantine_rows = _key_quarantine(spark, plan, run_id)
    if not plan.files:
        staged = _Staged(FileTotals(), {}, 0, 0)
        staged.quarantine_rows = _write_quarantine(spark, quarantine_rows, None, staging, names, run_id)
        return staged
    # The gate is counted by the writing tasks, on the rows they write (with it off,
    # they count the rows): the files' footers must hold those rows. Each partition's
    # rows reach one task, so the tasks' distinct keys add up (checks.Tally).
    gate = quality.StagedGate(source.name, config.source(source.name)) if config.quality.expectations else None
    if gate is not None:
        gate()  # a suite the tasks cannot evaluate fails here, before any file is written
    sizes: dict[tuple[str, ...], int] = {}
    for f in plan.files:
        sizes[f.values] = sizes.get(f.values, 0) + (f.size or 0)
    by = _stage_one_pass if onepass.suits(sizes, spark.sparkContext.defaultParallelism) else _stage_by_spark
    done = by(spark, source, config, plan, staging, table, quarantine_rows, run_id, gate, interim)
    written: dict[tuple[str, ...], int] = {}
    for (values, _), n in done.written.per_file.items():
        written[values] = written.get(values, 0) + n
    result = _Staged(done.file_stats, written, done.duplicates, done.quarantined, per_file=done.written.per_file)
    # The staged files are counted, not trusted: the rows in their footers (``written``)
    # must be the rows the writing tasks were given, else the run is unbalanced.
    result.staged_rows = done.written.rows_given
    # What publish will take (this one listing) is what was reported: every staged
    # file, and no other.
    listed = _staged_orc_files(storage.join(staging, table), names)
    result.unreported = sorted("/".join([*v, f]) for v, f in set(listed) ^ set(done.written.per_file))
    for (values, _), uri in sorted(listed.items(), key=lambda item: item[1]):
        result.staged_files.setdefault(values, []).append(uri)
    if config.quality.expectations:
        kept = done.file_stats.kept
        columns = [*source.schema.names, *names]
        result.quality = quality.judge_counts(
            done.written.tallies, source.name, expect_rows=kept > 0, columns=columns, table=table,
            read_back=lambda: _read_staged(spark, source, staging, table),
            section=config.source(source.name),
        )
    return result


def _stage_one_pass(spark, source, config, plan, staging, table, quarantine_rows, run_id, gate,
                    interim: bool = False) -> _Converted:
    """Each task converts, dedups, sorts and writes whole partitions (:mod:`loglake.onepass`)."""
    from loglake import onepass

    names = source.schema.partition_names
    layout = orcwrite.Layout(storage.join(staging, table), tuple(names), source.schema.orc_arrow(),
                             tuple(source.bloom_columns), MAX_RECORDS_PER_FILE, interim)
    task = onepass.task(source.name, config, layout, gate, BATCH_ROWS)
    # The dealt lists (an entry an object) go once Spark has them, not after the job.
    tasks = dealt_tasks(spark, onepass.deal([(f.uri, f.size, f.values) for f in plan.files],
                                            _slices(plan, spark.sparkContext.defaultParallelism)), task)
    with _Progress(spark, f"converting and writing {len(plan.files)} files"):
        counts = tasks.collect()
    file_stats, per_file, tallies, duplicates = FileTotals(), {}, [], 0
    # A few rows a partition and task, none an object: each task adds up its objects'
    # counts (a row per object, collected, was the driver's largest growth with the input).
    for row in counts:
        if row["_kind"] == onepass.KIND_FILES:
            file_stats.merge(FileTotals.from_json(row["_detail"]))
            continue
        detail = json.loads(row["_detail"])
        if row["_kind"] == onepass.KIND_WRITTEN:
            per_file[(tuple(row[n] for n in names), detail["file"])] = detail["rows"]
        elif row["_kind"] == onepass.KIND_PARTITION:
            duplicates += detail["repeats"]
        elif row["_kind"] == onepass.KIND_TALLY:
            tallies.append(detail)
    # The quarantine rows come from converting again the objects that had problems (the
    # same bytes give the same rows): most runs have none, and keeping every run's task
    # output for them (persisted) cost each hourly run some 40 ms of its one job. An
    # object changed or removed in between gives other rows than were counted: the run is
    # then unbalanced and publishes nothing (the next run converts it again).
    with_problems = file_stats.with_problems
    again = [f for f in plan.files if f.uri in with_problems]
    problems = (_problem_rows(_converted_frame(spark, source, config, again, spark.sparkContext.defaultParallelism),
                              names) if again else None)
    quarantined = _write_quarantine(spark, quarantine_rows, problems, staging, names, run_id)
    return _Converted(file_stats, Written(per_file, tallies), duplicates, quarantined)


def _converted_frame(spark, source, config, files: list, slices: int):
    """``files`` converted (:func:`loglake.objects._convert_partition`), dealt round-robin
    to ``slices`` Spark partitions (fewer when there are fewer files; :func:`task_frame`):
    their events, problems and per-object counts, by ``_kind``."""
    slices = max(1, min(slices, len(files)))
    rows = [(f.uri, f.size, *f.values) for f in files]
    frame = task_frame(spark, [rows[k::slices] for k in range(slices)], _file_list_ddl(source.schema.partition_names))
    return frame.mapInArrow(_convert_partition(source.name, config), _spark_output_ddl(source))


def _problem_rows(converted, names):
    """The quarantine's input from converted rows: the partition columns and ``_detail``
    of each problem."""
    from pyspark.sql import functions as F

    return converted.filter(F.col("_kind") == KIND_PROBLEM).select(*names, "_detail")


def dealt_tasks(spark, dealt: list[list], task: Callable[[Iterator], Iterator]):
    """An RDD whose Spark task ``i`` runs ``task`` over the items of ``dealt[i]``: dealt
    here, no shuffle. An RDD's tasks, not a DataFrame's: :func:`loglake.onepass.task`
    says why."""
    return spark.sparkContext.parallelize(dealt, len(dealt)).mapPartitions(
        lambda lists: task(item for chunk in lists for item in chunk))


def task_frame(spark, dealt: list[list[tuple]], ddl: str):
    """A DataFrame whose Spark partition ``i`` holds the rows of ``dealt[i]``, each list one
    task's input: dealt here, not by a repartition, which is a shuffle, a Spark job of its
    own (~0.3 s in an hourly run)."""
    rdd = spark.sparkContext.parallelize(dealt, len(dealt)).flatMap(lambda chunk: chunk)
    return spark.createDataFrame(rdd, ddl)


def _file_list_ddl(names) -> str:
    return "uri string, size long, " + ", ".join(f"`{n}` string" for n in names)


def _stage_by_spark(spark, source, config, plan, staging, table, quarantine_rows, run_id, gate,
                    interim: bool = False) -> _Converted:
    """Objects spread over every core whatever their partitions; the converted rows
    cached, their repeats counted, then shuffled to the writers by partition."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    names = source.schema.partition_names
    slices = _slices(plan, spark.sparkContext.defaultParallelism)
    converted = _converted_frame(spark, source, config, plan.files, slices)
    # Read four times (repeats, rows, quarantine, counts): kept on local disk, not in the
    # heap, whose share for cached blocks does not grow with the input (a 5M-event run
    # ran the 2 GB driver out of heap with MEMORY_AND_DISK).
    converted = converted.persist(StorageLevel.DISK_ONLY)
    try:
        with _Progress(spark, f"converting {len(plan.files)} files"):
            events = converted.filter(F.col("_kind") == KIND_EVENT).drop("_kind", "_detail")
            key = [*names, *source.dedup_key]
            # Dedup reaches one partition of one run: a run replaces whole partitions, so
            # that is exactly the data being published. The same event delivered into two
            # partitions (two days, or an org trail and an account trail) is kept twice.
            # Counting repeats reads the key columns only; the dedup itself (an aggregate
            # over every column) costs more than the rest of the write, so it runs only
            # when there is something to drop.
            duplicates = _count_duplicates(events, key)
            rows = events.repartition(*names)
            if duplicates:
                # Hash-partitioned by the partition columns first: that also clusters the
                # dedup key (a superset), so the write still takes one shuffle.
                rows = rows.dropDuplicates(key)
            written = write_readready(rows, source, storage.join(staging, table), gate, interim)
            file_stats = _file_stats(converted)
            # A file's problems and their count come from the same loop (convert_rows):
            # with none counted, there are no rows to write (a write job saved per clean run).
            problems = _problem_rows(converted, names) if file_stats.with_problems else None
            quarantined = _write_quarantine(spark, quarantine_rows, problems, staging, names, run_id)
    finally:
        converted.unpersist()
    return _Converted(file_stats, written, int(duplicates), quarantined)


def _staged_orc_files(target: str, names: list[str]) -> dict[tuple[tuple[str, ...], str], str]:
    """The URI of every ORC file below a staged table, by (partition values, file name)."""
    out = {}
    for obj in storage.list_objects(target):
        if obj.uri.endswith(".orc"):
            *folders, name = obj.uri.split("/")[-(len(names) + 1):]
            out[(catalog.partition_values("/".join(folders)), name)] = obj.uri
    return out


def _count_duplicates(events, key: list[str]) -> int:
    """Rows beyond the first of each key (the first action on the converted rows: it
    runs the conversion)."""
    from pyspark.sql import functions as F

    return events.groupBy(*key).count().where("count > 1").agg(F.sum(F.col("count") - 1)).first()[0] or 0


def _file_stats(converted) -> FileTotals:
    """The converted files' counts (their KIND_FILE rows), added up in each Spark
    partition, so that one row a partition reaches the driver, not one an object."""
    from pyspark.sql import functions as F

    def add_up(rows: Iterator) -> Iterator[str]:
        totals = FileTotals()
        for row in rows:
            totals.add(json.loads(row["_detail"]))
        yield totals.to_json()

    out = FileTotals()
    for text in converted.filter(F.col("_kind") == KIND_FILE).select("_detail").rdd.mapPartitions(add_up).collect():
        out.merge(FileTotals.from_json(text))
    return out


@dataclass
class Written:
    """What the writing tasks report: the rows in each file's footer, by (partition
    values, file name), which a manifest records (a name alone is not unique: one task
    writes the same file name into every partition it writes); and their tallies of the
    rows they were given (rows, and the gate's counts when asked)."""

    per_file: dict[tuple[tuple[str, ...], str], int]
    tallies: list[dict[str, Any]]

    @property
    def rows_given(self) -> int:
        return sum(int(t["rows"]) for t in self.tallies)


def write_readready(rows, source: Source, target: str, gate: Callable[[], Any] | None = None,
                    interim: bool = False) -> Written:
    """Write rows (partition columns included, one Spark partition per readready
    partition) as readready ORC below the fresh folder ``target``: the source's sort,
    bloom filters, ZLIB, at most MAX_RECORDS_PER_FILE rows a file (:mod:`loglake.orcwrite`).
    Runs and compaction write the same files. ``gate``: each task's tally
    (:class:`loglake.quality.StagedGate`)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    names = tuple(source.schema.partition_names)
    layout = orcwrite.Layout(target, names, source.schema.orc_arrow(), tuple(source.bloom_columns),
                             MAX_RECORDS_PER_FILE, interim)
    out = (
        rows.sortWithinPartitions(*names, *source.sort_columns)
        .mapInArrow(orcwrite.task_writer(layout, gate), from_arrow_schema(orcwrite.output_schema(names)))
        .collect()
    )
    return Written({(tuple(r[n] for n in names), r["file"]): r["rows"] for r in out if r["file"] is not None},
                   [json.loads(r["tally"]) for r in out if r["tally"] is not None])


def _slices(plan: Plan, parallelism: int) -> int:
    """Spark partitions for the file list: enough to keep every core busy, and enough that
    no partition holds more than ~SLICE_BYTES of raw input. A slice's converted rows are
    cached as one block, which Spark unrolls in memory before it can spill it: slices
    sized by the input, not by the core count, keep that bounded at any input size.

    Input that fits one slice per core (an hourly run's, typically) gets one slice per
    core: each Python task costs some 0.2-0.3 s however little it converts, which four
    per core would pay four times in every run. Past that, four per core, so that
    slices of unequal cost still finish close together."""
    total = sum(f.size for f in plan.files)
    by_bytes = -(-total // SLICE_BYTES)
    per_core = 1 if total <= parallelism * SLICE_BYTES else 4
    return max(1, min(len(plan.files), max(parallelism * per_core, by_bytes)))


def _read_staged(spark, source: Source, staging: str, table: str):
    location = storage.join(staging, table)
    if any(o.key.endswith(".orc") for o in storage.list_objects(location)):
        return spark.read.option("basePath", storage.spark_uri(location)).orc(storage.spark_uri(location))
    return spark.createDataFrame([], source.schema.spark_ddl())


_PROBLEM_DDL = (
    "file string, reason string, detail string, index bigint, offset bigint, payload string, payload_size bigint"
)


def _key_quarantine(spark, plan: Plan, run_id: str):
    """Quarantine rows for keys that look like data but match no layout or fail validation."""
    rows = [(k.key, None, None, None, k.reason, k.detail, None, None, run_id) for k, _ in plan.rejected]
    return spark.createDataFrame(rows, QUARANTINE.spark_ddl(with_partitions=False)) if rows else None


def _write_quarantine(spark, key_rows, problems, staging: str, names: list[str], run_id: str) -> int:
    from pyspark.sql import functions as F

    frames = [key_rows] if key_rows is not None else []
    if problems is not None:
        p = F.from_json("_detail", _PROBLEM_DDL).alias("p")
        frames.append(
            problems.select(F.to_json(F.struct(*names)).alias("raw_partition"), p).select(
                F.col("p.file").alias("raw_key"),
                "raw_partition",
                F.col("p.index").alias("record_index"),
                F.col("p.offset").alias("offset"),
                F.col("p.reason").alias("reason"),
                F.col("p.detail").alias("detail"),
                F.col("p.payload").alias("payload"),
                F.col("p.payload_size").alias("payload_size"),
                F.lit(None).cast("string").alias("run_id"),
            )
        )
    if not frames:
        return 0
    df = frames[0]
    for other in frames[1:]:
        df = df.unionByName(other)
    df = df.withColumn("run_id", F.lit(run_id)).coalesce(1)
    df.write.mode("overwrite").option("compression", "zlib").orc(storage.spark_uri(storage.join(staging, "quarantine")))
    return spark.read.orc(storage.spark_uri(storage.join(staging, "quarantine"))).count()

