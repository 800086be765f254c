"""The per-partition manifest: which files of a readready partition are current, and
which raw objects they were converted from.

A readready partition folder (``<table>/<k>=<v>/...``) holds *generation* folders;
the Glue partition's location is the current one, so Athena reads exactly its files.
``_manifest.json`` beside them (hidden from Athena, Spark and pyarrow by its leading
underscore) names the current generation, its files and the raw objects behind each
file. It is the commit point, as in Iceberg and Delta Lake: data files are written
first, immutable and complete, and become current with one conditional write of the
manifest (S3 If-Match / If-None-Match), so two writers never lose each other's update.

Why each piece:

* **raw objects per file**: a run converts only the raw objects no manifest holds yet,
  and a run resumed after a crash skips the partitions it had committed (exactly once).
* **generations**: a compaction or a rebuild writes a whole new folder and switches
  the manifest and the Glue location to it in one step each; the replaced folder stays
  ``compaction.retain_minutes`` for queries already running (``superseded``).
* **files named from their input** (the caller's job): a rerun of the same input writes
  the same names, replacing its own files instead of adding copies.

Readers that list paths themselves follow :func:`current_files` (or read the manifest:
``generation`` and ``files[].name``, relative to the partition folder). A partition
written before manifests existed (``.orc`` files directly in its folder) reads as
generation ``""`` holding those files.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import orjson

from loglake import storage

NAME = "_manifest.json"
FORMAT = 1
COMMIT_ATTEMPTS = 8


class ManifestConflict(RuntimeError):
    """Another writer kept changing the manifest: nothing of ours was committed."""


@dataclass(frozen=True)
class DataFile:
    name: str  # relative to the partition folder: "<generation>/<file>"
    rows: int
    raw: tuple[str, ...] = ()  # raw object URIs whose rows it holds


@dataclass(frozen=True)
class Superseded:
    generation: str
    files: tuple[str, ...]  # names relative to the partition folder
    until: float  # epoch seconds: removable after this


@dataclass(frozen=True)
class Manifest:
    generation: str
    files: tuple[DataFile, ...] = ()
    compacted: bool = False  # the files are one sorted, deduplicated whole (up to the row limit)
    superseded: tuple[Superseded, ...] = ()
    empty_raw: tuple[str, ...] = ()  # raw objects converted that gave no rows (all filtered or quarantined)
    commits: int = 0

    @property
    def raw(self) -> frozenset[str]:
        return frozenset(k for f in self.files for k in f.raw)

    @property
    def converted(self) -> frozenset[str]:
        """Every raw object this partition's current state was converted from."""
        return self.raw | frozenset(self.empty_raw)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def to_json(self) -> bytes:
        # Built by hand and encoded by orjson: an hourly run rewrites each partition's
        # manifest, which names every raw object converted into it so far (some 275 by a
        # day's end in the benchmark). ``dataclasses.asdict`` (a deep copy) and the json
        # module's indenting encoder (pure Python) took 7.0 of a day's 9.4 s of publishing
        # (80 partitions, 25 runs, measured in one process); this takes about a tenth.
        body = {
            "format": FORMAT,
            "generation": self.generation,
            "files": [{"name": f.name, "rows": f.rows, "raw": list(f.raw)} for f in self.files],
            "compacted": self.compacted,
            "superseded": [{"generation": s.generation, "files": list(s.files), "until": s.until}
                           for s in self.superseded],
            "empty_raw": list(self.empty_raw),
            "commits": self.commits,
        }
        return orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        doc = orjson.loads(data)
        return cls(
            generation=doc["generation"],
            files=tuple(DataFile(f["name"], f["rows"], tuple(f.get("raw", ()))) for f in doc["files"]),
            compacted=bool(doc.get("compacted")),
            superseded=tuple(Superseded(s["generation"], tuple(s["files"]), s["until"])
                             for s in doc.get("superseded", ())),
            empty_raw=tuple(doc.get("empty_raw", ())),
            commits=doc.get("commits", 0),
        )


