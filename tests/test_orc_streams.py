"""orc_streams reads the stripe footers of files written as loglake writes them, and its
totals agree with an independent reader (pyorc's stripe offsets) and the file size."""
import random
import uuid
from collections import Counter

import pyarrow as pa
import pyarrow.orc as orc
import pyorc
import pytest

from loglake import orc_streams
from loglake.orcwrite import ORC_OPTIONS

ROWS = 20_000


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("orc") / "t.orc"
    rng = random.Random(7)
    table = pa.table({
        "eventname": [f"Describe{i % 10}" for i in range(ROWS)],  # 10 distinct values
        "eventid": [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(ROWS)],  # random v4
        "errorcode": [None if i % 7 else "AccessDenied" for i in range(ROWS)],  # mostly null
        "n": list(range(ROWS)),
        "identity": [{"arn": f"arn:aws:iam::1:user/u{i % 3}", "type": "IAMUser"} for i in range(ROWS)],
    })
    orc.write_table(table, path, **(ORC_OPTIONS | {"stripe_size": 64 << 10}), bloom_filter_columns=[2])
    return path


def test_streams_and_tail_add_up_to_the_file_and_to_pyorcs_stripes(written):
    got = orc_streams.read_streams(written)
    size = written.stat().st_size
    assert got.files == 1 and got.file_bytes == size
    assert sum(got.stream_bytes.values()) + got.tail_bytes == size
    with open(written, "rb") as fh:
        reader = pyorc.Reader(fh)
        stripes = [reader.read_stripe(i) for i in range(reader.num_of_stripes)]
    assert len(stripes) > 1  # the small stripe size made several: each stripe's footer was read
    # pyorc's stripe length is its index, data and footer: the streams plus the stripe footer
    assert sum(s.bytes_length for s in stripes) == sum(got.stream_bytes.values()) + got.stripe_footer_bytes
    assert got.encodings["eventname"]["dictionary_v2"] == len(stripes)


def test_encodings_and_stream_kinds_follow_the_values(written):
    got = orc_streams.read_streams(written)
    stripes = sum(got.encodings["<root>"].values())
    assert got.encodings["eventname"] == {"dictionary_v2": stripes}  # 10 distinct of 20,000
    assert got.encodings["eventid"] == {"direct_v2": stripes}  # distinct/rows over the 0.8 threshold
    kinds = {k for c, k in got.stream_bytes if c == "errorcode"}
    assert "present" in kinds  # the column has nulls
    assert ("eventid", "bloom_filter_utf8") in got.stream_bytes  # the bloom filter asked for column 2
    assert not any(c == "eventname" and k.startswith("bloom") for c, k in got.stream_bytes)
    # a random UUID carries 122 bits: ZLIB cannot code the column below that, nor does it
    # leave it near its 36 characters
    data = got.stream_bytes[("eventid", "data")]
    assert ROWS * 122 / 8 < data < ROWS * 30
    assert got.by_column()["eventid"] > got.by_column()["eventname"] * 10
    assert {"identity", "identity.arn", "identity.type"} <= set(got.encodings)


def test_a_tail_longer_than_the_first_read_is_read_again(written, monkeypatch):
    whole = orc_streams.read_streams(written)
    monkeypatch.setattr(orc_streams, "_TAIL_GUESS", 16)  # less than any footer
    again = orc_streams.read_streams(written)
    assert again.stream_bytes == whole.stream_bytes and again.encodings == whole.encodings
    assert again.tail_bytes == whole.tail_bytes > 0


def test_two_files_add_up_and_a_non_orc_file_is_named(written, tmp_path):
    both = orc_streams.read_streams(written, orc_streams.read_streams(written))
    one = orc_streams.read_streams(written)
    assert both.files == 2 and both.file_bytes == 2 * one.file_bytes
    assert both.by_column() == Counter({k: 2 * v for k, v in one.by_column().items()})
    bad = tmp_path / "x.orc"
    bad.write_bytes(b"PAR1 not orc")
    with pytest.raises(ValueError, match="x.orc: not an ORC file"):
        orc_streams.read_streams(bad)
    cut = tmp_path / "cut.orc"  # an upload that stopped half way: ORC's magic, no tail
    cut.write_bytes(written.read_bytes()[: written.stat().st_size // 2])
    with pytest.raises(ValueError, match="cut.orc: not a readable ORC file"):
        orc_streams.read_streams(cut)


def test_a_bad_stripe_footer_leaves_the_tally_as_it_was(written, tmp_path):
    """The tail parses but the last stripe's footer does not (a file damaged in place): the
    error names the file and the tally of the files before it is untouched, so a caller
    counting many files can skip this one."""
    with open(written, "rb") as fh:
        reader = pyorc.Reader(fh)
        last = reader.read_stripe(reader.num_of_stripes - 1)
        end = last.bytes_offset + last.bytes_length
    data = bytearray(written.read_bytes())
    data[end - 12:end] = b"\xff" * 12  # the end of the last stripe is its footer
    bad = tmp_path / "damaged.orc"
    bad.write_bytes(bytes(data))
    tally = orc_streams.read_streams(written)
    before = (tally.files, tally.file_bytes, tally.tail_bytes, tally.stripe_footer_bytes,
              Counter(tally.stream_bytes), {c: Counter(e) for c, e in tally.encodings.items()})
    with pytest.raises(ValueError, match="damaged.orc: not a readable ORC file"):
        orc_streams.read_streams(bad, tally)
    after = (tally.files, tally.file_bytes, tally.tail_bytes, tally.stripe_footer_bytes,
             Counter(tally.stream_bytes), {c: Counter(e) for c, e in tally.encodings.items()})
    assert after == before
