"""``loglake bench``: readready vs raw, measured in one run on the same generated data.

Steps (all on the data generated at the start of the run, on this machine):

1. **generate** realistic raw data (``loglake.generate``);
2. **ingest** with loglake: ``planning.plan_from_listing`` + ``convert.convert`` for
   both sources, quality gate on, as a separate process (default) whose whole process
   tree (Python driver, JVM, Python workers) is sampled for peak RSS;
3. the **decompress-only bound**: ``gzip -dc`` of the same raw files, one process;
4. the **naive peer**: ``spark.read.json`` on the raw CloudTrail files, explode
   ``Records``, flatten the same columns, write ORC/ZLIB partitioned like loglake;
5. **queries** on raw JSON (Spark's JSON reader with the raw schema, as an engine
   reading through a JSON SerDe would) and on readready ORC, median of N runs after a
   warm-up, with the bytes each run read (Hadoop filesystem statistics of the JVM:
   the input metrics Spark reports and what Athena bills);
6. **scheduled runs** of one generated day of its own: its files delivered into a raw
   folder in hourly slices (plus late deliveries after midnight), one scheduled run per
   slice (``runner.run``, listing mode) in this process and Spark session, then one
   compaction; the same day in one batch run; a reader process reading the hourly lake
   through the manifests meanwhile; the start-up of one ``loglake run`` process;
7. **AddAPart** against a local moto server: S3 notifications for every generated
   object, in batches, through ``AddAPart.process``; Glue calls counted at botocore.

Writes ``results.json`` (stable top-level keys, details below them),
``results-<scale>.json`` (kept per scale, so the next run shows before/after),
``RESULTS.md`` and ``RESULTS-<scale>.md``. See ``bench/README.md``.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import glob
import io
import json
import logging
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loglake import bench_limit
from loglake import samples as sample_data

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger("loglake.bench")

SCALES: dict[str, dict[str, Any]] = {
    # for the smoke test: seconds, one run per query
    "tiny": {"events": 2_000, "accounts": 1, "regions": 1, "days": 1, "runs": 1, "warmup": 0},
    # CI-sized: a few minutes on 2 cores
    "small": {"events": 100_000, "accounts": 5, "regions": 3, "days": 2, "runs": 3, "warmup": 1},
    # the committed run: the strong peer's issue data (generate --events 1000000 --accounts
    # 20 --regions 4 --days 2 --seed 7), ~20 minutes on 2 cores; the raw side of the queries
    # once, without a warm-up (one raw scan is ~1 minute), and no naive peer (~10 minutes)
    "medium": {"events": 1_000_000, "accounts": 20, "regions": 4, "days": 2, "runs": 3, "warmup": 1, "seed": 7,
               "raw_runs": 1, "raw_warmup": 0, "naive_peer": False},
    # by hand
    "large": {"events": 5_000_000, "accounts": 20, "regions": 4, "days": 7, "runs": 3, "warmup": 1},
}
# Only these scales' runs write results.json and RESULTS.md (the committed figures); a
# smaller run writes its own results-<scale>.json and RESULTS-<scale>.md only.
COMMITTED_SCALES = ("medium", "large")
STRONG_PEER = REPO / "bench" / "strong_peer.py"

TARGETS = {
    "size_ratio_cloudtrail": (2.2, ">=", "CloudTrail readready at least 2.2x smaller than raw gzip"),
    "needle_speedup": (20.0, ">=", "needle at least 20x faster than raw"),
    "needle_bytes_ratio": (50.0, ">=", "needle reads at least 50x fewer bytes"),
    "ingest_vs_strong_peer": (1.3, ">=", "ingest at least 1.3x the strong peer's events/s, every check on"),
    "ingest_vs_naive_peer": (1.0, ">", "ingest faster than the naive peer"),
    "peak_rss_vs_small": (1.1, "<=", "peak memory of the ingest at most 1.1x the small scale's"),
    "peak_rss_large_vs_small": (1.1, "<=", "peak memory of the large ingest at most 1.1x the small's "
                                "(--only memory)"),
    "glue_calls_per_100_new_partitions": (1.0, "<=", "at most 1 Glue call per 100 new partitions"),
    "glue_calls_known_partitions": (0, "<=", "0 Glue calls for known partitions"),
    "hourly_read_amplification": (1.05, "<=", "hourly runs read each delivered raw byte about once"),
    "hourly_vs_batch_time": (2.0, "<=", "a day of hourly runs plus compaction at most 2x one batch run"),
    "files_per_closed_partition": (1, "==", "one file per closed partition after compaction"),
    "reader_anomalies": (0, "<=", "a manifest reader never sees a partition shrink, a row twice or a file missing"),
}
REQUIRED_KEYS = (
    "scale", "events", "size_ratio_cloudtrail", "size_ratio_cloudwatch", "needle_speedup", "needle_bytes_ratio",
    "scan_speedup", "session_join_speedup", "ingest_events_per_s_per_core", "ingest_vs_strong_peer",
    "strong_peer_size_ratio", "ingest_vs_limit", "limit_breakdown_s", "peak_rss_mb",
    "addapart_events_per_s", "glue_calls_per_1000_files",
    "hourly_read_amplification", "hourly_vs_batch_time", "run_startup_s", "files_per_closed_partition",
    "reader_anomalies", "hourly_same_events_as_batch",
)
CT_BUCKET = "bench-org-trail"
CW_BUCKET = "bench-firehose"


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    import pyarrow
    import pyspark

    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "pyarrow": pyarrow.__version__,
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        with open("/proc/meminfo") as fh:
            kb = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
        info["ram_gb"] = round(kb / 1024 / 1024, 1)
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
        info["java"] = (out.stderr or out.stdout).splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        info["java"] = None
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["commit"] = commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    return info


# --------------------------------------------------------------------------- memory


def _proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (ppid, comm, rss bytes) for every process we can read."""
    page = os.sysconf("SC_PAGE_SIZE")
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/{name}/statm") as fh:
                rss = int(fh.read().split()[1]) * page
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        out[int(name)] = (ppid, comm, rss)
    return out


