"""objects.read_ahead bounded by bytes as well as by count: pure, with threads, no Spark.

A fake ``read`` records, each time a read starts, the bytes held at that moment: the
sizes of the reads started and not yet done with by the consumer (which lets go of an
item just before asking for the next). The bound must hold at every start.
"""
from __future__ import annotations

import gzip
import json
import random
import threading

import pyarrow as pa

from loglake import objects
from loglake.config import config_from_dict
from loglake.sources.cloudtrail import SOURCE as CLOUDTRAIL_SOURCE


class Reads:
    """Items are ``(name, size)``; ``held`` counts bytes from read start to consumer done."""

    def __init__(self, items):
        self.size = dict(items)
        self.started = {name: threading.Event() for name, _ in items}
        self.lock = threading.Lock()
        self.held = 0
        self.samples: list[tuple[str, int]] = []  # (item whose read started, bytes held then)

    def read(self, item):
        name, size = item
        with self.lock:
            self.held += size
            self.samples.append((name, self.held))
        self.started[name].set()
        return f"bytes of {name}".encode()

    def done(self, item):
        with self.lock:
            self.held -= item[1]


def consume(reads, items, *, wait_for_next=None, **kw):
    """Runs read_ahead over ``items``; ``wait_for_next(k)`` says whether the consumer of
    item k waits for the read of item k+1 to have started (it must have been admitted)."""
    got = []
    for k, (item, fetch) in enumerate(objects.read_ahead(items, reads.read, size=lambda it: it[1], **kw)):
        got.append((item, fetch()))
        if wait_for_next and k + 1 < len(items) and wait_for_next(k):
            assert reads.started[items[k + 1][0]].wait(10), f"read of item {k + 1} never started"
        reads.done(item)
    return got


def test_bytes_held_stay_within_the_budget_in_order_and_read_ahead_still_happens():
    rnd = random.Random(7)
    budget = 100
    items = [(f"o{i}", rnd.randint(1, 60)) for i in range(200)]
    reads = Reads(items)
    # Item k+1 fits beside item k whenever their sizes do: then read_ahead must have
    # started it while the consumer holds k (the consumer waits to see it).
    fits = [items[k][1] + items[k + 1][1] <= budget for k in range(len(items) - 1)]
    got = consume(reads, items, window=16, budget=budget, wait_for_next=lambda k: fits[k])
    assert got == [(item, f"bytes of {item[0]}".encode()) for item in items]
    assert len(reads.samples) == len(items)
    assert max(held for _, held in reads.samples) <= budget
    assert sum(fits) > 100 and max(held for _, held in reads.samples) > 60  # more than one object at once


def test_without_a_budget_only_the_count_bounds_and_the_bytes_go_over():
    """The control: the same items with no byte budget are held 16 at a time, far over
    100 -- what the budget above prevents."""
    rnd = random.Random(7)
    items = [(f"o{i}", rnd.randint(1, 60)) for i in range(200)]
    reads = Reads(items)
    consume(reads, items, window=16, wait_for_next=lambda k: True)
    assert max(held for _, held in reads.samples) > 100
    assert max(held for _, held in reads.samples) <= sum(sorted(s for _, s in items)[-17:])  # window + the one held


def test_an_item_bigger_than_the_budget_is_read_alone():
    items = [("a", 30), ("b", 30), ("big", 250), ("c", 30), ("d", 30), ("huge-first", 400)]
    items = [items[-1], *items[:-1]]
    reads = Reads(items)
    got = consume(reads, items, window=16, budget=100, wait_for_next=lambda k: items[k][1] + items[k + 1][1] <= 100)
    assert [item for item, _ in got] == items
    held_at = dict(reads.samples)
    assert held_at["huge-first"] == 400 and held_at["big"] == 250  # nothing else held at their start
    for name, held in reads.samples:
        assert held <= 100 or held == reads.size[name], (name, held)  # nothing started beside them


def test_a_zero_budget_reads_one_object_at_a_time():
    items = [(f"o{i}", 5) for i in range(20)]
    reads = Reads(items)
    got = consume(reads, items, window=16, budget=0)
    assert [item for item, _ in got] == items
    assert [held for _, held in reads.samples] == [5] * 20


def test_the_count_window_still_bounds_many_small_objects():
    items = [(f"o{i}", 1) for i in range(100)]
    reads = Reads(items)
    consume(reads, items, window=4, budget=1 << 30, wait_for_next=lambda k: True)
    assert 1 < max(held for _, held in reads.samples) <= 5  # 4 ahead + the one the consumer holds


def test_the_converter_reads_ahead_within_the_configured_budget(tmp_path, monkeypatch):
    """_convert_partition passes convert.read_ahead_bytes and each file's listed size."""
    seen = {}
    real = objects.read_ahead

    def spy(items, read, *args, budget=None, size=None, **kw):
        seen["budget"] = budget
        items = list(items)
        seen["sizes"] = {item["uri"]: size(item) for item in items}
        return real(items, read, *args, budget=budget, size=size, **kw)

    monkeypatch.setattr(objects, "read_ahead", spy)
    uris, sizes = [], {}
    for i in range(3):
        path = tmp_path / f"f{i}.json.gz"
        path.write_bytes(gzip.compress(json.dumps({"Records": []}).encode() + b" " * i))
        uris.append(f"file://{path}")
        sizes[f"file://{path}"] = path.stat().st_size
    names = CLOUDTRAIL_SOURCE.schema.partition_names
    batch = pa.RecordBatch.from_pylist([{"uri": u, "size": sizes[u], **dict.fromkeys(names, "x")} for u in uris])
    config = config_from_dict({"convert": {"read_ahead_bytes": 12345}})
    rows = [r for b in objects._convert_partition("cloudtrail", config)(iter([batch])) for r in b.to_pylist()]
    assert seen == {"budget": 12345, "sizes": sizes}
    assert sum(r["_kind"] == objects.KIND_FILE for r in rows) == 3
