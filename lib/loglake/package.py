"""`make package`: the deployable artifacts, built reproducibly into dist/.

* ``loglake-<version>-py3-none-any.whl``: the library, for the Glue jobs'
  ``--additional-python-modules``;
* ``glue_jobs/<source>_readready.py``: the job scripts;
* ``addapart-lambda.zip``: ``handler.py`` at the root, the loglake package (taken from
  the wheel, so Lambda and Glue run the same code) and the runtime dependencies the
  Lambda Python 3.11 runtime lacks (PyYAML, orjson; boto3 is provided) as manylinux
  x86_64 wheels, at the versions pinned in constraints.txt;
* ``SHA256SUMS``.

Same inputs give the same bytes: the wheel is built from a clean copy of the sources
with a pinned setuptools and a fixed SOURCE_DATE_EPOCH, and the zip is written with
sorted entries, fixed timestamps and normalised permissions (what is left is zlib's
output, which the same zlib reproduces).

    python -m loglake.package [--out dist]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from loglake.deploy import LAMBDA_ZIP, artifacts, job_script, wheel_name
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
SKIP_PARTS = {"__pycache__", ".pytest_cache"}
# What a build reads from the checkout (a test copies these to build from a snapshot).
INPUTS = ("setup.py", "README.md", "constraints.txt", "lib", "ddl", "addapart", "glue_jobs")


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


def build(out: Path, root: Path = ROOT) -> list[Path]:
    """Everything deploy/loglake.yaml refers to, built from the checkout at ``root``
    into a fresh ``out``; returns the files."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="loglake-package-") as tmp:
        wheel = build_wheel(out, Path(tmp) / "wheel", root)
        build_lambda_zip(wheel, out, Path(tmp), root)
    (out / "glue_jobs").mkdir()
    for name in SOURCES:
        shutil.copyfile(root / job_script(name), out / job_script(name))
    files = sorted(p for p in out.rglob("*") if p.is_file())
    sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out).as_posix()}\n" for p in files)
    (out / "SHA256SUMS").write_text(sums)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loglake.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "dist"), help="output folder, emptied first (default: dist)")
    args = parser.parse_args(argv)
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
