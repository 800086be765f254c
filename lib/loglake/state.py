"""Scheduled-run state kept next to the data: a watermark and a lock.

Both live under ``<readready.location>/_state/<source>/``, so the data and the
record of how far it got travel together (and need no extra service).

* The **watermark** is an S3 LastModified time (S3's clock, not the job host's): a
  scheduled run processes the raw partitions holding objects modified after it, and
  advances it only after a successful publish. An interrupted or rejected run leaves
  it where it was, so the next run redoes the work (publishing is idempotent).
* The **lock** stops two overlapping runs from publishing the same partitions. It is
  taken with a conditional put (S3 If-None-Match, or O_EXCL locally); a lock older
  than its time-to-live belonged to a crashed run and is taken over with a
  conditional overwrite (If-Match), so two runs cannot both take it over. A run whose
  lock was taken over (it outlived its TTL) must not commit: :meth:`Lock.fence`
  rewrites the lock on condition that it is still the version this run wrote, so a
  run that lost it stops with :class:`LockLost` before its next commit step, and a
  run that still holds it extends its TTL. While a run works, :func:`kept_alive`
  fences every quarter TTL from a thread, so only a run that stopped (killed, a Glue
  timeout) loses its lock to the TTL, however long a live one takes.
* The **intent** is the input set of the run in progress, written before it converts
  and removed after its last commit step: a run that finds one resumes it (same run
  id, same input, so the same output names) instead of planning anew, so a run
  killed at any point and started again converts each object once.
* The **partition index** lists the partitions a scheduled run must come back to:
  ``open`` ones (new files since their last compaction) and ones holding replaced
  files to remove after the retention, so no run has to list the whole table.
"""
from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from loglake import storage

log = logging.getLogger("loglake.state")


class LockHeld(RuntimeError):
    """Another run holds the lock."""


class LockLost(RuntimeError):
    """This run's lock expired and another run took it over: it must not commit."""


def _dir(root: str, source: str) -> str:
    return storage.join(root, "_state", source)


def read_watermark(root: str, source: str) -> float | None:
    return read_watermark_state(root, source)[0]


def read_watermark_state(root: str, source: str) -> tuple[float | None, dict[str, float]]:
    """The watermark, and the bad keys already quarantined that lie above it (key ->
    LastModified: the overlap lists them again; see planning.schedule), in one read."""
    found = storage.read_versioned(storage.join(_dir(root, source), "watermark.json"))
    if not found:
        return None, {}
    doc = json.loads(found[0])
    return doc["watermark"], dict(doc.get("quarantined_keys") or {})


def write_watermark(root: str, source: str, value: float, run_id: str,
                    quarantined: dict[str, float] | None = None) -> None:
    body = {"watermark": value, "run_id": run_id, "written_at": time.time(), "quarantined_keys": quarantined or {}}
    storage.write_bytes(storage.join(_dir(root, source), "watermark.json"), json.dumps(body).encode())


class Lock:
    """A held lock: ``fence()`` before each commit step."""

    def __init__(self, uri: str, owner: str, ttl_seconds: float, tag: str | None):
        self.uri, self.owner, self.ttl, self.tag = uri, owner, ttl_seconds, tag
        self.generation = 0
        self._mutex = threading.Lock()  # the heartbeat thread and the run both fence

    def body(self) -> bytes:
        return json.dumps({"run_id": self.owner, "expires_at": time.time() + self.ttl,
                           "generation": self.generation}).encode()

    def fence(self) -> None:
        """Raise LockLost unless this run still holds the lock; extend it if so."""
        with self._mutex:
            self._fence()

    def _fence(self) -> None:
        if self.tag is None:  # taken without a version (local O_EXCL): re-read it
            current = storage.read_versioned(self.uri)
            if current is None or json.loads(current[0]).get("run_id") != self.owner:
                raise LockLost(f"{self.uri} is no longer held by run {self.owner}")
            self.tag = current[1]
        if not storage.put_conditional(self.uri, self.body(), expect=self.tag):
            raise LockLost(f"{self.uri} was taken over: run {self.owner} outlived its lock and must not commit")
        found = storage.read_versioned(self.uri)
        self.tag = found[1] if found and json.loads(found[0]).get("run_id") == self.owner else None


