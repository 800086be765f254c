"""Compaction: a closed partition's files merged into one sorted, deduplicated file.

Hourly runs add a file per run to today's partitions; once a partition is *closed*
(its day, or hour, ended more than ``compaction.grace_hours`` ago: CloudTrail delivers
late and Firehose buffers), its current files are read, repeats of an event id
dropped and counted (the same event delivered again in a later object), and the rows
written as one file with the source's sort, bloom filters and ZLIB, like a rebuild's
(more files only past the 2M-row limit). It is published with ``publish.replace``: a
new generation folder, then the manifest and the Glue location switch to it; the old
files stay ``compaction.retain_minutes`` and are removed by a later run (or at once
with ``--retain-minutes 0``).

Compacting the same files again is a no-op (a compacted partition is skipped), and a
compaction killed before its switch is redone with the same names. Late data for a
compacted partition is added beside the compacted file by the next run, which opens
the partition again; it is compacted again later.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from loglake import catalog, faults, manifest, orcwrite, publish, state, storage
from loglake.config import Config
from loglake.convert import new_run_id
from loglake.orcwrite import first_of_each_key
from loglake.planning import Selection
from loglake.sources import Source
from loglake.stage import MAX_RECORDS_PER_FILE, dealt_tasks, write_readready

log = logging.getLogger("loglake.compact")


def closes_at(source: Source, values: tuple[str, ...], grace_hours: float) -> float:
    """When a partition is closed: the end of its day (or of its hour, for sources
    partitioned by hour) plus the grace period."""
    part = dict(zip(source.schema.partition_names, values, strict=True))
    start = dt.datetime.fromisoformat(part["dt"]).replace(tzinfo=dt.UTC)
    span = dt.timedelta(days=1)
    if "hour" in part:
        start += dt.timedelta(hours=int(part["hour"]))
        span = dt.timedelta(hours=1)
    return (start + span).timestamp() + grace_hours * 3600


def _values(path: str) -> tuple[str, ...]:
    return catalog.partition_values(path)


@dataclass
class Compacted:
    partitions_compacted: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    duplicates: int = 0
    partitions_already_compact: int = 0
    files_removed: int = 0  # superseded files past their retention, removed
    partitions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["partitions"] = self.partitions[:50]
        return out


def needs_compaction(m: manifest.Manifest | None) -> bool:
    return m is not None and bool(m.files) and not m.compacted


def select(source: Source, config: Config, out_root: str, selection: Selection, closed: bool,
           now: float | None = None) -> list[str]:
    """Partition paths below the table (one listing) in the selection, closed ones only
    with ``closed``."""
    now = time.time() if now is None else now
    table = storage.join(out_root, config.table(source.name, "readready"))
    names = source.schema.partition_names
    out = []
    for tp in manifest.partitions(table, names):
        day = tp.values[names.index("dt")]
        if not selection.includes_day(day):
            continue
        if closed and closes_at(source, tp.values, config.compaction.grace_hours) > now:
            continue
        out.append(tp.path)
    return out


def compact(spark, source: Source, config: Config, out_root: str, paths: Iterable[str], *, glue=None,
            retain_minutes: float | None = None, fence: Callable[[], None] | None = None,
            record: bool = True, loaded: dict[str, manifest.Manifest | None] | None = None) -> Compacted:
    """Compact the given partitions (paths below the table); already compact ones are
    skipped. ``loaded``: manifests the caller has just read, not read again."""
    retain = (config.compaction.retain_minutes if retain_minutes is None else retain_minutes) * 60
    table = config.table(source.name, "readready")
    out_table = storage.join(out_root, table)
    result = Compacted()
    todo: dict[str, manifest.Manifest] = {}
    # Every partition's Glue location is set to its current folder, compacted now or
    # before: a compaction killed between its switch and its catalog call is mended here.
    locations: dict[tuple[str, ...], str] = {}
    for path in paths:
        m = loaded[path] if loaded and path in loaded else manifest.load(storage.join(out_table, path))
        if needs_compaction(m):
            todo[path] = m
        else:
            result.partitions_already_compact += 1
            if m is not None and m.files and m.generation:
                locations[_values(path)] = storage.join(out_table, path, m.generation) + "/"
    started = time.time()
    run_id = new_run_id(started) + "-compact"
    if todo:
        staging = storage.join(out_root, "_staging", run_id)
        try:
            per_file, before, repeats = _rewrite(spark, source, todo, out_table, storage.join(staging, table))
            if fence is not None:
                fence()
            for path, m in sorted(todo.items()):
                part, values = storage.join(out_table, path), _values(path)
                files = publish.staged_files(storage.join(staging, table, path))
                pairs = [(u, per_file.get((values, u.rsplit("/", 1)[-1]), 0)) for u in files]
                rows, read = sum(n for _, n in pairs), before[values]
                listed = m.rows
                if all(f.rows >= 0 for f in m.files) and read != listed:
                    raise RuntimeError(f"compaction of {part} read {read} rows where its manifest lists "
                                       f"{listed}; nothing switched")
                if rows != read - repeats.get(values, 0) or (read and not pairs):
                    # each key once: what the dedup keeps is known before the write, so a
                    # row lost on the way is not mistaken for a dropped repeat
                    raise RuntimeError(f"compaction of {part} read {read} rows with "
                                       f"{repeats.get(values, 0)} repeats but staged {rows}; nothing switched")
                inputs = sorted(m.converted) or [f.name for f in m.files]
                faults.point("compact_swap")
                _, after = publish.replace(part, pairs, inputs, time.time() + retain, prefix="c")
                locations[values] = storage.join(part, after.generation) + "/"
                result.partitions_compacted += 1
                result.files_before += len(m.files)
                result.files_after += len(after.files)
                result.rows += rows
                result.duplicates += read - rows
                result.partitions.append(path)
        finally:
            storage.delete_tree(staging)
        log.info("compacted %d partitions: %d files -> %d, %d rows, %d duplicates dropped",
                 result.partitions_compacted, result.files_before, result.files_after, result.rows, result.duplicates)
    if glue is not None and locations:
        publish.register(glue, config.catalog.database, table, locations)
    if retain <= 0:  # asked to remove replaced files now (after the catalog points past them)
        for path in paths:
            result.files_removed += _expire(storage.join(out_table, path), now=float("inf"))
    _update_index(source, config, out_root, list(paths))
    if record and todo:
        _record(config, source, out_root, run_id, started, result, glue)
    return result


def _update_index(source: Source, config: Config, out_root: str, paths: list[str]) -> None:
    """Compacted (or found compact) partitions are no longer open; those holding replaced
    files are listed until their retention passes."""
    if not paths:
        return
    index = state.read_index(out_root, source.name)
    table = storage.join(out_root, config.table(source.name, "readready"))
    for path in paths:
        m, _ = manifest.read(storage.join(table, path))
        if m is not None and not needs_compaction(m):
            index["open"].pop(path, None)
        if m is not None and m.superseded:
            index["expiring"][path] = min(s.until for s in m.superseded)
        else:
            index["expiring"].pop(path, None)
    state.write_index(out_root, source.name, index)


# A closed partition of at most this many rows (its manifest says) is compacted inside
# one Python task, with pyarrow: read, dedup, sort, write, no shuffle. Larger ones go
# through Spark's sort, which spills. 300k CloudTrail rows are some 300-600 MB of Arrow.
IN_TASK_ROWS = 300_000


def _rewrite(spark, source: Source, todo: dict[str, manifest.Manifest], out_table: str, staged_table: str):
    """Read the partitions' current files, drop repeats, write one sorted file each (more
    past the 2M-row limit), as runs write them; returns rows per staged (partition
    values, file name), rows read per partition values, and the repeats among them
    (partitions with none left out). Small partitions are rewritten in tasks with
    pyarrow (:func:`_rewrite_in_tasks`), the others by Spark (:func:`_rewrite_by_spark`)."""
    small = {p: m for p, m in todo.items()
             if all(f.rows >= 0 for f in m.files) and m.rows <= IN_TASK_ROWS}
    large = {p: m for p, m in todo.items() if p not in small}
    per_file: dict = {}
    before: dict[tuple[str, ...], int] = {}
    repeats: dict[tuple[str, ...], int] = {}
    for part, fn in ((small, _rewrite_in_tasks), (large, _rewrite_by_spark)):
        if part:
            files, read, rep = fn(spark, source, part, out_table, staged_table)
            per_file.update(files)
            before.update(read)
            repeats.update(rep)
    return per_file, before, repeats


def _rewrite_in_tasks(spark, source: Source, todo: dict[str, manifest.Manifest], out_table: str,
                      staged_table: str):
    """Each partition read, deduplicated, sorted and written by one task with pyarrow.
    Measured on the benchmark's day (80 partitions, 1,980 files, 500k rows, 2 cores):
    see bench/README.md. Partitions are dealt to tasks largest first, each to the task
    with the fewest rows so far."""
    names = tuple(source.schema.partition_names)
    dealt = [[(tuple(storage.join(out_table, path, f.name) for f in todo[path].files), _values(path))
              for path in chunk]
             for chunk in orcwrite.deal_largest_first({p: m.rows for p, m in todo.items()},
                                                      2 * spark.sparkContext.defaultParallelism)]
    layout = orcwrite.Layout(staged_table, names, source.schema.orc_arrow(), tuple(source.bloom_columns),
                             MAX_RECORDS_PER_FILE)
    key = [c for c in source.dedup_key if c not in names]
    task = _compact_task(layout, key, tuple(source.sort_columns))
    out = dealt_tasks(spark, dealt, task).collect()
    per_file = {(r["values"], r["file"]): r["rows"] for r in out if "file" in r}
    before = {r["values"]: r["read"] for r in out if "read" in r}
    repeats = {r["values"]: r["repeats"] for r in out if r.get("repeats")}
    return per_file, before, repeats


def _compact_task(layout: orcwrite.Layout, key: list[str], sort_columns: tuple[str, ...]):
    """The function of :func:`_rewrite_in_tasks`' tasks: (file URIs, partition values)
    in; a dict per written file (``values``, ``file``, ``rows``) and per partition
    (``values``, ``read``, ``repeats``) out."""

    def run(items):
        from pyspark import TaskContext

        orcwrite.prepare_writer()
        ctx = TaskContext.get()
        task = ctx.partitionId() if ctx is not None else 0
        for uris, values in items:
            batches = _read_partition(list(uris), layout.orc_schema).to_batches()
            files, read, repeats = orcwrite.write_partition(batches, layout.orc_schema, values, layout, task, key,
                                                            sort_columns, dedup=first_of_each_key)
            for _, name, rows in files:
                yield {"values": values, "file": name, "rows": rows}
            yield {"values": values, "read": read, "repeats": repeats}

    return run


def _read_partition(uris: list[str], schema):
    """A partition's files as one table of the table's columns and types (a column a file
    predates is null: columns are only ever appended)."""
    import pyarrow as pa
    import pyarrow.orc as orc

    # Consecutive files of one schema (all of them, unless the table gained a column
    # meanwhile) are joined first and conformed once, their order kept (the dedup keeps
    # the first row of a key): conformed file by file, the 50-column casts of an hourly
    # partition's 25 small files cost more than reading them (2.5 ms a file).
    groups: list[tuple[pa.Schema, list[pa.Table]]] = []
    for uri in uris:
        t = orc.read_table(pa.BufferReader(storage.read_bytes(uri)))
        if groups and groups[-1][0].equals(t.schema):
            groups[-1][1].append(t)
        else:
            groups.append((t.schema, [t]))
    parts = []
    for _, tables in groups:
        t = pa.concat_tables(tables)
        columns = [t[f.name] if f.name in t.column_names else pa.nulls(t.num_rows, f.type) for f in schema]
        parts.append(orcwrite.conform(pa.table(columns, names=schema.names), schema))
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _rewrite_by_spark(spark, source: Source, todo: dict[str, manifest.Manifest], out_table: str,
                      staged_table: str):
    """One Spark scan of the partitions' files (partition values from their folders), a
    count of the repeats from the key columns, then the rewrite through Spark's sort."""
    from pyspark.sql import functions as F

    names = source.schema.partition_names
    uris = [storage.spark_uri(storage.join(out_table, path, f.name)) for path, m in todo.items() for f in m.files]
    frame = (spark.read.schema(source.schema.spark_ddl()).option("basePath", storage.spark_uri(out_table))
             .orc(uris)  # a list: orc()'s second argument is mergeSchema
             .select(*source.schema.names, *names))
    key = [*names, *source.dedup_key]
    # Rows and repeats per partition from the key columns alone (ORC reads only those).
    counts = (frame.select(*key).groupBy(*key).count().groupBy(*names)
              .agg(F.sum("count").alias("rows"), F.sum(F.col("count") - 1).alias("repeats")).collect())
    before = {_values(path): 0 for path in todo}
    before.update({tuple(r[n] for n in names): r["rows"] for r in counts})
    repeats = {tuple(r[n] for n in names): r["repeats"] for r in counts if r["repeats"]}
    rows = frame
    if repeats:
        # The dedup (an aggregate over every column) costs more than the rest of the
        # rewrite: only the partitions holding a repeat take it.
        marks = spark.createDataFrame(list(repeats), ", ".join(f"`{n}` string" for n in names)).withColumn(
            "_repeated", F.lit(True))
        marked = frame.join(F.broadcast(marks), names, "left")
        columns = [*source.schema.names, *names]  # the table's order: readers read ORC by position
        rows = (marked.where(F.col("_repeated")).select(*columns).dropDuplicates(key)
                .unionByName(marked.where(F.col("_repeated").isNull()).select(*columns)))
    return write_readready(rows.repartition(*names), source, staged_table).per_file, before, repeats


