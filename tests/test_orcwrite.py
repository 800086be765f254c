"""The readready ORC writer (loglake.orcwrite) on its own: real CloudTrail rows, read back
with pyorc (the ORC C++ reader's sibling, not pyarrow's), checked against the Athena contract."""
from __future__ import annotations

import io
import json

import pyarrow as pa
import pyorc
import pytest

from conftest import STRATUS_GZ
from loglake import contract, orcwrite, storage
from loglake.config import FiltersConfig
from loglake.sources import get_source
from loglake.sources.cloudtrail import process_cloudtrail

SOURCE = get_source("cloudtrail")
NAMES = tuple(SOURCE.schema.partition_names)
PARTS = [("o-aa11", "111111111111", "us-east-1", "2024-09-02"),
         ("o-aa11", "111111111111", "us-east-1", "2024-09-03"),
         ("o-aa11", "222222222222", "eu-west-1", "2024-09-02")]


def sample_rows() -> list[dict]:
    """The stratus sample's flat rows, spread over PARTS (row i into PARTS[i % 3]),
    grouped by partition as the writer receives them (the sample's order kept within)."""
    result = process_cloudtrail(STRATUS_GZ.read_bytes(), "stratus", FiltersConfig())
    rows = [dict(zip(NAMES, PARTS[i % len(PARTS)], strict=True), **r) for i, r in enumerate(result.rows)]
    return sorted(rows, key=lambda r: tuple(r[n] for n in NAMES))  # stable


def as_batches(rows: list[dict], size: int) -> list[pa.RecordBatch]:
    """What Spark hands mapInArrow: the table's schema (timestamps UTC-aware), in batches."""
    schema = SOURCE.schema.arrow()
    table = pa.Table.from_pylist(rows, schema=schema)
    return table.to_batches(max_chunksize=size)


def read_back(path) -> tuple[list[tuple[str, str]], list[dict]]:
    data = path.read_bytes()
    reader = pyorc.Reader(io.BytesIO(data), struct_repr=pyorc.StructRepr.DICT)
    return contract.footer_columns(data), list(reader)


def declared() -> list[dict]:
    return [{"Name": c["Name"], "Type": c["Type"]} for c in SOURCE.schema.glue_columns()]


def test_each_partition_gets_its_rows_in_order_split_at_max_rows(tmp_path):
    rows = sample_rows()
    layout = orcwrite.Layout(str(tmp_path / "t"), NAMES, SOURCE.schema.orc_arrow(), tuple(SOURCE.bloom_columns),
                             max_rows=40)
    # Batches of 33 rows: partition boundaries and file boundaries fall inside batches.
    files = orcwrite.write_sorted(iter(as_batches(rows, 33)), layout, task=7)

    expected = {p: [r for r in rows if tuple(r[n] for n in NAMES) == p] for p in PARTS}
    assert all(len(v) > 80 for v in expected.values())  # each partition spans several files
    assert {v for v, _, _ in files} == set(PARTS)
    for part in PARTS:
        mine = [(name, n) for v, name, n in files if v == part]
        folder = tmp_path / "t" / "/".join(f"{k}={v}" for k, v in zip(NAMES, part, strict=True))
        assert sorted(p.name for p in folder.iterdir()) == sorted(name for name, _ in mine)
        assert [name for name, _ in mine] == [f"part-00007-{i}.zlib.orc" for i in range(len(mine))]
        assert all(n == 40 for _, n in mine[:-1]) and 0 < mine[-1][1] <= 40
        got = []
        for name, n in mine:
            fields, file_rows = read_back(folder / name)
            assert contract.check_columns(fields, declared()) == []
            assert len(file_rows) == n
            got += file_rows
        want = expected[part]
        assert [r["eventid"] for r in got] == [r["eventid"] for r in want]
        # Every column as written; timestamps as their UTC wall time (pyorc reads an ORC
        # TIMESTAMP as that wall time in UTC, as Athena does with its UTC session zone)
        for g, w in zip(got, want, strict=True):
            for c in SOURCE.schema.names:
                assert g[c] == w[c], (c, g[c], w[c])
    assert not list(tmp_path.rglob("*.tmp"))


