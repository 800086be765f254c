"""Where a job runs: local Spark or AWS Glue, behind one small adapter.

The same job script runs in both places. On Glue, ``GlueContext`` and ``Job`` come
from the Glue JVM; locally (``awsglue-dev`` has only the Python side) building a
GlueContext fails, and the adapter falls back to a plain local SparkSession. Jobs
only see ``Runtime.spark`` and ``Runtime.commit()``.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("loglake.runtime")

# Session settings every loglake job relies on, locally and on Glue.
SPARK_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.orc.compression.codec": "zlib",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Partition values are strings: inference would turn account 017622104382 into a number.
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    # Spark 3.5 lets adaptive execution re-plan a cached DataFrame, which makes the first
    # query of a persisted one two jobs (fill the cache, then read it): a run's conversion
    # (persisted by Spark's way of staging, which reads it four times) took a second job
    # of ~0.1 s. loglake's cached frames have no shuffle for it to re-plan.
    "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "false",
}

# Glue job arguments loglake understands besides the required ones.
OPTIONAL_ARGS = (
    "date", "from-date", "to-date", "partitions-since", "summary-json", "runtime", "max-partitions", "max-files",
    "sink", "athena-output", "workgroup",  # the alerts job
)
REQUIRED_ARGS = ("JOB_NAME", "config")


@dataclass
class Runtime:
    spark: Any
    glue_context: Any = None
    job: Any = None

    @property
    def is_glue(self) -> bool:
        return self.glue_context is not None

    def commit(self) -> None:
        """Glue's job.commit() (bookmarks, run state); nothing to do locally."""
        if self.job is not None:
            self.job.commit()


def resolve_job_args(argv: Sequence[str]) -> dict[str, str]:
    """Glue-style ``--name value`` arguments through awsglue's getResolvedOptions.

    getResolvedOptions treats every named option as required, so optional ones are
    asked for only when present: the standard Glue idiom. Keys come back with '-'
    turned into '_' (``--from-date`` -> ``from_date``).
    """
    from awsglue.utils import getResolvedOptions

    argv = list(argv)
    present = [opt for opt in OPTIONAL_ARGS if f"--{opt}" in argv]
    return getResolvedOptions(argv, list(REQUIRED_ARGS) + present)


def local_environment() -> None:
    """What the processes a local Spark starts (its JVM, and the Python workers the JVM
    starts) inherit from this one, where the user set nothing else.

    ``MALLOC_ARENA_MAX`` 2 (not this process: glibc reads it at start-up): each thread
    that allocates gets a glibc arena of its own, up to 8 per core, and keeps what it
    frees there, and a Spark job starts threads per task, a worker reads ahead on 16.
    With 2, a large ingest's JVM peaked at 296 MiB, not 302-364, its process tree at
    1,182 MiB, not 1,201-1,231, in the same time (bench/README.md, "Memory")."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")


def local_spark(app_name: str = "loglake", master: str | None = None):
    """One local SparkSession per process (getOrCreate), configured for loglake."""
    local_environment()
    log4j = os.path.join(os.path.dirname(__file__), "log4j2.properties")
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName(app_name)
        .master(master or os.environ.get("LOGLAKE_SPARK_MASTER", "local[*]"))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", os.environ.get("LOGLAKE_DRIVER_MEMORY", "2g"))
        .config("spark.sql.shuffle.partitions", os.environ.get("LOGLAKE_SHUFFLE_PARTITIONS", "8"))
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        # LOGLAKE_JAVA_OPTIONS: more driver JVM flags, e.g. -XX:TieredStopAtLevel=1 (the
        # quick compiler only: a short run starts ~3 s sooner, a long one runs slower)
        .config("spark.driver.extraJavaOptions",
                f"-Dlog4j2.configurationFile=file:{log4j} {os.environ.get('LOGLAKE_JAVA_OPTIONS', '')}".strip())
    )
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    if _workers_import_loglake():
        # each task's zip re-read skipped (loglake.spark_daemon: ~0.5 s of CPU per task)
        builder = builder.config("spark.python.daemon.module", "loglake.spark_daemon")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("LOGLAKE_SPARK_LOG_LEVEL", "ERROR"))
    return spark


def _workers_import_loglake() -> bool:
    """Whether Spark's Python workers can start loglake's daemon module: their interpreter
    (PYSPARK_PYTHON), with this process's environment, imports it. Asked once per
    interpreter and PYTHONPATH (one short process); a daemon that cannot start would fail
    every Python task. LOGLAKE_SPARK_DAEMON=0: Spark's own daemon."""
    if os.environ.get("LOGLAKE_SPARK_DAEMON", "1") == "0":
        return False
    worker = os.environ.get("PYSPARK_PYTHON", "")
    if not worker:
        return False
    key = (worker, os.environ.get("PYTHONPATH", ""))
    if key not in _DAEMON_IMPORTS:
        import subprocess

        try:
            done = subprocess.run([worker, "-c", "import loglake.spark_daemon"], capture_output=True, timeout=60)
            _DAEMON_IMPORTS[key] = done.returncode == 0
        except (OSError, subprocess.SubprocessError):
            _DAEMON_IMPORTS[key] = False
        if not _DAEMON_IMPORTS[key]:
            log.info("Spark's Python workers (%s) cannot import loglake.spark_daemon: Spark's own daemon", worker)
    return _DAEMON_IMPORTS[key]


_DAEMON_IMPORTS: dict[tuple[str, str], bool] = {}


def _glue(job_name: str, args: dict[str, str]) -> Runtime:
    from awsglue.context import GlueContext
    from awsglue.job import Job
    from pyspark.context import SparkContext

    glue_context = GlueContext(SparkContext.getOrCreate())
    spark = glue_context.spark_session
    for key, value in SPARK_CONF.items():
        spark.conf.set(key, value)
    job = Job(glue_context)
    job.init(job_name, args)
    return Runtime(spark, glue_context, job)


def start(job_name: str = "loglake", args: dict[str, str] | None = None, mode: str = "auto") -> Runtime:
    """A Runtime for this process.

    ``mode`` is auto, glue or local. Auto means Glue when Glue launched the script,
    which it signals by passing ``--JOB_RUN_ID``; deciding from the arguments, not by
    trying to build a GlueContext, keeps a local run from starting a throwaway JVM.
    """
    args = args or {}
    mode = os.environ.get("LOGLAKE_RUNTIME") or args.get("runtime") or mode
    if mode not in ("auto", "glue", "local"):
        raise ValueError(f"runtime must be auto, glue or local, not {mode!r}")
    if mode == "glue" or (mode == "auto" and args.get("JOB_RUN_ID")):
        try:
            return _glue(job_name, args)
        except Exception as exc:
            raise RuntimeError(f"Glue runtime requested but the Glue JVM is not available: {exc}") from exc
    return Runtime(local_spark(job_name))
