"""The generic converter: raw objects of any source -> readready ORC (ZLIB).

Four steps, each testable alone:

1. **plan** (driver): which raw objects a run reads, from a listing of a folder or
   bucket prefix, or from the raw table's partitions in the catalog. Keys are
   classified by the source's key layout; skipped keys are counted by reason, and
   keys that look like data but are wrong go to the quarantine.
2. **convert** (executors): each task reads its objects with boto3 or the local
   filesystem (local Spark has no s3:// filesystem) and turns each into an Arrow
   batch: flat rows, quarantine rows, and one row of per-object counts.
3. **stage and check**: duplicates (same event id within a partition) are dropped and
   counted, rows are written as ORC/ZLIB to a staging folder by tasks that count what
   they were given (and the gate's checks) and report each file's rows from its footer
   (in one pass, each task taking whole partitions: :mod:`loglake.onepass`; or, for a
   partition too large for one task, converted everywhere and shuffled to writers):
   the run must balance (records read = written + filtered + quarantined records +
   duplicates, and the files hold what the tasks were given) and pass the
   great-expectations gate.
4. **publish**: only then is each selected partition swapped into place (the old one
   removed, the staged one moved in), so a rerun *replaces* partitions instead of
   appending duplicates, and a failed run leaves the previous good data untouched.
   Quarantine rows, a ``runs`` row and a JSON summary are written; partitions are
   registered in the catalog if asked.

Counts travel with the data (a ``_kind='file'`` row per object) rather than in
Spark accumulators, which can double count when tasks are retried.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from loglake import catalog, faults, keys, orcwrite, publish, rejected_keys, storage
from loglake.config import Config
from loglake.schema import QUARANTINE, RUNS
from loglake.sources import FileResult, Source
from loglake.transforms import Problem

log = logging.getLogger("loglake.convert")

KIND_EVENT = "event"
KIND_FILE = "file"
KIND_PROBLEM = "problem"
OBJECT_MISSING = "object_missing"  # listed, then gone before it was read (NoSuchKey)
MAX_SAMPLES = 20  # problem/skip examples kept in a summary
MAX_RECORDS_PER_FILE = 2_000_000
READ_AHEAD = 16  # raw objects read ahead per task (S3 GETs are latency-bound); bytes: convert.read_ahead_bytes
_END = object()
SLICE_BYTES = 16 << 20  # raw (gzip) bytes per Spark partition of the file list, at most
PUBLISH_THREADS = 16  # partitions published at once (S3 copies and manifest writes)
BATCH_ROWS = 4096  # rows per Arrow batch handed to Spark: the rows of several small files (a big file goes whole)


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
    mtime: float = 0.0  # S3 LastModified / file mtime
    size: int = 0  # bytes as stored (gzip)


@dataclass
class Plan:
    files: list[PlannedFile] = field(default_factory=list)
    skipped_keys: dict[str, int] = field(default_factory=dict)
    skipped_samples: list[dict[str, str]] = field(default_factory=list)
    rejected: list[tuple[keys.KeyResult, float]] = field(default_factory=list)  # key errors and mtimes

    @property
    def partitions(self) -> set[tuple[str, ...]]:
        return {f.values for f in self.files}

    def add(self, obj: storage.ObjectInfo, result: keys.KeyResult, selection: Selection, day_index: int) -> None:
        uri = obj.uri
        if result.ok:
            if selection.includes_day(result.partition.values[day_index]):
                self.files.append(PlannedFile(uri, result.partition.values, obj.mtime, obj.size))
            return
        if result.status == keys.ERROR:
            self.reject(dataclasses.replace(result, key=uri), obj.mtime)
        else:
            self.skipped_keys[result.reason] = self.skipped_keys.get(result.reason, 0) + 1

    def reject(self, result: keys.KeyResult, mtime: float) -> None:
        """A key that looks like data but is wrong: counted, and quarantined by the run."""
        self.skipped_keys[result.reason] = self.skipped_keys.get(result.reason, 0) + 1
        self.rejected.append((result, mtime))
        if len(self.skipped_samples) < MAX_SAMPLES:
            self.skipped_samples.append({"key": result.key, "reason": result.reason, "detail": result.detail})
            log.warning("quarantining key %s: %s (%s)", result.key, result.reason, result.detail)

    def with_rejected(self, results: Iterable[tuple[keys.KeyResult, float]]) -> Plan:
        """This plan plus key errors found elsewhere (AddAPart's, ``rejected_keys``), each
        key once: a key the listing found too is quarantined once."""
        out = Plan(list(self.files), dict(self.skipped_keys), list(self.skipped_samples), list(self.rejected))
        seen = {k.key for k, _ in out.rejected}
        for result, mtime in results:
            if result.key not in seen:
                seen.add(result.key)
                out.reject(result, mtime)
        return out


def _day_index(source: Source) -> int:
    return source.schema.partition_names.index("dt")


def plan_from_listing(source: Source, raw_uri: str, config: Config, selection: Selection,
                      newer_than: float | None = None) -> Plan:
    """Plan by listing every object below a folder or s3:// prefix (recursively).

    ``newer_than`` (a scheduled run's watermark): objects modified at or before it are
    neither classified nor counted in ``skipped_keys``, since the run takes none of them;
    by the end of a day of hourly runs over a folder, classifying every key again was
    most of each run's listing."""
    if selection.partitions_since:
        raise SelectionError("--partitions-since needs the catalog; use --date or --from-date/--to-date")
    if not storage.exists(raw_uri):
        raise SelectionError(f"--raw {raw_uri}: no such folder, file or non-empty prefix")
    plan = Plan()
    for obj in storage.list_objects(raw_uri):
        if newer_than is not None and obj.mtime <= newer_than:
            continue
        plan.add(obj, source.classify_key(obj.key, config), selection, _day_index(source))
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
        day = values[names.index("dt")] if len(values) == len(names) else ""
        if not day or not selection.includes_day(day):
            continue
        created = part.get("CreationTime")
        if selection.partitions_since and (created is None or created < selection.partitions_since):
            continue
        base = part["StorageDescriptor"]["Location"]
        for location in [base, *source.sibling_dirs(base, config)]:
            if not storage.is_s3(location):
                location = f"s3://{bucket}/{location.lstrip('/')}"
            for obj in storage.list_objects(location):
                plan.add(obj, source.classify_key(obj.key, config), selection, _day_index(source))
    plan.files.sort(key=lambda f: f.uri)
    return plan


@dataclass(frozen=True)
class Schedule:
    """What a scheduled run takes: the new objects (oldest change first, bounded), and
    where the listing watermark moves once the run has committed."""

    plan: Plan
    watermark_before: float | None
    watermark_after: float | None
    partitions_changed: int
    partitions_left: int  # changed, but beyond this run's bounds: the next run takes them
    objects_already_converted: int = 0  # above the watermark (the overlap), but a manifest holds them

    def describe(self) -> dict[str, Any]:
        return {
            "watermark_before": self.watermark_before,
            "watermark_after": self.watermark_after,
            "partitions_changed": self.partitions_changed,
            "partitions_taken": len(self.plan.partitions),
            "partitions_left": self.partitions_left,
            "objects_already_converted": self.objects_already_converted,
        }


def schedule(plan: Plan, watermark: float | None, overlap: float, max_partitions: int = 0,
             max_files: int = 0, converted: Callable[[tuple[str, ...]], frozenset[str]] | None = None) -> Schedule:
    """Keep the objects modified after ``watermark`` that no run has converted yet
    (``converted(partition values)``: the raw objects its manifest holds), by partition,
    oldest change first, within the bounds. Older objects of the same partitions are not
    read again: a run adds rows to a partition, it does not rebuild it.

    The new watermark is never past an object that was not taken: with partitions left
    over it stops just before their oldest change; otherwise it is the newest object
    seen minus ``overlap`` (objects in the overlap are seen again, and skipped because a
    manifest holds them). It never moves backwards.
    """
    by_partition: dict[tuple[str, ...], list[PlannedFile]] = {}
    for f in plan.files:
        if watermark is None or f.mtime > watermark:
            by_partition.setdefault(f.values, []).append(f)
    already = 0
    if converted is not None:
        for values in list(by_partition):
            done = converted(values)
            kept = [f for f in by_partition[values] if f.uri not in done]
            already += len(by_partition[values]) - len(kept)
            by_partition[values] = kept
            if not by_partition[values]:
                del by_partition[values]
    first_change = {values: min(f.mtime for f in files) for values, files in by_partition.items()}
    order = sorted(first_change, key=lambda v: (first_change[v], v))
    taken, n_files = [], 0
    for values in order:
        size = len(by_partition[values])
        if taken and ((max_partitions and len(taken) >= max_partitions) or (max_files and n_files + size > max_files)):
            break
        taken.append(values)
        n_files += size
    left = order[len(taken):]
    newest = max((f.mtime for f in plan.files), default=None)
    after = None if newest is None else newest - overlap
    if left:
        after = min(after, first_change[left[0]] - 1e-3)
    if watermark is not None:
        after = watermark if after is None else max(after, watermark)
    subset = Plan(
        files=sorted((f for values in taken for f in by_partition[values]), key=lambda f: f.uri),
        skipped_keys=plan.skipped_keys, skipped_samples=plan.skipped_samples,
        # a bad key is quarantined once, by the run that first sees it
        rejected=[(k, m) for k, m in plan.rejected if watermark is None or m > watermark],
    )
    return Schedule(subset, watermark, after, len(order), len(left), already)


# --------------------------------------------------------------------------- executors


def _output_schema(source: Source) -> pa.Schema:
    return _output_schema_of(source.name)


@functools.cache
def _output_schema_of(name: str) -> pa.Schema:
    # Built once per process: rebuilding it per file cost ~60 µs, more than a small file's parsing.
    from loglake.sources import get_source

    base = get_source(name).schema.arrow()
    return base.append(pa.field("_kind", pa.string())).append(pa.field("_detail", pa.string()))


def _spark_output_ddl(source: Source) -> str:
    return source.schema.spark_ddl() + ", `_kind` string, `_detail` string"


def convert_rows(source: Source, uri: str, values: tuple[str, ...], config: Config,
                 fetch: Callable[[], bytes] | None = None) -> list[dict[str, Any]]:
    """Read and convert one raw object: event rows, quarantine rows and one counts row
    (dicts keyed by the output schema's names; ``_kind`` says which). ``fetch`` returns
    the object's bytes when they were read ahead."""
    names = source.schema.partition_names
    partition = dict(zip(names, values, strict=True))
    data = b""
    try:
        data = fetch() if fetch else storage.read_bytes(uri)
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
        "bytes": len(data),
        "records_read": result.records_read,
        "kept": len(rows),
        "filtered": result.filtered,
        "control_messages": result.control_messages,
        "quarantined_records": sum(1 for p in result.problems if p.record),
        "problems": {},
    }
    for p in result.problems:
        counts["problems"][p.reason] = counts["problems"].get(p.reason, 0) + 1
        rows.append({**partition, "_kind": KIND_PROBLEM, "_detail": json.dumps({"file": uri, **dataclasses.asdict(p)})})
    rows.append({**partition, "_kind": KIND_FILE, "_detail": json.dumps(counts)})
    return rows


def rows_to_batch(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    """Row dicts -> one Arrow batch (absent keys are nulls)."""
    return pa.RecordBatch.from_pylist(rows, schema=schema)


def convert_file(source: Source, uri: str, values: tuple[str, ...], config: Config) -> pa.RecordBatch:
    """One raw object as one Arrow batch (``convert_rows``)."""
    return rows_to_batch(convert_rows(source, uri, values, config), _output_schema(source))


def _convert_partition(source_name: str, config: Config, batch_rows: int = BATCH_ROWS):
    """The mapInArrow function: batches of (uri, partition values) -> converted batches.

    Rows of many files go out in one batch of about ``batch_rows``: building a batch
    has a fixed cost per column, more than a small file's parsing when paid per file,
    and the rows held at once stay bounded whatever the input size."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from loglake.sources import get_source

        def read(item: dict[str, Any]) -> bytes:
            return storage.read_bytes(item["uri"])

        storage.configure(config.aws.endpoint_url, config.aws.region)
        source = get_source(source_name)
        schema = _output_schema(source)
        names = source.schema.partition_names
        pending: list[dict[str, Any]] = []
        items = (item for batch in batches for item in batch.to_pylist())
        ahead = read_ahead(items, read, budget=config.convert.read_ahead_bytes, size=lambda item: item["size"] or 0)
        for item, fetch in ahead:
            pending.extend(convert_rows(source, item["uri"], tuple(item[n] for n in names), config, fetch))
            if len(pending) >= batch_rows:
                yield rows_to_batch(pending, schema)
                pending = []
        if pending:
            yield rows_to_batch(pending, schema)

    return run


def read_ahead(
    items: Iterable[Any],
    read: Callable[[Any], bytes],
    window: int = READ_AHEAD,
    budget: int | None = None,
    size: Callable[[Any], int] | None = None,
):
    """``(item, fetch)`` in order, with up to ``window`` reads running ahead on threads.

    An S3 GET is mostly waiting (tens of ms for a few KB), so one task reading its
    objects one by one would spend most of its time idle; a bounded window keeps the
    bytes held at once small whatever the number of objects.

    A count alone does not bound the bytes: 16 Firehose objects of 128 MB are 2 GB in
    one task. With ``budget`` and ``size(item)``, a read starts only while the sizes of
    the items read or being read and not yet consumed (the one the caller holds counts
    until it asks for the next) stay within ``budget`` -- except when nothing is held,
    so an item bigger than the budget is still read, alone. The sizes are what the
    listing gives, bytes as stored: for gzip objects that is the compressed size, which
    is what the read-ahead holds; the text they decompress to is the consumer's, one
    object at a time."""
    it = iter(items)
    queue: collections.deque[tuple[Any, Any, int]] = collections.deque()  # (item, future, size)
    held = 0
    nxt = next(it, _END)
    with ThreadPoolExecutor(max_workers=max(1, window)) as pool:

        def fill() -> None:
            nonlocal held, nxt
            while nxt is not _END and len(queue) < window:
                n = size(nxt) if size else 0
                if held and budget is not None and held + n > budget:
                    return
                queue.append((nxt, pool.submit(read, nxt), n))
                held += n
                nxt = next(it, _END)

        while True:
            fill()
            if not queue:
                return
            item, future, n = queue.popleft()
            fill()  # read on while the caller converts this item (still counted in held)
            yield item, future.result
            held -= n
            del item, future  # ours; the caller's references go when it takes the next item


# --------------------------------------------------------------------------- driver


class RunFailed(RuntimeError):
    """The run converted its input but did not publish it (unbalanced, or failed the gate)."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary


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
    file_stats: list[dict[str, Any]]
    written: dict[tuple[str, ...], int]  # rows per partition, as the writing tasks counted them
    duplicates: int
    quarantine_rows: int
    quality: Any = None  # loglake.quality.QualityResult, when the gate ran
    per_file: dict[tuple[tuple[str, ...], str], int] = field(default_factory=dict)  # (values, file name) -> rows
    staged_rows: int | None = None  # rows the writing tasks were given (None: none written)
    unreported: list[str] = field(default_factory=list)  # staged files no task reported, or reported ones missing
    staged_files: dict[tuple[str, ...], list[str]] = field(default_factory=dict)  # partition values -> staged URIs


def new_run_id(now: float | None = None) -> str:
    when = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    return when.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


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
    scheduled: dict[str, Any] | None = None,
    run_id: str | None = None,
    started: float | None = None,
    mode: str = publish.REPLACE,
    rejected: rejected_keys.Claimed | None = None,
    fence: Callable[[], None] | None = None,
    on_published: Callable[[publish.Published], None] | None = None,
) -> dict[str, Any]:
    """Convert the planned files and publish them under ``out_root``; returns the run
    summary, or raises RunFailed (with the summary) when the run must not publish.

    ``mode``: ``replace`` rebuilds the planned partitions from their planned objects
    (a selection), ``add`` adds the objects' rows to them (scheduled runs). A run
    resumed after a crash passes the crashed run's ``run_id`` and ``started``, so every
    name it writes is the one the crashed run wrote. ``rejected``: AddAPart's key errors
    claimed by the caller, who releases them after its commit (else claimed and released
    here). ``fence`` is called right before publishing: it raises if this run lost its lock."""
    started = time.time() if started is None else started
    run_id = run_id or new_run_id(started)
    run_date = dt.datetime.fromtimestamp(started, dt.UTC).date().isoformat()
    table = config.table(source.name, "readready")
    out_table = storage.join(out_root, table)
    staging = storage.join(out_root, "_staging", run_id)
    claimed = rejected if rejected is not None else rejected_keys.claim(out_root, source.name)
    plan = plan.with_rejected(claimed.results)
    log.info("run %s: %s, %d files in %d partitions -> %s (%s)",
             run_id, source.name, len(plan.files), len(plan.partitions), out_table, mode)
    try:
        storage.delete_tree(staging)  # what a crashed attempt of this run left
        staged = _stage(spark, source, config, plan, staging, table, run_id, run_date)
        faults.point("staged")
        summary = _summary(run_id, source, plan, staged, selection, raw, out_table, started)
        if scheduled is not None:
            summary["scheduled"] = scheduled
        status = "published"
        if not summary["balanced"]:
            status = "rejected_unbalanced"
        elif staged.quality is not None and not staged.quality.success:
            status = "rejected_quality"
        summary["status"] = status
        if staged.quality is not None:  # kept whatever the outcome: `loglake quality docs` renders these
            storage.write_bytes(
                storage.join(out_root, "_quality", source.name, f"{run_id}.json"),
                json.dumps(dataclasses.asdict(staged.quality), indent=1, sort_keys=True, default=str).encode(),
            )
        if status == "published":
            if fence is not None:
                fence()
            faults.point("publish")
            out, published = _publish(source, config, plan, staged, staging, out_root, table, run_date, run_id,
                                      glue, mode)
            summary.update(out)
            if on_published is not None:
                on_published(published)
        faults.point("record")
        _record_run(config, source, summary, out_root, run_date, glue)
        if status == "published" and rejected is None:  # their keys are in the published quarantine now
            rejected_keys.release(claimed)
    finally:
        storage.delete_tree(staging)
    summary["duration_s"] = round(time.time() - started, 3)
    storage.write_bytes(
        storage.join(out_root, "_runs", source.name, f"{run_id}.json"), json.dumps(summary, indent=2).encode()
    )
    if status == "rejected_unbalanced":
        raise RunFailed(f"run {run_id} is not balanced: {summary['reconciliation']}; nothing was published", summary)
    if status == "rejected_quality":
        failed = "; ".join(staged.quality.failed)
        raise RunFailed(f"run {run_id} failed the data-quality gate: {failed}; nothing was published", summary)
    return summary


@dataclass
class _Converted:
    """What converting and writing a run's objects gives, either way."""

    file_stats: list[dict[str, Any]]  # each object's counts (its KIND_FILE row), with its partition values
    written: Written
    duplicates: int
    quarantined: int  # quarantine rows written (problems and rejected keys)


def _stage(spark, source, config, plan, staging, table, run_id, run_date) -> _Staged:
    """Convert, dedup, and write rows and quarantine to the staging folder; count and check."""
    from loglake import onepass, quality

    names = source.schema.partition_names
    quarantine_rows = _key_quarantine(spark, plan, run_id)
    if not plan.files:
        staged = _Staged([], {}, 0, 0)
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
    done = by(spark, source, config, plan, staging, table, quarantine_rows, run_id, gate)
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
        kept = sum(s["kept"] for s in done.file_stats)
        columns = [*source.schema.names, *names]
        result.quality = quality.judge_counts(
            done.written.tallies, source.name, expect_rows=kept > 0, columns=columns, table=table,
            read_back=lambda: _read_staged(spark, source, staging, table),
            section=config.source(source.name),
        )
    return result


def _stage_one_pass(spark, source, config, plan, staging, table, quarantine_rows, run_id, gate) -> _Converted:
    """Each task converts, dedups, sorts and writes whole partitions (:mod:`loglake.onepass`)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from loglake import onepass

    names = source.schema.partition_names
    dealt = onepass.deal([(f.uri, f.size, f.values) for f in plan.files],
                         _slices(plan, spark.sparkContext.defaultParallelism))
    files_df = spark.createDataFrame(
        spark.sparkContext.parallelize(dealt, len(dealt)).flatMap(lambda chunk: chunk),
        "uri string, size long, " + ", ".join(f"`{n}` string" for n in names),
    )
    layout = orcwrite.Layout(storage.join(staging, table), tuple(names), source.schema.orc_arrow(),
                             tuple(source.bloom_columns), MAX_RECORDS_PER_FILE)
    task = onepass.task(source.name, config, layout, gate, BATCH_ROWS)
    out = files_df.mapInArrow(task, _spark_ddl_of(onepass.output_schema(names)))
    # Kept for the quarantine's write, when there are problems: not converted again.
    out = out.persist(StorageLevel.DISK_ONLY)
    try:
        with _Progress(spark, f"converting and writing {len(plan.files)} files"):
            counts = out.filter(F.col("_kind") != KIND_PROBLEM).collect()
        file_stats, per_file, tallies, duplicates = [], {}, [], 0
        for row in counts:
            detail = json.loads(row["_detail"])
            values = tuple(row[n] for n in names)
            if row["_kind"] == KIND_FILE:
                detail["values"] = values
                file_stats.append(detail)
            elif row["_kind"] == onepass.KIND_WRITTEN:
                per_file[(values, detail["file"])] = detail["rows"]
            elif row["_kind"] == onepass.KIND_PARTITION:
                duplicates += detail["repeats"]
            elif row["_kind"] == onepass.KIND_TALLY:
                tallies.append(detail)
        problems = (out.filter(F.col("_kind") == KIND_PROBLEM).select(*names, "_detail")
                    if any(s["problems"] for s in file_stats) else None)
        quarantined = _write_quarantine(spark, quarantine_rows, problems, staging, names, run_id)
    finally:
        out.unpersist()
    return _Converted(file_stats, Written(per_file, tallies), duplicates, quarantined)


def _spark_ddl_of(schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _stage_by_spark(spark, source, config, plan, staging, table, quarantine_rows, run_id, gate) -> _Converted:
    """Objects spread over every core whatever their partitions; the converted rows
    cached, their repeats counted, then shuffled to the writers by partition."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    names = source.schema.partition_names
    slices = _slices(plan, spark.sparkContext.defaultParallelism)
    # Dealt round-robin, one list per slice, each list one Spark partition: not by a
    # repartition, which was a shuffle, a Spark job of its own (~0.3 s in an hourly run).
    rows = [(f.uri, f.size, *f.values) for f in plan.files]
    dealt = [rows[k::slices] for k in range(slices)]
    files_df = spark.createDataFrame(
        spark.sparkContext.parallelize(dealt, slices).flatMap(lambda chunk: chunk),
        "uri string, size long, " + ", ".join(f"`{n}` string" for n in names),
    )
    converted = files_df.mapInArrow(_convert_partition(source.name, config), _spark_output_ddl(source))
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
            written = write_readready(rows, source, storage.join(staging, table), gate)
            file_stats = _file_stats(converted, names)
            # A file's problems and their count come from the same loop (convert_rows):
            # with none counted, there are no rows to write (a write job saved per clean run).
            problems = (converted.filter(F.col("_kind") == KIND_PROBLEM).select(*names, "_detail")
                        if any(s["problems"] for s in file_stats) else None)
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


def _file_stats(converted, names: list[str]) -> list[dict[str, Any]]:
    """Each converted file's counts (its KIND_FILE row), with its partition values."""
    from pyspark.sql import functions as F

    out = []
    for row in converted.filter(F.col("_kind") == KIND_FILE).select(*names, "_detail").collect():
        detail = json.loads(row["_detail"])
        detail["values"] = tuple(row[n] for n in names)
        out.append(detail)
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


def write_readready(rows, source: Source, target: str, gate: Callable[[], Any] | None = None) -> Written:
    """Write rows (partition columns included, one Spark partition per readready
    partition) as readready ORC below the fresh folder ``target``: the source's sort,
    bloom filters, ZLIB, at most MAX_RECORDS_PER_FILE rows a file (:mod:`loglake.orcwrite`).
    Runs and compaction write the same files. ``gate``: each task's tally
    (:class:`loglake.quality.StagedGate`)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    names = tuple(source.schema.partition_names)
    layout = orcwrite.Layout(target, names, source.schema.orc_arrow(), tuple(source.bloom_columns),
                             MAX_RECORDS_PER_FILE)
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


def _publish(source, config, plan, staged: _Staged, staging, out_root, table, run_date, run_id, glue,
             mode: str) -> tuple[dict[str, Any], publish.Published]:
    """Make each planned partition's staged files current (``publish.add`` or
    ``publish.replace``); append the quarantine; point the catalog at the results."""
    names = source.schema.partition_names
    out_table = storage.join(out_root, table)
    raw_of: dict[tuple[str, ...], list[str]] = {}
    for f in plan.files:
        raw_of.setdefault(f.values, []).append(f.uri)
    result = publish.Published()
    retain = config.compaction.retain_minutes * 60

    def one(values: tuple[str, ...]):
        path = catalog.hive_partition_path(names, values).rstrip("/")
        part = storage.join(out_table, path)
        files = staged.staged_files.get(values, [])  # listed once by _stage, as the tasks reported
        pairs = [(u, staged.per_file.get((values, u.rsplit("/", 1)[-1]), 0)) for u in files]
        added = True
        if mode == publish.ADD:
            before, (after, added) = None, publish.add(part, pairs, raw_of.get(values, ()))
        else:
            before, after = publish.replace(part, pairs, raw_of.get(values, ()), time.time() + retain)
        faults.point("partition")
        return values, path, part, pairs, before, after, added

    # Partitions are independent (a manifest each) and a publish is mostly waiting on S3.
    with ThreadPoolExecutor(max_workers=PUBLISH_THREADS) as pool:
        done = list(pool.map(one, sorted(set(raw_of) | set(staged.written))))
    for values, path, part, pairs, before, after, added in done:
        if not added:  # an earlier attempt of this input had committed it, maybe not its
            result.skipped += 1  # index update and catalog registration: those are redone
            if pairs:
                result.opened.add(path)
            if after is not None and after.files:
                result.locations[values] = storage.join(part, after.generation) + "/"
            continue
        emptied = mode == publish.REPLACE and not pairs and before is not None and bool(before.files)
        result.written += bool(pairs)
        result.emptied += emptied
        if mode == publish.ADD and pairs:
            result.opened.add(path)
        if mode == publish.REPLACE and after.superseded:
            if retain > 0:
                result.expiring[path] = min(s.until for s in after.superseded)
            else:
                result.expiring_now.append(path)
        if after.files or emptied:
            result.locations[values] = storage.join(part, after.generation) + "/"
    quarantine_dir = storage.join(
        out_root, config.catalog.tables.quarantine, f"source={source.name}", f"run_date={run_date}"
    )
    for i, uri in enumerate(publish.staged_files(storage.join(staging, "quarantine"))):
        storage.copy_object(uri, storage.join(quarantine_dir, f"{run_id}-{i}.zlib.orc"))
    out: dict[str, Any] = {"partitions_written": result.written, "partitions_emptied": result.emptied}
    if result.skipped:
        out["partitions_already_committed"] = result.skipped
    if glue is not None:
        done = publish.register(glue, config.catalog.database, table, result.locations)
        if staged.quarantine_rows:
            registrar = catalog.PartitionRegistrar(glue, config.catalog.database)
            reg = registrar.register(config.catalog.tables.quarantine, {(source.name, run_date): quarantine_dir + "/"})
            if reg.failed:
                raise RuntimeError(f"could not register partitions: {sorted(reg.failed.items())[:3]}")
            done["created"] += len(reg.created)
            done["existed"] += len(reg.existed)
            done["calls"] += reg.calls
        out["catalog"] = done
    if retain <= 0:  # no retention: replaced files go now, once the catalog points past them
        for path in result.expiring_now:
            publish.expire(storage.join(out_table, path))
    return out, result


def _record_run(config: Config, source: Source, summary: dict[str, Any], out_root: str, run_date: str, glue,
                job: str | None = None) -> None:
    """One row in the runs table (ORC), published or not: the reconciliation history."""
    import io

    import pyarrow.orc as orc

    def ts(text: str) -> dt.datetime:  # naive UTC: the column is ORC TIMESTAMP (RUNS.orc_arrow)
        return dt.datetime.fromisoformat(text).astimezone(dt.UTC).replace(tzinfo=None)

    row = {
        "run_id": summary["run_id"], "job": job or f"{source.name}_readready",
        "selection": json.dumps(summary["selection"]), "status": summary["status"],
        "started_at": ts(summary["started_at"]), "finished_at": ts(summary["finished_at"]),
        "files_read": summary["files_read"], "records_read": summary["records_read"],
        "written": summary["written"], "filtered": summary["filtered"],
        "filtered_by_rule": json.dumps(summary["filtered_by_rule"]),
        "quarantined": summary["quarantined"]["total"],
        "quarantined_records": summary["quarantined"]["records"],
        "quarantined_by_reason": json.dumps(summary["quarantined"]["by_reason"]),
        "duplicates": summary["duplicates"], "control_messages": summary["control_messages"],
        "balanced": summary["balanced"], "quality_success": summary["quality"]["success"],
        "quality_failed": json.dumps(summary["quality"]["failed"]), "output": summary["output"],
        "raw_bytes_read": summary["raw_bytes_read"],
    }
    table = pa.Table.from_pylist([row], schema=RUNS.orc_arrow())
    buf = io.BytesIO()
    orc.write_table(table, buf, compression="zlib")
    runs_dir = storage.join(out_root, config.catalog.tables.runs, f"source={source.name}", f"run_date={run_date}")
    storage.write_bytes(storage.join(runs_dir, f"{summary['run_id']}.orc"), buf.getvalue())
    if glue is not None:
        catalog.PartitionRegistrar(glue, config.catalog.database).register(
            config.catalog.tables.runs, {(source.name, run_date): runs_dir + "/"})


def _summary(run_id, source, plan, staged: _Staged, selection, raw, out_table, started) -> dict[str, Any]:
    filtered_by_rule: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for k, _ in plan.rejected:
        by_reason[k.reason] = by_reason.get(k.reason, 0) + 1
    for stat in staged.file_stats:
        for rule, n in stat["filtered"].items():
            filtered_by_rule[rule] = filtered_by_rule.get(rule, 0) + n
        for reason, n in stat["problems"].items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    records_read = sum(s["records_read"] for s in staged.file_stats)
    written = sum(staged.written.values())
    filtered = sum(filtered_by_rule.values())
    q_records = sum(s["quarantined_records"] for s in staged.file_stats)
    balanced = records_read == written + filtered + q_records + staged.duplicates
    q_total = sum(by_reason.values())
    if q_total != staged.quarantine_rows:  # every counted problem must have its quarantine row
        balanced = False
    if staged.staged_rows is not None and staged.staged_rows != written:  # footers hold what was given
        balanced = False
    if staged.unreported:  # publish would take a file no task counted, or miss one it did
        balanced = False
    finished = time.time()
    quality = staged.quality
    return {
        "run_id": run_id,
        "source": source.name,
        "selection": selection.describe(),
        "raw": raw,
        "output": out_table,
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "finished_at": dt.datetime.fromtimestamp(finished, dt.UTC).isoformat(),
        "files_read": len(staged.file_stats),
        "raw_bytes_read": sum(s["bytes"] for s in staged.file_stats),
        "records_read": records_read,
        "written": written,
        "filtered": filtered,
        "filtered_by_rule": dict(sorted(filtered_by_rule.items())),
        "control_messages": sum(s["control_messages"] for s in staged.file_stats),
        "skipped_keys": dict(sorted(plan.skipped_keys.items())),
        "skipped_key_samples": plan.skipped_samples,
        "quarantined": {"total": q_total, "records": q_records, "by_reason": dict(sorted(by_reason.items()))},
        "duplicates": staged.duplicates,
        "balanced": balanced,
        "reconciliation": f"read {records_read} = written {written} + filtered {filtered} "
                          f"+ quarantined {q_records} + duplicates {staged.duplicates}"
                          + ("" if staged.staged_rows in (None, written)
                             else f"; the writers were given {staged.staged_rows}")
                          + ("" if not staged.unreported
                             else f"; staged files not as the writers reported: {staged.unreported[:5]}")
                          + ("" if balanced else " (NOT balanced)"),
        "quality": {"success": quality.success if quality else None,
                    "evaluated": quality.evaluated if quality else 0,
                    "failed": list(quality.failed) if quality else []},
    }


def summarize_for_humans(summary: dict[str, Any]) -> Iterable[str]:
    yield (
        f"{summary['source']}: {summary['files_read']} files, {summary['records_read']} records read, "
        f"{summary['written']} written, {summary['filtered']} filtered, "
        f"{summary['quarantined']['total']} quarantined, {summary['duplicates']} duplicates"
    )
    yield f"reconciliation: {summary['reconciliation']}"
    if summary["skipped_keys"]:
        yield "skipped keys: " + ", ".join(f"{k}={v}" for k, v in summary["skipped_keys"].items())
    if summary["quarantined"]["by_reason"]:
        yield "quarantined: " + ", ".join(f"{k}={v}" for k, v in summary["quarantined"]["by_reason"].items())