def test_zlib_and_the_task_output_rows(tmp_path):
    layout = orcwrite.Layout(str(tmp_path / "t"), NAMES, SOURCE.schema.orc_arrow(), tuple(SOURCE.bloom_columns),
                             max_rows=1000)
    rows = sample_rows()[::7][:60]  # every partition, sorted
    [batch] = list(orcwrite.task_writer(layout)(iter(as_batches(rows, 1000))))
    *out, tally = batch.to_pylist()
    assert json.loads(tally["tally"])["rows"] == len(rows) and tally["file"] is None
    assert sorted(r["rows"] for r in out) == sorted(sum(tuple(r[n] for n in NAMES) == p for r in rows) for p in PARTS)
    assert {r["file"] for r in out} == {"part-00000-0.zlib.orc"}
    for r in out:
        path = tmp_path / "t" / "/".join(f"{n}={r[n]}" for n in NAMES) / r["file"]
        with open(path, "rb") as fh:
            assert pyorc.Reader(fh).compression == pyorc.CompressionKind.ZLIB


def test_no_rows_no_files(tmp_path):
    layout = orcwrite.Layout(str(tmp_path / "t"), NAMES, SOURCE.schema.orc_arrow(), (), max_rows=10)
    [batch] = list(orcwrite.task_writer(layout)(iter(as_batches([], 10))))
    assert [json.loads(r["tally"])["rows"] for r in batch.to_pylist()] == [0]  # the task's tally, no file
    assert not (tmp_path / "t").exists()


def test_a_row_without_partition_value_fails_and_leaves_no_partial_file(tmp_path):
    rows = sample_rows()[:20]
    rows[15] = dict(rows[15], dt=None)
    layout = orcwrite.Layout(str(tmp_path / "t"), NAMES, SOURCE.schema.orc_arrow(), (), max_rows=100)
    with pytest.raises(ValueError, match="partition column dt"):
        orcwrite.write_sorted(iter(as_batches(rows, 10)), layout, task=0)
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_file_is_counted_from_its_footer_not_from_what_was_sent(tmp_path, monkeypatch):
    """The rows a task reports for a file are the rows its footer holds, and its tally
    the rows it was given: a writer that loses a row shows as the two disagreeing (the
    run then is unbalanced and publishes nothing: test_quarantine)."""
    from loglake.checks import Tally

    rows = sample_rows()[:50]
    layout = orcwrite.Layout(str(tmp_path / "t"), NAMES, SOURCE.schema.orc_arrow(), (), max_rows=1000)
    real = orcwrite._File.write

    def loses_one(self, table):
        real(self, table.slice(1))
        self.rows += 1  # believes it wrote them all

    monkeypatch.setattr(orcwrite._File, "write", loses_one)
    tally = Tally()
    files = orcwrite.write_sorted(iter(as_batches(rows, 1000)), layout, task=0, tally=tally)
    assert tally.rows == 50
    assert sum(n for _, _, n in files) == 50 - len(files)  # one row lost per file


def test_unknown_bloom_column_is_refused(tmp_path):
    layout = orcwrite.Layout(str(tmp_path), NAMES, SOURCE.schema.orc_arrow(), ("nosuchcolumn",), max_rows=10)
    with pytest.raises(ValueError, match="nosuchcolumn"):
        orcwrite.write_sorted(iter(as_batches(sample_rows()[:3], 10)), layout, task=0)


def test_writes_to_s3(aws):
    aws.s3.create_bucket(Bucket="lake")
    rows = sample_rows()[:30]
    layout = orcwrite.Layout("s3://lake/_staging/r1/t", NAMES, SOURCE.schema.orc_arrow(),
                             tuple(SOURCE.bloom_columns), max_rows=1000)
    files = orcwrite.write_sorted(iter(as_batches(rows, 1000)), layout, task=3)
    keys = sorted(o.key for o in storage.list_objects("s3://lake/_staging/"))
    folders = {values: "/".join(f"{k}={v}" for k, v in zip(NAMES, values, strict=True)) for values, _, _ in files}
    assert keys == sorted(f"_staging/r1/t/{folders[values]}/{name}" for values, name, _ in files)
    total = 0
    for values, name, n in files:
        data = storage.read_bytes(storage.join(layout.folder(values), name))
        assert contract.check_file(data, declared()) == []
        assert len(list(pyorc.Reader(io.BytesIO(data)))) == n
        total += n
    assert total == 30


