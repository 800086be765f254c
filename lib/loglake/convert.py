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

Each step is a module: :mod:`loglake.plan`, :mod:`loglake.objects`, :mod:`loglake.stage`
(with :mod:`loglake.onepass` and :mod:`loglake.orcwrite`), and here the run itself
(:func:`convert`), its publish, its ``runs`` row and its summary.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from loglake import catalog, faults, publish, rejected_keys, storage
from loglake.config import Config
from loglake.planning import Plan, Selection  # noqa: E402
from loglake.schema import RUNS
from loglake.sources import Source
from loglake.stage import _stage, _Staged  # noqa: E402

log = logging.getLogger("loglake.convert")

PUBLISH_THREADS = 16  # partitions published at once to S3 (copies and manifest writes wait on S3)
# ... and to a local folder, where the threads only overlap system calls and take turns at
# the interpreter lock: a day of hourly runs (80 partitions each) published in 1.5 s with
# 4 threads, in 2.0 s with 16 (one schedule run each, 2 cores).
LOCAL_PUBLISH_THREADS = 4
EVERYTHING = Selection()


class RunFailed(RuntimeError):
    """The run converted its input but did not publish it (unbalanced, or failed the gate)."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary


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
    selection: Selection = EVERYTHING,
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
        staged = _stage(spark, source, config, plan, staging, table, run_id, run_date,
                        interim=mode == publish.ADD)
        faults.point("staged")
        if fence is not None:  # a run that lost its lock writes nothing shared from here: not even its runs row
            fence()
        summary = _summary(run_id, source, plan, staged, selection, raw, out_table, started)
        if scheduled is not None:
            summary["scheduled"] = scheduled
        status = "published"
        published_files: list[str] | None = None
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
            published_files = published.files
            if on_published is not None:
                on_published(published)
        faults.point("record")
        _record_run(config, source, summary, out_root, run_date, glue, published_files=published_files)
        if status == "published" and rejected is None:  # their keys are in the published quarantine now
            rejected_keys.release(claimed)
    finally:
        # A run that lost its lock leaves the staging folder: it is the successor's now (a
        # resumed run keeps the run id, so the folder too).
        if _holds(fence):
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
    pool = _publish_pool(PUBLISH_THREADS if storage.is_s3(out_root) else LOCAL_PUBLISH_THREADS)
    done = list(pool.map(one, sorted(set(raw_of) | set(staged.written))))
    for values, path, part, pairs, before, after, added in done:
        if after is not None:  # this input's files (an earlier attempt's too: its runs row may be missing)
            if mode == publish.REPLACE:
                result.files += [f"{path}/{f.name}" for f in after.files]
            elif raw_of.get(values):  # every file of the input, not only the first, which lists its raw objects
                stem = publish.add_stem(raw_of[values]) + "-"
                result.files += [f"{path}/{f.name}" for f in after.files if f.name.rsplit("/", 1)[-1].startswith(stem)]
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


@functools.cache
def _publish_pool(threads: int = PUBLISH_THREADS) -> ThreadPoolExecutor:
    """The process's publishing threads, started once and kept between runs: started for
    each run, each thread's start took some 4 ms in a driver that had just run a Spark
    job (profiled; a two-partition run's publish took 23 ms, 4 ms with the pool kept)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="loglake-publish")


os.register_at_fork(after_in_child=_publish_pool.cache_clear)  # a forked child has none of its threads


def _record_run(config: Config, source: Source, summary: dict[str, Any], out_root: str, run_date: str, glue,
                job: str | None = None, published_files: list[str] | None = None) -> None:
    """One row in the runs table (ORC), published or not: the reconciliation history, and
    the files whose rows a run published (NULL for a compaction, which publishes the same
    rows again, and for a run that published nothing)."""
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
        "published_files": json.dumps(sorted(published_files)) if published_files is not None else None,
    }
    table = pa.Table.from_pylist([row], schema=RUNS.orc_arrow())
    buf = io.BytesIO()
    orc.write_table(table, buf, compression="zlib")
    runs_dir = storage.join(out_root, config.catalog.tables.runs, f"source={source.name}", f"run_date={run_date}")
    storage.write_bytes(storage.join(runs_dir, f"{summary['run_id']}.orc"), buf.getvalue())
    if glue is not None:
        catalog.PartitionRegistrar(glue, config.catalog.database).register(
            config.catalog.tables.runs, {(source.name, run_date): runs_dir + "/"})


def _holds(fence: Callable[[], None] | None) -> bool:
    """Whether this run still holds its lock; called in a ``finally``, so it never raises
    (a storage error counts as not holding it: the staging folder is left, not deleted)."""
    if fence is None:
        return True
    try:
        fence()
    except Exception as exc:
        log.warning("not removing this run's staging folder: %s", exc)
        return False
    return True


def _summary(run_id, source, plan, staged: _Staged, selection, raw, out_table, started) -> dict[str, Any]:
    totals = staged.file_stats
    filtered_by_rule = dict(totals.filtered)
    by_reason: dict[str, int] = {}
    for k, _ in plan.rejected:
        by_reason[k.reason] = by_reason.get(k.reason, 0) + 1
    for reason, n in totals.problems.items():
        by_reason[reason] = by_reason.get(reason, 0) + n
    records_read = totals.records_read
    written = sum(staged.written.values())
    filtered = sum(filtered_by_rule.values())
    q_records = totals.quarantined_records
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
        "files_read": totals.files,
        "raw_bytes_read": totals.bytes,
        "records_read": records_read,
        "written": written,
        "filtered": filtered,
        "filtered_by_rule": dict(sorted(filtered_by_rule.items())),
        "control_messages": totals.control_messages,
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