def _expire(part: str, now: float | None = None) -> int:
    now = time.time() if now is None else now
    m, _ = manifest.read(part)
    n = sum(len(s.files) for s in m.superseded if s.until <= now) if m else 0
    publish.expire(part, now)
    return n


def expire_due(source: Source, config: Config, out_root: str, now: float | None = None, glue=None) -> int:
    """Remove superseded files past their retention, for the partitions the index lists.
    With ``glue``, a partition whose Glue location is not its current generation (the
    manifest switched without --catalog: a hand-run `compact` or rebuild on a catalogued
    lake) is moved there first and its replaced files kept another retention period:
    removed at once, they would leave Athena's location for the partition empty."""
    now = time.time() if now is None else now
    index = state.read_index(out_root, source.name)
    due = {p: u for p, u in index["expiring"].items() if u <= now}
    if not due:
        return 0
    table = storage.join(out_root, config.table(source.name, "readready"))
    if glue is not None:
        for path in _catalog_behind(glue, source, config, table, list(due)):
            due.pop(path)
            index["expiring"][path] = now + config.compaction.retain_minutes * 60
    removed = 0
    for path in sorted(due):
        part = storage.join(table, path)
        removed += _expire(part)
        m, _ = manifest.read(part)
        if m is not None and m.superseded:
            index["expiring"][path] = min(s.until for s in m.superseded)
        else:
            index["expiring"].pop(path, None)
    state.write_index(out_root, source.name, index)
    return removed


