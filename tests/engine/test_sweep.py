"""The smoke sweep end to end on a local Ray (2 CPUs): every output, resume by counting, failures."""

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from raytaskaff.config import load_config  # noqa: E402
from raytaskaff.engine.sweep import run_sweep  # noqa: E402
from raytaskaff.plan import plan  # noqa: E402
from raytaskaff.store import ResultStore  # noqa: E402

pytestmark = pytest.mark.ray
SMOKE = Path(__file__).resolve().parents[2] / "sweeps" / "smoke.yaml"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    config = load_config(SMOKE, out=str(root / "out"))
    return dataclasses.replace(config, data=dataclasses.replace(config.data, path=str(root / "data")))


@pytest.fixture(scope="module")
def first_run(local_ray, smoke):
    return run_sweep(smoke, say=lambda *a: None)


def test_every_output(first_run, smoke):
    out = Path(smoke.out)
    for name in ("affinity.csv", "ground_truth.csv", "gains_per_seed.csv", "evaluation.json", "costs.csv", "runs.parquet",
                 "grouping.csv"):
        assert (out / "results" / name).is_file(), name
    html = (out / "report" / "index.html").read_text()
    # cost, frontier and grouping plots, ground truth, each scorer
    assert html.count("data:image/png;base64,") == 4 + len(smoke.scorers)
    assert (out / "report" / "report.md").is_file()
    runs = pd.read_parquet(out / "results" / "runs.parquet")
    assert len(runs) == len(plan(smoke)) == 20 and (runs.status == "done").all() and runs.trained_now.all()
    assert runs.node.notna().all() and (runs.retries == 0).all() and (runs.cpu_seconds > 0).all() and (runs.gpu_seconds == 0).all()
    affinity = pd.read_csv(out / "results" / "affinity.csv")
    assert set(affinity.scorer) == set(smoke.scorers) and len(affinity) == 7 * 6
    truth = pd.read_csv(out / "results" / "ground_truth.csv")
    assert len(truth) == 6 and (truth.seeds == 2).all()
    per_seed = pd.read_csv(out / "results" / "gains_per_seed.csv")
    assert truth.set_index(["target", "partner"]).gain.to_dict() == pytest.approx(per_seed.groupby(["target", "partner"]).gain.mean().to_dict())
    summary = json.loads((out / "results" / "evaluation.json").read_text())
    assert set(summary["scorers"]) == set(smoke.scorers) and not summary["scorer_errors"]
    assert set(summary["partner_dependence"]) == {*smoke.scorers, "ground_truth"}
    assert summary["noise_ceiling"]["seeds"] == 2 and summary["runs"] == {"planned": 20, "trained": 20, "skipped": 0, "failed": {}}
    costs = pd.read_csv(out / "results" / "costs.csv").set_index("name")
    assert costs.loc["ground_truth", "cpu_seconds"] == pytest.approx(runs[runs.kind.isin(["stl", "pair"])].cpu_seconds.sum())
    assert costs.loc["li", "marginal_cpu_seconds"] >= runs[runs.kind == "li"].cpu_seconds.sum()
    # without a GPU every cost is in CPU core-seconds, and the fraction says so
    assert (costs.fraction_unit == "cpu_seconds").all() and (costs.gpu_seconds == 0).all()
    assert costs.loc["li", "fraction_of_ground_truth"] == pytest.approx(costs.loc["li", "cpu_seconds"] / costs.loc["ground_truth", "cpu_seconds"])
    assert set(summary["learning"]) == set(smoke.tasks) and all(c["seeds"] == 2 and c["chance_loss"] > 0 for c in summary["learning"].values())
    assert set(summary["stages"]) >= {"data", "training", "scorers", "evaluation", "total"}
    frontier = summary["frontier"]  # 3 pairs: every scorer raw at k = 0, calibrated at k = 1, 10 draws (bootstrap 200)
    assert frontier["pairs"] == 3 and frontier["ks"] == [0, 1] and frontier["draws"] == 10
    assert frontier["stl_share"] == pytest.approx(runs[runs.kind == "stl"].cpu_seconds.sum() / costs.loc["ground_truth", "cpu_seconds"])
    assert frontier["predictors"]["li"]["points"][0]["cost"] == pytest.approx(costs.loc["li", "fraction_of_ground_truth"])
    fractions = costs.loc[list(smoke.scorers), "fraction_of_ground_truth"]
    assert fractions.max() <= frontier["combined_cost"] < fractions.sum()  # the networks scorers share, counted once
    assert "Affinity on a budget" in html


