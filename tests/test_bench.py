"""The benchmark runner: aims are read right, and `python -m bench` gathers every row in one table."""

import subprocess
import sys
from pathlib import Path

import pytest

from bench.rows import Row
from bench.scaling import config_for, gpu_seconds
from raytaskaff.plan import plan

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("ratio,aim,met", [
    (1.1, "<= 1.15", True), (1.2, "<= 1.15", False), (1.8, ">= 1.8", True), (0.3, ">= 1 (200 views/s)", False),
    (1.0, "== 1", True), (1.001, "== 1", False), (2.0, "-", None), (None, "<= 2", None),
])
def test_aims_are_judged(ratio, aim, met):
    assert Row("b", "m", "v", ratio, aim).met() is met


def test_an_aim_that_cannot_be_read_is_refused():
    with pytest.raises(ValueError, match="aim of 'm'"):
        Row("b", "m", "v", 1.0, "at most 2")


def test_the_runner_prints_one_table_and_refuses_unknown_benchmarks():
    done = subprocess.run([sys.executable, "-m", "bench", "--only", "grouping,scaling", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["bench", "measure"])
    table = lines[header + 1:]
    assert {line.split()[0] for line in table} == {"grouping", "scaling"}
    exact = [line for line in table if "exact / brute" in line]
    assert len(exact) == 3 and all(line.split()[-1] == "yes" for line in exact)  # exact selection equals brute force
    assert any(line.startswith("scaling") and "10 tasks: runs" in line and "258" in line for line in table)
    wrong = subprocess.run([sys.executable, "-m", "bench", "--only", "nope"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert wrong.returncode == 2 and "no benchmark 'nope'" in wrong.stderr


def test_scaling_plans_every_pair_and_interpolates_gpu_rates():
    for n in (2, 5, 10):
        runs = plan(config_for(n))
        assert sum(r.kind == "pair" for r in runs) == 3 * n * (n - 1) // 2 and sum(r.kind == "li" for r in runs) == n * (n - 1)
    assert gpu_seconds(1, 9010) == pytest.approx(1.0) and gpu_seconds(10, 1384) == pytest.approx(1.0)
    assert gpu_seconds(5, 2732) < gpu_seconds(7, 2732) < gpu_seconds(10, 2732)


@pytest.mark.ray
def test_packing_runs_on_cpu_and_sets_the_packed_total_against_one_run(train_dataset):
    """The GPU packing benchmark, checked on this machine's cores: one row pair per k, the first
    total is its own reference."""
    import json

    done = subprocess.run([sys.executable, "-m", "bench.packing", "--device", "cpu", "--per-gpu", "1,2", "--data",
                           str(train_dataset), "--tasks", "depth_zbuffer", "--json"], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout.splitlines()[-1])
    totals = [r for r in rows if "total vs one at a time" in r["measure"]]
    assert [r["measure"].split()[0] for r in totals] == ["1", "2"]
    assert totals[0]["ratio"] == pytest.approx(1.0) and totals[1]["ratio"] > 0
