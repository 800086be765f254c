"""The generic converter: raw objects of any source -> readready ORC (ZLIB).

Three steps, each testable alone:

1. **plan** (driver): which raw objects a run reads, from a listing of a folder or
   bucket prefix, or from the raw table's partitions in the catalog. Keys are
   classified by the source's key layout; skipped keys are counted by reason.
2. **convert** (executors): each task reads its objects with boto3 or the local
   filesystem (local Spark has no s3:// filesystem), and turns each into an Arrow
   batch of flat rows plus one row of per-file counts (``mapInArrow``).
3. **publish** (driver): the rows are written as ORC/ZLIB partitioned like raw, with
   dynamic partition overwrite, so rerunning a selection *replaces* its partitions
   instead of appending duplicates; a selected partition that now yields no rows is
   removed. Readready partitions are then registered in the catalog if asked.

Counts travel with the data (one ``_kind='file'`` row per object) rather than in
Spark accumulators, which can double count when tasks are retried.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from loglake import catalog, keys, storage
from loglake.config import Config
from loglake.sources import FileResult, Source
from loglake.transforms import Problem

log = logging.getLogger("loglake.convert")

KIND_EVENT = "event"
KIND_FILE = "file"
OBJECT_MISSING = "object_missing"  # listed, then gone before it was read (NoSuchKey)
MAX_SAMPLES = 20  # problem/skip examples kept in a summary
MAX_RECORDS_PER_FILE = 2_000_000


class SelectionError(ValueError):
    pass


def _iso_day(value: str, name: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise SelectionError(f"--{name} must be a date YYYY-MM-DD, got {value!r}") from None


@dataclass(frozen=True)
class Selection:
    """Which raw partitions a run covers; bounded unless it is ``everything``."""

    dates: tuple[str, ...] = ()
    from_date: str | None = None
    to_date: str | None = None
    partitions_since: dt.datetime | None = None  # catalog runs: partitions registered since then

    @classmethod
    def parse(
        cls,
        date: str | None = None,
        from_date: str | None = None,
        to_date: str | None = None,
        partitions_since: str | None = None,
    ) -> Selection:
        given = [bool(date), bool(from_date or to_date), bool(partitions_since)]
        if sum(given) > 1:
            raise SelectionError("use one of --date, --from-date/--to-date, --partitions-since")
        if date:
            return cls(dates=tuple(sorted({_iso_day(d.strip(), "date") for d in date.split(",")})))
        if from_date or to_date:
            lo = _iso_day(from_date, "from-date") if from_date else None
            hi = _iso_day(to_date, "to-date") if to_date else None
            if lo and hi and lo > hi:
                raise SelectionError(f"--from-date {lo} is after --to-date {hi}")
            return cls(from_date=lo, to_date=hi)
        if partitions_since:
            try:
                since = dt.datetime.fromisoformat(partitions_since)
            except ValueError:
                raise SelectionError(
                    f"--partitions-since must be an ISO timestamp, got {partitions_since!r}"
                ) from None
            if since.tzinfo is None:
                since = since.replace(tzinfo=dt.UTC)
            return cls(partitions_since=since)
        return cls()

    @property
    def everything(self) -> bool:
        return self == Selection()

    def includes_day(self, day: str) -> bool:
        if self.dates:
            return day in self.dates
        if self.from_date and day < self.from_date:
            return False
        if self.to_date and day > self.to_date:
            return False
        return True

    def describe(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if v}
        if self.partitions_since:
            out["partitions_since"] = self.partitions_since.isoformat()
        if "dates" in out:
            out["dates"] = list(out["dates"])
        return out or {"all": True}


@dataclass(frozen=True)
class PlannedFile:
    uri: str
    values: tuple[str, ...]  # partition values, in the source's partition-key order


@dataclass
class Plan:
    files: list[PlannedFile] = field(default_factory=list)
    skipped_keys: dict[str, int] = field(default_factory=dict)
    skipped_samples: list[dict[str, str]] = field(default_factory=list)

    @property
    def partitions(self) -> set[tuple[str, ...]]:
        return {f.values for f in self.files}

    def add(self, uri: str, result: keys.KeyResult, selection: Selection, day_index: int) -> None:
        if result.ok:
            if selection.includes_day(result.partition.values[day_index]):
                self.files.append(PlannedFile(uri, result.partition.values))
            return
        self.skipped_keys[result.reason] = self.skipped_keys.get(result.reason, 0) + 1
        if result.status == keys.ERROR and len(self.skipped_samples) < MAX_SAMPLES:
            self.skipped_samples.append({"key": result.key, "reason": result.reason, "detail": result.detail})
            log.warning("skipping key %s: %s (%s)", result.key, result.reason, result.detail)


def _day_index(source: Source) -> int:
    return source.schema.partition_names.index("dt")


def plan_from_listing(source: Source, raw_uri: str, config: Config, selection: Selection) -> Plan:
    """Plan by listing every object below a folder or s3:// prefix (recursively)."""
    if selection.partitions_since:
        raise SelectionError("--partitions-since needs the catalog; use --date or --from-date/--to-date")
    plan = Plan()
    for obj in storage.list_objects(raw_uri):
        plan.add(obj.uri, source.classify_key(obj.key, config), selection, _day_index(source))
    plan.files.sort(key=lambda f: f.uri)
    return plan