def test_groupings_are_realised_from_the_stored_runs(first_run, smoke):
    out = Path(smoke.out)
    grouping = pd.read_csv(out / "results" / "grouping.csv", keep_default_na=False)
    sources = set(smoke.scorers) | {"ground_truth", "hoa", "best", "stl", "all"}
    assert set(grouping.source) == sources and len(grouping) == len(sources)
    store = ResultStore(str(out / "store"))
    by_tasks = {r.tasks: store.find(r.key) for r in plan(smoke) if r.seed == 0 and r.kind in ("stl", "pair", "all")}
    tasks = tuple(smoke.tasks)
    for row in grouping.itertuples():
        groups = [tuple(g.split("+")) for g in row.groups.split(" | ")]
        assert set().union(*groups) == set(tasks) and row.networks == len(groups) and row.seeds == 1 and row.missing == ""
        assert row.source in ("stl", "all") or len(groups) <= 2
        # each task from its chosen network best on validation; total = sum of those test losses
        total = 0.0
        for t in tasks:
            serving = min((g for g in groups if t in g), key=lambda g: by_tasks[g].val_losses[t])
            total += by_tasks[serving].test_losses[t]
        assert row.test_total == pytest.approx(total)
    stl = grouping.set_index("source").loc["stl"]
    assert stl.relative_gain == 0 and stl.test_total == pytest.approx(sum(by_tasks[(t,)].test_losses[t] for t in tasks))


def test_resume_trains_only_what_is_missing(first_run, smoke):
    again = run_sweep(smoke, say=lambda *a: None)
    assert again["runs"]["trained"] == 0 and again["runs"]["skipped"] == 20
    assert again["scorers"]["li"]["spearman"] == first_run["scorers"]["li"]["spearman"]
    store = ResultStore(str(Path(smoke.out) / "store"))
    lost = [r for r in plan(smoke) if r.kind in ("pair", "li")][:3]
    for run in lost:
        (Path(store.root) / "runs" / run.key / "result.json").unlink()
    third = run_sweep(smoke, say=lambda *a: None)
    assert third["runs"]["trained"] == 3 and third["runs"]["skipped"] == 17
    runs = pd.read_parquet(Path(smoke.out) / "results" / "runs.parquet")
    assert sorted(runs[runs.trained_now].key) == sorted(r.key for r in lost)


def test_failed_runs_are_reported_and_the_sweep_completes(local_ray, smoke, tmp_path):
    broken = dataclasses.replace(smoke, tasks=("depth_zbuffer", "normal"), seeds=(0,), out=str(tmp_path / "out"), retries=1,
                                 training=dataclasses.replace(smoke.training, lr=1e30),
                                 scorers={"td": smoke.scorers["td"], "li": {}})
    summary = run_sweep(broken, say=lambda *a: None)
    assert len(summary["runs"]["failed"]) == len(plan(broken))
    runs = pd.read_parquet(tmp_path / "out" / "results" / "runs.parquet")
    # every network diverged: stored as diverged (not retried), counted among the failed runs, listed
    assert (runs.status == "diverged").all() and runs.error.str.contains("at epoch 0").all()
    assert runs.diverged.str.contains("is nan at epoch 0").all() and (runs.retries == 0).all()
    assert "td" in summary["scorers"] and "li" in summary["scorer_errors"]
    html = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "Failed or missing" in html and "Diverged networks" in html


def test_report_rebuilds_from_results_alone(first_run, smoke, tmp_path):
    import shutil

    from raytaskaff.report.__main__ import main

    copy = tmp_path / "copy"
    shutil.copytree(Path(smoke.out) / "results", copy / "results")
    assert main([str(copy)]) == 0
    html = (copy / "report" / "index.html").read_text()
    for section in ("Noise ceiling", "Scorers against the ground truth", "Best partner per target", "Partner ranking per target",
                    "Cost", "Affinity on a budget", "Groupings, trained", "Failed or missing", "Config"):
        assert section in html, section
    assert html.count("data:image/png;base64,") == 4 + len(smoke.scorers) and "src=''" not in html
    assert main([str(tmp_path / "nothing")]) == 2


BAD_SCORER = """
from raytaskaff.scorers.base import Needs, Scorer


class Bad(Scorer):
    needs = Needs(stl=True)

    def compute(self, artifacts):
        {body}
"""


def test_failing_scorers_are_listed_and_the_report_is_written_without_them(first_run, smoke, tmp_path):
    """Scorers that raise or return what is not a table: each one line in the summary and the
    report, the others scored, nothing trained again (the smoke sweep's store is reused)."""
    bodies = {"raises": "raise RuntimeError('out of ideas\\nsecond line')",
              "arrays": "import numpy as np; return {p: np.zeros(3) for p in artifacts.ordered_pairs()}",
              "nothing": "return None",
              "nan": "return {p: float('nan') for p in artifacts.ordered_pairs()}"}
    scorers = {"td": smoke.scorers["td"]}
    for name, body in bodies.items():
        (tmp_path / f"{name}.py").write_text(BAD_SCORER.format(body=body))
        scorers[name] = {"module": str(tmp_path / f"{name}.py")}
    config = dataclasses.replace(smoke, out=str(tmp_path / "out"), storage=str(Path(smoke.out) / "store"), scorers=scorers,
                                 grouping=dataclasses.replace(smoke.grouping, groups=()))
    said = []
    summary = run_sweep(config, say=said.append)
    assert summary["runs"]["trained"] == 0 and set(summary["scorers"]) == {"td"}
    errors = summary["scorer_errors"]
    log = tmp_path / "out" / "logs" / "scorer-raises.txt"
    assert errors["raises"] == f"RuntimeError: out of ideas (traceback in {log})" and "second line" in log.read_text()
    assert errors["arrays"] == "arrays: the value of ('depth_zbuffer', 'normal') is ndarray of shape (3,), not a finite number"
    assert errors["nothing"] == "nothing: compute returned NoneType, not a dict {(target, partner): value}"
    assert errors["nan"] == "nan: the value of ('depth_zbuffer', 'normal') is nan, not a finite number"
    assert all(f"scorer {name} failed: {message}" in said for name, message in errors.items())
    html = (tmp_path / "out" / "report" / "index.html").read_text()
    assert all(name in html for name in bodies) and "out of ideas" in html