def digest(parts: Iterable[str], n: int = 16) -> str:
    """A short stable name for a set of strings (order does not matter)."""
    h = hashlib.sha256()
    for p in sorted(set(parts)):
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:n]


def uri(partition: str) -> str:
    return storage.join(partition, NAME)


def read(partition: str) -> tuple[Manifest | None, str | None]:
    """The manifest and its version tag (for a conditional write), or (None, None)."""
    found = storage.read_versioned(uri(partition))
    if found is None:
        return None, None
    return Manifest.from_json(found[0]), found[1]


def _below(root: str) -> Callable[[storage.ObjectInfo], str]:
    """``object -> its path relative to root`` for objects listed below root."""
    base = (storage.split_s3(root)[1] if storage.is_s3(root) else storage.local_path(root)).rstrip("/") + "/"
    return lambda obj: obj.key[len(base):]


def legacy(partition: str) -> Manifest | None:
    """A partition written before manifests: its ``.orc`` files directly in the folder."""
    rel = _below(partition)
    names = sorted(rel(o) for o in storage.list_objects(partition) if o.key.endswith(".orc") and "/" not in rel(o))
    if not names:
        return None
    return Manifest("", tuple(DataFile(n, -1) for n in names), compacted=len(names) == 1)


def load(partition: str) -> Manifest | None:
    found, _ = read(partition)
    return found if found is not None else legacy(partition)


def commit(partition: str, change: Callable[[Manifest | None], Manifest | None]) -> Manifest | None:
    """Apply ``change`` to the current manifest and write the result conditionally,
    again from a fresh read when another writer got there first. ``change`` returning
    None means nothing to do (returns None). ``change`` may run more than once: it must
    only compute (or write files whose names it derives from its input)."""
    for _ in range(COMMIT_ATTEMPTS):
        current, tag = read(partition)
        if current is None:
            current = legacy(partition)
        new = change(current)
        if new is None:
            return None
        new = dataclasses.replace(new, commits=(current.commits if current else 0) + 1)
        if storage.put_conditional(uri(partition), new.to_json(), expect=tag):
            return new
    raise ManifestConflict(f"{uri(partition)} kept changing under {COMMIT_ATTEMPTS} attempts")


def current_files(partition: str) -> list[str]:
    """URIs of the partition's current data files: what a path reader should read."""
    m = load(partition)
    return [storage.join(partition, f.name) for f in m.files] if m else []


@dataclass
class TablePartition:
    path: str  # "k=v/k=v" below the table
    values: tuple[str, ...]
    has_manifest: bool = False
    loose_orc: list[str] = field(default_factory=list)  # .orc directly in the folder (legacy)


def partitions(table: str, names: list[str]) -> Iterator[TablePartition]:
    """Every partition folder below a table (one listing), in path order."""
    rel = _below(table)
    found: dict[str, TablePartition] = {}
    depth = len(names)
    for obj in storage.list_objects(table):
        parts = rel(obj).split("/")
        if len(parts) <= depth or not all(p.startswith(f"{n}=") for p, n in zip(parts, names, strict=False)):
            continue
        path = "/".join(parts[:depth])
        tp = found.setdefault(path, TablePartition(path, tuple(p.split("=", 1)[1] for p in parts[:depth])))
        rest = parts[depth:]
        if rest == [NAME]:
            tp.has_manifest = True
        elif len(rest) == 1 and rest[0].endswith(".orc"):
            tp.loose_orc.append(rest[0])
    yield from (found[k] for k in sorted(found))


def table_files(table: str, names: list[str]) -> list[str]:
    """Current data files of every partition of a table: one listing, one read per
    partition that has a manifest."""
    out = []
    for tp in partitions(table, names):
        part = storage.join(table, tp.path)
        if tp.has_manifest:
            out += current_files(part)
        else:
            out += [storage.join(part, n) for n in sorted(tp.loose_orc)]
    return out
