"""The dry run (`python -m raytaskaff.sweep --dry-run`): it counts what the sweep plans, the
training views the sweep trains on, and device-hours for every shipped config."""

import dataclasses
import itertools
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from raytaskaff.config import load_config
from raytaskaff.plan import group_runs, plan
from raytaskaff.sweep import describe, main

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "sweeps").glob("*.yaml"))


def _grouping_bound(config) -> int:
    """The most grouping runs, by counting: per K > 1, a source's choice of at most K groups
    holds at most K groups of 3 to n - 1 tasks (the others are STL, pair and all-task runs); on
    each grouping seed no more than the number of such groups."""
    n = len(config.tasks)
    if not config.grouping.groups or config.grouping.exhaustive:
        return 0
    sources = len(config.active_scorers) + 2  # + the ground truth and hoa
    new = sum(math.comb(n, k) for k in range(3, n))
    return len(config.grouping_seeds) * min(sources * sum(k for k in config.grouping.groups if k > 1), new)


def _args(config) -> list[str]:
    """--views and --size where the config's dataset is not there to tell them."""
    return [] if config.data.kind == "synthetic" else ["--views", "20000", "--size", "64"]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_counts_its_runs_and_its_device_hours(path, capsys):
    config = load_config(path)
    assert main(["--config", str(path), "--dry-run", "--gpus", "8", *_args(config)]) == 0
    text = capsys.readouterr().out
    planned, bound = len(plan(config, "not-yet-read")), _grouping_bound(config)
    head = text.splitlines()[0]
    if bound:
        assert head.endswith(f", {planned} runs + up to {bound} grouping runs (at most {planned + bound})"), head
    else:
        assert head.endswith((f", {planned} runs", f", {planned} runs (the grouping stage adds none)")), head
    found = re.search(r"^estimated device-hours: ([0-9.]+) (GPU|CPU core)-hours", text, re.MULTILINE)
    assert found and float(found[1]) > 0 and "none" not in found[0], text
    assert re.search(r"^wall-clock on 8 (GPUs|CPU cores): [0-9.]+ h", text, re.MULTILINE), text


