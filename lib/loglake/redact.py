"""Secrets out of what people type: replace them with ``[REDACTED:<kind>]`` before writing.

Session Manager keystroke logs hold whatever was typed, passwords and access keys
included, and a readready table is read by many more people than the raw bucket. A
source module calls :func:`redact` on the text it publishes (and on the quarantine
payloads of the same records); the raw objects are left as delivered.

Each built-in pattern matches a secret only in a context that names it, so that the
ordinary text around it survives: a 40-character AWS secret key only after
``aws_secret_access_key``, ``AWS_SECRET_ACCESS_KEY=`` or ``SecretAccessKey`` (a bare
40-character string is what a git commit hash looks like), a password only after
``password=``, ``passwd:``, ``mysql -p`` or ``PGPASSWORD=``. Access key ids have a shape
of their own (``AKIA``/``ASIA`` and 16 upper-case letters or digits) and are replaced
wherever they stand. Where a pattern has a group named ``secret``, only that group is
replaced; otherwise the whole match is.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

# (kind, pattern): the kind goes into the marker, so a reader knows what was there.
BUILTIN: tuple[tuple[str, str], ...] = (
    # a whole block; or its start to the end of the text (a payload cut short, a key pasted
    # across two session records); or, in the next record, its rest up to the END line
    ("private_key",
     r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)"),
    ("private_key", r"\A[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
    ("aws_secret_access_key",
     r"(?i:aws_secret_access_key|secret_access_key|secretaccesskey)[\"']?\s*[=:]?\s*[\"']?"
     r"(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"),
    ("aws_access_key_id", r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[A-Z0-9]{16}(?![A-Z0-9])"),
    ("pgpassword", r"\bPGPASSWORD=(?P<secret>\"[^\"]*\"|'[^']*'|\S+)"),
    ("mysql_password", r"\bmysql(?:dump|admin|sh)?\b[^\n]*?\s-p(?P<secret>[^\s-][^\s]*)"),
    # after any non-letter, not a word boundary: DB_PASSWORD=, MYSQL_PWD= (review finding)
    ("password",
     r"(?<![/A-Za-z])(?i:(?:password|passwd|passwort|pwd))[\"']?\s*[=:]\s*(?P<secret>\"[^\"\n]*\"|'[^'\n]*'|[^\s\"',;&]+)"),
    ("bearer_token", r"(?i:\bbearer)\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)"),
    ("basic_auth_url", r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:(?P<secret>[^@\s/]+)@"),
)


@dataclass(frozen=True)
class RedactionConfig:
    """``redaction``: what is replaced in session keystrokes before they are written."""

    # Off only where readready is as closely held as the raw bucket.
    enabled: bool = True
    # More regexes; each match (or its group named "secret") becomes [REDACTED:custom].
    patterns: tuple[str, ...] = ()


@lru_cache(maxsize=32)
def _compiled(extra: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((kind, re.compile(p)) for kind, p in (*BUILTIN, *(("custom", p) for p in extra)))


def redact(text: str | None, extra: Sequence[str] = ()) -> tuple[str | None, int]:
    """``text`` with each secret replaced by ``[REDACTED:<kind>]``, and how many were."""
    if not text:
        return text, 0
    count = 0
    for kind, pattern in _compiled(tuple(extra)):
        marker = f"[REDACTED:{kind}]"

        def replace(m: re.Match[str], marker: str = marker) -> str:
            nonlocal count
            count += 1
            if "secret" in m.re.groupindex and m.group("secret") is not None:
                start, end = m.span("secret")
                return m.string[m.start():start] + marker + m.string[end:m.end()]
            return marker

        text = pattern.sub(replace, text)
    return text, count


def check_patterns(patterns: Sequence[str]) -> str | None:
    """The first pattern that is not a regex, with the reason; None when all compile."""
    for i, p in enumerate(patterns):
        try:
            re.compile(p)
        except re.error as exc:
            return f"redaction.patterns[{i}] is not a regex: {exc}"
    return None
