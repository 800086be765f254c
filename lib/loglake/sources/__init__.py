"""Log sources: one module each, declaring everything about its source (key layout,
schemas, per-file conversion, dedup key, sort, bloom filters, ...), and the registry
every other part of loglake iterates. Adding a source: a module here and one line in
:data:`REGISTRY` (README, "Adding a log source")."""
from __future__ import annotations

from loglake.sources import bedrock, cloudtrail, cloudwatch
from loglake.sources.base import FileResult, Source

REGISTRY: tuple[Source, ...] = (cloudtrail.SOURCE, cloudwatch.SOURCE, bedrock.SOURCE)

SOURCES: dict[str, Source] = {s.name: s for s in REGISTRY}

__all__ = ["REGISTRY", "SOURCES", "FileResult", "Source", "get_source"]


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r} (known: {', '.join(SOURCES)})") from None
