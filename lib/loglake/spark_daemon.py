"""Spark's Python daemon (``pyspark.daemon``), with each task's zip re-read skipped.

Before every task, Spark's Python worker calls ``importlib.invalidate_caches()``, so
that files added with ``addPyFile`` are found. On Python 3.11 that makes every
``zipimporter`` re-read its archive's whole directory at once, and a worker holds one
per package it imported from ``pyspark.zip`` (a dozen): measured here, 0.5 s of CPU
before each task starts, whatever the task does. An hourly run's conversion is one
task per core, each fed by a second Python worker, so this was about half of its Spark
job. (Python 3.12 made the re-read lazy, CPython gh-103200; loglake runs on 3.11, as Glue 5.0.)

Here an importer re-reads its archive only when the file changed (its size or
modification time), which keeps what ``invalidate_caches`` is for. ``local_spark``
names this module as ``spark.python.daemon.module`` when the workers' Python imports it;
forked workers inherit the patch.
"""
from __future__ import annotations

import os
import zipimport

_seen: dict[str, tuple[int, int]] = {}  # archive -> (size, mtime) when its directory was last read


def _stamp(archive: str) -> tuple[int, int] | None:
    try:
        st = os.stat(archive)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def install() -> None:
    """Patch ``zipimport.zipimporter.invalidate_caches`` in this process (idempotent)."""
    reread = zipimport.zipimporter.invalidate_caches
    if getattr(reread, "_loglake", False):
        return

    def invalidate_caches(self) -> None:
        stamp = _stamp(self.archive)
        cached = zipimport._zip_directory_cache.get(self.archive)  # type: ignore[attr-defined]
        if stamp is not None and cached is not None and _seen.get(self.archive) == stamp:
            self._files = cached
            return
        reread(self)
        if stamp is not None:
            _seen[self.archive] = stamp

    invalidate_caches._loglake = True  # type: ignore[attr-defined]
    # the archives read at import time: their directories are current as of now
    for archive in list(zipimport._zip_directory_cache):  # type: ignore[attr-defined]
        stamp = _stamp(archive)
        if stamp is not None:
            _seen[archive] = stamp
    zipimport.zipimporter.invalidate_caches = invalidate_caches  # type: ignore[method-assign]


if __name__ == "__main__":
    import pyspark.daemon

    install()
    pyspark.daemon.manager()