def test_an_unmeasured_model_is_estimated_by_flops_and_the_line_says_from_which_measurement(capsys):
    """synthetic-10's "medium" has no cuda measurement: scaled from the nearest one, said in the line."""
    assert main(["--config", str(ROOT / "sweeps" / "synthetic-10.yaml"), "--dry-run"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("estimated device-hours"))
    assert "estimate: model 'medium' has no cuda measurement, its rate scaled by FLOPs per sample from small at 32 px" in line
    assert "measured on NVIDIA H100 80GB HBM3" in line


def test_the_default_dry_run_counts_the_planned_runs_and_the_most_grouping_runs():
    """The default: 116 planned runs, and on seed 0 the groups that the 13 sources (11 scorers, the
    ground truth, hoa) choose at K = 2. By enumeration: a choice of at most 2 groups covering the
    5 tasks holds at most 2 groups of 3 or 4 tasks, and there are 15 such groups: min(13 x 2, 15).
    The planner's own `group_runs` (what the grouping stage calls) makes 15 new runs of them."""
    config = load_config(ROOT / "sweeps" / "default.yaml")
    tasks = config.tasks
    runs = plan(config)
    subsets = [g for k in range(1, 6) for g in itertools.combinations(tasks, k)]
    choices = [c for c in itertools.combinations(subsets, 2) if set().union(*c) == set(tasks)] + [(tuple(tasks),)]
    middle = {g for c in choices for g in c if 3 <= len(g) <= 4}
    per_choice = max(sum(3 <= len(g) <= 4 for g in c) for c in choices)
    assert (per_choice, len(middle)) == (2, 15)
    sources = len(config.active_scorers) + 2
    most = min(sources * per_choice, len(middle))
    known = {r.key for r in runs}
    made = {r.key for r in group_runs(config, sorted(middle), runs) if r.key not in known}
    assert len(runs) == 116 and most == len(made) == 15
    text = describe(config)
    assert text.splitlines()[0] == "sweep default: 5 tasks x 6 seeds, 116 runs + up to 15 grouping runs (at most 131)"
    assert "runs by kind: stl 30, pair 60, all 6, li 20; grouping runs: up to 15" in text
    assert "trials: 116, one network each (resources.bundle: auto on CPUs), and up to 15 for the grouping runs" in text


def test_the_grouping_runs_the_scorers_really_choose_stay_within_the_bound():
    """Random affinity tables through the grouping stage's own choice and planning functions
    (`affinity_choices`, `group_runs`, as pipeline.validate_groupings calls them)."""
    from raytaskaff.grouping.validation import affinity_choices

    config = load_config(ROOT / "sweeps" / "default.yaml")
    runs, tasks = plan(config), tuple(config.tasks)
    known = {r.key for r in runs}
    rng = random.Random(0)
    counts = []
    for _ in range(20):
        tables = {f"source{i}": {(t, p): rng.gauss(0, 1) for t in tasks for p in tasks if t != p} for i in range(9)}
        choices, errors = affinity_choices(tables, tasks, config.grouping.groups)
        assert not errors
        wanted = [g for c in choices for g in c.groups] + [tasks]
        counts.append(len({r.key for r in group_runs(config, wanted, runs) if r.key not in known}))
    assert max(counts) <= 15 and max(counts) > 0


def test_the_default_dry_run_counts_the_views_the_sweep_trains_on():
    """1008 training views (42 whole buildings of 24), not 40 % of 2500; a run trains on 15 full
    batches of 64 of them an epoch. Where the default's data is rendered, its manifest agrees."""
    config = load_config(ROOT / "sweeps" / "default.yaml")
    text = describe(config)
    assert ("training views: 1008 of 16 px (the train split of 2500 synthetic views, whole buildings of 24); "
            "a run trains on 960 of them an epoch (15 batches of 64, the last partial batch dropped)") in text
    # and the evaluation: the validation split each epoch (10 buildings of 24), the test split once (52, and the last of 4)
    assert ("(1008 training views of 16 px x 16 epochs, and 240 validation views an epoch and 1252 test views once "
            "at 0.33 of a training sample each;") in text
    rendered = ROOT / config.data.path / "manifest.json"
    if rendered.exists():
        from raytaskaff.data.shards import Manifest

        manifest = Manifest.load(ROOT / config.data.path)
        if manifest.producer.get("params", {}).get("n") == config.data.n:
            assert manifest.splits["train"]["count"] == 1008


def test_the_dry_runs_views_are_the_rendered_train_split(tmp_path):
    """Rendered for real (50 views of 8 px, in tmp_path): the train split is one building's
    2 views, which the dry run says without rendering anything."""
    from raytaskaff.data.shards import Manifest
    from raytaskaff.data.synth import SynthConfig, generate

    smoke = load_config(ROOT / "sweeps" / "smoke.yaml")
    data = dataclasses.replace(smoke.data, path=str(tmp_path / "unrendered"), n=50, size=8, seed=3, splits=(0.4, 0.1, 0.5))
    config = dataclasses.replace(smoke, data=data, training=dataclasses.replace(smoke.training, batch_size=2))
    text = describe(config)
    assert not (tmp_path / "unrendered").exists()
    generate(tmp_path / "rendered", SynthConfig(n=50, size=8, seed=3, split_fractions=(0.4, 0.1, 0.5)))
    count = Manifest.load(tmp_path / "rendered").splits["train"]["count"]
    assert count == 2 != int(50 * 0.4)
    assert f"training views: {count} of 8 px" in text


@pytest.mark.parametrize("args,message", [
    (["--views", "700000"], "--views needs --size: /data/taskonomy-256 has no readable manifest to tell the image size"),
    (["--size", "256"], "--size needs --views: /data/taskonomy-256 has no readable manifest to tell the training views"),
    (["--views", "700000", "--size", "256", "--gpus", "-1"], "--gpus: a whole number of at least 1, got -1"),
    (["--views", "0", "--size", "256"], "--views: a whole number of at least 1, got 0"),
    (["--views", "700000", "--size", "0"], "--size: a whole number of at least 1, got 0"),
])
def test_bad_dry_run_arguments_are_one_line_and_exit_2(args, message, capsys):
    assert main(["--config", str(ROOT / "sweeps" / "taskonomy-5.yaml"), "--dry-run", *args]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [f"error: {message}"] and captured.out == ""


def test_dry_run_arguments_without_a_dry_run_are_refused_before_anything_starts(capsys):
    assert main(["--config", str(ROOT / "sweeps" / "smoke.yaml"), "--gpus", "8"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --views, --size and --gpus size a dry run: give them with --dry-run"]


def test_views_alone_take_the_size_of_a_synthetic_dataset(capsys):
    assert main(["--config", str(ROOT / "sweeps" / "default.yaml"), "--dry-run", "--views", "5000"]) == 0
    assert "training views: 5000 of 16 px (as given, at the dataset's 16 px)" in capsys.readouterr().out


def test_the_dry_run_imports_no_torch():
    code = ("import sys; from raytaskaff.sweep import main; "
            "main(['--config', 'sweeps/synthetic-10.yaml', '--dry-run', '--gpus', '8']); "
            "main(['--config', 'sweeps/taskonomy-5.yaml', '--dry-run', '--views', '700000', '--size', '256']); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_the_dry_run_says_where_each_kinds_cost_factor_comes_from(tmp_path, monkeypatch):
    """celeba-40 on GPUs: with a side-by-side row of tag_celeba's pooled heads (measured on cpu
    only) every kind's factor is that row's, said so; without it the FLOPs model, said so. The
    default on CPU (dense heads): the rates by task count for the multi-task runs, the FLOPs model
    for label injection (no LI row)."""
    import json

    from raytaskaff import throughput

    table = tmp_path / "throughput.json"
    table.write_text(json.dumps({"about": "test", "measurements": [
        {"device": "gpu y", "kind": "cuda", "model": "small", "size": 32, "batch_size": 64, "samples_per_second": {"1": 9000}},
        {"device": "cpu x", "kind": "cpu", "model": "small", "size": 32, "batch_size": 64,
         "samples_per_second": {"1": 1500, "2": 1000, "5": 500}}]}))
    monkeypatch.setattr(throughput, "TABLE", table)
    forty = load_config(ROOT / "sweeps" / "celeba-40.yaml")

    def kinds_line(config) -> str:
        text = describe(config, views=20000, size=64, devices=8)
        return next(x for x in text.splitlines() if x.startswith("cost of a run over an STL run's"))

    flops = kinds_line(forty)
    assert flops.count("FLOPs model: nothing measured for tag_celeba with pooled heads") == 3  # pair, all, group
    assert "li x1.0" in flops and "FLOPs model: nothing measured for tag_celeba with label injection" in flops
    throughput.record_kind_factors(throughput.KindFactors("cpu x", "cpu", "tag_celeba", "pooled", 64, 256,
                                                          {"2": 0.9, "10": 1.2, "40": 2.0, "li": 1.1}, date="2026-12-06"), table)
    measured = kinds_line(forty)
    where = "measured side by side on cpu (2026-12-06), nothing measured on cuda"
    assert f"pair x0.90 ({where})" in measured and f"all x2.00 (40 tasks, {where})" in measured
    assert f"li x1.10 ({where})" in measured
    # the largest groups (38 and 39 tasks) between 10 and 40 tasks, linear in the task count
    assert f"group x{1.2 + 0.8 * 28 / 30:.2f}-{1.2 + 0.8 * 29 / 30:.2f} (38-39 tasks, {where})" in measured
    default = describe(load_config(ROOT / "sweeps" / "default.yaml"))
    line = next(x for x in default.splitlines() if x.startswith("cost of a run over an STL run's"))
    assert "pair x1.50 (the rates by task count measured on cpu x)" in line
    assert "all x3.00 (5 tasks, the rates by task count measured on cpu x)" in line
    assert "li x1.0" in line and "FLOPs model: nothing measured for small with label injection" in line


@pytest.mark.parametrize("name, views, size, gpus", [("taskonomy-5", 700000, 256, 8), ("celeba-40", 162770, 64, 8),
                                                     ("synthetic-10", 2000, 32, 1), ("synthetic-10", 2000, 32, 8)])
def test_bundling_never_makes_the_wall_clock_worse(name, views, size, gpus):
    """The trials the engine would make (`choose_bundles`) take no longer on `gpus` GPUs under the
    cost model than one network per trial, whichever it picks; and where it picks bundles, they
    are the memory-sized ones."""
    from raytaskaff import throughput
    from raytaskaff.estimate import choose_bundles, run_costs, sized, slots_of, trial_seconds, wall_seconds
    from raytaskaff.plan import bundles

    config = load_config(ROOT / "sweeps" / f"{name}.yaml")
    runs = plan(config, "dry")
    chosen, why = choose_bundles(config, runs, size, views, gpus)
    seconds = {k: c[0] for k, c in run_costs(config, runs, size, views).items()}
    r, overhead = config.resources, throughput.trial_overhead("cuda")

    def wall(trials):
        factor = throughput.bundle_factor("cuda", config.model.preset)
        return wall_seconds(trial_seconds(trials, seconds, factor), gpus, "cuda", r.cpus_per_run, r.gpus_per_run,
                            r.max_concurrent, overhead.seconds if overhead else 0.0)

    alone = bundles(runs, 1)
    assert wall(chosen) <= wall(alone) + 1e-9
    assert sorted(k for b in chosen for k in (run.key for run in b.runs)) == sorted(run.key for run in runs)
    if why:
        assert all(len(b.runs) == 1 for b in chosen) and "one network per trial" in why
    else:
        assert [b.key for b in chosen] == [b.key for b in sized(config, runs, size, slots_of(config, gpus))]


def test_the_flagship_trains_its_large_networks_one_per_trial():
    """taskonomy-5 at Taskonomy's size: each network fills its share for hours, so the dry run
    trains one per trial and says why, with both wall-clocks."""
    text = describe(load_config(ROOT / "sweeps" / "taskonomy-5.yaml"), views=700000, size=256, devices=8)
    assert "trials: 108, one network each (bundling would not be faster)" in text
    found = re.search(r"bundling: one network per trial: bundled, the trials would take ([0-9.]+) h on 8 GPUs "
                      r"against ([0-9.]+) h apart", text)
    assert found and float(found[2]) < float(found[1])
    assert re.search(rf"wall-clock on 8 GPUs: {found[2]} h", text)