def _pss(pid: int) -> int:
    """Proportional set size: RSS with each shared page divided among its sharers, so
    summing it over processes counts memory once (forked Python workers share a lot)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeRSS:
    """Samples the memory of a process and all its descendants (Python driver, the
    Spark JVM, Python workers) every ``interval`` seconds; keeps the peaks of the summed
    RSS, the summed PSS, and of each part."""

    def __init__(self, root: int, interval: float = 0.1):
        self.root, self.interval = root, interval
        self.peaks = {"rss": 0, "pss": 0, "jvm": 0, "driver": 0, "workers": 0, "largest_worker": 0}
        self.max_workers = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo, seen = [self.root], []
        while todo:
            pid = todo.pop()
            if pid in table:
                seen.append(pid)
                todo.extend(children.get(pid, []))
        if not seen:
            return  # the process has exited
        jvm = [p for p in seen if table[p][1] == "java"]
        workers = [p for p in seen if p != self.root and p not in jvm]
        # the test runner's own process tree may hold other servers (moto): count Python only
        workers = [p for p in workers if table[p][1].startswith("python")]
        counted = [p for p in (self.root, *jvm, *workers) if p in table]
        now = {
            "rss": sum(table[p][2] for p in counted),
            "pss": sum(_pss(p) for p in counted),
            "jvm": sum(table[p][2] for p in jvm),
            "driver": table[self.root][2] if self.root in table else 0,
            "workers": sum(table[p][2] for p in workers),
            "largest_worker": max((table[p][2] for p in workers), default=0),
        }
        for k, v in now.items():
            self.peaks[k] = max(self.peaks[k], v)
        self.max_workers = max(self.max_workers, len(workers))
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> TreeRSS:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def as_dict(self) -> dict[str, float]:
        mb = 1024 * 1024
        out = {f"peak_{k}_mb": round(v / mb, 1) for k, v in self.peaks.items()}
        out["peak_total_mb"] = out.pop("peak_rss_mb")
        out["python_processes_max"] = self.max_workers
        out["samples"] = self.samples
        return out


# --------------------------------------------------------------------------- ingest


def _lake_config(lake: str):
    from loglake.config import config_from_dict

    # Production settings: default filters (the Session Manager log group only) and the
    # great-expectations gate on.
    return config_from_dict({"readready": {"location": lake}, "quality": {"expectations": True}})


def ingest(spark, raw: Path, lake: Path) -> dict[str, Any]:
    """Both loglake jobs on the generated data, timed (plan + convert, no JVM start)."""
    from loglake import convert, planning
    from loglake.sources import SOURCES

    config = _lake_config(str(lake))
    out: dict[str, Any] = {"cores": spark.sparkContext.defaultParallelism}
    for name in ("cloudtrail", "cloudwatch"):
        source = SOURCES[name]
        t0 = time.perf_counter()
        plan = planning.plan_from_listing(source, str(raw / name), config, planning.Selection())
        t1 = time.perf_counter()
        with PhaseTimer() as phases:
            summary = convert.convert(spark, source, config, plan, str(lake))
        t2 = time.perf_counter()
        out[name] = {
            "seconds": round(t2 - t0, 3), "plan_seconds": round(t1 - t0, 3), "files": len(plan.files),
            "status": summary["status"], "records_read": summary["records_read"], "written": summary["written"],
            "filtered": summary["filtered"], "quarantined": summary["quarantined"]["total"],
            "duplicates": summary["duplicates"], "control_messages": summary["control_messages"],
            "quality_evaluated": summary["quality"]["evaluated"], "quality_success": summary["quality"]["success"],
            "partitions_written": summary.get("partitions_written"),
            "phases_s": phases.as_dict(),
        }
    return out


# Where a convert() run spends its wall time, from the driver's point of view: the
# driver waits inside these calls while Spark runs the jobs they start.
_PHASES = (
    ("loglake.stage", "_stage", "stage: convert, dedup, write, count, check (all of _stage)"),
    ("loglake.stage", "_stage_one_pass", "  one pass: tasks convert, dedup, sort, write and tally whole partitions"),
    ("loglake.stage", "_stage_by_spark", "  by Spark (a partition too large for one pass): the three below"),
    ("loglake.stage", "_count_duplicates", "    convert and count duplicates (the first action)"),
    ("loglake.stage", "write_readready", "    readready ORC writes (shuffle, sort, pyarrow writer, gate tallies)"),
    ("loglake.stage", "_file_stats", "    file counts (collect)"),
    ("loglake.stage", "_write_quarantine", "  quarantine write"),
    ("loglake.quality", "judge_counts", "  quality gate (judges the writing tasks' tallies)"),
    ("loglake.convert", "_publish", "publish: move partitions into place"),
    ("loglake.convert", "_record_run", "runs row"),
    ("loglake.storage", "delete_tree", "delete staging"),
)


# and, for a scheduled run, what comes before the conversion
_RUN_PHASES = (
    ("loglake.runner", "run", "the whole run (lock to commit)"),
    ("loglake.planning", "plan_from_listing", "list the raw folder"),
    ("loglake.runner", "from_listing", "take the new objects (watermark, manifests)"),
    ("loglake.convert", "convert", "convert (all of convert.convert)"),
    *_PHASES,
    ("loglake.runner", "_commit", "commit (index, watermark, intent)"),
)


class PhaseTimer:
    """Wall seconds spent inside the functions of ``phases`` (module, function, label)
    while active: each function is wrapped, under every name a loglake module binds it
    to, and restored on exit. A timer, not a profiler: cProfile, which the report used
    before, slowed the driver's own Python work (an hourly run's listing and publishing,
    which a batch run barely has) and so weighed on the figures it explained. Calls from
    other threads count too; a call inside another of the same label counts twice."""

    def __init__(self, phases: tuple = _PHASES):
        self.phases = phases
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()
        self._restore: list[tuple[Any, str, Any]] = []

    def _wrap(self, func: Callable, label: str) -> Callable:
        import functools

        @functools.wraps(func)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                with self._lock:
                    self.seconds[label] = self.seconds.get(label, 0.0) + spent
        return timed

    def __enter__(self) -> PhaseTimer:
        import importlib

        modules = [m for name, m in sorted(sys.modules.items()) if name.startswith("loglake") and m is not None]
        for module_name, func_name, label in self.phases:
            func = getattr(importlib.import_module(module_name), func_name)
            wrapper = self._wrap(func, label)
            for module in modules:
                for attr, value in list(vars(module).items()):
                    if value is func:
                        self._restore.append((module, attr, value))
                        setattr(module, attr, wrapper)
        return self

    def __exit__(self, *exc) -> None:
        for module, attr, value in reversed(self._restore):
            setattr(module, attr, value)
        self._restore.clear()

    def as_dict(self) -> dict[str, float]:
        """Seconds per label, in the order of ``phases`` (labels never entered left out)."""
        return {label: round(self.seconds[label], 2) for _, _, label in self.phases if self.seconds.get(label)}


def _ingest_child(argv: Sequence[str]) -> int:
    """``python -m loglake.bench _ingest RAW LAKE RESULT``: the job in its own process."""
    from loglake import logs
    from loglake.runtime import local_spark

    raw, lake, result = argv
    logs.setup(quiet=True)
    spark = local_spark("loglake-bench-ingest")
    try:
        Path(result).write_text(json.dumps(ingest(spark, Path(raw), Path(lake))))
    finally:
        spark.stop()
    return 0


def run_ingest(raw: Path, lake: Path, work: Path, spark=None) -> dict[str, Any]:
    """The loglake jobs and their peak memory: in a child process, or in this process
    (on ``spark``, for tests that must not start a second Spark)."""
    shutil.rmtree(lake, ignore_errors=True)
    if spark is not None:
        with TreeRSS(os.getpid()) as rss:
            out = ingest(spark, raw, lake)
        out["memory"] = {**rss.as_dict(), "mode": "in-process (includes the benchmark's own process)"}
        return out
    result = work / "ingest-result.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "loglake.bench", "_ingest", str(raw), str(lake), str(result)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    with TreeRSS(proc.pid) as rss:
        code = proc.wait()
    wall = time.perf_counter() - t0
    if code != 0 or not result.exists():
        raise RuntimeError(f"ingest child failed with exit code {code}: {' '.join(cmd)}")
    out = json.loads(result.read_text())
    import resource

    out["memory"] = {**rss.as_dict(), "mode": "child process tree (driver + JVM + Python workers)",
                     "ru_maxrss_largest_child_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                                                         1)}
    out["process_wall_seconds"] = round(wall, 2)
    return out


# --------------------------------------------------------------------------- gzip bound


def gzip_bound(files: list[str], events: int) -> dict[str, Any]:
    """``gzip -dc`` of every file, one process at a time (one core): the decompress-only
    bound of anything that reads these files."""
    t0 = time.perf_counter()
    for i in range(0, len(files), 500):
        subprocess.run(["gzip", "-dc", *files[i : i + 500]], stdout=subprocess.DEVNULL, check=True)
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 3), "files": len(files), "events": events,
            "events_per_s": round(events / seconds, 1) if seconds else None}


# --------------------------------------------------------------------------- raw schema

# CloudTrail's JSON names for the lower-case columns of cloudtrail.CLOUDTRAIL_RAW: Spark's
# JSON reader matches names exactly (a Hive JSON SerDe does it case-insensitively).
_JSON_NAMES = {
    "eventversion": "eventVersion", "useridentity": "userIdentity", "principalid": "principalId",
    "accountid": "accountId", "invokedby": "invokedBy", "accesskeyid": "accessKeyId", "username": "userName",
    "sessioncontext": "sessionContext", "mfaauthenticated": "mfaAuthenticated", "creationdate": "creationDate",
    "sessionissuer": "sessionIssuer", "sourceidentity": "sourceIdentity", "ec2roledelivery": "ec2RoleDelivery",
    "eventtime": "eventTime", "eventsource": "eventSource", "eventname": "eventName", "awsregion": "awsRegion",
    "sourceipaddress": "sourceIPAddress", "useragent": "userAgent", "errorcode": "errorCode",
    "errormessage": "errorMessage", "requestparameters": "requestParameters",
    "responseelements": "responseElements", "additionaleventdata": "additionalEventData",
    "requestid": "requestID", "eventid": "eventID", "eventtype": "eventType", "apiversion": "apiVersion",
    "readonly": "readOnly", "recipientaccountid": "recipientAccountId",
    "serviceeventdetails": "serviceEventDetails", "sharedeventid": "sharedEventID",
    "vpcendpointid": "vpcEndpointId", "eventcategory": "eventCategory", "tlsdetails": "tlsDetails",
    "tlsversion": "tlsVersion", "ciphersuite": "cipherSuite", "clientprovidedhostheader": "clientProvidedHostHeader",
}


def raw_json_schema() -> str:
    """A CloudTrail file as Spark's JSON reader sees it: ``Records`` of the raw table's
    columns (``cloudtrail.CLOUDTRAIL_RAW``; free-form objects as JSON text)."""
    import re

    from loglake.sources.cloudtrail import CLOUDTRAIL_RAW

    def names(text: str) -> str:
        return re.sub(r"(\w+):", lambda m: f"{_JSON_NAMES.get(m.group(1), m.group(1))}:", text)

    cols = ", ".join(f"`{_JSON_NAMES.get(c.name, c.name)}`: {names(c.type)}" for c in CLOUDTRAIL_RAW.columns)
    # resources[].ARN is upper case in CloudTrail
    cols = cols.replace("array<struct<arn:string,accountId:string,type:string>>",
                        "array<struct<ARN:string,accountId:string,type:string>>")
    return f"Records array<struct<{cols}>>"


def _ct_glob(root: Path, day: str | None = None) -> str:
    date = day.replace("-", "/") if day else "*/*/*"
    return f"{root}/AWSLogs/*/*/CloudTrail/*/{date}/*.json.gz"


def _raw_records(spark, root: Path, day: str | None = None):
    from pyspark.sql import functions as F

    df = spark.read.schema(raw_json_schema()).json(_ct_glob(root, day))
    return df.select(F.explode("Records").alias("r"))


# --------------------------------------------------------------------------- naive peer


def naive_peer(spark, ct_raw: Path, out: Path) -> dict[str, Any]:
    """What most public CloudTrail-to-columnar jobs do: read the JSON with Spark, explode
    Records, flatten, write ORC. Given the raw schema (no inference pass: its best case)."""
    from pyspark.sql import functions as F

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    f = F.input_file_name()
    pattern = r"AWSLogs/(?:(o-[a-z0-9]+)/)?([0-9]{12})/CloudTrail/([^/]+)/([0-9]{4})/([0-9]{2})/([0-9]{2})/"
    df = (spark.read.schema(raw_json_schema()).json(_ct_glob(ct_raw))
          .select(f.alias("f"), F.explode("Records").alias("r")))
    ident = "r.userIdentity"
    issuer = f"{ident}.sessionContext.sessionIssuer"
    scalars = ["eventVersion", "eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent", "errorCode",
               "errorMessage", "requestID", "eventID", "eventType", "apiVersion", "recipientAccountId",
               "sharedEventID", "vpcEndpointId", "eventCategory", "requestParameters", "responseElements",
               "additionalEventData", "serviceEventDetails"]
    flat = df.select(
        *[F.col(f"r.{c}").alias(c.lower()) for c in scalars],
        F.to_timestamp("r.eventTime").alias("eventtime"),
        (F.col("r.readOnly") == "true").alias("readonly"),
        *[F.col(f"{ident}.{c}").alias(f"useridentity_{c.lower()}")
          for c in ("type", "arn", "accountId", "principalId", "accessKeyId", "userName", "invokedBy")],
        *[F.col(f"{issuer}.{c}").alias(f"useridentity_sessioncontext_sessionissuer_{c.lower()}")
          for c in ("type", "principalId", "arn", "accountId", "userName")],
        F.col(f"{ident}.sessionContext.attributes.mfaAuthenticated").alias("mfaauthenticated"),
        F.to_timestamp(f"{ident}.sessionContext.attributes.creationDate").alias("creationdate"),
        F.to_json("r.resources").alias("resources"),
        F.to_json("r.tlsDetails").alias("tlsdetails"),
        F.col("f").alias("source_file"),
        F.when(F.regexp_extract("f", pattern, 1) == "", "none").otherwise(F.regexp_extract("f", pattern, 1))
        .alias("org"),
        F.regexp_extract("f", pattern, 2).alias("account"),
        F.regexp_extract("f", pattern, 3).alias("region"),
        F.concat_ws("-", *[F.regexp_extract("f", pattern, i) for i in (4, 5, 6)]).alias("dt"),
    )
    (flat.write.mode("overwrite").option("compression", "zlib").partitionBy("org", "account", "region", "dt")
     .orc(f"file://{out}"))
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 3), "bytes": _orc_bytes(out), "files": len(_orc_files(out)),
            "rows": spark.read.orc(f"file://{out}").count()}


# --------------------------------------------------------------------------- strong peer


def strong_peer(ct_raw: Path, out: Path, work: Path) -> dict[str, Any]:
    """``bench/strong_peer.py`` (plain PySpark, no loglake code) on the same raw CloudTrail
    files, in its own process like loglake's ingest, its process tree's memory sampled."""
    shutil.rmtree(out, ignore_errors=True)
    result = work / "strong-peer-result.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(STRONG_PEER), str(ct_raw), str(out), str(result)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    with TreeRSS(proc.pid) as rss:
        code = proc.wait()
    if code != 0 or not result.exists():
        raise RuntimeError(f"the strong peer failed with exit code {code}: {' '.join(cmd)}")
    return {**json.loads(result.read_text()), "process_wall_seconds": round(time.perf_counter() - t0, 2),
            "memory": rss.as_dict()}


# --------------------------------------------------------------------------- queries


def _fs_bytes_read(spark) -> int:
    """Bytes read through Hadoop's local filesystem by this JVM so far (Spark's input
    metrics come from the same counters; executors share the JVM in local mode)."""
    total = 0
    for st in spark._jvm.org.apache.hadoop.fs.FileSystem.getAllStatistics():
        if st.getScheme() == "file":
            total += st.getBytesRead()
    return total


def measure(spark, fn: Callable[[], list], runs: int, warmup: int) -> dict[str, Any]:
    for _ in range(warmup):
        fn()
    times, scanned, rows = [], [], None
    for _ in range(runs):
        b0 = _fs_bytes_read(spark)
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        scanned.append(_fs_bytes_read(spark) - b0)
        rows = result
    return {"median_s": round(statistics.median(times), 4), "runs_s": [round(t, 4) for t in times],
            "bytes_scanned": int(statistics.median(scanned)), "rows": len(rows or []), "_result": rows}


def _session_rows_from_firehose(batches):
    """mapInArrow: raw Firehose objects (binaryFile rows) -> one row per Session Manager
    log event. Spark cannot read JSON documents run together, so raw needs this code."""
    import pyarrow as pa

    from loglake import firehose, transforms

    names = ["sessionid", "event_timestamp", "event_id", "runasuser", "sessiondata"]
    for batch in batches:
        out: dict[str, list] = {n: [] for n in names}
        for content in batch.column("content").to_pylist():
            for item in firehose.iter_documents(firehose.GzipChunks(content)):
                if isinstance(item, transforms.Problem):
                    continue
                _, doc = item
                if not isinstance(doc, dict) or doc.get("logGroup") != "/aws/ssm/sessionlogs":
                    continue
                for ev in doc.get("logEvents") or []:
                    try:
                        rec = json.loads(ev["message"])
                    except (ValueError, KeyError, TypeError):
                        continue
                    out["sessionid"].append(rec.get("sessionId"))
                    out["event_timestamp"].append(ev.get("timestamp"))
                    out["event_id"].append(ev.get("id"))
                    out["runasuser"].append(rec.get("runAsUser"))
                    out["sessiondata"].append("\n".join(rec.get("sessionData") or []))
        yield pa.RecordBatch.from_pydict(out, schema=pa.schema(
            [("sessionid", pa.string()), ("event_timestamp", pa.int64()), ("event_id", pa.string()),
             ("runasuser", pa.string()), ("sessiondata", pa.string())]))


def queries(spark, raw: Path, lake: Path, needle: dict, runs: int, warmup: int, raw_runs: int | None = None,
            raw_warmup: int | None = None) -> dict[str, Any]:
    from pyspark.sql import functions as F

    ct_rr = str(lake / "from_cloudtrail_readready")
    cw_rr = str(lake / "from_cloudwatch_readready")

    def rr_ct():
        return spark.read.option("basePath", f"file://{ct_rr}").orc(f"file://{ct_rr}")

    def rr_cw():
        return spark.read.option("basePath", f"file://{cw_rr}").orc(f"file://{cw_rr}")

    arn, day = needle["arn"], needle["dt"]
    cols = ["eventid", "eventtime", "eventsource", "eventname", "sourceipaddress", "errorcode"]

    def needle_rr():
        return (rr_ct().where((F.col("dt") == day) & (F.col("useridentity_arn") == arn)).select(*cols).collect())

    def needle_raw():
        r = _raw_records(spark, raw / "cloudtrail", day)
        return (r.where(F.col("r.userIdentity.arn") == arn)
                .select(*[F.col(f"r.{_JSON_NAMES.get(c, c)}").alias(c) for c in cols]).collect())

    def scan_rr():
        return rr_ct().groupBy("eventname").count().collect()

    def scan_raw():
        records = _raw_records(spark, raw / "cloudtrail")
        return records.groupBy(F.col("r.eventName").alias("eventname")).count().collect()

    def session_rr():
        starts = rr_ct().where(
            (F.col("eventsource") == "ssm.amazonaws.com") & (F.col("eventname") == "StartSession")
            & F.col("sessionid").isNotNull()
        ).select("sessionid", F.col("eventtime").alias("start_time"), F.col("useridentity_arn").alias("started_by"),
                 F.col("sourceipaddress").alias("source_ip"),
                 F.get_json_object("requestparameters", "$.target").alias("target"))
        keys = rr_cw().where(F.col("sessionid").isNotNull()).select(
            "sessionid", "event_timestamp", "event_id", "runasuser", "sessiondata")
        return starts.join(keys, "sessionid").collect()

    def session_raw():
        r = _raw_records(spark, raw / "cloudtrail")
        starts = r.where((F.col("r.eventSource") == "ssm.amazonaws.com") & (F.col("r.eventName") == "StartSession"))
        starts = starts.select(
            F.get_json_object("r.responseElements", "$.sessionId").alias("sessionid"),
            F.col("r.eventTime").alias("start_time"), F.col("r.userIdentity.arn").alias("started_by"),
            F.col("r.sourceIPAddress").alias("source_ip"),
            F.get_json_object("r.requestParameters", "$.target").alias("target"),
        ).where(F.col("sessionid").isNotNull())
        objects = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                   .load(f"file://{raw / 'cloudwatch'}").select("content"))
        keys = objects.mapInArrow(
            _session_rows_from_firehose,
            "sessionid string, event_timestamp bigint, event_id string, runasuser string, sessiondata string")
        return starts.join(keys, "sessionid").collect()

    out: dict[str, Any] = {}
    for name, raw_fn, rr_fn in (("needle", needle_raw, needle_rr), ("scan", scan_raw, scan_rr),
                                ("session_join", session_raw, session_rr)):
        _say(f"query {name}: raw")
        r = measure(spark, raw_fn, runs if raw_runs is None else raw_runs, warmup if raw_warmup is None else raw_warmup)
        _say(f"query {name}: readready")
        q = measure(spark, rr_fn, runs, warmup)
        same = _same_answer(name, r.pop("_result"), q.pop("_result"))
        out[name] = {
            "raw": r, "readready": q, "same_answer": same,
            "speedup": round(r["median_s"] / q["median_s"], 2) if q["median_s"] else None,
            "bytes_ratio": round(r["bytes_scanned"] / q["bytes_scanned"], 2) if q["bytes_scanned"] else None,
        }
    out["needle"]["principal"] = arn
    out["needle"]["dt"] = day
    # What touching the day's readready files costs before reading any column: their
    # tails and stripe footers (the floor of any query on that day)
    floor = measure(spark, lambda: [rr_ct().where(F.col("dt") == day).count()], 1, 0)
    out["needle"]["readready_floor_bytes"] = floor["bytes_scanned"]
    # files sit in a generation folder below the partition (dt=.../r-<id>/part-0.zlib.orc)
    out["needle"]["readready_files_on_day"] = len(glob.glob(f"{ct_rr}/*/*/*/dt={day}/**/*.orc", recursive=True))
    return out


def _same_answer(name: str, raw_rows: list, rr_rows: list) -> bool:
    if name == "needle":
        return sorted(r["eventid"] for r in raw_rows) == sorted(r["eventid"] for r in rr_rows)
    if name == "scan":
        return {r["eventname"]: r["count"] for r in raw_rows} == {r["eventname"]: r["count"] for r in rr_rows}
    return sorted((r["sessionid"], r["event_id"]) for r in raw_rows) == sorted(
        (r["sessionid"], r["event_id"]) for r in rr_rows)


# --------------------------------------------------------------------------- sizes


def _orc_files(root: Path) -> list[str]:
    return sorted(glob.glob(f"{root}/**/*.orc", recursive=True))


def _orc_bytes(root: Path) -> int:
    return sum(os.path.getsize(f) for f in _orc_files(root))


def _files_bytes(root: Path) -> tuple[int, int]:
    n = b = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            n += 1
            b += os.path.getsize(os.path.join(dirpath, name))
    return n, b


def column_bytes(table: Path) -> dict[str, Any]:
    """Each column's share of the readready bytes, exactly: its streams' lengths in every
    file's stripe footers (:mod:`loglake.orc_streams`), and how its stripes were encoded."""
    from loglake import orc_streams

    tally = orc_streams.OrcStreams()
    for f in _orc_files(table):
        orc_streams.read_streams(f, tally)
    total = tally.file_bytes or 1
    top = tally.by_column().most_common(10)
    return {"files": tally.files, "share": {k: round(v / total, 3) for k, v in top},
            "tail_share": round(tally.tail_bytes / total, 3),
            "encodings": {k: dict(tally.encodings.get(k, {})) for k, _ in top}}


