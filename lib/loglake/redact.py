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
replaced; otherwise the whole match is. A value ends at the end of its line: a prompt
(``Enter password:``) is followed by what the program prints next, not by the password.

Private keys are found by their armour rather than by one regex, because a key printed
in a session is often cut across records (one log event each): see
:func:`redact_continued`.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

# (kind, pattern): the kind goes into the marker, so a reader knows what was there. A
# quoted value may have its quotes escaped (\" in JSON text, \\\" in JSON inside JSON):
# taken whole, so that neither its rest nor the text's JSON is left broken.
BUILTIN: tuple[tuple[str, str], ...] = (
    ("aws_secret_access_key",
     r"(?i:aws_secret_access_key|secret_access_key|secretaccesskey|secret access key(?:[ \t]*\[[^\]\n]*\])?)"
     r"[\"']?\s*[=:]?\s*[\"']?"
     r"(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"),
    ("aws_access_key_id", r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[A-Z0-9]{16}(?![A-Z0-9])"),
    ("pgpassword", r"\bPGPASSWORD=(?P<secret>\\*\"[^\"\n]*\"|'[^'\n]*'|\S+)"),
    ("mysql_password", r"\bmysql(?:dump|admin|sh)?\b[^\n]*?\s-p(?P<secret>[^\s-][^\s]*)"),
    # after any non-letter, not a word boundary: DB_PASSWORD=, MYSQL_PWD= (review finding)
    ("password",
     r"(?<![/A-Za-z])(?i:(?:password|passwd|passwort|pwd))[\"']?[ \t]*[=:][ \t]*"
     r"(?P<secret>\\*\"[^\"\n]*\"|'[^'\n]*'|[^\s\"',;&]+)"),
    ("bearer_token", r"(?i:\bbearer)\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)"),
    ("basic_auth_url", r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:(?P<secret>[^@\s/]+)@"),
)

PRIVATE_KEY = "[REDACTED:private_key]"
_ARMOUR = re.compile(r"-----(BEGIN|END) (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----")
# Where one line of a key ends and the next starts, in each form a session shows it: a
# newline (printed, or between the sessionData lines of a row); an escaped one (a key in a
# JSON string, or echo -e); one JSON string ending and the next starting (sessionData lines
# in a record's JSON text, up to three levels of escaping: a bounded run of backslashes, so
# that a long one costs no more than a short one).
_LINE_BREAK = re.compile(r"\r?\n|\\{1,7}[rn]|\\{0,7}\"[ \t]*[,:][ \t]*\\{0,7}\"|\[[ \t]*\\{0,7}\"")
# A line of a key: base64, an RFC 1421 header of an encrypted PEM key, or blank; after a
# shell's continuation prompt (a key pasted into a heredoc) and around terminal escapes.
_KEY_LINE = re.compile(r"(?:>[ \t]*)?(?:[A-Za-z0-9+/=]*|(?:Proc-Type|DEK-Info):[ \t]*[A-Za-z0-9,-]*)")
_TERMINAL_ESCAPE = re.compile(r"(?:\x1b|\\{1,7}u001[bB])\[[0-9;?]*[A-Za-z]")


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
    text, count, _ = redact_continued(text, extra)
    return text, count


def redact_continued(
    text: str | None, extra: Sequence[str] = (), key_open: bool = False
) -> tuple[str | None, int, bool]:
    """:func:`redact` for one of a sequence of texts (a session's records, in order):
    ``key_open`` says the text before it ended inside a private key, and the third value
    says whether this one does.

    A key printed in a session is cut wherever a record ends. Its BEGIN line is replaced
    with everything after it up to its END line or, with none, to the end of the text (the
    rest is the key, or may be). A text that starts inside a key (``key_open``) loses its
    leading key lines, through the END line if they reach one. A text with an END line but
    no BEGIN, whose start is not known to be inside a key, loses the key lines right above
    the END line: base64 lines, an encrypted key's headers and blank lines, which is all a
    key's rest can be, while a command or its output above them is kept. The END armour
    itself is replaced only where it starts its line (after key text): in ``grep -- '-----END
    RSA PRIVATE KEY-----'`` it is a string, not a key.
    """
    if not text:
        return text, 0, key_open
    text, count, key_open = _private_keys(text, key_open)
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
    return text, count, key_open


def _private_keys(text: str, key_open: bool) -> tuple[str, int, bool]:
    if not key_open and "PRIVATE KEY-----" not in text:  # nearly every text: one scan
        return text, 0, False
    parts: list[str] = []
    count = pos = 0
    if key_open:
        pos, key_open = _rest_of_key(text)
        if text[:pos].strip():
            parts.append(PRIVATE_KEY)
            count += 1
        else:
            parts.append(text[:pos])
        if key_open:
            return "".join(parts), count, True
    searched = pos  # an END's key lines start after the armour before it
    for m in _ARMOUR.finditer(text, pos):
        if m.start() < pos:
            continue
        if m.group(1) == "BEGIN":
            end = _END.search(text, m.end())
            parts += [text[pos:m.start()], PRIVATE_KEY]
            count += 1
            if end is None:
                return "".join(parts), count, True
            pos = searched = end.end()
            continue
        start = _key_lines_before(text, max(pos, searched), m.start())
        searched = m.end()
        if start is not None:
            parts += [text[pos:start], PRIVATE_KEY]
            count += 1
            pos = m.end()
    parts.append(text[pos:])
    return "".join(parts), count, False


def _is_key_line(line: str) -> bool:
    if "\x1b" in line or "u001" in line:
        line = _TERMINAL_ESCAPE.sub("", line)
    return _KEY_LINE.fullmatch(line.strip(" \t\r")) is not None


def _rest_of_key(text: str) -> tuple[int, bool]:
    """Where the key a text starts inside of ends (its END armour, or its last key line),
    and whether it is still open at the end of the text."""
    last = start = 0
    for brk in _LINE_BREAK.finditer(text):
        line = text[start:brk.start()]
        if not _is_key_line(line):
            return _through_end(text, start, brk.start(), last), False
        if line.strip():  # blank lines after the key are not its own
            last = brk.start()
        start = brk.end()
    if _is_key_line(text[start:]):
        return len(text), True
    return _through_end(text, start, len(text), last), False


def _through_end(text: str, start: int, stop: int, last: int) -> int:
    """The end of the END armour that line [start, stop) starts with, after key text; else ``last``."""
    end = _END.search(text, start, stop)
    return end.end() if end and _is_key_line(text[start:end.start()]) else last


def _key_lines_before(text: str, lo: int, armour: int) -> int | None:
    """Where the key lines right above an END armour at ``armour`` start (not before ``lo``);
    None when the armour's line holds more than key text before it."""
    breaks = list(_LINE_BREAK.finditer(text, lo, armour))
    start = breaks[-1].end() if breaks else lo
    if not _is_key_line(text[start:armour]):
        return None
    for i in range(len(breaks) - 1, -1, -1):
        line_start = breaks[i - 1].end() if i else lo
        line = text[line_start:breaks[i].start()]
        if not _is_key_line(line):
            break
        if line.strip():  # blank lines above the key are not its own
            start = line_start
    return start


def check_patterns(patterns: Sequence[str]) -> str | None:
    """The first pattern that is not a regex, with the reason; None when all compile."""
    for i, p in enumerate(patterns):
        try:
            re.compile(p)
        except re.error as exc:
            return f"redaction.patterns[{i}] is not a regex: {exc}"
    return None
