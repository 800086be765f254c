"""Raw objects -> rows, in Spark's tasks: each object read (with a bounded read-ahead:
S3 GETs are latency-bound) and converted by its source into event rows, quarantine
rows and one row of per-object counts (``_kind`` says which). Counts travel with the
data rather than in Spark accumulators, which can double count retried tasks."""
from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from loglake import storage
from loglake.checks import DELIVERY_DEADLINE, delivery_deadline
from loglake.config import Config
from loglake.sources import FileResult, Source
from loglake.sources.base import with_payload
from loglake.transforms import Problem

KIND_EVENT = "event"
KIND_FILE = "file"
KIND_PROBLEM = "problem"
OBJECT_MISSING = "object_missing"  # listed, then gone before it was read (NoSuchKey)
CONVERSION_FAILED = "conversion_failed"  # the source's conversion raised on this object
CONVERSION_STACK = 1500  # frames a conversion may use above its caller (see _process)
EVENT_AFTER_DELIVERY = "event_after_delivery"  # eventtime past its partition's delivery day + 48 h
READ_AHEAD = 16  # raw objects read ahead per task (S3 GETs are latency-bound); bytes: convert.read_ahead_bytes
_END = object()
log = logging.getLogger(__name__)
BATCH_ROWS = 4096  # rows per Arrow batch handed to Spark: the rows of several small files (a big file goes whole)


def _output_schema(source: Source) -> pa.Schema:
    return _output_schema_of(source.name)


@functools.cache
def _output_schema_of(name: str) -> pa.Schema:
    # Built once per process: rebuilding it per file cost ~60 µs, more than a small file's parsing.
    from loglake.sources import get_source

    base = get_source(name).schema.arrow()
    return base.append(pa.field("_kind", pa.string())).append(pa.field("_detail", pa.string()))


def _spark_output_ddl(source: Source) -> str:
    return source.schema.spark_ddl() + ", `_kind` string, `_detail` string"


@dataclass
class FileTotals:
    """Objects' counts added up (:func:`object_rows`), and the objects with problems.

    A one-pass task adds up its own objects and reports one total. A count row per
    object, collected, passed the run's every object through the JVM and then held them
    all in the driver: in a large ingest (156,868 objects) the JVM peaked at 526 MiB and
    the driver at 341, at 303 and 201 with a total per task."""

    files: int = 0
    bytes: int = 0
    records_read: int = 0
    kept: int = 0
    control_messages: int = 0
    quarantined_records: int = 0
    filtered: dict[str, int] = field(default_factory=dict)  # rule -> records
    problems: dict[str, int] = field(default_factory=dict)  # reason -> problems
    with_problems: set[str] = field(default_factory=set)  # the objects that had some

    def add(self, counts: dict[str, Any]) -> None:
        """One object's counts (the ``_detail`` of its ``KIND_FILE`` row)."""
        self.merge(FileTotals(1, counts["bytes"], counts["records_read"], counts["kept"], counts["control_messages"],
                              counts["quarantined_records"], counts["filtered"], counts["problems"],
                              {counts["file"]} if counts["problems"] else set()))

    def merge(self, other: FileTotals) -> None:
        self.files += other.files
        self.bytes += other.bytes
        self.records_read += other.records_read
        self.kept += other.kept
        self.control_messages += other.control_messages
        self.quarantined_records += other.quarantined_records
        for rule, n in other.filtered.items():
            self.filtered[rule] = self.filtered.get(rule, 0) + n
        for reason, n in other.problems.items():
            self.problems[reason] = self.problems.get(reason, 0) + n
        self.with_problems |= other.with_problems

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "with_problems": sorted(self.with_problems)})

    @classmethod
    def from_json(cls, text: str) -> FileTotals:
        d = json.loads(text)
        return cls(**{**d, "with_problems": set(d["with_problems"])})


