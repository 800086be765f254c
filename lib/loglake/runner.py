"""A run from lock to commit: what makes scheduled runs convert each raw object once.

Every publishing run, scheduled or not, goes through :func:`run`:

1. **lock** the source (``state.run_lock``); another live run means ``skipped_locked``.
2. **resume** an unfinished run first: its intent (input set, run id) is still there
   only if it was killed before its last commit step. It runs again with the same run
   id and input, so it writes the same names (replacing its own files), and partitions
   it had committed are skipped (their manifests hold its raw objects).
3. **plan** and write the **intent** before converting: scheduled runs take the
   objects that are new (the inbox AddAPart fills, or a listing above a watermark),
   minus those a manifest already holds; a selection rebuilds its partitions.
4. **convert, stage, check, publish** (``convert.convert``), fenced: a run whose lock
   was taken over stops before publishing and before committing.
5. **commit**: the partition index, the inbox and rejected-key files it claimed, the
   watermark, then the intent is removed. A kill before this point is resumed by the
   next run; after it, there is nothing left to do.
6. scheduled runs then **compact** closed partitions (``loglake.compact``), under the
   same lock.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loglake import catalog, faults, inbox, keys, manifest, publish, rejected_keys, state, storage
from loglake.config import Config
from loglake.convert import RunFailed, convert, new_run_id
from loglake.planning import Plan, PlannedFile, Selection, schedule
from loglake.sources import Source

log = logging.getLogger("loglake.runner")

SCHEDULED = "scheduled"
SELECTION = "selection"


@dataclass(frozen=True)
class Work:
    """What a run was asked to do, fixed before it converts."""

    plan: Plan
    mode: str  # publish.ADD or publish.REPLACE
    inbox_files: tuple[str, ...] = ()
    watermark_after: float | None = None
    scheduled: dict[str, Any] | None = None  # the summary's ``scheduled`` block
    quarantined_after: dict[str, float] | None = None  # kept with the watermark (planning.Schedule)


@dataclass(frozen=True)
class Intent:
    run_id: str
    started: float
    kind: str
    selection: dict[str, Any]
    work: Work
    rejected: rejected_keys.Claimed

    def to_json(self) -> dict[str, Any]:
        plan = self.work.plan
        return {
            "run_id": self.run_id, "started": self.started, "kind": self.kind, "selection": self.selection,
            "mode": self.work.mode, "inbox_files": list(self.work.inbox_files),
            "watermark_after": self.work.watermark_after, "scheduled": self.work.scheduled,
            "quarantined_after": self.work.quarantined_after,
            "files": [[f.uri, list(f.values), f.mtime, f.size] for f in plan.files],
            "skipped_keys": plan.skipped_keys, "skipped_samples": plan.skipped_samples,
            "key_errors": [[k.key, k.reason, k.detail, m] for k, m in plan.rejected],
            "rejected_files": list(self.rejected.files),
            "rejected": [[k.key, k.reason, k.detail, m] for k, m in self.rejected.results],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Intent:
        def errors(rows):
            return [(keys.KeyResult(k, keys.ERROR, r, d), m) for k, r, d, m in rows]

        plan = Plan([PlannedFile(u, tuple(v), m, s) for u, v, m, s in doc["files"]], dict(doc["skipped_keys"]),
                    list(doc["skipped_samples"]), errors(doc["key_errors"]))
        work = Work(plan, doc["mode"], tuple(doc["inbox_files"]), doc["watermark_after"], doc["scheduled"],
                    doc.get("quarantined_after"))  # absent in an intent written before it existed
        claimed = rejected_keys.Claimed(tuple(doc["rejected_files"]), tuple(errors(doc["rejected"])))
        return cls(doc["run_id"], doc["started"], doc["kind"], doc["selection"], work, claimed)


class _Described:
    """A selection as a resumed run recorded it (only its description is needed)."""

    def __init__(self, desc: dict[str, Any]):
        self._desc = desc

    def describe(self) -> dict[str, Any]:
        return self._desc


# --------------------------------------------------------------------------- planning


def converted_in(out_root: str, table: str, names: list[str]) -> Callable[[tuple[str, ...]], frozenset[str]]:
    """``values -> raw objects the partition's manifest holds`` (one read per partition)."""

    def done(values: tuple[str, ...]) -> frozenset[str]:
        m = manifest.load(storage.join(out_root, table, catalog.hive_partition_path(names, values)))
        return m.converted if m else frozenset()

    return done


def from_listing(source: Source, config: Config, out_root: str, listed: Plan) -> Work:
    """Scheduled over a folder or prefix: the listed objects modified after the watermark
    that no manifest holds."""
    sc = config.scheduled
    watermark, quarantined = state.read_watermark_state(out_root, source.name)
    done = converted_in(out_root, config.table(source.name, "readready"), source.schema.partition_names)
    sched = schedule(listed, watermark, sc.overlap_seconds, sc.max_partitions, sc.max_files, converted=done,
                     quarantined=quarantined)
    return Work(sched.plan, publish.ADD, watermark_after=sched.watermark_after, scheduled=sched.describe(),
                quarantined_after=sched.quarantined_after)


