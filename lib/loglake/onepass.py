"""Convert and write a run in one pass when each of its partitions fits one task.

A raw object's key names the readready partition its rows go to before the object is
read. So a run can deal whole partitions to Spark's tasks: each task converts the
objects of its partitions, drops a partition's repeats (the first row of each key
kept), sorts and writes its file (:mod:`loglake.orcwrite`), and tallies the gate's
checks on the rows it writes. Only counts come back: its objects' counts added up, each file's rows
from its footer, each partition's rows and repeats (not the quarantine rows: a run
converts the objects with problems again for those, :func:`loglake.stage._stage_one_pass`).

The other way (:func:`loglake.stage._stage_by_spark`) spreads the objects over every
core whatever their partitions, caches the converted rows, counts repeats in a job of
their own and shuffles the rows to the writers: five Spark jobs where this takes one,
which in an hourly run, whose input is small, was most of the run. That way stays for
a partition too big for one task's memory, and for a run whose largest partition is
most of it (here one core would convert it while the others wait).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from loglake import orcwrite, spill, storage
from loglake.config import Config
from loglake.orcwrite import first_of_each_key

# Raw (gzip) bytes of the largest partition a one-pass run takes: a partition's
# converted rows are held in one task until its file is written, some 4-5x the gzip
# bytes as Arrow for CloudTrail (the benchmark's day: 142 MiB gzip, 600 MB as Arrow),
# some 12x for CloudWatch (Firehose documents repeat their log group and stream, which
# gzip makes nearly free and every row holds), and a sorted copy while it is written.
MAX_PARTITION_BYTES = 32 << 20
# Below this, a run goes one pass whatever its partitions: its time is fixed costs.
SMALL_RUN_BYTES = 8 << 20

KIND_WRITTEN = "written"  # a file a task wrote: {"file", "rows" (from its footer)}
KIND_PARTITION = "partition"  # a partition a task converted: {"rows", "repeats"}
KIND_TALLY = "tally"  # a task's tally of the rows it wrote (checks.Tally.counts)
KIND_FILES = "files"  # a task's objects' counts, added up (objects.FileTotals)


def suits(sizes: dict[tuple[str, ...], int], parallelism: int) -> bool:
    """Whether a run whose partitions hold ``sizes`` raw bytes goes one pass: its largest
    partition fits a task, and is no more than a core's share of the run (dealt whole, a
    partition is converted by one core, so one larger than that would hold the run back
    while Spark's way spreads it over every core)."""
    if not sizes:
        return False
    largest, total = max(sizes.values()), sum(sizes.values())
    if largest > MAX_PARTITION_BYTES:
        return False
    return total <= SMALL_RUN_BYTES or largest * max(1, parallelism) <= total


def deal(files: list[tuple[str, int, tuple[str, ...]]], slices: int) -> list[list[tuple]]:
    """``(uri, size, partition values)`` -> ``slices`` lists of ``(uri, size, *values)``,
    each partition's objects in one list, together and in key order. Partitions go
    largest first to the list with the fewest bytes so far."""
    by_partition: dict[tuple[str, ...], list[tuple[str, int]]] = {}
    for uri, size, values in files:
        by_partition.setdefault(values, []).append((uri, size))
    # an object of unknown size (0) counts 1
    weights = {values: sum(max(size or 0, 1) for _, size in objs) for values, objs in by_partition.items()}
    return [[(uri, size, *values) for values in chunk for uri, size in sorted(by_partition[values])]
            for chunk in orcwrite.deal_largest_first(weights, slices)]


