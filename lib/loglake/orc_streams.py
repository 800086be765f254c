"""Where an ORC file's bytes go: each column's streams and encoding, from the stripe footers.

pyarrow and pyorc read the data but not the stripe footers, which name every stream
(a column's present bits, data, lengths, dictionary, row index, bloom filter) with its
compressed length, and each column's encoding (direct or dictionary). Those are what a
size question needs: rewriting a column alone to weigh it changes its encoding and
compression blocks. The footers are protobuf (ORC specification, "File Tail" and
"Stripes"); the few fields read here are decoded by hand rather than adding a protobuf
dependency for them.
"""
from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# orc_proto.proto: Stream.Kind and ColumnEncoding.Kind
STREAM_KINDS = {0: "present", 1: "data", 2: "length", 3: "dictionary_data", 4: "dictionary_count",
                5: "secondary", 6: "row_index", 7: "bloom_filter", 8: "bloom_filter_utf8",
                10: "encrypted_index", 11: "encrypted_data", 100: "stripe_statistics", 101: "file_statistics"}
ENCODINGS = {0: "direct", 1: "dictionary", 2: "direct_v2", 3: "dictionary_v2"}
_NONE, _ZLIB = 0, 1
_MAGIC = b"ORC"
_TAIL_GUESS = 64 << 10  # footer, metadata and postscript usually fit; else read again


@dataclass
class OrcStreams:
    """Bytes of one or more ORC files by (column, stream kind), and how often each column
    was written with each encoding (one count per stripe)."""
    files: int = 0
    file_bytes: int = 0
    stripe_footer_bytes: int = 0
    tail_bytes: int = 0  # everything but the streams: stripe footers, file footer, metadata, postscript, magic
    stream_bytes: Counter = field(default_factory=Counter)  # (column, kind) -> bytes
    encodings: dict[str, Counter] = field(default_factory=dict)  # column -> {encoding: stripes}

    def by_column(self) -> Counter:
        out: Counter = Counter()
        for (column, _kind), n in self.stream_bytes.items():
            out[column] += n
        return out

    def add(self, other: OrcStreams) -> None:
        self.files += other.files
        self.file_bytes += other.file_bytes
        self.stripe_footer_bytes += other.stripe_footer_bytes
        self.tail_bytes += other.tail_bytes
        self.stream_bytes.update(other.stream_bytes)
        for column, kinds in other.encodings.items():
            self.encodings.setdefault(column, Counter()).update(kinds)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """A protobuf message's (field number, value) pairs, in order; varints as ints,
    length-delimited fields as bytes."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, value))
    return out


def _decompress(buf: bytes, kind: int) -> bytes:
    """ORC's compressed form: chunks behind a 3-byte little-endian header whose low bit
    says the chunk was stored as is. Only ZLIB (raw deflate) is read: loglake writes it."""
    if kind == _NONE:
        return buf
    if kind != _ZLIB:
        raise ValueError(f"compression kind {kind} is not ZLIB")
    out, i = bytearray(), 0
    while i < len(buf):
        header = buf[i] | buf[i + 1] << 8 | buf[i + 2] << 16
        n, i = header >> 1, i + 3
        chunk = buf[i:i + n]
        out += chunk if header & 1 else zlib.decompress(chunk, -15)
        i += n
    return bytes(out)


def read_streams(path: str | Path, into: OrcStreams | None = None) -> OrcStreams:
    """Add one file's streams to ``into`` (a new tally if None). Columns are named by
    their top-level field, nested ones as ``parent.child``; column 0 is ``<root>``.
    Reads the file's tail and stripe footers only. A file that is not ORC, or whose tail
    does not parse, raises ValueError naming it and leaves ``into`` as it was (the file is
    read into a tally of its own first), so a caller may skip it and go on."""
    one = OrcStreams()
    with open(path, "rb") as fh:
        if fh.read(len(_MAGIC)) != _MAGIC:
            raise ValueError(f"{path}: not an ORC file (it does not start with {_MAGIC!r})")
        try:
            _read(fh, one)
        except (IndexError, KeyError, ValueError, zlib.error) as exc:
            raise ValueError(f"{path}: not a readable ORC file ({type(exc).__name__}: {exc})") from exc
    if into is None:
        return one
    into.add(one)
    return into


def _read(fh, acc: OrcStreams) -> None:
    size = fh.seek(0, 2)
    fh.seek(max(0, size - max(_TAIL_GUESS, 256)))  # at least the postscript (<= 255) and its length byte
    tail = fh.read()
    ps_len = tail[-1]
    postscript = dict(_fields(tail[-1 - ps_len:-1]))
    footer_len, compression = int(postscript[1]), int(postscript.get(2, 0))
    if footer_len + ps_len + 1 > len(tail):
        fh.seek(size - footer_len - ps_len - 1)
        tail = fh.read()
    footer_end = len(tail) - 1 - ps_len
    footer = _fields(_decompress(tail[footer_end - footer_len:footer_end], compression))
    names = _column_names([v for k, v in footer if k == 4])
    streams_total = 0
    for stripe in (dict(_fields(v)) for k, v in footer if k == 3):
        offset, index_len, data_len, sf_len = (int(stripe.get(k, 0)) for k in (1, 2, 3, 4))
        fh.seek(offset + index_len + data_len)
        stripe_footer = _fields(_decompress(fh.read(sf_len), compression))
        acc.stripe_footer_bytes += sf_len
        for number, value in stripe_footer:
            if number == 1:
                stream = dict(_fields(value))
                column, length = names[int(stream.get(2, 0))], int(stream.get(3, 0))
                acc.stream_bytes[(column, STREAM_KINDS.get(int(stream.get(1, 0)), "other"))] += length
                streams_total += length
        columns = [dict(_fields(v)) for k, v in stripe_footer if k == 2]
        for column_id, encoding in enumerate(columns):
            kind = ENCODINGS.get(int(encoding.get(1, 0)), "other")
            acc.encodings.setdefault(names[column_id], Counter())[kind] += 1
    acc.files += 1
    acc.file_bytes += size
    acc.tail_bytes += size - streams_total


def _column_names(types: list) -> list[str]:
    """Column ids in pre-order (the ORC type tree) to names."""
    decoded = [_fields(t) for t in types]
    names = ["<root>"] + [""] * (len(decoded) - 1)

    def walk(type_id: int, prefix: str) -> None:
        fields = decoded[type_id]
        subtypes = _subtypes(fields)
        field_names = [v.decode() for k, v in fields if k == 3]
        if field_names:  # a struct
            for child, name in zip(subtypes, field_names, strict=True):
                names[child] = f"{prefix}{name}"
                walk(child, f"{prefix}{name}.")
            return
        for child in subtypes:  # list, map, union: the children go by the parent's name
            names[child] = prefix.rstrip(".") or names[type_id]
            walk(child, prefix)

    walk(0, "")
    return names


def _subtypes(fields: list) -> list[int]:
    out: list[int] = []
    for number, value in fields:
        if number != 2:
            continue
        if isinstance(value, bytes):  # packed
            i = 0
            while i < len(value):
                v, i = _varint(value, i)
                out.append(v)
        else:
            out.append(value)
    return out