def plan_from_catalog(glue, source: Source, config: Config, selection: Selection) -> Plan:
    """Plan from the raw table's registered partitions (as AddAPart registered them)."""
    names = source.schema.partition_names
    table = config.table(source.name, "raw")
    expression = None
    if selection.dates:
        expression = "dt in (" + ", ".join(f"'{d}'" for d in selection.dates) + ")"
    elif selection.from_date or selection.to_date:
        parts = []
        if selection.from_date:
            parts.append(f"dt >= '{selection.from_date}'")
        if selection.to_date:
            parts.append(f"dt <= '{selection.to_date}'")
        expression = " AND ".join(parts)
    plan = Plan()
    bucket = config.source(source.name).bucket
    for part in catalog.list_partitions(glue, config.catalog.database, table, expression):
        values = tuple(part["Values"])
        if len(values) != len(names) or not selection.includes_day(values[names.index("dt")]):
            continue
        created = part.get("CreationTime")
        if selection.partitions_since and (created is None or created < selection.partitions_since):
            continue
        location = part["StorageDescriptor"]["Location"]
        for location in [location, *source.sibling_dirs(location, config)]:
            if not storage.is_s3(location):
                location = f"s3://{bucket}/{location.lstrip('/')}"
            for obj in storage.list_objects(location):
                plan.add(obj.uri, source.classify_key(obj.key, config), selection, _day_index(source))
    plan.files.sort(key=lambda f: f.uri)
    return plan


# --------------------------------------------------------------------------- executors


def _output_schema(source: Source) -> pa.Schema:
    base = source.schema.arrow()
    return base.append(pa.field("_kind", pa.string())).append(pa.field("_detail", pa.string()))


def _spark_output_ddl(source: Source) -> str:
    return source.schema.spark_ddl() + ", `_kind` string, `_detail` string"


def convert_file(source: Source, uri: str, values: tuple[str, ...], config: Config) -> pa.RecordBatch:
    """Read and convert one raw object into event rows plus one counts row."""
    names = source.schema.partition_names
    partition = dict(zip(names, values, strict=True))
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError as exc:
        result = FileResult(problems=[Problem(OBJECT_MISSING, str(exc))])
    else:
        result = source.process_file(data, uri, config)
    rows = result.rows
    for row in rows:
        row.update(partition)
        row["_kind"] = KIND_EVENT
    counts = {
        "file": uri,
        "records_read": result.records_read,
        "written": len(rows),
        "filtered": result.filtered,
        "control_messages": result.control_messages,
        "problems": [dataclasses.asdict(p) for p in result.problems],
    }
    rows.append({**partition, "_kind": KIND_FILE, "_detail": json.dumps(counts)})
    return pa.RecordBatch.from_pylist(rows, schema=_output_schema(source))