def _catalog_behind(glue, source: Source, config: Config, table: str, due: Iterable[str]) -> list[str]:
    """Partitions among ``due`` whose Glue location is a generation their manifest has
    replaced; each is moved to its current generation (one BatchUpdatePartition per 100)."""
    current: dict[tuple[str, ...], tuple[str, str]] = {}
    for path in due:
        part = storage.join(table, path)
        m, _ = manifest.read(part)
        if m is not None:
            current[_values(path)] = (path, (storage.join(part, m.generation) if m.generation else part) + "/")
    glue_table = config.table(source.name, "readready")
    held = catalog.partition_locations(glue, config.catalog.database, glue_table, current)
    behind = {v: current[v][1] for v, loc in held.items() if loc.rstrip("/") != current[v][1].rstrip("/")}
    if not behind:
        return []
    publish.register(glue, config.catalog.database, glue_table, behind)
    for v in sorted(behind):
        log.warning("%s: Glue pointed at a replaced folder (%s; a compaction or rebuild without --catalog): moved to "
                    "%s; the replaced files stay compaction.retain_minutes more", current[v][0], held[v], behind[v])
    return [current[v][0] for v in behind]


def scheduled(spark, source: Source, config: Config, out_root: str, *, glue=None,
              fence: Callable[[], None] | None = None, now: float | None = None) -> dict[str, Any]:
    """The scheduled job's part: remove what retention allows, then compact the closed
    partitions the index lists as open, oldest first, at most
    ``compaction.max_partitions_per_run``."""
    now = time.time() if now is None else now
    removed = expire_due(source, config, out_root, now, glue=glue)
    index = state.read_index(out_root, source.name)
    closed = sorted((p for p in index["open"]
                     if closes_at(source, _values(p), config.compaction.grace_hours) <= now),
                    key=lambda p: (index["open"][p], p))
    # Most partitions of a quiet day got one file from one run: compact already, they
    # leave the index without counting against the bound.
    table = storage.join(out_root, config.table(source.name, "readready"))
    take, loaded = [], {}
    for path in closed:
        if len(take) >= config.compaction.max_partitions_per_run:
            break
        loaded[path] = manifest.load(storage.join(table, path))
        if needs_compaction(loaded[path]):
            take.append(path)
    seen = len(loaded)
    result = compact(spark, source, config, out_root, list(loaded), glue=glue, fence=fence, loaded=loaded)
    result.files_removed += removed
    out = result.as_dict()
    out["partitions_left"] = len(closed) - seen
    return out


