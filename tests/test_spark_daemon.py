"""loglake.spark_daemon: Spark's Python workers skip re-reading unchanged zip archives
before each task, and still see an archive that changed."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile


def _script(zip_path: str) -> str:
    # A separate interpreter: the patch changes zipimport for the whole process, and
    # the test process's own zip imports must not depend on it.
    return textwrap.dedent(f"""
        import importlib, json, os, sys, zipfile, zipimport
        sys.path.insert(0, {zip_path!r})
        import mod_a  # the archive's directory read once, as at a worker's start
        reads = []
        real = zipimport._read_directory
        def counted(archive):
            reads.append(archive)
            return real(archive)
        zipimport._read_directory = counted
        from loglake import spark_daemon
        spark_daemon.install()
        spark_daemon.install()  # twice: still one patch
        importlib.invalidate_caches()  # what Spark's worker does before every task
        importlib.invalidate_caches()
        unchanged = len(reads)
        with zipfile.ZipFile({zip_path!r}, "a") as z:  # the archive changes (addPyFile's case)
            z.writestr("mod_b.py", "VALUE = 'b'")
        os.utime({zip_path!r}, ns=(0, 10**18))  # a different mtime even within the clock's tick
        importlib.invalidate_caches()
        import mod_b
        print(json.dumps({{"unchanged": unchanged, "after_change": len(reads), "b": mod_b.VALUE}}))
    """)


def test_an_unchanged_archive_is_not_read_again_and_a_changed_one_is(tmp_path):
    import json

    zip_path = str(tmp_path / "deps.zip")
    with zipfile.ZipFile(zip_path, "w") as z:
        z.writestr("mod_a.py", "VALUE = 'a'")
    done = subprocess.run([sys.executable, "-c", _script(zip_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"unchanged": 0, "after_change": 1, "b": "b"}


def test_without_the_patch_every_invalidation_reads_the_archive_again(tmp_path):
    """The cost the patch removes is real on this Python (3.11, which setup.py requires,
    re-reads at once)."""
    zip_path = str(tmp_path / "deps.zip")
    with zipfile.ZipFile(zip_path, "w") as z:
        z.writestr("mod_c.py", "VALUE = 'c'")
    script = textwrap.dedent(f"""
        import importlib, sys, zipimport
        sys.path.insert(0, {zip_path!r})
        import mod_c
        reads = []
        real = zipimport._read_directory
        zipimport._read_directory = lambda a: reads.append(a) or real(a)
        importlib.invalidate_caches()
        print(len(reads))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) == 1


def test_local_spark_uses_the_daemon_only_when_the_workers_can_import_it(monkeypatch, tmp_path):
    from loglake import runtime

    monkeypatch.setattr(runtime, "_DAEMON_IMPORTS", {})
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.delenv("LOGLAKE_SPARK_DAEMON", raising=False)
    assert runtime._workers_import_loglake()
    monkeypatch.setenv("LOGLAKE_SPARK_DAEMON", "0")
    assert not runtime._workers_import_loglake()
    monkeypatch.delenv("LOGLAKE_SPARK_DAEMON")
    # an interpreter without loglake (here: one that cannot start), or none set: Spark's own
    monkeypatch.setenv("PYSPARK_PYTHON", str(tmp_path / "no-such-python"))
    assert not runtime._workers_import_loglake()
    # a Python without loglake on its path: the base interpreter of this venv, isolated
    bare = tmp_path / "bare-python"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    bare.chmod(0o755)
    monkeypatch.setenv("PYSPARK_PYTHON", str(bare))
    assert not runtime._workers_import_loglake()
    monkeypatch.delenv("PYSPARK_PYTHON")
    assert not runtime._workers_import_loglake()


def test_spark_tasks_run_through_the_daemon(spark):
    assert spark.sparkContext.getConf().get("spark.python.daemon.module") == "loglake.spark_daemon"
    # a Python task runs (the daemon module imports and forks workers)
    assert spark.sparkContext.parallelize(range(4), 2).map(lambda x: x * 2).sum() == 12


def test_the_jvm_and_its_python_workers_get_two_malloc_arenas(spark):
    """local_spark sets MALLOC_ARENA_MAX (unless the user did) for the processes it starts:
    the JVM and the Python workers, whose threads otherwise each keep a glibc arena of
    freed memory (runtime.local_spark). Read from the processes themselves."""
    want = os.environ["MALLOC_ARENA_MAX"]  # local_spark's setdefault ran in this process
    jvm = spark._jvm.java.lang.ProcessHandle.current().pid()
    with open(f"/proc/{jvm}/environ", "rb") as fh:
        assert f"MALLOC_ARENA_MAX={want}".encode() in fh.read().split(b"\0")
    seen = spark.sparkContext.parallelize(range(2), 2).map(lambda _: os.environ.get("MALLOC_ARENA_MAX")).collect()
    assert seen == [want, want]


def test_two_arenas_unless_the_user_chose(monkeypatch):
    from loglake import runtime

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    runtime.local_environment()
    assert os.environ["MALLOC_ARENA_MAX"] == "2"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    runtime.local_environment()
    assert os.environ["MALLOC_ARENA_MAX"] == "4"
