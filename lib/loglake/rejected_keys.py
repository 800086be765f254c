"""AddAPart's key errors, handed to the next run of their source so that they reach the quarantine.

AddAPart sees every new object, including keys that look like data but are wrong (an
organization id, account or date that is not one). Such a key never reaches a raw
partition, so no run would ever list it, and a log line is not the quarantine the README
promises. AddAPart writes them, one small JSON-lines object per batch and source, below
``<lake>/_state/<source>/rejected_keys/``; every run of that source claims the files
present when it starts, quarantines their keys (counted like listing-mode key errors,
once per key), and deletes the files once it has published. A run that does not publish
leaves them for the next one. A crash between publishing and deleting quarantines those
keys once more on the next run: at least once, never lost.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from loglake import keys, storage

log = logging.getLogger("loglake.rejected_keys")


def folder(lake: str, source: str) -> str:
    return storage.join(lake, "_state", source, "rejected_keys")


def write(lake: str, source: str, results: Iterable[keys.KeyResult], now: dt.datetime | None = None) -> str:
    """One object holding ``results`` (their ``key`` an s3:// URI); returns its URI. Names
    sort by time, and never collide: each batch writes its own."""
    now = now or dt.datetime.now(dt.UTC)
    lines = [json.dumps({"key": r.key, "reason": r.reason, "detail": r.detail, "seen_at": now.isoformat()})
             for r in results]
    uri = storage.join(folder(lake, source), f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.json")
    storage.write_bytes(uri, ("\n".join(lines) + "\n").encode())
    return uri


@dataclass(frozen=True)
class Claimed:
    files: tuple[str, ...] = ()
    results: tuple[tuple[keys.KeyResult, float], ...] = ()  # (key error, when AddAPart saw it)


def claim(lake: str, source: str) -> Claimed:
    """The key errors waiting for this source's next run. A file that cannot be read is
    left in place and named in the log: it loses nothing else."""
    files, results = [], []
    for obj in storage.list_objects(folder(lake, source)):
        if not obj.key.endswith(".json"):
            continue
        try:
            entries = [json.loads(line) for line in storage.read_bytes(obj.uri).decode().splitlines() if line]
            parsed = [(keys.KeyResult(e["key"], keys.ERROR, e["reason"], e.get("detail", "")),
                       dt.datetime.fromisoformat(e["seen_at"]).timestamp()) for e in entries]
        except FileNotFoundError:
            continue  # claimed and released by a concurrent run
        except (ValueError, KeyError, TypeError) as exc:
            log.error("rejected keys file %s is unreadable, left in place: %s", obj.uri, exc)
            continue
        files.append(obj.uri)
        results += parsed
    if files:
        log.info("%s: %d key errors from AddAPart in %d files", source, len(results), len(files))
    return Claimed(tuple(files), tuple(results))


def release(claimed: Claimed) -> None:
    for uri in claimed.files:
        storage.delete(uri)