def _record(config: Config, source: Source, out_root: str, run_id: str, started: float, result: Compacted,
            glue) -> None:
    """A ``runs`` row for the compaction: its repeats dropped are counted there."""
    from loglake.convert import _record_run

    finished = time.time()
    summary = {
        "run_id": run_id, "selection": {"compacted": len(result.partitions)}, "status": "published",
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "finished_at": dt.datetime.fromtimestamp(finished, dt.UTC).isoformat(),
        "files_read": result.files_before, "records_read": result.rows + result.duplicates,
        "written": result.rows, "filtered": 0, "filtered_by_rule": {},
        "quarantined": {"total": 0, "records": 0, "by_reason": {}}, "duplicates": result.duplicates,
        "control_messages": 0, "balanced": True, "quality": {"success": None, "failed": []},
        "output": storage.join(out_root, config.table(source.name, "readready")), "raw_bytes_read": 0,
    }
    run_date = dt.datetime.fromtimestamp(started, dt.UTC).date().isoformat()
    _record_run(config, source, summary, out_root, run_date, glue, job=f"{source.name}_compact")
    storage.write_bytes(storage.join(out_root, "_runs", source.name, f"{run_id}.json"),
                        json.dumps({**summary, "compaction": result.as_dict()}, indent=2).encode())
