"""Logging set-up shared by the CLI, the jobs and the Lambda."""
from __future__ import annotations

import logging
import os
import sys


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup(verbose: bool = False, quiet: bool = False) -> None:
    """Human-readable logs on stderr; stdout stays free for JSON results."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    level = getattr(logging, os.environ.get("LOGLAKE_LOG_LEVEL", ""), level)
    root = logging.getLogger("loglake")
    root.setLevel(level)
    if not root.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.propagate = False
    # py4j logs every gateway call at INFO; keep it quiet.
    logging.getLogger("py4j").setLevel(logging.WARNING)
