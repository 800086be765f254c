"""Making staged files current, so that a reader never sees less.

Two ways, per partition, each ending in one conditional manifest write (the commit,
:mod:`loglake.manifest`):

* **add** (scheduled runs): the run's new files are copied into the partition's
  current generation folder, each object complete when it appears, then the manifest
  gains them. Nothing is deleted: Athena, which lists the Glue location, sees the old
  files, then the old files plus some complete new ones; a manifest reader sees the
  old files until the commit, then all of them.
* **replace** (rebuilds of selected partitions, compaction): the new files go to a new
  generation folder, then the manifest and the Glue location switch to it, one call
  each. The old folder stays ``compaction.retain_minutes`` (queries already running
  read it), then :func:`expire` removes it.

File names derive from the input (the raw objects, or the files compacted), so a rerun
of the same input rewrites its own files instead of adding copies.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from loglake import catalog, manifest, storage
from loglake.manifest import DataFile, Manifest, Superseded

log = logging.getLogger("loglake.publish")

ADD = "add"
REPLACE = "replace"


@dataclass
class Published:
    """What publishing changed, for the catalog and the partition index."""

    written: int = 0  # partitions that gained files
    emptied: int = 0  # partitions replaced by nothing (a rebuild found no rows)
    skipped: int = 0  # partitions an earlier attempt of this input had committed already
    locations: dict[tuple[str, ...], str] = field(default_factory=dict)  # Glue location to set
    opened: set[str] = field(default_factory=set)  # partition paths with new files since compaction
    expiring: dict[str, float] = field(default_factory=dict)  # partition path -> removable after
    expiring_now: list[str] = field(default_factory=list)  # no retention: removed once the catalog moved
    files: list[str] = field(default_factory=list)  # the files holding this run's rows, relative to the table


def staged_files(staging_part: str) -> list[str]:
    return sorted(o.uri for o in storage.list_objects(staging_part) if o.uri.endswith(".orc"))


def _copy(sources: list[str], partition: str, generation: str, stem: str) -> list[str]:
    """Copy staged files to ``<partition>/<generation>/<stem>-<i>.zlib.orc``; returns the
    names relative to the partition."""
    names = []
    for i, src in enumerate(sources):
        name = "/".join(p for p in (generation, f"{stem}-{i}.zlib.orc") if p)
        storage.copy_object(src, storage.join(partition, name))
        names.append(name)
    return names


def _entries(names: list[str], staged: list[tuple[str, int]], raw: tuple[str, ...]) -> tuple[DataFile, ...]:
    """The manifest entries of copied files; the raw objects are listed once, on the first."""
    return tuple(DataFile(n, rows, raw if i == 0 else ()) for i, (n, (_, rows)) in enumerate(zip(names, staged,
                                                                                               strict=True)))


def add_stem(raw: Iterable[str]) -> str:
    """How the files :func:`add` makes of ``raw`` are named: ``<stem>-<i>.zlib.orc``. Only
    the first lists ``raw`` in the manifest, so the name is what finds all of them."""
    return "i-" + manifest.digest(tuple(sorted(set(raw))))


def add(partition: str, staged: list[tuple[str, int]], raw: Iterable[str]) -> tuple[Manifest | None, bool]:
    """Add a run's files (``(staged uri, rows)``) holding the rows of ``raw`` to a
    partition; returns the manifest after, and False when it already held ``raw``
    (committed by an earlier attempt of the same input: nothing added)."""
    raw = tuple(sorted(set(raw)))
    stem = add_stem(raw)

    def change(current: Manifest | None) -> Manifest | None:
        if current is not None and set(raw) <= current.converted:
            return None
        generation = current.generation if current is not None else "g-" + manifest.digest(raw, 12)
        names = _copy([u for u, _ in staged], partition, generation, stem)
        files = _entries(names, staged, raw)
        before = current or Manifest(generation)
        return Manifest(
            generation,
            before.files + files,
            # a run's files are interim (orcwrite.INTERIM_OPTIONS): a partition holding
            # one is not compact, even when it is its only file
            compacted=before.compacted and not files,
            superseded=before.superseded,
            empty_raw=before.empty_raw + (() if files else raw),
        )

    after = manifest.commit(partition, change)
    if after is None:
        return manifest.load(partition), False
    return after, True


def replace(partition: str, staged: list[tuple[str, int]], raw: Iterable[str], retain_until: float,
            prefix: str = "r") -> tuple[Manifest | None, Manifest]:
    """Make ``staged`` the partition's whole content, in a new generation folder named
    from ``raw`` (the input); returns (the manifest before, the one after)."""
    raw = tuple(sorted(set(raw)))
    generation = f"{prefix}-" + manifest.digest(raw, 12)
    names = _copy([u for u, _ in staged], partition, generation, "part")
    before_box: list[Manifest | None] = []

    def change(current: Manifest | None) -> Manifest:
        before_box[:] = [current]
        superseded = current.superseded if current else ()
        if current is not None and current.generation != generation and current.files:
            superseded += (Superseded(current.generation, tuple(f.name for f in current.files), retain_until),)
        files = _entries(names, staged, raw)
        return Manifest(generation, files, compacted=True, superseded=superseded, empty_raw=() if files else raw)

    after = manifest.commit(partition, change)
    return before_box[0], after


def expire(partition: str, now: float | None = None) -> bool:
    """Remove the partition's superseded files whose retention has passed; returns True
    when some remain (for later)."""
    now = time.time() if now is None else now
    m, _ = manifest.read(partition)
    if m is None or not m.superseded:
        return False
    due = [s for s in m.superseded if s.until <= now]
    for s in due:
        if s.generation and s.generation != m.generation:
            storage.delete_tree(storage.join(partition, s.generation))
        else:  # files directly in the partition folder (written before manifests)
            current = {f.name for f in m.files}
            for name in s.files:
                if name not in current:
                    storage.delete(storage.join(partition, name))
    if due:
        gone = {(s.generation, s.until) for s in due}
        after = manifest.commit(partition, lambda cur: None if cur is None else Manifest(
            cur.generation, cur.files, cur.compacted,
            tuple(s for s in cur.superseded if (s.generation, s.until) not in gone), cur.empty_raw))
        return bool(after and after.superseded)
    return True


def register(glue, database: str, table: str, locations: dict[tuple[str, ...], str]) -> dict[str, int]:
    """Point each partition's Glue location at its current generation folder: create
    the partition, or move an existing one (one BatchUpdatePartition per 100)."""
    if not locations:
        return {"created": 0, "existed": 0, "moved": 0, "calls": 0}
    registrar = catalog.PartitionRegistrar(glue, database)
    reg = registrar.register(table, locations)
    if reg.failed:
        raise RuntimeError(f"could not register partitions: {sorted(reg.failed.items())[:3]}")
    moved, calls = catalog.move_partitions(glue, database, table, {v: locations[v] for v in reg.existed},
                                           registrar.storage_descriptor(table))
    return {"created": len(reg.created), "existed": len(reg.existed), "moved": moved, "calls": reg.calls + calls}