def from_inbox(source: Source, config: Config, out_root: str) -> Work:
    """Scheduled from the inbox AddAPart writes: the objects notified since the last
    committed run (whole inbox files, up to about ``scheduled.max_files`` objects),
    minus those a manifest holds. No listing of the raw bucket."""
    files, objects, left = inbox.claim(out_root, source.name, config.scheduled.max_files)
    plan = Plan()
    every = Selection()
    for obj in objects:
        _, key = storage.split_s3(obj.uri)
        info = storage.ObjectInfo(obj.uri, key, obj.size)
        plan.add(info, source.classify_key(key, config), every, source.schema.partition_names.index("dt"))
    done = converted_in(out_root, config.table(source.name, "readready"), source.schema.partition_names)
    sched = schedule(plan, None, 0, converted=done)  # every claimed object no manifest holds, no watermark
    described = {**sched.describe(), "watermark_after": None, "inbox_files": len(files), "inbox_files_left": left}
    return Work(sched.plan, publish.ADD, tuple(files), scheduled=described)


def rebuild(plan: Plan) -> Work:
    """A selection: its partitions rebuilt from all their raw objects (one sorted file each)."""
    return Work(plan, publish.REPLACE)


# --------------------------------------------------------------------------- running


def run(spark, source: Source, config: Config, out_root: str, plan_work: Callable[[], Work], *,
        kind: str, selection: Selection | None = None, glue=None, raw: str = "",
        compact: bool = False) -> dict[str, Any]:
    """Lock, resume what a killed run left, plan, convert, publish, commit (and compact
    closed partitions when ``compact``). Returns the summary of this request's run;
    ``status: skipped_locked`` when another live run holds the lock."""
    selection = selection or Selection()
    owner = uuid.uuid4().hex
    try:
        with state.run_lock(out_root, source.name, owner, config.scheduled.lock_ttl_seconds) as lock, \
                state.kept_alive(lock):
            pending = state.read_intent(out_root, source.name)
            if pending is not None:
                intent = Intent.from_json(pending)
                log.warning("run %s was interrupted before it committed: resuming it with the same input "
                            "(%d files) first", intent.run_id, len(intent.work.plan.files))
                summary = _execute(spark, source, config, out_root, intent, lock, glue, raw, resumed=True)
                if intent.kind == kind and intent.selection == selection.describe():
                    return _then_compact(summary, compact, spark, source, config, out_root, glue, lock)
            faults.point("plan")
            work = plan_work()
            claimed = rejected_keys.claim(out_root, source.name)
            started = time.time()
            intent = Intent(new_run_id(started), started, kind, selection.describe(), work, claimed)
            state.write_intent(out_root, source.name, intent.to_json())
            faults.point("claimed")
            summary = _execute(spark, source, config, out_root, intent, lock, glue, raw)
            return _then_compact(summary, compact, spark, source, config, out_root, glue, lock)
    except state.LockHeld as exc:
        log.warning("skipping this run: %s", exc)
        return {"source": source.name, "status": "skipped_locked", "detail": str(exc)}


def _then_compact(summary, compact, spark, source, config, out_root, glue, lock) -> dict[str, Any]:
    if compact and config.compaction.max_partitions_per_run:
        from loglake import compact as compaction

        summary["compaction"] = compaction.scheduled(spark, source, config, out_root, glue=glue, fence=lock.fence)
    return summary


def _execute(spark, source: Source, config: Config, out_root: str, intent: Intent, lock: state.Lock, glue,
             raw: str, resumed: bool = False) -> dict[str, Any]:
    work = intent.work
    # A resumed run converts its whole input again (the same input gives the same rows
    # and names), so that its summary, its `runs` row and its quarantine file, which
    # replace the interrupted attempt's, describe the whole run; publishing skips the
    # partitions the interrupted attempt had committed (their manifests hold its objects).
    scheduled = dict(work.scheduled) if work.scheduled is not None else None
    if scheduled is not None and resumed:
        scheduled["resumed"] = True
    published: list[publish.Published] = []
    try:
        summary = convert(
            spark, source, config, work.plan, out_root, selection=_Described(intent.selection), glue=glue, raw=raw,
            scheduled=scheduled, run_id=intent.run_id, started=intent.started, mode=work.mode,
            rejected=intent.rejected, fence=lock.fence, on_published=published.append,
        )
    except RunFailed:
        # Nothing published: the next run plans again (the inbox and key errors are still there).
        lock.fence()  # unless the intent is another run's now: it took the lock over to resume it
        state.clear_intent(out_root, source.name)
        raise
    if resumed:
        summary["resumed"] = True
    faults.point("commit")
    lock.fence()
    _commit(source, config, out_root, intent, published[0] if published else publish.Published())
    return summary


def _commit(source: Source, config: Config, out_root: str, intent: Intent, published: publish.Published) -> None:
    now = time.time()
    if published.opened or published.expiring:
        index = state.read_index(out_root, source.name)
        for path in published.opened:
            index["open"].setdefault(path, now)
        for path, until in published.expiring.items():
            index["expiring"][path] = min(until, index["expiring"].get(path, until))
        state.write_index(out_root, source.name, index)
    faults.point("release")
    rejected_keys.release(intent.rejected)
    inbox.release(intent.work.inbox_files)
    if intent.work.watermark_after is not None:
        state.write_watermark(out_root, source.name, intent.work.watermark_after, intent.run_id,
                              quarantined=intent.work.quarantined_after)
    state.clear_intent(out_root, source.name)
