"""The Firehose S3 object format: gzip members holding JSON documents run together.

Firehose delivering CloudWatch Logs writes objects whose bytes are one or more gzip
members back to back; decompressed, they are JSON documents with no separator at
all: ``{...}{...}{...}``. Splitting on ``}{`` breaks on braces inside strings and a
whole-file ``json.loads`` cannot parse it, so documents are found with the JSON
decoder itself (``raw_decode``) over a sliding window of decompressed text: memory
stays bounded by the chunk size plus about twice the largest single document (the
splitter reads ahead before parsing again so that its work stays linear), and at
most about ``MAX_DOCUMENT_CHARS`` plus a chunk.

A broken stream is a *problem* (reason, detail, byte offset in the decompressed
data), never an exception: every document before the break is still yielded, and
after a malformed document the splitter resynchronises on the next document start.
"""
from __future__ import annotations

import codecs
import dataclasses
import json
import re
import zlib
from collections.abc import Iterable, Iterator

from loglake.transforms import (
    EMPTY_OBJECT,
    INVALID_UTF8,
    NOT_GZIP,
    SURROGATE_ESCAPE_TEXT,
    TRUNCATED_GZIP,
    Problem,
    without_lone_surrogates,
)

MALFORMED_JSON = "malformed_json"
TRUNCATED_JSON = "truncated_json"
DOCUMENT_TOO_LARGE = "document_too_large"

CHUNK = 1 << 16
_MAGIC = b"\x1f\x8b\x08"  # a gzip member's header: magic and deflate
# CloudWatch Logs caps a subscription delivery at about 1 MiB compressed; far above that
# a "document" is garbage without an end, and holding it would break the memory bound.
MAX_DOCUMENT_CHARS = 32 << 20
_WS = re.compile(r"[ \t\n\r]*")
PAYLOAD_CHARS = 64 << 10  # text of a broken document kept for the quarantine


class GzipChunks:
    """Decompressed chunks of every gzip member in ``data``.

    After iteration, ``problem`` says why the stream ended early or where it was broken
    (or is None), and ``produced`` how many decompressed bytes came out.

    Firehose writes one gzip member per record, thousands to an object. Input goes to
    zlib in pieces of ``IN_PIECE`` bytes: what zlib hands back unused (``unused_data``,
    ``unconsumed_tail``) is a copy of the input it was given, so giving it the rest of
    the object each time copied the object once per member and once per output chunk,
    quadratic in its size (0.24 s for 4 MB of 3,000 members, ten times the inflating).

    A corrupt member costs only itself: reading goes on from the next gzip header after
    it. Its text up to the damage has been produced, so the splitter reports that
    document as broken and finds the next one.
    """

    IN_PIECE = 1 << 13

    def __init__(self, data: bytes, chunk: int = CHUNK):
        self.data = data
        self.chunk = chunk
        self.problem: Problem | None = None
        self.produced = 0
        self.skipped_members = 0  # corrupt members read past

    def __iter__(self) -> Iterator[bytes]:
        data = self.data
        if not data:
            self.problem = Problem(EMPTY_OBJECT, "object has 0 bytes", offset=0)
            return
        if data[:2] != _MAGIC[:2]:
            self.problem = Problem(NOT_GZIP, f"starts with {data[:4]!r}, not the gzip magic 1f8b", offset=0)
            return
        view, size, at = memoryview(data), len(data), 0
        while at < size:
            member, d = at, zlib.decompressobj(wbits=31)
            try:
                while not d.eof:
                    if d.unconsumed_tail:
                        piece = d.unconsumed_tail
                    elif at < size:
                        piece = view[at : at + self.IN_PIECE]
                        at += len(piece)
                    else:
                        break
                    out = d.decompress(piece, self.chunk)
                    if out:
                        self.produced += len(out)
                        yield out
            except zlib.error as exc:
                at = data.find(_MAGIC, member + 1)
                self._broken(f"corrupt gzip data at byte {member}: {exc}", at)
                if at < 0:
                    return
                continue
            if not d.eof:
                self._broken("gzip stream ends early", -1)
                return
            at -= len(d.unused_data)  # where this member ended (unconsumed_tail holds it too at eof)
            if at < size and data[at : at + 2] != _MAGIC[:2]:
                if not data[at:].strip(b"\x00"):  # zero padding
                    return
                nxt = data.find(_MAGIC, at + 1)
                self._broken(f"bytes that are no gzip member at byte {at}" if nxt >= 0
                             else "bytes after the last gzip member", nxt)
                if nxt < 0:
                    return
                at = nxt

    def _broken(self, detail: str, next_member: int) -> None:
        """Note a break (the first one is the problem; later ones are counted in it)."""
        if next_member >= 0:
            self.skipped_members += 1
            detail += f"; read on from the next gzip member, at byte {next_member}"
        if self.problem is None:
            self.problem = Problem(TRUNCATED_GZIP, detail, offset=self.produced)
        elif len(self.problem.detail) < 1000:
            self.problem = dataclasses.replace(self.problem, detail=f"{self.problem.detail}; then {detail}")


