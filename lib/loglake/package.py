"""`make package`: the deployable artifacts, built reproducibly into dist/.

* ``loglake-<version>-py3-none-any.whl``: the library, for the Glue jobs'
  ``--additional-python-modules``;
* ``glue_jobs/<source>_readready.py``: the job scripts;
* ``addapart-lambda.zip``: ``handler.py`` at the root, the loglake package (taken from
  the wheel, so Lambda and Glue run the same code) and the runtime dependencies the
  Lambda Python 3.11 runtime lacks (PyYAML, orjson; boto3 is provided) as manylinux
  x86_64 wheels, at the versions pinned in constraints.txt;
* ``glue-wheels/*.whl``: every third-party wheel the Glue jobs need that AWS Glue 5.0
  does not provide (deploy/glue-5.0-provided.txt), as cp311 manylinux x86_64 wheels,
  exactly the files of deploy/glue-wheels.txt (checked against its sha256), so that a
  job installs with no index and so no internet access;
* ``SHA256SUMS``.

deploy/glue-wheels.txt is written by ``make glue-lock`` (``--glue-lock``): loglake's
requirements resolved by pip for Glue's Python and platforms, with Glue's provided
versions and constraints.txt's pins fixed; the wheels Glue provides are left out.

Same inputs give the same bytes: the wheel is built from a clean copy of the sources
with a pinned setuptools and a fixed SOURCE_DATE_EPOCH, and the zip is written with
sorted entries, fixed timestamps and normalised permissions (what is left is zlib's
output, which the same zlib reproduces).

    python -m loglake.package [--out dist]
    python -m loglake.package --glue-lock       # rewrite deploy/glue-wheels.txt (needs PyPI)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from loglake.deploy import (
    ALERTS_SCRIPT,
    GLUE_WHEELS,
    GLUE_WHEELS_LOCK,
    LAMBDA_ZIP,
    artifacts,
    glue_wheels,
    job_script,
    wheel_name,
)
from loglake.sources import SOURCES

ROOT = Path(__file__).resolve().parents[2]
# 1980-01-01, the earliest time a zip entry can hold; used unless SOURCE_DATE_EPOCH is set.
DEFAULT_EPOCH = 315532800
# The build backend pip puts in the isolated build environment (pinned: a new
# setuptools may lay out the wheel differently).
BUILD_BACKEND = "setuptools==84.2.1"
LAMBDA_DEPENDENCIES = ("PyYAML", "orjson")
LAMBDA_PLATFORM = ("--platform", "manylinux2014_x86_64", "--implementation", "cp",
                   "--python-version", "3.11", "--abi", "cp311")
# AWS Glue 5.0: CPython 3.11 on Amazon Linux 2023 (glibc 2.34); the wheel platform tags
# AWS documents as compatible with it.
GLUE_PROVIDED = "deploy/glue-5.0-provided.txt"
GLUE_PLATFORM = ("--platform", "manylinux_2_34_x86_64", "--platform", "manylinux_2_28_x86_64",
                 "--platform", "manylinux2014_x86_64", "--implementation", "cp",
                 "--python-version", "3.11", "--abi", "cp311")
SKIP_PARTS = {"__pycache__", ".pytest_cache"}
# What a build reads from the checkout (a test copies these to build from a snapshot).
INPUTS = ("setup.py", "README.md", "constraints.txt", "lib", "ddl", "addapart", "glue_jobs", "deploy")


def source_date_epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))


def deterministic_zip(tree: Path, out: Path, epoch: int | None = None) -> Path:
    """Zip every file below ``tree`` so that equal trees give equal bytes: entries in
    sorted order, one timestamp, permissions 0644 (0755 if executable), no directory
    entries, no extra fields. Caches (__pycache__, *.pyc) are left out."""
    stamp = time.gmtime(max(source_date_epoch() if epoch is None else epoch, DEFAULT_EPOCH))[:6]
    files = {
        p.relative_to(tree).as_posix(): p for p in tree.rglob("*")
        if p.is_file() and not SKIP_PARTS & set(p.relative_to(tree).parts) and p.suffix != ".pyc"
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as zf:
        for name, path in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.create_system = 3  # unix, so external_attr holds the mode
            mode = 0o755 if os.stat(path).st_mode & 0o111 else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=9)
    return out


def pinned(names: tuple[str, ...], constraints: Path) -> list[str]:
    """``name==version`` for each name, from constraints.txt (one place pins versions)."""
    pins = {}
    for line in constraints.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==", 1)
            pins[name.lower().replace("_", "-")] = f"{name}=={version}"
    missing = [n for n in names if n.lower() not in pins]
    if missing:
        raise SystemExit(f"package: {', '.join(missing)} not pinned in {constraints}")
    return [pins[n.lower()] for n in names]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def glue_provided(root: Path = ROOT) -> dict[str, str]:
    """canonical name -> version, of every module AWS Glue 5.0 provides (as AWS lists them)."""
    out = {}
    for line in (root / GLUE_PROVIDED).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.strip().split("==")
            out[_canonical(name)] = version
    return out


def _pip(*args: str, env: dict | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True, env=env)


def build_wheel(out: Path, work: Path, root: Path = ROOT) -> Path:
    """Build the wheel from a clean copy of the sources: a stale build/ or egg-info in
    the working tree can neither leak into it nor be touched."""
    src = work / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    src.mkdir(parents=True)
    for name in ("setup.py", "README.md"):
        shutil.copy2(root / name, src / name)
    for name in ("lib", "ddl"):
        shutil.copytree(root / name, src / name, ignore=ignore)
    build_constraints = work / "build-constraints.txt"
    build_constraints.write_text(BUILD_BACKEND + "\n")
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(source_date_epoch()), "PIP_CONSTRAINT": str(build_constraints)}
    _pip("wheel", "--no-deps", "-w", str(out), str(src), env=env)
    wheel = out / wheel_name()
    if not wheel.is_file():
        raise SystemExit(f"package: pip built {sorted(p.name for p in out.glob('*.whl'))}, expected {wheel.name}")
    return wheel


def build_lambda_zip(wheel: Path, out: Path, work: Path, root: Path = ROOT) -> Path:
    """handler.py + loglake (from the wheel) + the Lambda's third-party dependencies."""
    tree = work / "lambda"
    tree.mkdir(parents=True)
    shutil.copy2(root / "addapart" / "handler.py", tree / "handler.py")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tree)
    _pip("install", "--no-deps", "--no-compile", "--only-binary=:all:", *LAMBDA_PLATFORM,
         "--target", str(tree), *pinned(LAMBDA_DEPENDENCIES, root / "constraints.txt"))
    return deterministic_zip(tree, out / LAMBDA_ZIP)


