"""Named points between the steps of a run where a test can kill the process.

``LOGLAKE_KILL_AT=name`` (or ``name:n``, the n-th time the point is reached) makes the
process SIGKILL itself there: a real ``kill -9``, no cleanup, no ``finally`` blocks,
which is what a Glue worker lost mid-run looks like. Unset, a point costs a dict lookup.
"""
from __future__ import annotations

import os
import signal

ENV = "LOGLAKE_KILL_AT"
_reached: dict[str, int] = {}


def point(name: str) -> None:
    target = os.environ.get(ENV)
    if not target:
        return
    want, _, nth = target.partition(":")
    if want != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
