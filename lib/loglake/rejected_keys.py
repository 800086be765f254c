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
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from loglake import inbox, keys

log = logging.getLogger("loglake.rejected_keys")


def folder(lake: str, source: str) -> str:
    return inbox.folder(lake, source, "rejected_keys")


def write(lake: str, source: str, results: Iterable[keys.KeyResult], now: dt.datetime | None = None) -> str:
    """One object holding ``results`` (their ``key`` an s3:// URI); returns its URI."""
    return inbox.write_entries(folder(lake, source),
                               ({"key": r.key, "reason": r.reason, "detail": r.detail} for r in results), now)


@dataclass(frozen=True)
class Claimed:
    files: tuple[str, ...] = ()
    results: tuple[tuple[keys.KeyResult, float], ...] = ()  # (key error, when AddAPart saw it)


def claim(lake: str, source: str) -> Claimed:
    """The key errors waiting for this source's next run."""
    files, entries, _ = inbox.read_entries(folder(lake, source))
    results = []
    for e in entries:
        try:
            results.append((keys.KeyResult(e["key"], keys.ERROR, e["reason"], e.get("detail", "")),
                            dt.datetime.fromisoformat(e["seen_at"]).timestamp()))
        except (KeyError, TypeError, ValueError) as exc:
            log.error("a rejected-key entry is unreadable, skipped: %s (%s)", e, exc)
    if files:
        log.info("%s: %d key errors from AddAPart in %d files", source, len(results), len(files))
    return Claimed(tuple(files), tuple(results))


def release(claimed: Claimed) -> None:
    inbox.release(claimed.files)
