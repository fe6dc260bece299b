"""The benchmark runner: aims are read right, and `python -m bench` gathers every row in one table."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
    assert any(line.startswith("scaling") and "10 tasks: runs" in line and "426" in line for line in table)  # 6 seeds
    wrong = subprocess.run([sys.executable, "-m", "bench", "--only", "nope"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert wrong.returncode == 2 and "no benchmark 'nope'" in wrong.stderr


def test_scaling_plans_every_pair_and_interpolates_gpu_rates():
    for n in (2, 5, 10):
        config = config_for(n)
        runs = plan(config)
        assert sum(r.kind == "pair" for r in runs) == len(config.seeds) * n * (n - 1) // 2
        assert sum(r.kind == "li" for r in runs) == n * (n - 1)  # on the first seed
    assert gpu_seconds(1, 9010) == pytest.approx(1.0) and gpu_seconds(10, 1384) == pytest.approx(1.0)
    assert gpu_seconds(5, 2732) < gpu_seconds(7, 2732) < gpu_seconds(10, 2732)


@pytest.mark.ray
@pytest.mark.slow  # a benchmark's own training
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


def test_signal_variants_are_the_default_with_overrides(tmp_path):
    from bench.signal import parse_overrides, variant_config

    overrides = parse_overrides("data.n=2500,data.splits=[0.4,0.1,0.5],model.widths=[8,16],tasks=[normal,depth_zbuffer]")
    assert overrides == {"data.n": 2500, "data.splits": [0.4, 0.1, 0.5], "model.widths": [8, 16], "tasks": ["normal", "depth_zbuffer"]}
    config = variant_config(overrides, (0, 1), "v", tmp_path)
    assert (config.data.n, config.data.splits, config.model.widths, config.tasks) == (2500, (0.4, 0.1, 0.5), (8, 16), ("normal", "depth_zbuffer"))
    assert config.seeds == (0, 1) and list(config.scorers) == ["td"] and config.grouping.groups == ()
    assert config.data.path == str(tmp_path / "data" / "signal" / "n2500-s16-seed0-0.4-0.1-0.5")
    assert {r.kind for r in plan(config)} == {"stl", "pair"}
    with pytest.raises(SystemExit, match="expected key=value such as data.n=2000, got 'epochs'"):
        parse_overrides("data.n=3,epochs")


@pytest.mark.ray
@pytest.mark.slow  # a benchmark's own sweep; the ceiling it reports is tested in tests/evaluation
def test_signal_measures_the_ceiling_and_reads_stored_runs_back(tmp_path):
    """A tiny variant end to end: the ceilings are correlations, a second pass trains nothing and
    gives the same numbers (paired seeds, deterministic CPU training)."""
    import json

    tiny = ("tiny:data.n=240,data.size=16,data.splits=[0.6,0.2,0.2],data.workers=1,training.epochs=1,training.batch_size=16,"
            "tasks=[depth_zbuffer,normal,edge_texture]")
    command = [sys.executable, "-m", "bench.signal", "--variants", "", "--set", tiny, "--seeds", "0,1", "--root", str(tmp_path)]
    passes = []
    for _ in range(2):
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        passes.append(json.loads(next(line for line in done.stderr.splitlines() if line.startswith('{"variant"'))))
    first, second = passes
    assert first["runs"] == 12 and not first["stored"] and second["stored"]
    assert -1 <= first["single_seed"] <= 1 and first["split_half"] == pytest.approx(first["single_seed"])  # 2 seeds: 1 vs 1
    assert {k: second[k] for k in ("single_seed", "split_half", "gains")} == {k: first[k] for k in ("single_seed", "split_half", "gains")}
    assert len(first["gains"]) == 6 and (tmp_path / "data" / "signal" / "n240-s16-seed0-0.6-0.2-0.2" / "manifest.json").exists()
    assert any(abs(gain) >= 0.1 for gain, _ in first["gains"].values())  # partners changed the targets' networks


def test_a_resident_split_hands_out_its_first_batches_again_without_gathering(tiny_dataset):
    from bench.training import ResidentSplit
    from raytaskaff.data.reader import SplitData

    split = SplitData.open(tiny_dataset, "train")
    resident = ResidentSplit(split, "cpu", held=2)
    names = ["rgb", "depth_zbuffer"]
    first = list(split.batches(4, names, shuffle=True, seed=0, drop_last=True))[:2]
    got = [job(False) for job in resident.jobs(4, names, shuffle=True, seed=7, drop_last=True)]
    assert len(got) == len(split) // 4  # an epoch's steps
    for step, batch in enumerate(got):
        for name in names:
            assert torch.equal(batch[name], first[step % 2][name])
    assert got[0]["rgb"] is got[2]["rgb"]  # held, not gathered again
    assert len(list(resident.jobs(4, names))) == -(-len(split) // 4)


def test_the_training_bench_sets_the_fed_rate_against_its_roofline(tiny_dataset):
    from bench.training import rows

    threads = torch.get_num_threads()
    try:
        out = list(rows(str(tiny_dataset), counts=(1,), batch_size=4, resident=True, size=16))
    finally:
        torch.set_num_threads(threads)
    assert [r.measure for r in out] == ["roofline (resident batches), 1 task(s)", "  fed by the reader, 1 task(s)"]
    roof = float(out[0].value.split()[0])
    fed, against = (float(v) for v in out[1].value.split()[::2][:2])
    assert against == roof and roof > 0 and fed > 0
    assert out[1].ratio == pytest.approx(fed / roof, rel=0.01)
