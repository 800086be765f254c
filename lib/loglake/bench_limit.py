"""The benchmark's measured limit: each unavoidable step of a CloudTrail conversion, timed alone.

Whatever turns gzip JSON files into ORC/ZLIB must at least decompress every file, parse
its JSON and encode the columns with ZLIB. Each step is timed on its own, on the same
files and with the same parallelism as the job it is set against (one process per
core, each taking an equal share of the bytes): a step's time is its slowest worker's.

- ``decompress``: ``zlib`` on each file's bytes (read from disk before the clock starts);
- ``parse_json``: ``orjson.loads`` of each decompressed document (the fastest JSON
  parser loglake has; decompressed before the clock starts);
- ``encode_orc``: pyarrow writing the readready table's columns, already built (read
  from loglake's own output before the clock starts), with loglake's ORC options.

Their sum is a floor no converter of these files beats without skipping a step; the
benchmark reports ``ingest_vs_limit`` = that sum / loglake's time. It leaves out what a
useful conversion also needs (flattening records into columns, sorting, the checks),
so 1.0 cannot be reached: the figure says how much of loglake's time is the work itself.
"""
from __future__ import annotations

import io
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def _deal(items: list[tuple[str, int]], parts: int) -> list[list[str]]:
    """Paths with sizes -> up to ``parts`` lists of paths with about equal bytes (as runs
    deal partitions to tasks)."""
    from loglake.orcwrite import deal_largest_first

    return deal_largest_first(dict(items), parts)


def _json_steps(paths: list[str]) -> tuple[float, float, int]:
    """(decompress seconds, parse seconds, bytes decompressed) of one worker's files."""
    import orjson

    datas = []
    for p in paths:
        with open(p, "rb") as fh:
            datas.append(fh.read())
    t0 = time.perf_counter()
    docs = [zlib.decompress(d, wbits=47) for d in datas]  # 47: gzip or zlib header, as gzip -dc
    t1 = time.perf_counter()
    for doc in docs:
        orjson.loads(doc)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, sum(len(d) for d in docs)


def _encode_orc(paths: list[str]) -> tuple[float, int]:
    """(encode seconds, bytes written) of one worker's readready files, rewritten in memory."""
    import pyarrow.orc as orc

    from loglake.orcwrite import ORC_OPTIONS

    tables = [orc.read_table(p) for p in paths]
    written = 0
    t0 = time.perf_counter()
    for table in tables:
        buf = io.BytesIO()
        orc.write_table(table, buf, **ORC_OPTIONS)
        written += buf.tell()
    return time.perf_counter() - t0, written


def limit_breakdown(raw_files: list[tuple[str, int]], orc_files: list[tuple[str, int]], workers: int) -> dict[str, Any]:
    """Each step's seconds with ``workers`` processes (the slowest one's), and the sum.

    ``raw_files``/``orc_files``: (path, size). Large inputs are processed in rounds of
    some 64 MB of gzip (~350 MB of JSON) or 50 MB of ORC per worker, so that a worker
    never holds a large day in memory."""
    workers = max(1, workers)
    steps = {"decompress": 0.0, "parse_json": 0.0, "encode_orc": 0.0}
    decompressed = written = 0
    with ProcessPoolExecutor(workers) as pool:
        for chunk in _rounds(raw_files, (64 << 20) * workers):
            results = list(pool.map(_json_steps, _deal(chunk, workers)))
            steps["decompress"] += max(r[0] for r in results)
            steps["parse_json"] += max(r[1] for r in results)
            decompressed += sum(r[2] for r in results)
        for chunk in _rounds(orc_files, (50 << 20) * workers):
            results = list(pool.map(_encode_orc, _deal(chunk, workers)))
            steps["encode_orc"] += max(r[0] for r in results)
            written += sum(r[1] for r in results)
    # milliseconds: at the tiny scale a step can take 3 ms, which two decimals made 0
    out = {k: round(v, 3) for k, v in steps.items()}
    out["total"] = round(sum(steps.values()), 3)
    return {"seconds": out, "workers": workers, "raw_files": len(raw_files), "decompressed_bytes": decompressed,
            "orc_files": len(orc_files), "orc_bytes_written": written}


def _rounds(items: list[tuple[str, int]], budget: int) -> list[list[tuple[str, int]]]:
    rounds: list[list[tuple[str, int]]] = [[]]
    size = 0
    for item in items:
        if rounds[-1] and size + item[1] > budget:
            rounds.append([])
            size = 0
        rounds[-1].append(item)
        size += item[1]
    return [r for r in rounds if r]
