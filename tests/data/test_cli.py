"""`python -m raytaskaff.data`: what a user sees, including one-line errors and exit codes."""

import subprocess
import sys

import pytest

from raytaskaff.data.__main__ import main
from raytaskaff.data.shards import Manifest


def run(*args):
    return subprocess.run([sys.executable, "-m", "raytaskaff.data", *args], capture_output=True, text=True)


def test_synth_then_info(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["synth", "--out", str(out), "--n", "9", "--size", "16", "--seed", "2",
                 "--points-per-building", "1", "--views-per-point", "3", "--format", "parquet"]) == 0
    manifest = Manifest.load(out)
    assert manifest.format == "parquet" and manifest.size == 16
    assert sum(s["count"] for s in manifest.splits.values()) == 9
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "synthetic dataset, 16x16, format parquet" in printed and "all checked" in printed


def test_errors_are_one_line_with_exit_code_2(tmp_path):
    out = tmp_path / "ds"
    assert run("synth", "--out", str(out), "--n", "3", "--size", "16").returncode == 0
    again = run("synth", "--out", str(out), "--n", "3", "--size", "16")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [f"error: {out}: exists and is not empty (use --overwrite to replace it)"]
    shard = sorted(out.glob("*.arrow"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    broken = run("info", str(out))
    assert broken.returncode == 2 and len(broken.stderr.strip().splitlines()) == 1
    assert shard.name in broken.stderr and "truncated" in broken.stderr
    missing = run("info", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "no manifest.json" in missing.stderr


@pytest.mark.parametrize("args,message", [
    (["synth", "--out", "x", "--n", "0"], "must be a positive integer"),
    (["synth", "--out", "x", "--n", "5", "--size", "4"], "size must be in [8, 1024]"),
])
def test_bad_arguments(tmp_path, args, message):
    result = run(*args)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "x").exists()


def test_taskonomy_command_reports_a_bad_root(tmp_path):
    result = run("taskonomy", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "out"), "--size", "32", "--quiet")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert str(tmp_path / "none") in result.stderr and not (tmp_path / "out").exists()
    bad_split = run("taskonomy", "--root", str(tmp_path), "--out", str(tmp_path / "out"), "--split", str(tmp_path / "nosuch.csv"))
    assert bad_split.returncode == 2 and "nosuch.csv" in bad_split.stderr