def iter_documents(
    chunks: Iterable[bytes],
    resync: str = "{",
    max_document_chars: int = MAX_DOCUMENT_CHARS,
) -> Iterator[tuple[int, object] | Problem]:
    """JSON documents run together in a byte stream -> ``(byte_offset, document)``
    pairs, or a ``Problem`` where the text is not JSON. ``resync`` is the text a
    document starts with, used to find the next document after a malformed one.

    The work is linear in the text. ``raw_decode`` parses a document from its start
    every time, so trying again after each chunk while a large document is incomplete
    would cost size²/chunk; instead, after an attempt fails, the next waits until the
    unparsed text has doubled (or passed ``max_document_chars``, or the stream ended):
    the failed attempts then add up to less than twice the document. New text is kept
    in a list and joined once per attempt, for the same reason. The price is memory:
    up to about twice the largest document (still at most ``max_document_chars`` plus
    a chunk). Byte offsets are counted forward from a mark, each character encoded
    once, not from the start of the buffer for every document.
    """
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")("strict")
    source = iter(chunks)
    buf, pos, base = "", 0, 0  # base: byte offset of buf[0] in the decompressed stream
    mark, mark_bytes = 0, 0  # byte offset of buf[mark], moved forward as offsets are asked for
    pending: list[str] = []  # text read but not yet appended to buf
    pending_chars = 0
    need = 0  # unparsed characters to have before the next attempt (0: try at once)
    fed = 0  # bytes given to the UTF-8 decoder
    eof = False
    encoding_problem: Problem | None = None  # reported once the text before it is drained

    def offset(at: int) -> int:
        nonlocal mark, mark_bytes
        if at < mark:
            return base + len(buf[:at].encode("utf-8"))
        mark_bytes += len(buf[mark:at].encode("utf-8"))
        mark = at
        return mark_bytes

    while True:
        if pending and (eof or len(buf) - pos + pending_chars >= need):
            if pos:  # drop what is consumed before copying the rest
                base = offset(pos)
                buf, pos, mark, mark_bytes = buf[pos:], 0, 0, base
            buf += "".join(pending)
            pending, pending_chars = [], 0
        pos = _WS.match(buf, pos).end()
        if pos < len(buf) and not pending:  # text still pending: waiting for `need`
            try:
                doc, end = decoder.raw_decode(buf, pos)
            except (json.JSONDecodeError, RecursionError) as exc:
                too_deep = isinstance(exc, RecursionError)  # nested past Python's stack: more text cannot help
                if not too_deep and not eof and len(buf) - pos <= max_document_chars:
                    # Maybe just incomplete: read more first, until the text has doubled.
                    need = min(2 * (len(buf) - pos), max_document_chars + 1)
                elif encoding_problem:
                    yield encoding_problem  # the document runs into the bad byte; nothing after is read
                    return
                else:
                    if too_deep:
                        kind, msg = MALFORMED_JSON, "nested deeper than the parser can follow"
                    elif len(buf) - pos > max_document_chars:
                        kind, msg = DOCUMENT_TOO_LARGE, exc.msg
                    elif exc.pos >= len(buf) - 1 or exc.msg.startswith("Unterminated"):
                        kind, msg = TRUNCATED_JSON, exc.msg  # the text ended inside the document
                    else:
                        kind, msg = MALFORMED_JSON, exc.msg
                    yield Problem(kind, f"{msg} (document starts at byte {offset(pos)})", offset=offset(pos),
                                  payload=buf[pos : pos + PAYLOAD_CHARS])
                    need = 0
                    nxt = buf.find(resync, pos + 1)
                    if nxt < 0:
                        if eof:
                            if encoding_problem:
                                yield encoding_problem
                            return
                        base = offset(len(buf))  # drop the garbage, keep reading
                        buf, pos, mark, mark_bytes = "", 0, 0, base
                        continue
                    pos = nxt
                    continue
            else:
                if SURROGATE_ESCAPE_TEXT.search(buf, pos, end):
                    doc = without_lone_surrogates(doc)
                yield offset(pos), doc
                pos, need = end, 0
                continue
        if eof:
            if encoding_problem:
                yield encoding_problem
            return
        # Need more text: decode the next chunk into `pending`.
        chunk = next(source, None)
        try:
            if chunk is None:
                eof = True
                text = utf8.decode(b"", final=True)
            else:
                fed += len(chunk)
                text = utf8.decode(chunk)
        except UnicodeDecodeError as exc:
            # Keep the valid text before the bad byte; what follows it cannot be trusted.
            # exc.object is the bytes the decoder held back plus this chunk.
            at = fed - len(exc.object) + exc.start
            text = exc.object[: exc.start].decode("utf-8")
            eof = True
            encoding_problem = Problem(INVALID_UTF8, f"invalid UTF-8 at byte {at}: {exc.reason}", offset=at)
        if text:
            pending.append(text)
            pending_chars += len(text)