# --------------------------------------------------------------------------- per-file profile


def per_file_profile(ct_files: list[str], sample: int = 200) -> dict[str, Any]:
    """Where one core's time goes in loglake's per-file reader (the Python side of the
    job, inside the Spark tasks), on a sample of the generated CloudTrail files."""
    from loglake import objects, transforms
    from loglake.config import config_from_dict
    from loglake.sources.cloudtrail import SOURCE as CLOUDTRAIL_SOURCE
    from loglake.sources.cloudtrail import process_cloudtrail

    step = max(1, len(ct_files) // sample)
    files = ct_files[::step][:sample]
    datas = [Path(f).read_bytes() for f in files]
    config = config_from_dict({})
    values = ("o-x", "111111111111", "us-east-1", "2024-01-01")

    def timed(fn) -> float:
        t0 = time.perf_counter()
        for i, d in enumerate(datas):
            fn(i, d)
        return time.perf_counter() - t0

    raws = [transforms.gunzip(d)[0] for d in datas]
    events = sum(len(transforms.loads(r)["Records"]) for r in raws)
    t_gunzip = timed(lambda i, d: transforms.gunzip(d))
    t_parse = timed(lambda i, d: transforms.loads(raws[i]))
    t_process = timed(lambda i, d: process_cloudtrail(d, files[i], config.filters, config.quality))
    t_convert = timed(lambda i, d: objects.convert_file(CLOUDTRAIL_SOURCE, "file://" + files[i], values, config))
    t_gzip = time.perf_counter()
    subprocess.run(["gzip", "-dc", *files], stdout=subprocess.DEVNULL, check=True)
    t_gzip = time.perf_counter() - t_gzip
    prof = cProfile.Profile()
    prof.enable()
    for f in files:
        objects.convert_file(CLOUDTRAIL_SOURCE, "file://" + f, values, config)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    total = sum(v[2] for v in stats.stats.values())  # tottime of everything
    top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:12]
    hot = [{"function": f"{Path(k[0]).name}:{k[1]}({k[2]})", "tottime_s": round(v[2], 4),
            "share": round(v[2] / total, 3) if total else None} for k, v in top]

    def us(t: float) -> float:
        return round(t / events * 1e6, 2)

    return {
        "files": len(files), "events": events,
        "us_per_event": {"gzip_dc": us(t_gzip), "gunzip_python": us(t_gunzip), "json_parse": us(t_parse),
                         "process_cloudtrail": us(t_process), "convert_file": us(t_convert)},
        "events_per_s_one_core": {"gzip_dc": round(events / t_gzip), "convert_file": round(events / t_convert)},
        "convert_file_hotspots": hot,
    }


# --------------------------------------------------------------------------- AddAPart


def _delivery_time(key: str) -> str:
    """Delivery time from a generated key (CloudTrail YYYYMMDDTHHMMZ, Firehose -YYYY-MM-DD-HH-MM-SS-)."""
    import re

    name = key.rsplit("/", 1)[-1]
    m = re.search(r"_(\d{8}T\d{4})Z_", name)
    if m:
        return m.group(1)
    m = re.search(r"-(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-\d{2}-", name)
    return "".join(m.groups()[:3]) + "T" + "".join(m.groups()[3:]) if m else "0"


def _notification(bucket: str, key: str, size: int, when: str) -> str:
    from urllib.parse import quote_plus

    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": when,
        "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key, safe="/"), "size": size}}}]})


# Messages per Lambda invocation: 10 (SQS's default), 100 (the stack's default BatchSize)
# and 1,000 (a larger BatchSize with a batching window; SQS allows up to 10,000).
BATCH_SIZES = (10, 100, 1000)


def addapart_bench(raw: Path, work: Path) -> dict[str, Any]:
    """Object events through AddAPart.process against a moto server: events/s and Glue
    calls, in SQS-sized batches of 10 (the brief) and 100 (the stack's default BatchSize)."""
    import boto3
    from botocore.config import Config as BotoConfig

    from loglake import addapart, catalog, localaws
    from loglake.config import config_from_dict

    objects = []
    for bucket, root in ((CT_BUCKET, raw / "cloudtrail"), (CW_BUCKET, raw / "cloudwatch")):
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = os.path.join(dirpath, name)
                key = os.path.relpath(path, root)
                objects.append((_delivery_time(key), bucket, key, os.path.getsize(path)))
    objects.sort()  # notifications arrive in delivery order
    bodies = [_notification(b, k, s, "2024-01-01T00:00:00.000Z") for _, b, k, s in objects]
    out: dict[str, Any] = {"objects": len(bodies)}
    with localaws.MotoServer(log_path=str(work / "moto.log")) as moto:
        for batch_size in BATCH_SIZES:
            database = f"loglake_bench_{batch_size}"
            config = config_from_dict({
                "sources": {"cloudtrail": {"bucket": CT_BUCKET}, "cloudwatch": {"bucket": CW_BUCKET, "prefix": "cwl/"}},
                "catalog": {"database": database}, "readready": {"location": f"file://{work}/unused"},
                "aws": {"endpoint_url": moto.endpoint, "region": "us-east-1"},
            })
            session = boto3.session.Session(**{k.lower(): v for k, v in localaws.FAKE_CREDENTIALS.items()
                                               if k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                        "AWS_SESSION_TOKEN")})
            glue = session.client("glue", endpoint_url=moto.endpoint, region_name="us-east-1",
                                  config=BotoConfig(retries={"max_attempts": 1}))
            catalog.ensure_database(glue, database)
            for tinput in catalog.table_inputs(config, f"file://{work}/unused",
                                               {"cloudtrail": f"s3://{CT_BUCKET}/AWSLogs/",
                                                "cloudwatch": f"s3://{CW_BUCKET}/cwl/"}):
                catalog.ensure_table(glue, database, tinput)
            calls: dict[str, int] = {}

            def count(model, _calls=calls, **_kw):
                _calls[model.name] = _calls.get(model.name, 0) + 1

            glue.meta.events.register("before-call.glue", count)
            app = addapart.AddAPart(config, glue=glue)
            passes = {}
            for label in ("new", "known"):
                calls.clear()
                totals = {"partitions_created": 0, "failed": 0, "objects": 0}
                t0 = time.perf_counter()
                for i in range(0, len(bodies), batch_size):
                    msgs = [addapart.Message(f"m{j}", bodies[j]) for j in range(i, min(i + batch_size, len(bodies)))]
                    res = app.process(msgs)
                    totals["partitions_created"] += res.created
                    totals["failed"] += res.failed
                    totals["objects"] += res.objects
                seconds = time.perf_counter() - t0
                batch_calls = calls.get("BatchCreatePartition", 0)
                passes[label] = {
                    **totals, "seconds": round(seconds, 3),
                    "events_per_s": round(len(bodies) / seconds, 1) if seconds else None,
                    "glue_calls": dict(calls), "glue_calls_total": sum(calls.values()),
                    "glue_calls_per_1000_files": round(1000 * sum(calls.values()) / len(bodies), 2),
                    "batch_create_per_100_new_partitions": (
                        round(100 * batch_calls / totals["partitions_created"], 2)
                        if totals["partitions_created"] else None),
                }
            passes["new"]["batch_create_floor"] = _batch_create_floor(objects, config, batch_size)
            floor = passes["new"]["batch_create_floor"]
            passes["new"]["floor_per_100_new_partitions"] = (
                round(100 * floor / passes["new"]["partitions_created"], 2)
                if passes["new"]["partitions_created"] else None)
            out[f"batch_{batch_size}"] = passes
    return out


