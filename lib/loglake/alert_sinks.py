"""Where alerts go: ``file:PATH`` (JSON lines), ``sns:TOPIC_ARN``, ``webhook:URL``.

A sink's ``send`` returns None when the alert was delivered, else the reason: the
runner records only delivered matches, so a failed one is sent again by the next run.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol


class Sink(Protocol):
    name: str

    def send(self, alert: dict[str, Any]) -> str | None: ...


def _line(alert: dict[str, Any]) -> str:
    return f"[{alert['severity']}] {alert['rule']}: {alert['message']}"


@dataclass
class FileSink:
    """One JSON object per line, appended; flushed to disk before the match is recorded."""

    path: str
    name: str = "file"

    def send(self, alert: dict[str, Any]) -> str | None:
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(alert, default=str, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            return f"{self.path}: {exc}"
        return None


@dataclass
class SnsSink:
    """SNS Publish: the subject and message for e-mail subscriptions (and SES-backed or
    chat integrations subscribed to the topic), the alert's JSON below the message."""

    topic_arn: str
    client: Any = None
    name: str = "sns"

    def send(self, alert: dict[str, Any]) -> str | None:
        subject = f"loglake {alert['severity']}: {alert['rule']}"[:100]
        body = _line(alert) + "\n\n" + json.dumps(alert, default=str, indent=1, sort_keys=True)
        try:
            self.client.publish(TopicArn=self.topic_arn, Subject=subject, Message=body)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the match unrecorded
            return f"sns {self.topic_arn}: {exc}"
        return None


@dataclass
class WebhookSink:
    """A Slack-compatible incoming webhook: POST ``{"text": ...}``, a timeout per attempt,
    retried with a growing pause on errors and 5xx/429 answers."""

    url: str
    timeout: float = 10.0
    attempts: int = 3
    pause: float = 1.0
    name: str = "webhook"

    def send(self, alert: dict[str, Any]) -> str | None:
        data = json.dumps({"text": _line(alert)}).encode()
        problem = None
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.pause * attempt)
            request = urllib.request.Request(self.url, data=data, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - user's URL
                    if 200 <= response.status < 300:
                        return None
                    problem = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
                if exc.code < 500 and exc.code != 429:  # the request is wrong: retrying will not help
                    break
            except (urllib.error.URLError, OSError) as exc:
                problem = str(getattr(exc, "reason", exc))
        return f"webhook {self.url}: {problem} after {attempt + 1} attempt(s)"


def parse_sink(spec: str, sns_client_factory=None) -> Sink:
    """``file:PATH``, ``sns:TOPIC_ARN`` or ``webhook:URL``."""
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise ValueError(f"--sink {spec!r}: expected file:PATH, sns:TOPIC_ARN or webhook:URL")
    if kind == "file":
        return FileSink(target)
    if kind == "sns":
        if not target.startswith("arn:"):
            raise ValueError(f"--sink {spec!r}: expected an SNS topic ARN after sns:")
        return SnsSink(target, sns_client_factory() if sns_client_factory else None)
    if kind == "webhook":
        if not target.startswith(("http://", "https://")):
            raise ValueError(f"--sink {spec!r}: expected an http(s) URL after webhook:")
        return WebhookSink(target)
    raise ValueError(f"--sink {spec!r}: unknown kind {kind!r} (file, sns, webhook)")