def _small(smoke, out, **data):
    """Two tasks, one seed, td only: the three runs of the ground truth."""
    return dataclasses.replace(smoke, tasks=("depth_zbuffer", "normal"), seeds=(0,), out=str(out),
                               scorers={"td": smoke.scorers["td"]}, grouping=dataclasses.replace(smoke.grouping, groups=()),
                               data=dataclasses.replace(smoke.data, **data))


def test_memory_mapped_trials_train_identical_runs(first_run, smoke, tmp_path):
    """Trials that memory-map the shards themselves see the rows of the object store, in its order:
    the same runs give bit-identical losses."""
    config = _small(smoke, tmp_path / "out", reader="mmap")
    summary = run_sweep(config, say=lambda *a: None)
    assert summary["runs"]["trained"] == 3 and not summary["runs"]["failed"]
    here, there = ResultStore(str(tmp_path / "out" / "store")), ResultStore(str(Path(smoke.out) / "store"))
    for run in plan(config):
        assert here.find(run.key).test_losses == there.find(run.key).test_losses, run.label
        assert here.find(run.key).history == there.find(run.key).history, run.label


def test_streamed_trials_train_identical_runs_and_moved_data_keeps_its_runs(first_run, smoke, tmp_path):
    """The same shards streamed through a URI and put in the object store from a path spelled with a
    trailing slash: one content, one set of keys, bit-identical losses; a second sweep over a copy
    of the data elsewhere trains nothing."""
    import shutil

    data = Path(smoke.data.path).resolve()
    streamed = _small(smoke, tmp_path / "streamed", kind="shards", path=f"file://{data}", reader="streaming", shuffle_window=2)
    stored = _small(smoke, tmp_path / "stored", kind="shards", path=f"{data}/", reader="object_store", shuffle_window=2)
    a, b = run_sweep(streamed, say=lambda *a: None), run_sweep(stored, say=lambda *a: None)
    assert a["runs"]["trained"] == b["runs"]["trained"] == 3
    from raytaskaff.data.shards import Manifest

    content = Manifest.load(data).fingerprint
    keys = [r.key for r in plan(streamed, content)]
    assert keys == [r.key for r in plan(stored, content)]
    assert not set(keys) & {r.key for r in plan(smoke)}  # a shuffle window is another data order
    here, there = ResultStore(str(tmp_path / "streamed" / "store")), ResultStore(str(tmp_path / "stored" / "store"))
    for key in keys:
        assert here.find(key).test_losses == there.find(key).test_losses and here.find(key).history == there.find(key).history

    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    again = run_sweep(dataclasses.replace(stored, data=dataclasses.replace(stored.data, path=str(moved))), say=lambda *a: None)
    assert again["runs"]["trained"] == 0 and again["runs"]["skipped"] == 3


def test_data_replaced_in_place_is_trained_again(smoke, tmp_path, local_ray):
    """Another dataset at the same path (other seed) gets new keys: nothing of the old one is reused."""
    from raytaskaff.data.synth import SynthConfig, generate

    path = tmp_path / "data"
    old = generate(path, SynthConfig(n=96, size=16, seed=0)).fingerprint
    config = _small(smoke, tmp_path / "out", kind="shards", path=str(path))
    first = run_sweep(config, say=lambda *a: None)
    new = generate(path, SynthConfig(n=96, size=16, seed=1), overwrite=True).fingerprint
    second = run_sweep(config, say=lambda *a: None)
    assert old != new
    assert first["runs"]["trained"] == second["runs"]["trained"] == 3 and second["runs"]["skipped"] == 0
    store = ResultStore(str(tmp_path / "out" / "store"))
    old_keys, new_keys = {r.key for r in plan(config, old)}, {r.key for r in plan(config, new)}
    assert not old_keys & new_keys and all(store.has(k) for k in old_keys | new_keys)


def test_run_counters_reach_the_metrics_export(first_run):
    """The dashboard's metrics: Ray exports the sweep's counters on the node's metrics port."""
    import time
    import urllib.request

    port = ray.nodes()[0]["MetricsExportPort"]
    done = []
    for _ in range(30):
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        done = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("ray_raytaskaff_runs_done_total")]
        if done and sum(done) >= 20:
            break
        time.sleep(1)
    assert sum(done) >= 20  # the 20 runs of the first smoke sweep, at least