@contextmanager
def kept_alive(lock: Lock) -> Iterator[None]:
    """Extend ``lock`` every quarter of its TTL while the body runs. A Spark stage can
    take longer than the TTL, and nothing else fences while it does: its lock would be
    taken over by the next scheduled run, which then resumes the same input beside the
    live run. A heartbeat that finds the lock lost stops; the run's next fence raises."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lock.ttl / 4):
            try:
                lock.fence()
            except LockLost:
                log.error("%s: this run lost its lock; it stops at its next commit step", lock.uri)
                return
            except Exception as exc:  # a transient storage error: the next beat tries again
                log.warning("%s: could not extend the lock (%s); trying again", lock.uri, exc)

    thread = threading.Thread(target=beat, name="loglake-lock-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def run_lock(root: str, source: str, run_id: str, ttl_seconds: int) -> Iterator[Lock]:
    """Hold the source's lock for the body; raises LockHeld if a live run has it."""
    uri = storage.join(_dir(root, source), "lock.json")
    lock = Lock(uri, run_id, ttl_seconds, None)
    current = storage.read_versioned(uri)
    if current is not None:
        lock.generation = json.loads(current[0]).get("generation", 0) + 1
    body = lock.body()
    if not storage.put_conditional(uri, body, expect=None):
        current = storage.read_versioned(uri)
        if current is None:  # released in between: try once more
            taken = storage.put_conditional(uri, body, expect=None)
        else:
            holder = json.loads(current[0])
            if holder["expires_at"] > time.time():
                raise LockHeld(f"run {holder['run_id']} holds {uri} until {time.ctime(holder['expires_at'])}")
            lock.generation = holder.get("generation", 0) + 1
            taken = storage.put_conditional(uri, lock.body(), expect=current[1])  # take over a dead run's lock
        if not taken:
            raise LockHeld(f"another run took {uri} first")
    try:
        yield lock
    finally:  # only our own version: a run that took the lock over in between keeps it
        current = storage.read_versioned(uri)
        if current is not None and json.loads(current[0])["run_id"] == run_id:
            storage.delete_conditional(uri, current[1])


# --------------------------------------------------------------------------- intent


def _intent_uri(root: str, source: str) -> str:
    return storage.join(_dir(root, source), "intent.json.gz")


def write_intent(root: str, source: str, body: dict) -> None:
    storage.write_bytes(_intent_uri(root, source), gzip.compress(json.dumps(body).encode(), mtime=0))


def read_intent(root: str, source: str) -> dict | None:
    found = storage.read_versioned(_intent_uri(root, source))
    return json.loads(gzip.decompress(found[0])) if found else None


def clear_intent(root: str, source: str) -> None:
    storage.delete(_intent_uri(root, source))


# --------------------------------------------------------------------------- partition index


def _index_uri(root: str, source: str) -> str:
    return storage.join(_dir(root, source), "partitions.json")


def read_index(root: str, source: str) -> dict[str, dict[str, float]]:
    """``{"open": {path: first_opened}, "expiring": {path: until}}`` (paths below the table)."""
    found = storage.read_versioned(_index_uri(root, source))
    doc = json.loads(found[0]) if found else {}
    return {"open": dict(doc.get("open", {})), "expiring": dict(doc.get("expiring", {}))}


def write_index(root: str, source: str, index: dict[str, dict[str, float]]) -> None:
    body = {k: dict(sorted(v.items())) for k, v in index.items()}
    storage.write_bytes(_index_uri(root, source), json.dumps(body, indent=1).encode())