def task(source_name: str, config: Config, layout: orcwrite.Layout, gate: Callable[[], Any] | None = None,
         batch_rows: int = 4096, spill_rows: int | None = None
         ) -> Callable[[Iterable[tuple]], Iterator[dict[str, Any]]]:
    """The function of a Spark task (``RDD.mapPartitions``): ``(uri, size, *partition
    values)`` tuples, each partition's together, in; row dicts out, keyed by the
    partition names, ``_kind`` and ``_detail`` (its JSON): each file written, each
    partition, then the task's objects' counts added up (:class:`loglake.objects.FileTotals`;
    their problems are counted there, their rows not sent) and its tally: a few rows a
    partition, none an object, whatever the number of objects. ``gate()`` makes the task's
    tally (:class:`loglake.quality.StagedGate`; default: rows only).

    An RDD's task, not a DataFrame's (``mapInArrow``): the input is a file list and the
    output a few counts, and Spark SQL's planning, its Arrow exchange and a persisted
    DataFrame cost ~0.3 s more a job (measured with a task that does nothing, 2 cores:
    440-515 ms against 155-175 ms), paid by every hourly run.

    A partition of more than ``spill_rows`` rows (default :data:`loglake.spill.SPILL_ROWS`,
    taken here, in the driver) is sorted in runs on the worker's local disk
    (:mod:`loglake.spill`), so that a worker's memory does not grow with the largest
    partition."""
    limit = spill.SPILL_ROWS if spill_rows is None else spill_rows

    def run(items: Iterable[tuple]) -> Iterator[dict[str, Any]]:
        from pyspark import TaskContext

        from loglake import objects
        from loglake.checks import Tally
        from loglake.sources import get_source

        orcwrite.prepare_writer()
        storage.configure(config.aws.endpoint_url, config.aws.region)
        source = get_source(source_name)
        names = tuple(source.schema.partition_names)
        events_schema = objects._output_schema(source)
        key = [c for c in source.dedup_key if c not in names]
        ctx = TaskContext.get()
        task_id = ctx.partitionId() if ctx is not None else 0
        tally = gate() if gate is not None else Tally()
        totals = objects.FileTotals()
        out: list[dict[str, Any]] = []
        current: tuple[str, ...] | None = None
        events: list[dict[str, Any]] = []
        pending = spill.PartitionRows(events_schema, key, source.sort_columns, limit)

        def finish() -> None:
            nonlocal events, pending
            if current is None:
                return
            if events:
                pending.add(objects.rows_to_batch(events, events_schema))
            events = []
            part = dict(zip(names, current, strict=True))
            with pending:
                if pending.spilled:
                    files, read, repeats = spill.write(pending, current, layout, task_id, tally, first_of_each_key)
                else:
                    files, read, repeats = orcwrite.write_partition(pending.held(), events_schema, current, layout,
                                                                    task_id, key, source.sort_columns, tally,
                                                                    first_of_each_key)
            pending = spill.PartitionRows(events_schema, key, source.sort_columns, limit)
            orcwrite.release_after(layout, read)
            for _, name, rows in files:
                out.append({**part, "_kind": KIND_WRITTEN, "_detail": json.dumps({"file": name, "rows": rows})})
            counted = json.dumps({"rows": read, "repeats": repeats})
            out.append({**part, "_kind": KIND_PARTITION, "_detail": counted})

        listed = ({"uri": uri, "size": size, "values": tuple(values)} for uri, size, *values in items)
        ahead = objects.read_ahead(listed, lambda item: storage.read_bytes(item["uri"]),
                                   budget=config.convert.read_ahead_bytes, size=lambda item: item["size"] or 0)
        try:
            for item, fetch in ahead:
                values = item["values"]
                if values != current:
                    finish()
                    current = values
                rows, counts = objects.object_rows(source, item["uri"], values, config, fetch)
                totals.add(counts)
                # not the problems' rows: the run converts those objects again
                events.extend(row for row in rows if row["_kind"] == objects.KIND_EVENT)
                if len(events) >= batch_rows:
                    pending.add(objects.rows_to_batch(events, events_schema))
                    events = []
                if len(out) >= batch_rows:
                    yield from out
                    out = []
            finish()
        finally:  # a task that failed mid-partition leaves no spilled runs behind
            pending.close()
        out.append({**dict.fromkeys(names), "_kind": KIND_FILES, "_detail": totals.to_json()})
        out.append({**dict.fromkeys(names), "_kind": KIND_TALLY, "_detail": json.dumps(tally.counts())})
        yield from out

    return run