def _batch_create_floor(objects: list[tuple], config, batch_size: int) -> int:
    """The fewest BatchCreatePartition calls any registrar could make on this stream in
    batches of ``batch_size``, registering only partitions whose data has arrived: per
    batch and table, one call per 100 partitions first seen in that batch."""
    from loglake import addapart, notifications

    seen: set[tuple[str, tuple]] = set()
    calls = 0
    for i in range(0, len(objects), batch_size):
        new: dict[str, int] = {}
        for _, bucket, key, _size in objects[i:i + batch_size]:
            source, result = addapart.classify(notifications.ObjectRef(bucket, key), config)
            if source is None or not result.ok:
                continue
            part = (source.name, result.partition.values)
            if part not in seen:
                seen.add(part)
                new[source.name] = new.get(source.name, 0) + 1
        calls += sum(-(-n // 100) for n in new.values())
    return calls


# --------------------------------------------------------------------------- scheduled runs

# One generated day delivered in slices (its 24 hours grouped into ``slices``, plus one
# slice after midnight), per scale: events, accounts, regions, slices. The large scale's
# day meets the issue's "at least 500k events"; the smaller ones keep their scale's size.
SCHEDULE: dict[str, dict[str, int]] = {
    "tiny": {"events": 1_000, "accounts": 1, "regions": 2, "slices": 2},
    "small": {"events": 50_000, "accounts": 5, "regions": 3, "slices": 24},
    "medium": {"events": 500_000, "accounts": 20, "regions": 4, "slices": 24},
    "large": {"events": 500_000, "accounts": 20, "regions": 4, "slices": 24},
}
LATE_SHARE = 0.005  # of the day's files: held back, delivered after midnight with the next day's first files
READER_PAUSE_S = 0.2  # between two partition reads of the reader process


def _stamp_seconds(key: str) -> float:
    """A raw CloudTrail key's delivery time (its ``_YYYYMMDDTHHMMZ_`` stamp), epoch seconds."""
    return dt.datetime.strptime(_delivery_time(key), "%Y%m%dT%H%M").replace(tzinfo=dt.UTC).timestamp()


def delivery_slices(ct_root: Path, day: str, slices: int, seed: int) -> list[list[tuple[str, float]]]:
    """The day's raw CloudTrail files (paths relative to ``ct_root``) in ``slices + 1``
    deliveries, each file with the mtime it is delivered with: slice k holds the files
    stamped in hours [24k/slices, 24(k+1)/slices) of ``day``; the last slice ("after
    midnight") the files stamped on the next day plus ``LATE_SHARE`` of the day's files
    held back (late deliveries of earlier hours). mtimes: the stamp (plus 30 s) for files
    on time, after midnight for late ones, so every slice is newer than the one before."""
    import random

    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()
    end = start + 86400
    keys = sorted(str(p.relative_to(ct_root)) for p in ct_root.rglob("*.json.gz"))
    out: list[list[tuple[str, float]]] = [[] for _ in range(slices + 1)]
    on_day = []
    for key in keys:
        t = _stamp_seconds(key)
        if t >= end:
            out[slices].append((key, t + 30))
        else:
            on_day.append((key, t))
    late = set(random.Random(seed).sample(range(len(on_day)), max(1, round(LATE_SHARE * len(on_day))))
               if on_day else ())
    late_at = end + 330  # after the next day's first files (stamped 00:00-00:04)
    for i, (key, t) in enumerate(on_day):
        if i in late:
            out[slices].append((key, late_at + len(out[slices])))
        else:
            out[min(slices - 1, int((t - start) // 3600) * slices // 24)].append((key, t + 30))
    return out


class LakeReader:
    """A reader that reads a readready table the documented way while runs publish and
    compaction swaps: per partition, ``_manifest.json``'s current files
    (``manifest.current_files``), their event ids with pyarrow.orc. Counts anomalies: a
    manifest that cannot be read, a named file missing or unreadable, an event id twice
    in one read, a partition with fewer rows than at its previous read, or without an
    event id it had. Sleeps ``pause`` between partition reads (a light load).

    It reads in a process of its own, as Athena or a bulk reader would: a thread of the
    benchmark's process would hold the interpreter lock the runs' driver needs (its 5 s
    of CPU over a medium day's runs were taken from their listing and publishing)."""

    def __init__(self, table: str, names: list[str], pause: float = READER_PAUSE_S):
        self.table, self.names, self.pause = table, names, pause
        self.reads = self.files_read = self.rows_read = self.passes = 0
        self.anomalies: dict[str, int] = {}
        self.samples: list[dict[str, str]] = []
        self.cpu_s = 0.0
        self._last: dict[str, tuple[int, frozenset[str]]] = {}  # partition -> rows, event ids at its last read
        self._process = None
        self._stop = None
        self._conn = None
        self._result = None

    def _anomaly(self, kind: str, path: str, detail: str) -> None:
        self.anomalies[kind] = self.anomalies.get(kind, 0) + 1
        if len(self.samples) < 20:
            self.samples.append({"kind": kind, "partition": path, "detail": detail[:300]})

    def read_partition(self, path: str) -> None:
        import pyarrow.orc as orc

        from loglake import manifest, storage

        part = storage.join(self.table, path)
        self.reads += 1
        try:
            files = manifest.current_files(part)
        except Exception as exc:  # noqa: BLE001 - any failure to read the manifest is what we count
            self._anomaly("manifest_unreadable", path, repr(exc))
            return
        ids: list[str] = []
        for uri in files:
            try:
                ids += orc.ORCFile(storage.local_path(uri)).read(columns=["eventid"]).column(0).to_pylist()
            except Exception as exc:  # noqa: BLE001 - a file the manifest names must be readable
                self._anomaly("file_missing_or_unreadable", path, f"{uri}: {exc!r}")
                return
        self.files_read += len(files)
        self.rows_read += len(ids)
        seen = frozenset(ids)
        if len(seen) != len(ids):
            self._anomaly("event_id_twice", path, f"{len(ids) - len(seen)} repeated of {len(ids)}")
        rows_before, before = self._last.get(path, (0, frozenset()))
        if len(ids) < rows_before:
            self._anomaly("rows_went_down", path, f"{rows_before} -> {len(ids)}")
        elif not before <= seen:
            self._anomaly("event_ids_lost", path, f"{len(before - seen)} of {len(before)}")
        self._last[path] = (len(ids), seen)

    def loop(self, stop) -> None:
        """Read partition after partition until ``stop`` (an Event) is set."""
        from loglake import manifest

        t0 = time.process_time()
        while not stop.is_set():
            try:
                paths = [tp.path for tp in manifest.partitions(self.table, self.names) if tp.has_manifest]
            except OSError:  # a file listed while a run removed it (staging): list again
                paths = []
            self.passes += 1
            if not paths:
                stop.wait(self.pause)
            for path in paths:
                if stop.is_set():
                    break
                self.read_partition(path)
                stop.wait(self.pause)
        self.cpu_s = time.process_time() - t0

    def __enter__(self) -> LakeReader:
        import multiprocessing

        # spawn, not fork: this process runs a JVM gateway and threads
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        parent, child = ctx.Pipe(duplex=False)
        self._process = ctx.Process(target=_read_lake, args=(self.table, self.names, self.pause, self._stop, child),
                                    name="bench-lake-reader", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        try:
            self._result = self._conn.recv() if self._conn.poll(120) else None
        except EOFError:  # the reader died: its figures are lost, which as_dict says
            self._result = None
        self._process.join(30)
        if self._result is None:  # counted as an anomaly: nothing says what it saw
            self._anomaly("reader_failed", "", f"the reader process ended with code {self._process.exitcode}")
            self._result = self.as_dict()

    def as_dict(self) -> dict[str, Any]:
        if self._result is not None:
            return self._result
        return {"reads": self.reads, "passes": self.passes, "files_read": self.files_read,
                "rows_read": self.rows_read, "anomalies": sum(self.anomalies.values()),
                "anomalies_by_kind": dict(self.anomalies), "anomaly_samples": self.samples,
                "cpu_s": round(self.cpu_s, 2), "pause_s": self.pause}


def _read_lake(table: str, names: list[str], pause: float, stop, conn) -> None:
    """The reader process: read until ``stop``, then send the figures."""
    reader = LakeReader(table, names, pause)
    reader.loop(stop)
    conn.send(reader.as_dict())
    conn.close()


def lake_event_ids(table: str, names: list[str]) -> list[str]:
    """Every event id of a readready table's current files (the manifests'), sorted."""
    import pyarrow.orc as orc

    from loglake import manifest, storage

    ids: list[str] = []
    for uri in manifest.table_files(table, names):
        ids += orc.ORCFile(storage.local_path(uri)).read(columns=["eventid"]).column(0).to_pylist()
    return sorted(ids)


def _ids_digest(ids: list[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode() + b"\n")
    return h.hexdigest()[:16]


def run_startup(work: Path) -> dict[str, Any]:
    """Wall time of one ``loglake run cloudtrail --scheduled`` process on an empty raw
    folder: Python imports, the JVM and Spark session start, an empty run, the exit."""
    root = work / "startup"
    shutil.rmtree(root, ignore_errors=True)
    (root / "raw").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "LOGLAKE_CONFIG"}
    cmd = [sys.executable, "-m", "loglake.cli", "run", "cloudtrail", "--scheduled", "--raw", str(root / "raw"),
           "--out", str(root / "lake")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}: {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    return {"seconds": round(wall, 2), "run_duration_s": summary.get("duration_s"), "status": summary.get("status"),
            "command": "loglake run cloudtrail --scheduled --raw EMPTY_FOLDER --out NEW_FOLDER"}


def _schedule_config(lake: str):
    from loglake.config import config_from_dict

    # production settings, with compaction off during the runs: the generated day is in
    # the past, so it is closed from its first hour on; it is compacted once, at the end
    return config_from_dict({"readready": {"location": lake}, "quality": {"expectations": True},
                             "compaction": {"max_partitions_per_run": 0}})


# Untimed scheduled runs before the measured ones (see _warm_scheduled).
WARMUP_RUNS = 30
WARMUP_RUN_FILES = 20


def _warm_scheduled(spark, source, ct_root: Path, delivered: list[tuple[str, float]], work: Path) -> None:
    """WARMUP_RUNS small scheduled runs (WARMUP_RUN_FILES of the day's files each, taken
    across the day) into a scratch lake, then its compaction: what the measured runs do,
    so that the JVM has compiled its code for a run's job before they start. With one
    20-file conversion as the only warm-up, the JVM's C2 compiler thread took 2.4-2.8 s
    of CPU during the 25 measured runs (on 2 cores, beside their Python tasks) and 0.5 s
    during the batch run after them; after 40 runs of 40 files, 0.64 s (measured with a
    probe of this part). With these runs the 25 runs took 27.1 s where they took 32.1 s
    (one `--only schedule` run each, the same code). A run in a process of its own pays
    that compilation every time: `run_startup_s` is what a fresh JVM costs."""
    from loglake import compact, planning

    wdel, whour = work / "warmup-delivered", work / "warmup-hourly"
    config = _schedule_config(str(whour))
    step = max(1, len(delivered) // (WARMUP_RUNS * WARMUP_RUN_FILES))
    chosen = delivered[::step][:WARMUP_RUNS * WARMUP_RUN_FILES]
    for k in range(0, len(chosen), WARMUP_RUN_FILES):
        _deliver(chosen[k:k + WARMUP_RUN_FILES], ct_root, wdel)
        _scheduled_run(spark, source, config, whour, wdel)
    paths = compact.select(source, config, str(whour), planning.Selection(), closed=True)
    compact.compact(spark, source, config, str(whour), paths)


def _deliver(files: list[tuple[str, float]], ct_root: Path, folder: Path) -> int:
    """Copy ``(key, mtime)`` files from ``ct_root`` into ``folder``, each with its
    delivery mtime; returns the bytes delivered."""
    n_bytes = 0
    for key, mtime in files:
        dest = folder / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ct_root / key, dest)
        os.utime(dest, (mtime, mtime))
        n_bytes += dest.stat().st_size
    return n_bytes


def _scheduled_run(spark, source, config, lake: Path, raw: Path) -> dict[str, Any]:
    """One scheduled run over the raw folder, as `loglake run --scheduled` makes it:
    the objects above the watermark that no manifest holds."""
    from loglake import planning, runner, state

    def plan_work():
        listed = planning.plan_from_listing(source, str(raw), config, planning.Selection(),
                                           state.read_watermark(str(lake), source.name))
        return runner.from_listing(source, config, str(lake), listed)

    return runner.run(spark, source, config, str(lake), plan_work, kind=runner.SCHEDULED, raw=str(raw), compact=True)


def schedule_bench(spark, gen: dict, raw: Path, work: Path, slices: int, seed: int,
                   warmup: bool = True) -> dict[str, Any]:
    """The generated day through scheduled runs, one per slice, in this process and Spark
    session, then one compaction of the day's partitions; and the same day in one batch
    run into another lake. A reader process reads the hourly lake meanwhile. ``warmup``:
    first convert a few files and make small scheduled runs, untimed (not needed when
    this session converted already)."""
    from loglake import compact, convert, manifest, planning, state, storage
    from loglake.sources import SOURCES

    source = SOURCES["cloudtrail"]
    names = list(source.schema.partition_names)
    day = gen["start_date"]
    delivered, hourly, batch = work / "delivered", work / "hourly-lake", work / "batch-lake"
    for p in (delivered, hourly, batch):
        shutil.rmtree(p, ignore_errors=True)
    delivered.mkdir(parents=True)
    config = _schedule_config(str(hourly))
    table = config.table(source.name, "readready")
    parts = delivery_slices(raw / "cloudtrail", day, slices, seed)
    # Untimed: a conversion of a few of the day's files into a scratch lake, so that
    # neither side pays this session's first conversion (Python workers, the quality
    # gate's imports and context, code generation), then scheduled runs (_warm_scheduled).
    t0 = time.perf_counter()
    for p in ("warmup-lake", "warmup-delivered", "warmup-hourly"):
        shutil.rmtree(work / p, ignore_errors=True)
    if warmup:
        warm = planning.plan_from_listing(source, str(raw / "cloudtrail"), config, planning.Selection())
        warm.files = warm.files[:20]
        convert.convert(spark, source, _lake_config(str(work / "warmup-lake")), warm, str(work / "warmup-lake"))
        _warm_scheduled(spark, source, raw / "cloudtrail", [kv for part in parts for kv in part], work)
    warmup_s = time.perf_counter() - t0 if warmup else None
    raw_uri = str(delivered)
    runs: list[dict[str, Any]] = []
    delivered_files = delivered_bytes = 0
    run_phases = PhaseTimer(_RUN_PHASES)
    reader = LakeReader(str(hourly / table), names)
    with reader:
        for k, files in enumerate(parts):
            n_bytes = _deliver(files, raw / "cloudtrail", delivered)
            delivered_files += len(files)
            delivered_bytes += n_bytes
            t0 = time.perf_counter()
            with run_phases:
                summary = _scheduled_run(spark, source, config, hourly, delivered)
            seconds = time.perf_counter() - t0
            sched = summary.get("scheduled") or {}
            runs.append({
                "slice": k if k < slices else "after midnight", "files_delivered": len(files),
                "bytes_delivered": n_bytes, "seconds": round(seconds, 3), "status": summary.get("status"),
                "files_read": summary.get("files_read"), "raw_bytes_read": summary.get("raw_bytes_read"),
                "records_read": summary.get("records_read"), "written": summary.get("written"),
                "quarantined": (summary.get("quarantined") or {}).get("total"),
                "duplicates": summary.get("duplicates"), "partitions_written": summary.get("partitions_written"),
                "objects_already_converted": sched.get("objects_already_converted"),
                "compaction": summary.get("compaction"),
            })
            _say(f"scheduled run {k + 1}/{len(parts)}: {len(files)} files delivered, {runs[-1]['files_read']} read, "
                 f"{runs[-1]['written']} written, {seconds:.1f} s ({summary.get('status')})")
            if summary.get("status") != "published":
                raise RuntimeError(f"scheduled run {k + 1} did not publish: {summary}")
        runs_s = sum(r["seconds"] for r in runs)
        paths = compact.select(source, config, str(hourly), planning.Selection(), closed=True)
        t0 = time.perf_counter()
        with state.run_lock(str(hourly), source.name, "bench-compaction", config.scheduled.lock_ttl_seconds) as lock:
            compacted = compact.compact(spark, source, config, str(hourly), paths, fence=lock.fence)
        compaction_s = time.perf_counter() - t0
        _say(f"compaction: {compacted.partitions_compacted} partitions, {compacted.files_before} files -> "
             f"{compacted.files_after}, {compaction_s:.1f} s")
    hourly_reader = reader.as_dict()
    files_per_partition = [len((manifest.load(storage.join(str(hourly / table), p)) or manifest.Manifest("")).files)
                           for p in paths]

    batch_config = _lake_config(str(batch))
    batch_phases = PhaseTimer(_RUN_PHASES)
    t0 = time.perf_counter()
    plan = planning.plan_from_listing(source, raw_uri, batch_config, planning.Selection())
    plan_s = time.perf_counter() - t0
    with batch_phases:
        batch_summary = convert.convert(spark, source, batch_config, plan, str(batch))
    batch_s = time.perf_counter() - t0
    _say(f"batch run: {len(plan.files)} files, {batch_summary['written']} written, {batch_s:.1f} s")

    hourly_ids = lake_event_ids(str(hourly / table), names)
    batch_ids = lake_event_ids(str(batch / table), names)
    events = {
        "generated": gen["cloudtrail"]["events"],
        "hourly": {"rows": len(hourly_ids), "distinct": len(set(hourly_ids)), "sha256_16": _ids_digest(hourly_ids)},
        "batch": {"rows": len(batch_ids), "distinct": len(set(batch_ids)), "sha256_16": _ids_digest(batch_ids)},
        "same": hourly_ids == batch_ids,
    }
    raw_read = sum(r["raw_bytes_read"] or 0 for r in runs)
    day_end = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() + 86400
    late = sum(1 for key, _ in parts[-1] if _stamp_seconds(key) < day_end)
    return {
        "day": day, "slices": len(parts), "events": gen["cloudtrail"]["events"],
        "accounts": len(gen["accounts"]), "regions": len(gen["regions"]),
        "delivered_files": delivered_files, "delivered_bytes": delivered_bytes,
        "after_midnight_files": len(parts[-1]) - late, "late_files": late, "raw_bytes_read": raw_read,
        "files_read": sum(r["files_read"] or 0 for r in runs),
        "read_amplification": round(raw_read / delivered_bytes, 4) if delivered_bytes else None,
        "runs": runs, "runs_s": round(runs_s, 2),
        "run_median_s": round(statistics.median(r["seconds"] for r in runs), 2),
        "compaction": {**compacted.as_dict(), "seconds": round(compaction_s, 2), "partitions_selected": len(paths)},
        "hourly_s": round(runs_s + compaction_s, 2),
        "batch": {"seconds": round(batch_s, 2), "plan_seconds": round(plan_s, 2), "files": len(plan.files),
                  "status": batch_summary["status"],
                  "records_read": batch_summary["records_read"], "written": batch_summary["written"],
                  "raw_bytes_read": batch_summary.get("raw_bytes_read"),
                  "phases_s": batch_phases.as_dict()},
        "warmup_s": round(warmup_s, 2) if warmup_s is not None else None,
        **({"warmup_runs": WARMUP_RUNS, "warmup_run_files": WARMUP_RUN_FILES} if warmup else {}),
        "runs_phases_s": run_phases.as_dict(),
        "per_run_overhead_s": round((runs_s - batch_s) / len(runs), 2),
        "files_per_closed_partition": {
            "partitions": len(files_per_partition),
            "mean": round(sum(files_per_partition) / len(files_per_partition), 3) if files_per_partition else None,
            "max": max(files_per_partition, default=None)},
        "reader": hourly_reader,
        "event_ids": events,
    }


# --------------------------------------------------------------------------- report


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _met(key: str, value: Any) -> bool | None:
    if value is None or key not in TARGETS:
        return None
    target, op, _ = TARGETS[key]
    return {">=": value >= target, ">": value > target, "<=": value <= target, "==": value == target}[op]


def _stored(out: Path, scale: str) -> dict | None:
    f = out / f"results-{scale}.json"
    return json.loads(f.read_text()) if f.exists() else None


def build_results(scale: str, gen: dict, ing: dict, gz: dict, naive: dict | None, sizes: dict, q: dict, aap: dict,
                  prof: dict, machine: dict, timings: dict, sched: dict | None = None, *, peer: dict | None = None,
                  limit: dict | None = None) -> dict[str, Any]:
    cores = ing["cores"]
    ct = ing["cloudtrail"]
    peak = ing["memory"]["peak_total_mb"]
    ingest_eps_core = ct["records_read"] / ct["seconds"] / cores if ct["seconds"] else None
    new10 = aap["batch_10"]["new"]
    res: dict[str, Any] = {
        "scale": scale,
        "events": gen["cloudtrail"]["events"],
        "size_ratio_cloudtrail": _ratio(sizes["cloudtrail"]["raw_bytes"], sizes["cloudtrail"]["readready_bytes"]),
        "size_ratio_cloudwatch": _ratio(sizes["cloudwatch"]["raw_bytes"], sizes["cloudwatch"]["readready_bytes"]),
        "needle_speedup": q["needle"]["speedup"],
        "needle_bytes_ratio": q["needle"]["bytes_ratio"],
        "scan_speedup": q["scan"]["speedup"],
        "session_join_speedup": q["session_join"]["speedup"],
        "ingest_events_per_s_per_core": round(ingest_eps_core, 1) if ingest_eps_core else None,
        # same events on both sides: the ratio of events/s is the ratio of seconds
        "ingest_vs_strong_peer": _ratio(peer["seconds"], ct["seconds"]) if peer else None,
        "strong_peer_size_ratio": _ratio(sizes["cloudtrail"]["raw_bytes"], peer["bytes"]) if peer else None,
        "ingest_vs_limit": _ratio(limit["seconds"]["total"], ct["seconds"]) if limit else None,
        "limit_breakdown_s": limit["seconds"] if limit else None,
        "ingest_vs_naive_peer": _ratio(naive["seconds"], ct["seconds"]) if naive else None,
        "peak_rss_mb": peak,
        "peak_rss_vs_small": None,  # against the stored small run, when the reports are written
        "addapart_events_per_s": new10["events_per_s"],
        "glue_calls_per_1000_files": new10["glue_calls_per_1000_files"],
    }
    res["glue_calls_per_100_new_partitions"] = new10["batch_create_per_100_new_partitions"]
    res["glue_calls_known_partitions"] = aap["batch_10"]["known"]["glue_calls_total"]
    if sched is not None:
        res.update(_schedule_keys(sched))
    res["targets"] = _targets(res)
    res["details"] = {
        "machine": machine, "timings_s": timings, "cores": cores,
        "generate": {k: v for k, v in gen.items() if k != "session_ids"},
        "ingest": ing, "gzip_bound": gz, "naive_peer": naive, "strong_peer": peer, "limit": limit, "sizes": sizes,
        "queries": q, "addapart": aap, "per_file_profile": prof,
    }
    if sched is not None:
        res["details"]["schedule"] = sched
    return res


def _schedule_keys(sched: dict) -> dict[str, Any]:
    return {
        "hourly_read_amplification": sched["read_amplification"],
        "hourly_vs_batch_time": _ratio(sched["hourly_s"], sched["batch"]["seconds"]),
        "run_startup_s": sched["startup"]["seconds"],
        "files_per_closed_partition": sched["files_per_closed_partition"]["mean"],
        "reader_anomalies": sched["reader"]["anomalies"],
        "hourly_same_events_as_batch": sched["event_ids"]["same"],
    }


def _targets(res: dict) -> dict[str, dict]:
    return {k: {"target": f"{op} {round(t, 3)}", "measured": res.get(k), "met": _met(k, res.get(k)),
                "what": what} for k, (t, op, what) in TARGETS.items()}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return str(v)


def _mb(b: int) -> str:
    return f"{b / 1024 / 1024:,.1f} MiB"


def _run_label(res: dict) -> str:
    m = res.get("details", {}).get("machine", {})
    return f"{str(m.get('date', '?'))[:10]}, `{m.get('commit', '?')}`"


def render_markdown(res: dict, previous: dict | None, other_scale: dict | None) -> str:
    d = res["details"]
    m = d["machine"]
    gen = d["generate"]
    lines = [
        f"# loglake benchmark: `{res['scale']}` scale",
        "",
        f"Run {m.get('date')} at commit `{m.get('commit')}`, all figures measured in this one run on the same data.",
        f"Machine: {m.get('nproc')} cores ({m.get('cpu', '?')}), {m.get('ram_gb')} GB RAM, {m.get('platform')}; "
        f"Python {m['python']}, {m.get('java')}, PySpark {m['pyspark']} (local[*] = {d['cores']} cores), "
        f"pyarrow {m['pyarrow']}. Load average at start {m.get('loadavg_at_start')} "
        "(the machine is shared: timings carry that noise).",
        "",
        f"Data: {gen['cloudtrail']['events']:,} CloudTrail events in {gen['cloudtrail']['files']:,} files "
        f"({_mb(gen['cloudtrail']['bytes'])} gzip; {gen['accounts'].__len__()} accounts x {len(gen['regions'])} "
        f"regions x {gen['days']} days; {gen['cloudtrail']['events_per_file']} events per file, file size "
        f"p50/p90/max {gen['cloudtrail']['file_bytes']['p50']:,}/{gen['cloudtrail']['file_bytes']['p90']:,}/"
        f"{gen['cloudtrail']['file_bytes']['max']:,} bytes), {gen['sessions']} Session Manager sessions, "
        f"{gen['cloudwatch']['log_events']:,} CloudWatch log events in {gen['cloudwatch']['files']:,} Firehose "
        f"objects ({_mb(gen['cloudwatch']['bytes'])}). Generated in {gen['seconds']} s.",
        f"Gzip ratio (uncompressed/compressed) of the generated CloudTrail files "
        f"**{gen['gzip_ratio']['generated_cloudtrail']}** vs the real sample files "
        f"{gen['gzip_ratio']['real']['reference']} (stratus + elastic files; stratus alone "
        f"{gen['gzip_ratio']['real']['stratus_files']}; the derived one-file concatenations "
        f"{gen['gzip_ratio']['real']['stratus_stored']} / {gen['gzip_ratio']['real']['elastic_stored']}): "
        f"deviation {gen['gzip_ratio']['deviation']:.0%}, "
        f"{'within' if gen['gzip_ratio']['within_25pct'] else '**outside**'} 25 %.",
        "",
        "## Targets",
        "",
    ]
    # extra columns: the same keys from an earlier run at this scale (before/after) and
    # from the other scale's latest run (what changes with input size)
    extra = [(f"previous run ({_run_label(previous)})", previous)] if previous is not None else []
    if other_scale is not None:
        extra.append((f"`{other_scale['scale']}` scale ({_run_label(other_scale)})", other_scale))
    head = "| figure | target | measured | met |" + "".join(f" {label} |" for label, _ in extra)
    lines += [head, "|---|---|---|---|" + "---|" * len(extra)]
    for k, v in res["targets"].items():
        lines.append(f"| {v['what']} (`{k}`) | {v['target']} | {_fmt(v['measured'])} | {_fmt(v['met'])} |"
                     + "".join(f" {_fmt(r.get(k))} |" for _, r in extra))
    lines += ["", "## All figures", "", "| key | value |" + "".join(f" {label} |" for label, _ in extra),
              "|---|---|" + "---|" * len(extra)]
    for k in REQUIRED_KEYS:
        lines.append(f"| `{k}` | {_fmt(res.get(k))} |" + "".join(f" {_fmt(r.get(k))} |" for _, r in extra))
    if other_scale is not None:
        lines += ["", f"The `{other_scale['scale']}` scale's own report, with its before/after columns: "
                      f"`RESULTS-{other_scale['scale']}.md`."]
    s = d["sizes"]
    lines += ["", "## 1. Size", "", "| source | raw gzip | readready ORC/ZLIB | ratio | rows |",
              "|---|---|---|---|---|"]
    for src in ("cloudtrail", "cloudwatch"):
        lines.append(f"| {src} | {_mb(s[src]['raw_bytes'])} | {_mb(s[src]['readready_bytes'])} | "
                     f"{_fmt(res['size_ratio_' + src])} | {s[src]['readready_rows']:,} |")
    for label, key in (("strong peer", "strong_peer"), ("naive peer", "naive_peer")):
        if d.get(key):
            lines.append(f"| {label} (CloudTrail) | | {_mb(d[key]['bytes'])} | "
                         f"{_fmt(_ratio(s['cloudtrail']['raw_bytes'], d[key]['bytes']))} | {d[key]['rows']:,} |")
    for src in ("cloudtrail", "cloudwatch"):
        share = s[src]["columns"]["share"]
        lines.append(f"\nLargest {src} readready columns (share of the bytes): "
                     + ", ".join(f"`{k}` {v:.0%}" for k, v in list(share.items())[:6]) + ".")
    q = d["queries"]
    q.setdefault("runs", {"readready": [1, 3], "raw": [1, 3]})
    lines += ["", f"## 2. Queries (Spark; readready: median of {q['runs']['readready'][1]} runs after "
                  f"{q['runs']['readready'][0]} warm-up; raw: {q['runs']['raw'][1]} after {q['runs']['raw'][0]})", "",
              f"Needle: `{q['needle']['principal']}` on dt={q['needle']['dt']}.", "",
              "| query | raw s | readready s | speedup | raw bytes scanned | readready bytes scanned | bytes ratio "
              "| rows | same answer |", "|---|---|---|---|---|---|---|---|---|"]
    for name in ("needle", "scan", "session_join"):
        x = q[name]
        lines.append(f"| {name} | {x['raw']['median_s']} | {x['readready']['median_s']} | {_fmt(x['speedup'])} | "
                     f"{_mb(x['raw']['bytes_scanned'])} | {_mb(x['readready']['bytes_scanned'])} | "
                     f"{_fmt(x['bytes_ratio'])} | {x['readready']['rows']:,} | {_fmt(x['same_answer'])} |")
    lines += ["", f"Opening the {q['needle']['readready_files_on_day']} readready files of dt={q['needle']['dt']} "
                  f"without reading a column (`count()`) reads {_mb(q['needle']['readready_floor_bytes'])}: the floor "
                  "of any readready query on that day."]
    ing, gz = d["ingest"], d["gzip_bound"]
    ct, cw = ing["cloudtrail"], ing["cloudwatch"]
    eps_core = res["ingest_events_per_s_per_core"]
    lines += ["", "## 3. Ingest (CloudTrail)", "",
              "| job | seconds | events/s | events/s per core |", "|---|---|---|---|",
              f"| loglake (plan {ct['plan_seconds']} s + convert, quality gate on) | {ct['seconds']} | "
              f"{_fmt(ct['records_read'] / ct['seconds'])} | {_fmt(eps_core)} |"]
    for label, key in (("strong peer (`bench/strong_peer.py`): declared schema, multi-line JSON reader, dedup, "
                        "sort, bloom filters, ORC/ZLIB; no checks", "strong_peer"),
                       ("naive peer: spark.read.json, explode, flatten, write ORC", "naive_peer")):
        if d.get(key):
            sec = d[key]["seconds"]
            lines.append(f"| {label} | {sec} | {_fmt(ct['records_read'] / sec)} | "
                         f"{_fmt(ct['records_read'] / sec / d['cores'])} |")
    lines.append(f"| `gzip -dc` of the same files (1 core) | {gz['cloudtrail']['seconds']} | "
                 f"{_fmt(gz['cloudtrail']['events_per_s'])} | {_fmt(gz['cloudtrail']['events_per_s'])} |")
    lim = d.get("limit")
    if lim:
        sec = lim["seconds"]
        lines += ["", f"Measured limit (`limit_breakdown_s`, `bench/README.md`): each unavoidable step alone on the "
                      f"same files, {lim['workers']} processes: decompress {sec['decompress']} s, parse JSON "
                      f"{sec['parse_json']} s, encode ORC/ZLIB from built columns {sec['encode_orc']} s; "
                      f"sum **{sec['total']} s**, {_fmt(res.get('ingest_vs_limit'))} of loglake's time "
                      "(`ingest_vs_limit`)."]
    lines += ["", f"CloudWatch job: {cw['records_read']:,} log events ({cw['written']:,} written, "
              f"{cw['filtered']:,} filtered out by log group, {cw['control_messages']} control messages) in "
              f"{cw['seconds']} s. Runs: CloudTrail {ct['status']} ({ct['written']:,} written, quality "
              f"{ct['quality_evaluated']} expectations), CloudWatch {cw['status']}."]
    pf = d["per_file_profile"]
    lines += ["", f"Per-file reader, one core, {pf['files']} files / {pf['events']:,} events "
                  "(µs per event):", "",
              "| gzip -dc | gunzip (Python zlib) | JSON parse | process_cloudtrail (all checks, flatten) "
              "| convert_file (+ Arrow batch) |", "|---|---|---|---|---|",
              "| " + " | ".join(str(pf["us_per_event"][k]) for k in
                                ("gzip_dc", "gunzip_python", "json_parse", "process_cloudtrail", "convert_file"))
              + " |", "", "Hottest functions in convert_file (own time):", "",
              "| function | s | share |", "|---|---|---|"]
    for h in pf["convert_file_hotspots"][:8]:
        lines.append(f"| `{h['function']}` | {h['tottime_s']} | {h['share']:.0%} |")
    lines += ["", "Where the CloudTrail job's wall time goes (inside these driver calls, timed, not profiled; "
                  "indented lines are inside `_stage`, and may overlap):", "", "| phase | seconds |", "|---|---|"]
    for label, sec in ct.get("phases_s", {}).items():
        lines.append(f"| {label.replace('  ', '&nbsp;&nbsp;')} | {sec} |")
    mem = ing["memory"]
    lines += ["", "## 4. Memory of the ingest job", "",
              f"Peak of the summed RSS of the {mem['mode']}: **{mem['peak_total_mb']} MiB**; summed PSS (shared "
              f"pages counted once) {mem.get('peak_pss_mb')} MiB. Parts (each its own peak): JVM "
              f"{mem.get('peak_jvm_mb')} MiB, Python driver {mem.get('peak_driver_mb')} MiB, Python workers "
              f"{mem.get('peak_workers_mb')} MiB (largest {mem.get('peak_largest_worker_mb')} MiB, up to "
              f"{mem.get('python_processes_max')} processes). Sampled every 0.1 s from /proc."]
    sm = d.get("peak_rss_small_run")
    if sm:
        lines.append(f"`peak_rss_vs_small` {_fmt(res.get('peak_rss_vs_small'))}: against the stored `small` run's "
                     f"{sm['peak_rss_mb']} MiB ({str(sm.get('date'))[:10]}, `{sm.get('commit')}`).")
    lm = d.get("peak_rss_large_run")
    if lm:
        lines.append(f"`peak_rss_large_vs_small` {_fmt(res.get('peak_rss_large_vs_small'))}: the large ingest alone "
                     f"(`--only memory --scale large`, the median of {lm['runs']} runs alternated with the small "
                     f"ingest's): {lm['peak_rss_mb']} MiB against {lm['small_peak_rss_mb']} MiB "
                     f"({str(lm.get('date'))[:10]}, `{lm.get('commit')}`).")
    peer = d.get("strong_peer")
    if peer and peer.get("memory"):
        lines.append(f"The strong peer's process tree, the same way: {peer['memory']['peak_total_mb']} MiB "
                     f"(JVM {peer['memory'].get('peak_jvm_mb')} MiB).")
    if other_scale:
        om = other_scale["details"]["ingest"]["memory"]
        lines.append(f"At the `{other_scale['scale']}` scale ({other_scale['events']:,} events, "
                     f"{other_scale['details']['machine'].get('date')}): {om['peak_total_mb']} MiB "
                     f"(PSS {om.get('peak_pss_mb')}, JVM {om.get('peak_jvm_mb')}, driver {om.get('peak_driver_mb')}, "
                     f"workers {om.get('peak_workers_mb')}).")
    a = d["addapart"]
    lines += ["", "## 5. AddAPart (moto server)", "",
              f"{a['objects']:,} S3 object notifications (one object per message, in delivery order).", "",
              "| batch | pass | events/s | Glue calls | per 1,000 files | BatchCreatePartition per 100 new partitions "
              "| floor per 100 | partitions created |", "|---|---|---|---|---|---|---|---|"]
    for b in [k for k in a if k.startswith("batch_")]:
        for p in ("new", "known"):
            x = a[b][p]
            lines.append(f"| {b.split('_')[1]} messages | {p} | {_fmt(x['events_per_s'])} | {x['glue_calls']} | "
                         f"{x['glue_calls_per_1000_files']} | {_fmt(x['batch_create_per_100_new_partitions'])} | "
                         f"{_fmt(x.get('floor_per_100_new_partitions'))} | {x['partitions_created']} |")
    lines += ["", "The floor is the fewest BatchCreatePartition calls any registrar could make on this stream "
              "in these batches while registering only partitions whose data has arrived: one call per table "
              "per batch that brings a new partition (up to 100 each). CloudWatch's hourly partitions arrive "
              "one at a time, so each new hour costs a call whatever the batching."]
    if d.get("schedule"):
        lines += _schedule_markdown(res, d["schedule"])
    t = d["timings_s"]
    lines += ["", "## Run time", "", " | ".join(f"{k} {v} s" for k, v in t.items()), "",
              "Methods and caveats: `bench/README.md`.", ""]
    return "\n".join(lines)


def _schedule_markdown(res: dict, s: dict) -> list[str]:
    c, b, rd, ev = s["compaction"], s["batch"], s["reader"], s["event_ids"]
    fpp, st = s["files_per_closed_partition"], s["startup"]
    n = len(s["runs"])
    alone = s.get("measured_alone")
    when = ([f"Measured on its own (`--only schedule`, {alone['machine']['date']}, commit "
             f"{alone['machine'].get('commit') or '-'}), after the other parts of this report.", ""]
            if alone else [])
    lines = ["", "## 6. Scheduled runs: one day, hourly", "", *when,
             f"One generated day, {s['day']}: {s['events']:,} CloudTrail events ({s['accounts']} account(s) x "
             f"{s['regions']} region(s)), {s['delivered_files']:,} files, {_mb(s['delivered_bytes'])}. Delivered into "
             f"a raw folder in {n} slices: {n - 1} by the hour of the files' delivery stamps"
             + ("" if n == 25 else f" ({24 // (n - 1)} hours each)")
             + f", then after midnight the next day's first files ({s['after_midnight_files']}) and "
             f"{s['late_files']} late files of earlier hours. After each slice, one scheduled run "
             "(`runner.run`, kind scheduled, listing mode: objects above the watermark that no manifest holds; "
             "quality gate on; compaction off), all in this process and Spark session; then one compaction of "
             f"the {c['partitions_selected']} partitions the runs wrote (all closed: the day and the next day's "
             "first files are in the past). The batch run converts the same day in one "
             "`convert.convert` into another lake, in the same session. "
             + (("Before both, untimed, a conversion of 20 of the day's files into a scratch lake, then "
                 f"{s['warmup_runs']} scheduled runs of {s['warmup_run_files']} files and a compaction into another "
                 f"({s['warmup_s']} s), warm the session up (the JVM compiles a run's code paths)."
                 if s.get("warmup_runs") else
                 f"Before both, an untimed warm-up ({s['warmup_s']} s; see bench/README.md).")
                if s.get("warmup_s") is not None else
                "The session had converted before (the ingest ran in this process), so no warm-up."), "",
             "| work | seconds |", "|---|---|",
             f"| {n} scheduled runs (median {s['run_median_s']} s) | {s['runs_s']} |",
             f"| compaction: {c['partitions_compacted']} partitions, {c['files_before']:,} files -> "
             f"{c['files_after']:,} | {c['seconds']} |",
             f"| **hourly total** | **{s['hourly_s']}** |",
             f"| one batch run of the day (plan {b.get('plan_seconds', '-')} s + convert) | {b['seconds']} |",
             f"| ratio (`hourly_vs_batch_time`) | **{_fmt(res.get('hourly_vs_batch_time'))}** |", "",
             f"Each run costs about {s['per_run_overhead_s']} s more than its share of the batch run "
             f"((runs - batch) / {n}). One `loglake run --scheduled` process on an empty folder takes "
             f"**{st['seconds']} s** (`run_startup_s`: imports, JVM and Spark start, the empty run "
             f"{st.get('run_duration_s')} s, exit): a run in its own process pays it on top.", "",
             "Where the time goes (wall time inside these driver calls, timed, not profiled; indented lines are "
             "inside `_stage`):", "",
             f"| phase | {n} runs | batch |", "|---|---|---|"]
    labels = list(dict.fromkeys([*s["runs_phases_s"], *b["phases_s"]]))
    for label in labels:
        lines.append(f"| {label.replace('  ', '&nbsp;&nbsp;')} | {s['runs_phases_s'].get(label, '-')} | "
                     f"{b['phases_s'].get(label, '-')} |")
    lines += ["", f"Read amplification: the runs read {s['files_read']:,} raw objects, {_mb(s['raw_bytes_read'])} "
                  f"(`raw_bytes_read`), of {s['delivered_files']:,} delivered, {_mb(s['delivered_bytes'])}: "
                  f"**{_fmt(res.get('hourly_read_amplification'))}**. After compaction: {fpp['mean']} files per closed "
                  f"partition (max {fpp['max']}, {fpp['partitions']} partitions).", "",
              "Reader: a process of its own reads the hourly lake's partitions one after another while the "
              "runs publish and the compaction swaps, as `README.md` tells a bulk reader to (the manifest's current "
              f"files, with pyarrow.orc, event ids only; {rd['pause_s']} s pause between partitions): "
              f"{rd['reads']:,} partition reads ({rd['files_read']:,} files, {rd['rows_read']:,} rows, "
              f"{rd['cpu_s']} s CPU), **{rd['anomalies']} anomalies**"
              + (f": {rd['anomalies_by_kind']}, e.g. {rd['anomaly_samples'][:3]}" if rd["anomalies"] else "")
              + " (an anomaly: a manifest or a file it names unreadable or missing, an event id twice in one "
              "read, a partition with fewer rows or without an event id it had at its previous read).", "",
              f"Same events: the hourly lake holds {ev['hourly']['rows']:,} rows ({ev['hourly']['distinct']:,} "
              f"distinct event ids, sha256 `{ev['hourly']['sha256_16']}`), the batch lake {ev['batch']['rows']:,} "
              f"({ev['batch']['distinct']:,}, `{ev['batch']['sha256_16']}`), of {ev['generated']:,} generated: "
              f"**{'the same' if ev['same'] else 'DIFFERENT'}**.", "",
              "| slice | files delivered | files read | MiB read | rows written | partitions written | seconds |",
              "|---|---|---|---|---|---|---|"]
    for r in s["runs"]:
        lines.append(f"| {r['slice']} | {r['files_delivered']:,} | {_fmt(r['files_read'])} | "
                     f"{(r['raw_bytes_read'] or 0) / 1024 / 1024:,.2f} | {_fmt(r['written'])} | "
                     f"{_fmt(r['partitions_written'])} | {r['seconds']:.1f} |")
    return lines


# --------------------------------------------------------------------------- main


def _generate(raw: Path, stats_file: Path, gen_args: dict, reuse: bool, workers: int | None) -> dict:
    """``generate.generate`` into ``raw``, or the data already there when ``reuse`` and it
    was generated with the same arguments."""
    from loglake import generate

    if reuse and stats_file.exists() and json.loads(stats_file.read_text()).get("_args") == gen_args:
        gen = json.loads(stats_file.read_text())
        _say(f"reusing the generated data in {raw}")
    else:
        shutil.rmtree(raw, ignore_errors=True)
        _say(f"generating {gen_args['events']:,} events ({gen_args['accounts']} accounts, {gen_args['regions']} "
             f"regions, {gen_args['days']} days) into {raw}")
        gen = generate.generate(raw, workers=workers, **gen_args)
        stats_file.parent.mkdir(parents=True, exist_ok=True)
        stats_file.write_text(json.dumps({**gen, "_args": gen_args}))
    gen.pop("_args", None)
    gen.pop("session_ids", None)
    return gen


def run_schedule(spark, scale: str, work: Path, seed: int, reuse: bool, warmup: bool = True) -> dict[str, Any]:
    """The schedule part: generate its day, run it hourly and in one batch, and time one
    ``loglake run`` process's start-up."""
    sp = SCHEDULE[scale]
    gen_args = {"events": sp["events"], "accounts": sp["accounts"], "regions": sp["regions"], "days": 1,
                "seed": seed}
    t0 = time.perf_counter()
    gen = _generate(work / "raw", work / "generate.json", gen_args, reuse, workers=1)
    generate_s = time.perf_counter() - t0
    out = schedule_bench(spark, gen, work / "raw", work, sp["slices"], seed, warmup=warmup)
    out["generate_s"] = round(generate_s, 1)
    _say("start-up of one loglake run process")
    out["startup"] = run_startup(work)
    return out


def _gen_args(params: dict[str, Any], seed: int) -> dict[str, Any]:
    """``generate.generate``'s arguments for a scale's data."""
    return {k: params[k] for k in ("events", "accounts", "regions", "days")} | {"seed": seed}


def _require_published(ing: dict[str, Any]) -> None:
    for name in ("cloudtrail", "cloudwatch"):
        if ing[name]["status"] != "published":
            raise RuntimeError(f"the {name} job did not publish: {ing[name]}")


def run(scale: str, work: Path, out: Path, *, events: int | None = None, seed: int | None = None,
        runs: int | None = None,
        warmup: int | None = None, raw_runs: int | None = None, raw_warmup: int | None = None,
        ingest_mode: str = "subprocess", reuse: bool = False, with_naive_peer: bool | None = None,
        spark=None) -> dict:
    params = dict(SCALES[scale])
    if events:
        params["events"] = events
    if with_naive_peer is not None:
        params["naive_peer"] = with_naive_peer
    runs = runs if runs is not None else params["runs"]
    warmup = warmup if warmup is not None else params["warmup"]
    raw_runs = raw_runs if raw_runs is not None else params.get("raw_runs")
    raw_warmup = raw_warmup if raw_warmup is not None else params.get("raw_warmup")
    seed = seed if seed is not None else params.get("seed", 1)
    # the schedule part generates its day late in the run, even when --reuse skips the
    # first generation: a missing samples folder fails now, not 20 minutes in
    sample_data.samples_dir()
    work = work.resolve()
    out = out.resolve()
    raw, lake, naive_dir, peer_dir = work / "raw", work / "lake", work / "naive", work / "strong-peer"
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    machine = _machine_now()
    timings: dict[str, float] = {}
    started = time.perf_counter()

    t0 = time.perf_counter()
    gen = _generate(raw, work / "generate.json", _gen_args(params, seed), reuse, workers=None if scale != "tiny" else 1)
    timings["generate"] = round(time.perf_counter() - t0, 1)

    if ingest_mode == "in-process" and spark is None:
        from loglake.runtime import local_spark

        spark = local_spark("loglake-bench")
    _say(f"ingest (loglake, {ingest_mode})")
    t0 = time.perf_counter()
    ing = run_ingest(raw, lake, work, spark=spark if ingest_mode == "in-process" else None)
    timings["ingest"] = round(time.perf_counter() - t0, 1)
    _require_published(ing)

    ct_files = sorted(glob.glob(_ct_glob(raw / "cloudtrail")))
    cw_files = sorted(str(p) for p in (raw / "cloudwatch").rglob("*") if p.is_file())
    _say("strong peer (bench/strong_peer.py)")
    t0 = time.perf_counter()
    peer = strong_peer(raw / "cloudtrail", peer_dir, work)
    timings["strong_peer"] = round(time.perf_counter() - t0, 1)

    _say("measured limit: decompress, parse JSON, encode ORC, each alone")
    t0 = time.perf_counter()
    rr_files = _orc_files(lake / "from_cloudtrail_readready")
    limit = bench_limit.limit_breakdown([(f, os.path.getsize(f)) for f in ct_files],
                                        [(f, os.path.getsize(f)) for f in rr_files], ing["cores"])
    timings["limit"] = round(time.perf_counter() - t0, 1)

    _say("gzip -dc bound")
    t0 = time.perf_counter()
    gz = {"cloudtrail": gzip_bound(ct_files, gen["cloudtrail"]["events"]),
          "cloudwatch": gzip_bound(cw_files, gen["cloudwatch"]["log_events"])}
    timings["gzip_bound"] = round(time.perf_counter() - t0, 1)

    _say("per-file profile")
    t0 = time.perf_counter()
    prof = per_file_profile(ct_files)
    timings["per_file_profile"] = round(time.perf_counter() - t0, 1)

    if spark is None:
        from loglake.runtime import local_spark

        spark = local_spark("loglake-bench")
    naive = None
    if params.get("naive_peer", True):
        _say("naive peer")
        t0 = time.perf_counter()
        naive = naive_peer(spark, raw / "cloudtrail", naive_dir)
        timings["naive_peer"] = round(time.perf_counter() - t0, 1)

    sizes = {}
    for src, table in (("cloudtrail", "from_cloudtrail_readready"), ("cloudwatch", "from_cloudwatch_readready")):
        n_raw, b_raw = _files_bytes(raw / src)
        sizes[src] = {"raw_files": n_raw, "raw_bytes": b_raw, "readready_files": len(_orc_files(lake / table)),
                      "readready_bytes": _orc_bytes(lake / table), "readready_rows": ing[src]["written"],
                      "columns": column_bytes(lake / table)}

    t0 = time.perf_counter()
    needle = gen["needle"]
    q = queries(spark, raw, lake, needle, runs, warmup, raw_runs, raw_warmup)
    q["runs"] = {"readready": [warmup, runs], "raw": [warmup if raw_warmup is None else raw_warmup,
                                                     runs if raw_runs is None else raw_runs]}
    timings["queries"] = round(time.perf_counter() - t0, 1)

    _say("scheduled runs of one day, and the same day in one batch run")
    t0 = time.perf_counter()
    # the in-process ingest warmed this session up for conversions already
    sched = run_schedule(spark, scale, work / "schedule", seed, reuse, warmup=ingest_mode != "in-process")
    timings["schedule"] = round(time.perf_counter() - t0, 1)

    _say("AddAPart")
    t0 = time.perf_counter()
    aap = addapart_bench(raw, work)
    timings["addapart"] = round(time.perf_counter() - t0, 1)
    timings["total"] = round(time.perf_counter() - started, 1)

    res = build_results(scale, gen, ing, gz, naive, sizes, q, aap, prof, machine, timings, sched,
                        peer=peer, limit=limit)
    per_scale = out / f"results-{scale}.json"
    if per_scale.exists():  # kept inside the new results, so a re-render keeps the before/after
        res["details"]["previous_run"] = _summary(json.loads(per_scale.read_text()))
    write_reports(res, out)
    _say(f"done in {timings['total']} s: {out / _report_names(scale)[0]}, {out / _report_names(scale)[1]}")
    _check_same_events(sched)
    return res


def run_schedule_only(scale: str, work: Path, out: Path, *, seed: int = 1, reuse: bool = False,
                      spark=None) -> dict:
    """Measure the schedule part alone and fold it into the stored results-<scale>.json
    (the other parts' figures are kept as they were measured): a change to scheduled runs
    is measured in minutes, not in the hours a large run takes. The report says when the
    schedule part was measured, and the stored figures before it are the previous run."""
    per_scale = out.resolve() / f"results-{scale}.json"
    if not per_scale.exists():
        raise FileNotFoundError(f"{per_scale}: no stored results for the {scale} scale; run the whole benchmark first")
    res = json.loads(per_scale.read_text())
    previous = _summary(res)
    if spark is None:
        from loglake.runtime import local_spark

        spark = local_spark("loglake-bench")
    _say("scheduled runs of one day, and the same day in one batch run (schedule part only)")
    t0 = time.perf_counter()
    sched = run_schedule(spark, scale, work.resolve() / "schedule", seed, reuse)
    res.update(_schedule_keys(sched))
    res["targets"] = _targets(res)
    sched["measured_alone"] = {"machine": _machine_now(), "seconds": round(time.perf_counter() - t0, 1)}
    res["details"]["schedule"] = sched
    res["details"]["previous_run"] = previous
    write_reports(res, out.resolve())
    _say(f"schedule part done: {out / f'results-{scale}.json'}")
    _check_same_events(sched)
    return res


def run_memory_only(scale: str, work: Path, out: Path, *, runs: int = 2, reuse: bool = False) -> dict:
    """The ingest's peak memory at ``scale`` against the small scale's, measured the same
    way in one command: each scale's data generated (or reused) under ``work``, then the
    ingest of each (:func:`run_ingest`, a child process), small and ``scale`` alternated
    ``runs`` times, the medians compared (``peak_rss_large_vs_small`` for large). A whole
    large run takes hours; its ingest alone ~4 minutes on 2 cores. Writes
    OUT/memory-<scale>.json; the reports show it (:func:`_compare_memory`)."""
    work, out = work.resolve(), out.resolve()
    data = {}
    for s in dict.fromkeys(("small", scale)):
        data[s] = work / s
        _generate(data[s] / "raw", data[s] / "generate.json", _gen_args(SCALES[s], SCALES[s].get("seed", 1)), reuse,
                  workers=None)
    peaks: dict[str, list[dict]] = {s: [] for s in data}
    for i in range(runs):
        for s, folder in data.items():
            _say(f"ingest at the {s} scale ({i + 1}/{runs}), memory sampled")
            ing = run_ingest(folder / "raw", folder / "lake", folder)
            _require_published(ing)
            peaks[s].append({**ing["memory"], "cloudtrail_seconds": ing["cloudtrail"]["seconds"],
                             "files": ing["cloudtrail"]["files"]})
    median = {s: round(statistics.median(p["peak_total_mb"] for p in runs_), 1) for s, runs_ in peaks.items()}
    res = {"scale": scale, "events": SCALES[scale]["events"], "peak_rss_mb": median[scale],
           "small_peak_rss_mb": median["small"], "ratio_to_small": _ratio(median[scale], median["small"]),
           "runs": peaks, "machine": _machine_now()}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"memory-{scale}.json").write_text(json.dumps(res, indent=2))
    _say(f"memory at {scale}: {median[scale]} MiB against small {median['small']} MiB "
         f"({res['ratio_to_small']}x): {out / f'memory-{scale}.json'}")
    return res


def _check_same_events(sched: dict) -> None:
    """Fail the benchmark (after its reports are written) when the hourly lake and the
    batch lake of the schedule part hold different events."""
    if not sched["event_ids"]["same"]:
        ev = sched["event_ids"]
        raise RuntimeError(f"the hourly lake and the batch lake hold different events: hourly {ev['hourly']}, "
                           f"batch {ev['batch']} (reports written)")


def _machine_now() -> dict[str, Any]:
    """machine_info() with the date of the measurement."""
    machine = machine_info()
    machine["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return machine


def _summary(res: dict) -> dict[str, Any]:
    """The top-level figures of a run and when/where it ran: what a "previous run" column needs."""
    m = res.get("details", {}).get("machine", {})
    keys = dict.fromkeys([*REQUIRED_KEYS, *TARGETS])  # the keys render_markdown's columns show
    return {k: res.get(k) for k in keys} | {"details": {"machine": {"date": m.get("date"),
                                                                    "commit": m.get("commit")}}}


def write_reports(res: dict, out: Path) -> None:
    """Per scale results-<scale>.json and RESULTS-<scale>.md (so reports of each scale live
    side by side), and for a committed scale (medium, large) results.json and RESULTS.md:
    a smoke run at a smaller scale never replaces the committed figures."""
    scale = res["scale"]
    _compare_memory(res, out)
    other = None
    for s in SCALES:
        f = out / f"results-{s}.json"
        if s not in (scale, "tiny") and f.exists():
            other = json.loads(f.read_text())
    text = json.dumps(res, indent=2, default=str)
    md = render_markdown(res, res["details"].get("previous_run"), other)
    names = [(f"results-{scale}.json", text), (f"RESULTS-{scale}.md", md)]
    if scale in COMMITTED_SCALES:
        names += [("results.json", text), ("RESULTS.md", md)]
    for name, content in names:
        (out / name).write_text(content)


def _compare_memory(res: dict, out: Path) -> None:
    """``peak_rss_vs_small`` against the latest stored small run (recomputed whenever the
    reports are written, so a small run made after this one counts; which run it was is
    in ``details.peak_rss_small_run``)."""
    large = out / "memory-large.json"
    if res["scale"] not in ("small", "tiny") and large.exists():
        m = json.loads(large.read_text())
        res["peak_rss_large_vs_small"] = m["ratio_to_small"]
        res["details"]["peak_rss_large_run"] = {k: m[k] for k in ("peak_rss_mb", "small_peak_rss_mb")} | {
            "runs": len(m["runs"]["large"]), "date": m["machine"].get("date"), "commit": m["machine"].get("commit")}
        res["targets"] = _targets(res)
    small = _stored(out, "small") if res["scale"] not in ("small", "tiny") else None
    if not small or not small.get("peak_rss_mb") or not res.get("peak_rss_mb"):
        return
    res["peak_rss_vs_small"] = _ratio(res["peak_rss_mb"], small["peak_rss_mb"])
    m = small.get("details", {}).get("machine", {})
    res["details"]["peak_rss_small_run"] = {"peak_rss_mb": small["peak_rss_mb"], "date": m.get("date"),
                                            "commit": m.get("commit")}
    res["targets"] = _targets(res)


def _report_names(scale: str) -> tuple[str, str]:
    """The results file and the report a run at ``scale`` is read from."""
    if scale in COMMITTED_SCALES:
        return "results.json", "RESULTS.md"
    return f"results-{scale}.json", f"RESULTS-{scale}.md"


def render(scale: str, out: Path) -> None:
    """Re-write the reports from a stored results-<scale>.json, without measuring anything
    (after a change to the report's layout, or to make that scale's report the main one)."""
    per_scale = out / f"results-{scale}.json"
    if not per_scale.exists():
        raise FileNotFoundError(f"{per_scale}: no stored results for the {scale} scale; run the benchmark first")
    write_reports(json.loads(per_scale.read_text()), out)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_ingest"]:
        return _ingest_child(argv[1:])
    parser = argparse.ArgumentParser(
        prog="loglake bench",
        description="Generate realistic raw logs, convert them with loglake, and measure, in one run on the same "
        "data: readready vs raw size, query time and bytes scanned (raw JSON vs readready ORC on Spark), "
        "ingest speed against a hand-written Spark job (the strong peer), a naive spark.read.json job, gzip -dc "
        "and the measured limit (decompress, parse and encode alone), peak memory, the hourly schedule, and "
        "AddAPart against a moto server. Writes OUT/results-SCALE.json and OUT/RESULTS-SCALE.md; a medium or large run "
        "also writes the committed OUT/results.json and OUT/RESULTS.md.",
    )
    parser.add_argument("--scale", choices=[s for s in SCALES if s != "tiny"] + ["tiny"], default="small",
                        help="small: 100k events, a smoke run of ~15 minutes on 2 cores (writes only "
                        "results-small.json and RESULTS-small.md); medium: 1M events, ~20 minutes, the committed "
                        "run; large: 5M events, hours, by hand")
    parser.add_argument("--work", default=str(REPO / "bench" / "work"), metavar="DIR",
                        help="scratch folder for raw, lake and naive output (default bench/work, git-ignored)")
    parser.add_argument("--out", default=str(REPO / "bench"), metavar="DIR",
                        help="where results.json and RESULTS.md go (default bench/)")
    parser.add_argument("--events", type=int, help=argparse.SUPPRESS)  # override the scale's event count
    parser.add_argument("--seed", type=int, help="generator seed (default: 7 at the medium scale, else 1)")
    parser.add_argument("--runs", type=int, help="timed runs per query (default: 3, tiny 1)")
    parser.add_argument("--warmup", type=int, help="untimed warm-up runs per query (default: 1, tiny 0)")
    parser.add_argument("--raw-runs", type=int,
                        help="timed runs of the raw-side queries (default: --runs; 1 makes a large run hours shorter)")
    parser.add_argument("--raw-warmup", type=int, help="warm-up runs of the raw-side queries (default: --warmup)")
    parser.add_argument("--naive-peer", action=argparse.BooleanOptionalAction, default=None,
                        help="run the naive spark.read.json peer (default: at every scale but medium). "
                        "--no-naive-peer leaves ingest_vs_naive_peer empty and a large run about 70 minutes "
                        "shorter: schema inference over 157k files")
    parser.add_argument("--samples", metavar="DIR",
                        help="folder of the shared real samples the generator builds its records from "
                        f"(default: ${sample_data.SAMPLES_ENV}, else ../shared/data/external)")
    parser.add_argument("--ingest", choices=("subprocess", "in-process"), default="subprocess",
                        help="run the loglake jobs in a child process (default; its memory is measured alone) "
                        "or in this process")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the generated data in --work when it was made with the same parameters")
    parser.add_argument("--only", choices=("schedule", "memory"),
                        help="schedule: measure only the schedule part and fold its figures into the stored "
                        "OUT/results-SCALE.json (the other figures stay as measured; the report says when each "
                        "was). memory: the ingest's peak memory at SCALE against the small scale's, alternated "
                        "--runs times (default 2), into OUT/memory-SCALE.json (a large one is shown in the "
                        "committed report as peak_rss_large_vs_small)")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: re-write OUT/RESULTS.md, OUT/RESULTS-SCALE.md and OUT/results.json "
                        "from the stored OUT/results-SCALE.json")
    args = parser.parse_args(argv)
    if args.samples:
        # through the environment, so the generator finds them in this process and in the
        # ingest and schedule children alike
        os.environ[sample_data.SAMPLES_ENV] = str(Path(args.samples).resolve())
    if args.only == "schedule":
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        os.environ.setdefault("LOGLAKE_LOG_LEVEL", "WARNING")
        try:
            seed = args.seed if args.seed is not None else 1
            run_schedule_only(args.scale, Path(args.work), Path(args.out), seed=seed, reuse=args.reuse)
        except FileNotFoundError as exc:
            print(f"loglake bench: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.only == "memory":
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        os.environ.setdefault("LOGLAKE_LOG_LEVEL", "WARNING")
        try:
            run_memory_only(args.scale, Path(args.work), Path(args.out), runs=args.runs or 2, reuse=args.reuse)
        except FileNotFoundError as exc:
            print(f"loglake bench: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.render:
        try:
            render(args.scale, Path(args.out))
        except FileNotFoundError as exc:
            print(f"loglake bench: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {Path(args.out) / _report_names(args.scale)[1]} from "
              f"{Path(args.out) / f'results-{args.scale}.json'}")
        return 0
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    os.environ.setdefault("LOGLAKE_LOG_LEVEL", "WARNING")
    try:
        run(args.scale, Path(args.work), Path(args.out), events=args.events, seed=args.seed, runs=args.runs,
            warmup=args.warmup, raw_runs=args.raw_runs, raw_warmup=args.raw_warmup, ingest_mode=args.ingest,
            reuse=args.reuse, with_naive_peer=args.naive_peer)
    except FileNotFoundError as exc:
        print(f"loglake bench: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