def lock_glue_wheels(root: Path = ROOT) -> Path:
    """Resolve the wheel's requirements as pip on Glue 5.0 would (its Python and platforms,
    its provided versions fixed, constraints.txt's pins for the rest) and write the wheels
    Glue lacks, with their sha256, to deploy/glue-wheels.txt. Needs PyPI (metadata only)."""
    provided = glue_provided(root)
    with tempfile.TemporaryDirectory(prefix="loglake-glue-lock-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "wheel", work, root)
        glue = work / "glue-provided.txt"
        glue.write_text("".join(f"{name}=={version}\n" for name, version in sorted(provided.items())))
        local = work / "local.txt"  # constraints.txt less what Glue provides (Glue's version wins)
        local.write_text("".join(
            line + "\n" for line in (root / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#") and _canonical(line.split("==")[0]) not in provided
        ))
        report = work / "report.json"
        _pip("install", "--dry-run", "--ignore-installed", "--report", str(report), "--target", str(work / "target"),
             "--only-binary=:all:", *GLUE_PLATFORM, "-c", str(glue), "-c", str(local), str(wheel))
        resolved = json.loads(report.read_text())["install"]
    lines = []
    for item in resolved:
        name, url = item["metadata"]["name"], item["download_info"]["url"]
        if _canonical(name) == "loglake":
            continue
        if _canonical(name) in provided:
            if item["metadata"]["version"] != provided[_canonical(name)]:
                raise SystemExit(f"package: resolved {name} {item['metadata']['version']}, Glue provides another")
            continue
        digest = item["download_info"]["archive_info"]["hashes"]["sha256"]
        lines.append(f"{digest}  {url.rsplit('/', 1)[-1]}\n")
    path = root / GLUE_WHEELS_LOCK
    header = (
        "# Generated by `make glue-lock` (python -m loglake.package --glue-lock): do not edit.\n"
        "# The wheels AWS Glue 5.0 lacks for loglake's requirements (setup.py), resolved for CPython\n"
        f"# 3.11 manylinux x86_64 with the versions of {GLUE_PROVIDED} and constraints.txt fixed.\n"
        "# `make package` ships these files into dist/glue-wheels/. sha256, file:\n"
    )
    path.write_text(header + "".join(sorted(lines, key=lambda line: line.split()[1].lower())))
    return path


def download_glue_wheels(out: Path, work: Path, root: Path = ROOT, source: Path | None = None) -> list[Path]:
    """Exactly the locked wheels into ``out``/glue-wheels/: pip checks each file's sha256.
    From PyPI, or with ``source`` (a folder holding them, such as an earlier build's
    glue-wheels/) from there alone, with no index."""
    locked = glue_wheels(root)
    requirements = work / "glue-wheels.txt"
    lines = []
    for digest, name in locked:
        dist, version = name.split("-")[:2]
        lines.append(f"{dist}=={version} --hash=sha256:{digest}\n")
    requirements.write_text("".join(lines))
    download = work / "glue-wheels"
    where = ("--no-index", "--find-links", str(source)) if source else ()
    _pip("download", "--no-deps", "--require-hashes", "--only-binary=:all:", *GLUE_PLATFORM, *where,
         "-d", str(download), "-r", str(requirements))
    got = sorted(p.name for p in download.iterdir())
    if got != sorted(name for _, name in locked):
        raise SystemExit(f"package: pip downloaded {got}, {GLUE_WHEELS_LOCK} lists {[n for _, n in locked]}")
    target = out / GLUE_WHEELS
    target.mkdir(parents=True)
    return [Path(shutil.copyfile(download / name, target / name)) for _, name in locked]


def build(out: Path, root: Path = ROOT, glue_wheels_from: Path | None = None) -> list[Path]:
    """Everything deploy/loglake.yaml refers to, built from the checkout at ``root``
    into a fresh ``out``; returns the files. ``glue_wheels_from``: take the locked Glue
    wheels from that folder (an earlier build's glue-wheels/), not from PyPI; their
    sha256 is checked all the same."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="loglake-package-") as tmp:
        wheel = build_wheel(out, Path(tmp) / "wheel", root)
        build_lambda_zip(wheel, out, Path(tmp), root)
        download_glue_wheels(out, Path(tmp), root, glue_wheels_from)
    (out / "glue_jobs").mkdir()
    for name in SOURCES:
        shutil.copyfile(root / job_script(name), out / job_script(name))
    shutil.copyfile(root / ALERTS_SCRIPT, out / ALERTS_SCRIPT)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out).as_posix()}\n" for p in files)
    (out / "SHA256SUMS").write_text(sums)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loglake.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "dist"), help="output folder, emptied first (default: dist)")
    parser.add_argument("--glue-lock", action="store_true",
                        help=f"only rewrite {GLUE_WHEELS_LOCK} (the wheels the Glue jobs need)")
    args = parser.parse_args(argv)
    if args.glue_lock:
        print(lock_glue_wheels())
        return 0
    out = Path(args.out)
    files = build(out)
    missing = [name for name in artifacts() if not (out / name).is_file()]
    if missing:
        raise SystemExit(f"package: the template refers to {missing}, which were not built")
    for path in files + [out / "SHA256SUMS"]:
        print(f"{path.stat().st_size:>10}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
