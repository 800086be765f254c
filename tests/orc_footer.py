"""Which columns of an ORC file are dictionary-encoded, from its stripe footers (for tests;
pyarrow and pyorc do not expose encodings: :mod:`loglake.orc_streams` reads them)."""
from __future__ import annotations

from loglake import orc_streams


def dictionary_columns(path: str, names: list[str]) -> set[str]:
    """The columns among ``names`` dictionary-encoded in any stripe."""
    encodings = orc_streams.read_streams(path).encodings
    return {n for n in names if any(k.startswith("dictionary") for k in encodings.get(n, {}))}