def _convert_partition(source_name: str, config: Config):
    """The mapInArrow function: batches of (uri, partition values) -> converted batches."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from loglake.sources import get_source

        storage.configure(config.aws.endpoint_url, config.aws.region)
        source = get_source(source_name)
        names = source.schema.partition_names
        for batch in batches:
            for item in batch.to_pylist():
                yield convert_file(source, item["uri"], tuple(item[n] for n in names), config)

    return run


# --------------------------------------------------------------------------- driver


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


def convert(
    spark,
    source: Source,
    config: Config,
    plan: Plan,
    out_root: str,
    *,
    selection: Selection = Selection(),
    glue=None,
    raw: str = "",
) -> dict[str, Any]:
    """Convert the planned files and publish them under ``out_root``; returns the run summary."""
    started = time.time()
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    table = config.table(source.name, "readready")
    out_table = storage.join(out_root, table)
    names = source.schema.partition_names
    log.info(
        "run %s: %s, %d files in %d partitions -> %s",
        run_id, source.name, len(plan.files), len(plan.partitions), out_table,
    )
    file_stats: list[dict[str, Any]] = []
    if plan.files:
        file_stats = _convert_and_write(spark, source, config, plan, out_table)
    written_by_partition: dict[tuple[str, ...], int] = {}
    for stat in file_stats:
        written_by_partition[stat["values"]] = written_by_partition.get(stat["values"], 0) + stat["written"]
    # A selected partition that yields no rows now must not keep rows from an earlier run.
    removed = 0
    for values in sorted(plan.partitions):
        if not written_by_partition.get(values):
            removed += storage.delete_tree(storage.join(out_table, catalog.hive_partition_path(names, values)))
    published = sorted(v for v, n in written_by_partition.items() if n)
    registered = None
    if glue is not None and published:
        registrar = catalog.PartitionRegistrar(glue, config.catalog.database)
        locations = {v: storage.join(out_table, catalog.hive_partition_path(names, v)) + "/" for v in published}
        reg = registrar.register(table, locations)
        if reg.failed:
            raise RuntimeError(f"could not register readready partitions: {sorted(reg.failed.items())[:3]}")
        registered = {"created": len(reg.created), "existed": len(reg.existed), "calls": reg.calls}
    summary = _summary(run_id, source, plan, file_stats, selection, raw, out_table, started)
    summary["partitions_written"] = len(published)
    summary["partitions_emptied"] = sum(1 for v in plan.partitions if not written_by_partition.get(v))
    summary["objects_removed"] = removed
    if registered is not None:
        summary["catalog"] = registered
    storage.write_bytes(
        storage.join(out_root, "_runs", source.name, f"{run_id}.json"),
        json.dumps(summary, indent=2).encode(),
    )
    return summary


def _convert_and_write(spark, source: Source, config: Config, plan: Plan, out_table: str) -> list[dict]:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    names = source.schema.partition_names
    slices = max(1, min(len(plan.files), spark.sparkContext.defaultParallelism * 4))
    files_df = spark.createDataFrame(
        [(f.uri, *f.values) for f in plan.files],
        "uri string, " + ", ".join(f"`{n}` string" for n in names),
    ).repartition(slices)
    converted = files_df.mapInArrow(_convert_partition(source.name, config), _spark_output_ddl(source))
    converted = converted.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with _Progress(spark, f"converting {len(plan.files)} files"):
            events = converted.filter(F.col("_kind") == KIND_EVENT).drop("_kind", "_detail")
            (
                events.repartition(*names)
                .sortWithinPartitions(*names, *source.sort_columns)
                .write.mode("overwrite")
                .option("partitionOverwriteMode", "dynamic")
                .option("compression", "zlib")
                .option("maxRecordsPerFile", MAX_RECORDS_PER_FILE)
                .partitionBy(*names)
                .orc(storage.spark_uri(out_table))
            )
        stats = converted.filter(F.col("_kind") == KIND_FILE).select(*names, "_detail").collect()
    finally:
        converted.unpersist()
    out = []
    for row in stats:
        detail = json.loads(row["_detail"])
        detail["values"] = tuple(row[n] for n in names)
        out.append(detail)
    return out


def _summary(
    run_id: str,
    source: Source,
    plan: Plan,
    file_stats: list[dict],
    selection: Selection,
    raw: str,
    out_table: str,
    started: float,
) -> dict[str, Any]:
    filtered_by_rule: dict[str, int] = {}
    problems: dict[str, int] = {}
    samples: list[dict] = []
    for stat in file_stats:
        for rule, n in stat["filtered"].items():
            filtered_by_rule[rule] = filtered_by_rule.get(rule, 0) + n
        for p in stat["problems"]:
            problems[p["reason"]] = problems.get(p["reason"], 0) + 1
            if len(samples) < MAX_SAMPLES:
                samples.append({"file": stat["file"], **p})
    for s in samples:
        log.warning("problem in %s: %s (%s)", s["file"], s["reason"], s["detail"])
    finished = time.time()
    return {
        "run_id": run_id,
        "source": source.name,
        "selection": selection.describe(),
        "raw": raw,
        "output": out_table,
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "finished_at": dt.datetime.fromtimestamp(finished, dt.UTC).isoformat(),
        "duration_s": round(finished - started, 3),
        "files_read": len(file_stats),
        "records_read": sum(s["records_read"] for s in file_stats),
        "written": sum(s["written"] for s in file_stats),
        "filtered": sum(filtered_by_rule.values()),
        "filtered_by_rule": dict(sorted(filtered_by_rule.items())),
        "control_messages": sum(s["control_messages"] for s in file_stats),
        "skipped_keys": dict(sorted(plan.skipped_keys.items())),
        "skipped_key_samples": plan.skipped_samples,
        "problems": dict(sorted(problems.items())),
        "problem_samples": samples,
    }


def summarize_for_humans(summary: dict[str, Any]) -> Iterable[str]:
    yield (
        f"{summary['source']}: {summary['files_read']} files, {summary['records_read']} records read, "
        f"{summary['written']} written, {summary['filtered']} filtered"
    )
    if summary["skipped_keys"]:
        yield "skipped keys: " + ", ".join(f"{k}={v}" for k, v in summary["skipped_keys"].items())
    if summary["problems"]:
        yield "problems: " + ", ".join(f"{k}={v}" for k, v in summary["problems"].items())
