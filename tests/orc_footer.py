"""Column encodings of an ORC file, read from its stripe footers (for tests).

pyarrow and pyorc do not expose them; this follows the ORC specification
(https://orc.apache.org/specification/ORCv1/): the PostScript, the compressed Footer
and each stripe's compressed StripeFooter, all protocol buffers. ZLIB and no
compression only: what loglake writes.
"""
from __future__ import annotations

import zlib

# ColumnEncoding.Kind
DIRECT, DICTIONARY, DIRECT_V2, DICTIONARY_V2 = 0, 1, 2, 3
_NONE, _ZLIB = 0, 1


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: ints for varints, bytes otherwise."""
    out, i = [], 0
    while i < len(buf):
        tag, i = _varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, value))
    return out


def _first(fields, number: int, default=0):
    return next((v for n, v in fields if n == number), default)


def _decompress(buf: bytes, kind: int) -> bytes:
    if kind == _NONE:
        return buf
    if kind != _ZLIB:
        raise ValueError(f"compression kind {kind} not supported here")
    out, i = [], 0
    while i < len(buf):
        header = buf[i] | buf[i + 1] << 8 | buf[i + 2] << 16
        n, original = header >> 1, header & 1
        chunk = buf[i + 3:i + 3 + n]
        out.append(chunk if original else zlib.decompress(chunk, -15))
        i += 3 + n
    return b"".join(out)


def column_encodings(path: str) -> list[list[int]]:
    """Per stripe, the encoding kind of each column (index 0: the root struct)."""
    data = open(path, "rb").read()
    ps_len = data[-1]
    ps = _fields(data[-1 - ps_len:-1])
    footer_len, compression = _first(ps, 1), _first(ps, 2)
    footer = _fields(_decompress(data[-1 - ps_len - footer_len:-1 - ps_len], compression))
    stripes = []
    for number, value in footer:
        if number != 3:
            continue
        info = _fields(value)
        offset, index_len, data_len, sf_len = (_first(info, k) for k in (1, 2, 3, 4))
        start = offset + index_len + data_len
        stripe_footer = _fields(_decompress(data[start:start + sf_len], compression))
        stripes.append([_first(_fields(v), 1) for n, v in stripe_footer if n == 2])
    return stripes


def dictionary_columns(path: str, names: list[str]) -> set[str]:
    """The columns (by name; ``names`` in the file's order) dictionary-encoded in any stripe."""
    found = set()
    for kinds in column_encodings(path):
        for name, kind in zip(names, kinds[1:], strict=False):
            if kind in (DICTIONARY, DICTIONARY_V2):
                found.add(name)
    return found
