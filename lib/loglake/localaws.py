"""A local AWS for the demo and the tests: a real moto server process on 127.0.0.1.

The code under test reaches it exactly as it reaches AWS, with plain boto3 and an
endpoint URL; nothing in loglake knows it is talking to moto.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """Start with ``with MotoServer() as moto:``; ``moto.endpoint`` is the URL."""

    def __init__(self, port: int | None = None, log_path: str | None = None):
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._proc: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout: float = 30.0) -> MotoServer:
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **FAKE_CREDENTIALS},
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited with code {self._proc.returncode}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.endpoint} within {timeout}s")

    def reset(self) -> None:
        """Forget every resource (between tests)."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()

    def env(self) -> dict[str, str]:
        """Environment that points boto3 (and loglake's config) at this server."""
        return {**FAKE_CREDENTIALS, "LOGLAKE__AWS__ENDPOINT_URL": self.endpoint}

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
