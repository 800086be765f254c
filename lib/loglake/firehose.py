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
# CloudWatch Logs caps a subscription delivery at about 1 MiB compressed; far above that
# a "document" is garbage without an end, and holding it would break the memory bound.
MAX_DOCUMENT_CHARS = 32 << 20
_WS = re.compile(r"[ \t\n\r]*")
PAYLOAD_CHARS = 64 << 10  # text of a broken document kept for the quarantine


class GzipChunks:
    """Decompressed chunks of every gzip member in ``data``.

    After iteration, ``problem`` says why the stream ended early (or is None), and
    ``produced`` how many decompressed bytes came out before that.
    """

    def __init__(self, data: bytes, chunk: int = CHUNK):
        self.data = data
        self.chunk = chunk
        self.problem: Problem | None = None
        self.produced = 0

    def __iter__(self) -> Iterator[bytes]:
        if not self.data:
            self.problem = Problem(EMPTY_OBJECT, "object has 0 bytes", offset=0)
            return
        if self.data[:2] != b"\x1f\x8b":
            self.problem = Problem(NOT_GZIP, f"starts with {self.data[:4]!r}, not the gzip magic 1f8b", offset=0)
            return
        rest = self.data
        while rest:
            d = zlib.decompressobj(wbits=31)
            tail = rest
            try:
                while tail:
                    out = d.decompress(tail, self.chunk)
                    tail = d.unconsumed_tail
                    if out:
                        self.produced += len(out)
                        yield out
                    if d.eof:
                        break
            except zlib.error as exc:
                self.problem = Problem(TRUNCATED_GZIP, f"corrupt gzip data: {exc}", offset=self.produced)
                return
            if not d.eof:
                self.problem = Problem(TRUNCATED_GZIP, "gzip stream ends early", offset=self.produced)
                return
            rest = d.unused_data
            if rest and rest[:2] != b"\x1f\x8b":
                if rest.strip(b"\x00"):
                    self.problem = Problem(TRUNCATED_GZIP, "bytes after the last gzip member", offset=self.produced)
                return


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