def object_rows(source: Source, uri: str, values: tuple[str, ...], config: Config,
                fetch: Callable[[], bytes] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Read and convert one raw object: its event and quarantine rows (dicts keyed by the
    output schema's names; ``_kind`` says which), and its counts. ``fetch`` returns the
    object's bytes when they were read ahead."""
    names = source.schema.partition_names
    partition = dict(zip(names, values, strict=True))
    data = b""
    try:
        data = fetch() if fetch else storage.read_bytes(uri)
    except FileNotFoundError as exc:
        result = FileResult(problems=[Problem(OBJECT_MISSING, str(exc))])
    else:
        result = _process(source, data, uri, config)
        if DELIVERY_DEADLINE in source.derived_columns and result.rows:
            _set_aside_late(result, partition.get("dt"), config.quality.max_payload_bytes)
    rows = result.rows
    for row in rows:
        row.update(partition)
        row["_kind"] = KIND_EVENT
    counts = {
        "file": uri,
        "bytes": len(data),
        "records_read": result.records_read,
        "kept": len(rows),
        "filtered": result.filtered,
        "control_messages": result.control_messages,
        "quarantined_records": sum(1 for p in result.problems if p.record),
        "problems": {},
    }
    for p in result.problems:
        counts["problems"][p.reason] = counts["problems"].get(p.reason, 0) + 1
        rows.append({**partition, "_kind": KIND_PROBLEM, "_detail": json.dumps({"file": uri, **dataclasses.asdict(p)})})
    return rows, counts


def _set_aside_late(result: FileResult, day: str | None, limit: int) -> None:
    """Move the rows whose eventtime is past their partition's delivery deadline (the
    gate's rule, :func:`checks.delivered_by_deadline`) from ``result.rows`` to its problems.

    The rule needs the partition's day, which the key gives and the source's conversion
    does not see. A record breaking it (a file copied into the wrong day's folder, a
    clock or unit gone wrong) failed the whole run, and every scheduled run after it
    that met the object again; it is one quarantined record instead."""
    deadline = delivery_deadline(day)
    if deadline is None:
        return
    kept = []
    for row in result.rows:
        when = row.get("eventtime")
        if when is not None and when > deadline:
            problem = Problem(EVENT_AFTER_DELIVERY, f"eventtime {when.isoformat()} is after {day} + 48 h, "
                              "the latest a file delivered that day can hold")
            result.problems.append(with_payload(problem, row, limit))
        else:
            kept.append(row)
    result.rows = kept


def _process(source: Source, data: bytes, uri: str, config: Config) -> FileResult:
    """``source.process_file``, or, when it raises, the object as one problem naming the
    exception and where it was raised.

    A source checks what it knows can go wrong; an input nobody foresaw (or a bug) must
    not fail every run that lists the object -- a scheduled run would meet it again each
    hour and publish nothing more. The object goes to the quarantine, named, with the
    rest of the run published; out of memory still fails the task.

    The conversion gets ``CONVERSION_STACK`` frames above its caller, whatever the
    caller's depth: Python's JSON parser counts nesting against the recursion limit, so
    a deep document parsed in a task's first pass and again in the re-conversion that
    builds quarantine rows (another stack) could be fine once and broken once, and the
    run would not balance."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + CONVERSION_STACK)
    try:
        return source.process_file(data, uri, config)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure is this object's, reported with it
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
        log.warning("%s: conversion failed (%s: %s at %s); quarantined", uri, type(exc).__name__, exc, where)
        detail = f"{type(exc).__name__}: {str(exc)[:300]} (at {where}); the object's records are not published"
        return FileResult(problems=[Problem(CONVERSION_FAILED, detail, payload_size=len(data))])
    finally:
        sys.setrecursionlimit(limit)


def _stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def convert_rows(source: Source, uri: str, values: tuple[str, ...], config: Config,
                 fetch: Callable[[], bytes] | None = None) -> list[dict[str, Any]]:
    """:func:`object_rows`, its counts as one more row (``KIND_FILE``, the counts' JSON)."""
    rows, counts = object_rows(source, uri, values, config, fetch)
    rows.append({**dict(zip(source.schema.partition_names, values, strict=True)), "_kind": KIND_FILE,
                 "_detail": json.dumps(counts)})
    return rows


def rows_to_batch(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    """Row dicts -> one Arrow batch (absent keys are nulls)."""
    return pa.RecordBatch.from_pylist(rows, schema=schema)


def convert_file(source: Source, uri: str, values: tuple[str, ...], config: Config) -> pa.RecordBatch:
    """One raw object as one Arrow batch (``convert_rows``)."""
    return rows_to_batch(convert_rows(source, uri, values, config), _output_schema(source))


def _convert_partition(source_name: str, config: Config, batch_rows: int = BATCH_ROWS):
    """The mapInArrow function: batches of (uri, partition values) -> converted batches.

    Rows of many files go out in one batch of about ``batch_rows``: building a batch
    has a fixed cost per column, more than a small file's parsing when paid per file,
    and the rows held at once stay bounded whatever the input size."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from loglake.orcwrite import prefer_jemalloc
        from loglake.sources import get_source

        def read(item: dict[str, Any]) -> bytes:
            return storage.read_bytes(item["uri"])

        prefer_jemalloc()
        storage.configure(config.aws.endpoint_url, config.aws.region)
        source = get_source(source_name)
        schema = _output_schema(source)
        names = source.schema.partition_names
        pending: list[dict[str, Any]] = []
        items = (item for batch in batches for item in batch.to_pylist())
        ahead = read_ahead(items, read, budget=config.convert.read_ahead_bytes, size=lambda item: item["size"] or 0)
        for item, fetch in ahead:
            pending.extend(convert_rows(source, item["uri"], tuple(item[n] for n in names), config, fetch))
            if len(pending) >= batch_rows:
                yield rows_to_batch(pending, schema)
                pending = []
        if pending:
            yield rows_to_batch(pending, schema)

    return run


def read_ahead(
    items: Iterable[Any],
    read: Callable[[Any], bytes],
    window: int = READ_AHEAD,
    budget: int | None = None,
    size: Callable[[Any], int] | None = None,
):
    """``(item, fetch)`` in order, with up to ``window`` reads running ahead on threads.

    An S3 GET is mostly waiting (tens of ms for a few KB), so one task reading its
    objects one by one would spend most of its time idle; a bounded window keeps the
    bytes held at once small whatever the number of objects.

    A count alone does not bound the bytes: 16 Firehose objects of 128 MB are 2 GB in
    one task. With ``budget`` and ``size(item)``, a read starts only while the sizes of
    the items read or being read and not yet consumed (the one the caller holds counts
    until it asks for the next) stay within ``budget`` -- except when nothing is held,
    so an item bigger than the budget is still read, alone. The sizes are what the
    listing gives, bytes as stored: for gzip objects that is the compressed size, which
    is what the read-ahead holds; the text they decompress to is the consumer's, one
    object at a time."""
    it = iter(items)
    queue: collections.deque[tuple[Any, Any, int]] = collections.deque()  # (item, future, size)
    held = 0
    nxt = next(it, _END)
    with ThreadPoolExecutor(max_workers=max(1, window)) as pool:

        def fill() -> None:
            nonlocal held, nxt
            while nxt is not _END and len(queue) < window:
                n = size(nxt) if size else 0
                if held and budget is not None and held + n > budget:
                    return
                queue.append((nxt, pool.submit(read, nxt), n))
                held += n
                nxt = next(it, _END)

        while True:
            fill()
            if not queue:
                return
            item, future, n = queue.popleft()
            fill()  # read on while the caller converts this item (still counted in held)
            yield item, future.result
            held -= n
            del item, future  # ours; the caller's references go when it takes the next item

