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
  conditional overwrite (If-Match), so two runs cannot both take it over.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

from loglake import storage


class LockHeld(RuntimeError):
    """Another run holds the lock."""


def _dir(root: str, source: str) -> str:
    return storage.join(root, "_state", source)


def read_watermark(root: str, source: str) -> float | None:
    found = storage.read_versioned(storage.join(_dir(root, source), "watermark.json"))
    return json.loads(found[0])["watermark"] if found else None


def write_watermark(root: str, source: str, value: float, run_id: str) -> None:
    body = {"watermark": value, "run_id": run_id, "written_at": time.time()}
    storage.write_bytes(storage.join(_dir(root, source), "watermark.json"), json.dumps(body).encode())


@contextmanager
def run_lock(root: str, source: str, run_id: str, ttl_seconds: int) -> Iterator[None]:
    """Hold the source's lock for the body; raises LockHeld if a live run has it."""
    uri = storage.join(_dir(root, source), "lock.json")
    body = json.dumps({"run_id": run_id, "expires_at": time.time() + ttl_seconds}).encode()
    if not storage.put_conditional(uri, body, expect=None):
        current = storage.read_versioned(uri)
        if current is None:  # released in between: try once more
            taken = storage.put_conditional(uri, body, expect=None)
        else:
            holder = json.loads(current[0])
            if holder["expires_at"] > time.time():
                raise LockHeld(f"run {holder['run_id']} holds {uri} until {time.ctime(holder['expires_at'])}")
            taken = storage.put_conditional(uri, body, expect=current[1])  # take over a dead run's lock
        if not taken:
            raise LockHeld(f"another run took {uri} first")
    try:
        yield
    finally:
        current = storage.read_versioned(uri)
        if current is not None and json.loads(current[0])["run_id"] == run_id:
            storage.delete(uri)