def test_the_writer_keeps_its_heap_on_linux(monkeypatch):
    """keep_heap is what took a write task's page faults from ~445,000 to ~10,000 (see its
    docstring); on the platforms loglake runs on (Glue, CI: Linux with glibc) it must take
    effect, not fail quietly, and a second call changes nothing."""
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    monkeypatch.setattr(orcwrite, "_HEAP_KEPT", False)  # an earlier test's writer may have set it
    assert orcwrite.keep_heap() is True
    assert orcwrite.keep_heap() is True


def test_a_kept_heap_is_given_back_when_asked(tmp_path):
    """release_heap undoes what keep_heap keeps: 200 MB freed by a process that keeps its
    heap stays resident until released. In a process of its own (mallopt is for life)."""
    import platform
    import subprocess
    import sys

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt and malloc_trim are glibc's")
    script = (
        "from loglake import orcwrite\n"
        "assert orcwrite.keep_heap()\n"
        "blocks = [bytearray(b'x' * (1 << 20)) for _ in range(200)]\n"
        "held = orcwrite.resident_mb()\n"
        "del blocks\n"
        "kept = orcwrite.resident_mb()\n"
        "orcwrite.release_heap()\n"
        "print(held, kept, orcwrite.resident_mb())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    held, kept, released = (float(x) for x in out.split())
    assert kept > held - 50  # freed, but kept by the heap
    assert released < kept - 150  # given back


def test_workers_take_jemalloc_for_arrow_unless_the_user_chose_a_pool():
    """A task's Arrow allocations go to jemalloc (mimalloc, pyarrow's default, kept ~100
    MiB more resident per worker: orcwrite.prefer_jemalloc); a pool named in
    ARROW_DEFAULT_MEMORY_POOL is the user's choice and stays. Fresh processes: the pool
    is for the process's life."""
    import os
    import subprocess
    import sys

    import pyarrow as pa

    if "jemalloc" not in pa.supported_memory_backends():
        pytest.skip("this pyarrow was built without jemalloc")
    script = ("import pyarrow as pa\nfrom loglake import orcwrite\n"
              "before = pa.default_memory_pool().backend_name\n"
              "print(before, orcwrite.prefer_jemalloc(), pa.default_memory_pool().backend_name)\n")
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split()[1:] == ["jemalloc", "jemalloc"]
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**env, "ARROW_DEFAULT_MEMORY_POOL": "system"})
    assert out.stdout.split() == ["system", "system", "system"]


def test_the_heap_is_released_after_a_large_partition_of_a_run_but_never_in_a_scheduled_one(tmp_path, monkeypatch):
    released = []
    monkeypatch.setattr(orcwrite, "release_heap", lambda: released.append(1))
    monkeypatch.setattr(orcwrite, "RELEASE_RSS_MB", 0)  # this process is "large"
    batch = orcwrite.Layout(str(tmp_path), NAMES, SOURCE.schema.orc_arrow(), (), max_rows=2_000_000)
    hourly = orcwrite.Layout(str(tmp_path), NAMES, SOURCE.schema.orc_arrow(), (), max_rows=2_000_000, interim=True)
    big, small = orcwrite.RELEASE_ROWS, orcwrite.RELEASE_ROWS - 1
    assert [orcwrite.release_after(batch, big), orcwrite.release_after(batch, small),
            orcwrite.release_after(hourly, big)] == [True, False, False]
    assert released == [1]
    monkeypatch.setattr(orcwrite, "RELEASE_RSS_MB", 1 << 30)  # a small process keeps its heap
    assert orcwrite.release_after(batch, big) is False and released == [1]


