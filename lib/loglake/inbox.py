"""The inbox: AddAPart's record of every new raw object, for the source's next run.

AddAPart sees each object as it lands (S3 notifications through SQS), so it writes the
keys of each batch, one small JSON-lines object per batch and source, below
``<lake>/_state/<source>/inbox/``. A scheduled run claims the files present when it
starts and converts their objects; it deletes the files only after it has committed.
That is how an hourly run learns what is new without listing the raw bucket, with
LIST calls that grow with new batches, not with the objects of the last days; and a
partition AddAPart registers late (an outage, a dead-letter redrive) reaches the inbox
when it is registered, so no watermark can pass it by.

The same file shape carries AddAPart's key errors (``loglake.rejected_keys``).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from loglake import storage

log = logging.getLogger("loglake.inbox")


def folder(lake: str, source: str, kind: str = "inbox") -> str:
    return storage.join(lake, "_state", source, kind)


def write_entries(where: str, entries: Iterable[dict], now: dt.datetime | None = None) -> str:
    """One object holding ``entries`` as JSON lines; returns its URI. Names sort by time
    and never collide: each batch writes its own."""
    now = now or dt.datetime.now(dt.UTC)
    lines = [json.dumps({**e, "seen_at": now.isoformat()}, sort_keys=True) for e in entries]
    uri = storage.join(where, f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.json")
    storage.write_bytes(uri, ("\n".join(lines) + "\n").encode())
    return uri


def read_entries(where: str, max_entries: int = 0) -> tuple[list[str], list[dict], int]:
    """The files below ``where`` (oldest first) and their entries, and how many files
    were left unread; with ``max_entries``, whole files until at least that many entries.
    A file that cannot be read is left in place and named in the log: it loses nothing
    else."""
    files, entries, left = [], [], 0
    for obj in storage.list_objects(where):
        if not obj.key.endswith(".json"):
            continue
        if max_entries and len(entries) >= max_entries:
            left += 1
            continue
        try:
            parsed = [json.loads(line) for line in storage.read_bytes(obj.uri).decode().splitlines() if line]
            if not all(isinstance(e, dict) and isinstance(e.get("key"), str) for e in parsed):
                raise ValueError("an entry has no key")
        except FileNotFoundError:
            continue  # claimed and released by a concurrent run
        except (ValueError, UnicodeDecodeError) as exc:
            log.error("%s is unreadable, left in place: %s", obj.uri, exc)
            continue
        files.append(obj.uri)
        entries += parsed
    return files, entries, left


@dataclass(frozen=True)
class NewObject:
    uri: str  # s3://bucket/key
    size: int = 0  # as notified (0 when the notification did not say)


def write(lake: str, source: str, objects: Iterable[NewObject]) -> str:
    return write_entries(folder(lake, source), ({"key": o.uri, "size": o.size} for o in objects))


def claim(lake: str, source: str, max_objects: int = 0) -> tuple[list[str], list[NewObject], int]:
    """The inbox files a run takes (oldest first, whole files, about ``max_objects``),
    their objects, each once, and how many inbox files are left for later runs."""
    files, entries, left = read_entries(folder(lake, source), max_objects)
    seen: dict[str, NewObject] = {}
    for e in entries:
        seen.setdefault(e["key"], NewObject(e["key"], int(e.get("size") or 0)))
    return files, list(seen.values()), left


def release(files: Iterable[str]) -> None:
    for uri in files:
        storage.delete(uri)
