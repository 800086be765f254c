"""The loglake command: help, exit codes and flags are a public interface."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import STRATUS_GZ, place, records_of
from loglake import catalog, cli, samples

COMMANDS = [
    [],
    ["run"],
    ["addapart"],
    ["addapart", "drain"],
    ["addapart", "backfill"],
    ["generate"],
    ["bench"],
    ["quality"],
    ["quality", "docs"],
    ["config"],
    ["config", "show"],
    ["config", "check"],
    ["demo"],
    ["ddl"],
    ["query"],
    ["lookup"],
    ["lookup", "load"],
]


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "loglake")
def test_every_command_has_help(words, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*words, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: loglake")
    assert len(out.splitlines()) > 3


def test_run_help_documents_its_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    for flag in ("--raw", "--out", "--date", "--from-date", "--to-date", "--summary-json", "--catalog", "--config"):
        assert flag in out


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "loglake.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("loglake ")


def test_bad_config_exits_2_naming_the_key(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("filters:\n  regions:\n    allow: [us-east-1, 'US East']\n")
    assert cli.main(["config", "check", "--config", str(bad)]) == 2
    assert "filters.regions.allow" in capsys.readouterr().err


def test_config_show_prints_effective_yaml(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LOGLAKE__SOURCES__CLOUDTRAIL__BUCKET", "from-env")
    assert cli.main(["config", "show"]) == 0
    assert "bucket: from-env" in capsys.readouterr().out


def test_run_with_catalog_registers_readready_partitions(spark, aws, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOGLAKE__AWS__ENDPOINT_URL", aws.endpoint)
    monkeypatch.setenv("LOGLAKE__CATALOG__DATABASE", "clidb")
    raw = tmp_path / "raw"
    place(raw, "AWSLogs/123456789012/CloudTrail/us-west-2/2024/12/01/a.json.gz", STRATUS_GZ)
    out = tmp_path / "lake"
    assert cli.main(["-q", "run", "cloudtrail", "--raw", str(raw), "--out", str(out), "--catalog"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["catalog"] == {"created": 1, "existed": 0, "moved": 0, "calls": 1}
    assert summary["written"] == len(records_of(STRATUS_GZ))
    table = aws.glue.get_table(DatabaseName="clidb", Name="from_cloudtrail_readready")["Table"]
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("OrcSerde")
    assert table["Parameters"]["orc.compress"] == "ZLIB"
    [part] = catalog.list_partitions(aws.glue, "clidb", "from_cloudtrail_readready")
    assert part["Values"] == ["none", "123456789012", "us-west-2", "2024-12-01"]


def _samples_tree(root):
    (root / "shared" / "data" / "external" / "cloudtrail").mkdir(parents=True)
    return root / "shared" / "data" / "external"


def test_samples_found_beside_the_checkout_a_clone_came_from(tmp_path, monkeypatch):
    """`git clone <checkout> /tmp/x/p && make demo` finds ../shared beside <checkout>."""
    shared = _samples_tree(tmp_path / "work")
    origin = tmp_path / "work" / "main"
    subprocess.run(["git", "init", "-q", str(origin)], check=True)
    clone = tmp_path / "elsewhere" / "p"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True, capture_output=True)
    monkeypatch.setattr(samples, "REPO", clone)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(samples.SAMPLES_ENV, raising=False)
    assert samples.samples_dir() == shared
    # LOGLAKE_SAMPLES comes first; an explicit folder before everything
    other = _samples_tree(tmp_path / "other")
    monkeypatch.setenv(samples.SAMPLES_ENV, str(other))
    assert samples.samples_dir() == other
    assert samples.samples_dir(shared) == shared


def test_a_named_samples_folder_is_the_only_one_looked_at(tmp_path, monkeypatch):
    """A wrong --samples or LOGLAKE_SAMPLES is an error naming it, even where the default
    samples exist (before, it fell back to them, and a benchmark ran on other samples)."""
    shared = _samples_tree(tmp_path / "work")
    monkeypatch.setattr(samples, "REPO", tmp_path / "work" / "main")  # the default samples are found
    monkeypatch.delenv(samples.SAMPLES_ENV, raising=False)
    assert samples.samples_dir() == shared
    with pytest.raises(FileNotFoundError, match=f"no samples found in {tmp_path / 'typo'} \\(from --samples\\)"):
        samples.samples_dir(tmp_path / "typo")
    monkeypatch.setenv(samples.SAMPLES_ENV, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=f"no samples found in {tmp_path / 'nope'} \\(from LOGLAKE_SAMPLES\\)"):
        samples.samples_dir()


def test_no_samples_names_where_it_looked(tmp_path, monkeypatch):
    from loglake import demo

    monkeypatch.setattr(samples, "REPO", tmp_path / "lone" / "p")  # not a git checkout
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(samples.SAMPLES_ENV, raising=False)
    with pytest.raises(FileNotFoundError) as exc:
        samples.samples_dir()
    msg = str(exc.value)
    assert "lone/shared/data/external" in msg and samples.SAMPLES_ENV in msg and "--samples" in msg
    with pytest.raises(SystemExit, match="^demo: no samples found"):
        demo.main(workdir=str(tmp_path / "demo"))