def test_first_of_each_key_keeps_the_first_row_of_each_key_in_order():
    """Repeats anywhere in the table, not only after the rows they repeat: the rows kept
    are the first of each key, with their own values, in the table's order."""
    table = pa.table({"id": ["a", "b", "a", "c", "b", "d"], "n": [0, 1, 2, 3, 4, 5]})
    kept = orcwrite.first_of_each_key(table, ["id"])
    assert kept.to_pylist() == [{"id": "a", "n": 0}, {"id": "b", "n": 1}, {"id": "c", "n": 3}, {"id": "d", "n": 5}]
    assert orcwrite.first_of_each_key(table.slice(0, 2), ["id"]) == table.slice(0, 2)  # nothing repeated


def test_distinct_keys_counts_a_missing_key_as_one_value_for_one_column_or_several():
    table = pa.table({"id": ["a", None, "b", None, "a"], "n": [1, 1, 1, 1, 2]})
    assert orcwrite.distinct_keys(table, ["id"]) == 3  # a, b, null
    assert orcwrite.distinct_keys(table, ["id", "n"]) == 4  # (a,1) (null,1) (b,1) (a,2)
    assert orcwrite.distinct_keys(table, []) == 5
    # the dedup agrees: the first row of each key, a missing key included
    assert orcwrite.first_of_each_key(table, ["id"]).column("id").to_pylist() == ["a", None, "b"]


def test_sort_order_puts_nulls_first_in_each_key():
    table = pa.table({"a": ["y", None, "x", "x"], "b": [1, 2, None, 0]})
    assert table.take(orcwrite.sort_order(table, ("a", "b"))).to_pylist() == [
        {"a": None, "b": 2}, {"a": "x", "b": None}, {"a": "x", "b": 0}, {"a": "y", "b": 1}]


@pytest.mark.parametrize("slice_rows", [7, 1_000_000])
def test_a_partition_is_written_deduplicated_and_sorted_whether_taken_in_one_slice_or_many(
        tmp_path, monkeypatch, slice_rows):
    """write_partition takes the sorted rows a slice at a time (so that a large partition
    is not held twice): the file must be the partition deduplicated (first of each key)
    and sorted as Spark sorts (nulls first), whatever the slice size."""
    monkeypatch.setattr(orcwrite, "WRITE_SLICE_ROWS", slice_rows)
    part = PARTS[0]
    rows = [r for r in sample_rows() if tuple(r[n] for n in NAMES) == part]
    rows = rows + [dict(rows[3], eventname="a repeat: dropped")]  # a repeated eventid
    schema = SOURCE.schema.arrow()
    layout = orcwrite.Layout(str(tmp_path / "t"), NAMES, SOURCE.schema.orc_arrow(), tuple(SOURCE.bloom_columns),
                             max_rows=2_000_000)
    sort = tuple(SOURCE.sort_columns)
    files, read, repeats = orcwrite.write_partition(
        pa.Table.from_pylist(rows, schema=schema).to_batches(max_chunksize=10), schema, part, layout, 3,
        ["eventid"], sort)
    assert (read, repeats) == (len(rows), 1)
    assert len(rows) - 1 > 3 * 7  # several slices at the small size
    [(values, name, n)] = files
    folder = tmp_path / "t" / "/".join(f"{k}={v}" for k, v in zip(NAMES, part, strict=True))
    _, got = read_back(folder / name)
    # expected, computed here: the first row of each eventid, sorted with None first
    first: dict = {}
    for r in rows:
        first.setdefault(r["eventid"], r)

    def key(r):
        return tuple((r[c] is not None, r[c] if r[c] is not None else "") for c in sort)

    want = sorted(first.values(), key=key)
    assert n == len(want) == len(got)
    assert [(r["eventid"], r["eventname"]) for r in got] == [(r["eventid"], r["eventname"]) for r in want]


def _partition_rows(n: int) -> list[dict]:
    """``n`` rows of PARTS[0]: the stratus sample's rows, repeated with new event ids."""
    base = sample_rows()
    return [dict(base[i % len(base)], **dict(zip(NAMES, PARTS[0], strict=True)), eventid=f"id-{i:06d}")
            for i in range(n)]


def test_a_partition_of_several_stripes_meets_the_contract_with_every_row_in_order(tmp_path, monkeypatch):
    """Readready stripes are small (ORC_OPTIONS' stripe_size: the writer holds a stripe
    until it is written) so a large partition's file has several: as Athena reads it,
    each stripe's columns have the declared types, and the file holds every row once,
    sorted across the stripe boundaries. Here stripes of 64 KiB, a 3,000-row file."""
    monkeypatch.setitem(orcwrite.ORC_OPTIONS, "stripe_size", 64 << 10)
    rows = _partition_rows(3_000)
    schema = SOURCE.schema.arrow()
    layout = orcwrite.Layout(str(tmp_path / "t"), NAMES, SOURCE.schema.orc_arrow(), tuple(SOURCE.bloom_columns),
                             max_rows=2_000_000)
    sort = tuple(SOURCE.sort_columns)
    [(_, name, n)] = orcwrite.write_partition(pa.Table.from_pylist(rows, schema=schema).to_batches(1_000), schema,
                                              PARTS[0], layout, 0, ["eventid"], sort)[0]
    path = tmp_path / "t" / "/".join(f"{k}={v}" for k, v in zip(NAMES, PARTS[0], strict=True)) / name
    data = path.read_bytes()
    assert pyorc.Reader(io.BytesIO(data)).num_of_stripes > 1
    assert contract.check_file(data, declared()) == []
    _, got = read_back(path)

    def key(r):
        return tuple((r[c] is not None, r[c] if r[c] is not None else "") for c in sort)

    assert n == len(got) == 3_000
    assert sorted(r["eventid"] for r in got) == sorted(r["eventid"] for r in rows)
    assert [key(r) for r in got] == sorted(key(r) for r in rows)


@pytest.mark.parametrize(("rows", "interim", "dictionaries"), [
    (200, False, True),  # a compaction's or a rebuild's file: ORC's dictionary threshold
    (200, True, False),  # a scheduled run's small file: no dictionaries (their set-up costs more)
    (2_000, True, True),  # a scheduled run's file past INTERIM_DICTIONARY_ROWS: dictionaries again
])
def test_interim_files_drop_dictionaries_only_when_small_and_keep_every_value(tmp_path, rows, interim,
                                                                               dictionaries):
    from orc_footer import dictionary_columns

    assert orcwrite.INTERIM_DICTIONARY_ROWS == 1_000  # the cases above straddle it
    given = _partition_rows(rows)
    schema = SOURCE.schema.arrow()
    layout = orcwrite.Layout(str(tmp_path / "t"), NAMES, SOURCE.schema.orc_arrow(), tuple(SOURCE.bloom_columns),
                             max_rows=2_000_000, interim=interim)
    [(_, name, n)] = orcwrite.write_partition(pa.Table.from_pylist(given, schema=schema).to_batches(), schema,
                                              PARTS[0], layout, 0, ["eventid"], ())[0]
    path = tmp_path / "t" / "/".join(f"{k}={v}" for k, v in zip(NAMES, PARTS[0], strict=True)) / name
    encoded = dictionary_columns(str(path), list(SOURCE.schema.names))
    # low-cardinality strings (the sample's few event sources) are what ORC's threshold takes
    assert ("eventsource" in encoded) is dictionaries
    if not dictionaries:
        assert encoded == set()
    assert contract.check_file(path.read_bytes(), declared()) == []  # ZLIB, the declared types
    _, got = read_back(path)
    assert n == len(got) == rows
    by_id = {r["eventid"]: r for r in got}
    for w in given:  # every column as written
        assert all(by_id[w["eventid"]][c] == w[c] for c in SOURCE.schema.names), w["eventid"]


def test_conform_casts_like_table_cast():
    """A run's rows (timestamps UTC-aware) conformed to the file's types: the table
    pyarrow's own Table.cast gives, whose cost (every column) conform avoids."""
    table = pa.Table.from_pylist(sample_rows(), schema=SOURCE.schema.arrow()).select(SOURCE.schema.names)
    target = SOURCE.schema.orc_arrow()
    assert not table.schema.equals(target)  # the timestamps differ
    assert orcwrite.conform(table, target).equals(table.cast(target))
    assert orcwrite.conform(table.cast(target), target).schema.equals(target)
