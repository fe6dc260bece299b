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
    for name in ("affinity.csv", "ground_truth.csv", "gains_per_seed.csv", "evaluation.json", "costs.csv", "runs.parquet"):
        assert (out / "results" / name).is_file(), name
    html = (out / "report" / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 1 + 1 + len(smoke.scorers)  # cost plot, ground truth, each scorer
    assert (out / "report" / "report.md").is_file()
    runs = pd.read_parquet(out / "results" / "runs.parquet")
    assert len(runs) == len(plan(smoke)) == 20 and (runs.status == "done").all() and runs.trained_now.all()
    assert runs.node.notna().all() and (runs.retries == 0).all() and (runs.device_seconds > 0).all()
    affinity = pd.read_csv(out / "results" / "affinity.csv")
    assert set(affinity.scorer) == set(smoke.scorers) and len(affinity) == 7 * 6
    truth = pd.read_csv(out / "results" / "ground_truth.csv")
    assert len(truth) == 6 and (truth.seeds == 2).all()
    per_seed = pd.read_csv(out / "results" / "gains_per_seed.csv")
    assert truth.set_index(["target", "partner"]).gain.to_dict() == pytest.approx(per_seed.groupby(["target", "partner"]).gain.mean().to_dict())
    summary = json.loads((out / "results" / "evaluation.json").read_text())
    assert set(summary["scorers"]) == set(smoke.scorers) and not summary["scorer_errors"]
    assert summary["noise_ceiling"]["seeds"] == 2 and summary["runs"] == {"planned": 20, "trained": 20, "skipped": 0, "failed": {}}
    costs = pd.read_csv(out / "results" / "costs.csv").set_index("name")
    assert costs.loc["ground_truth", "device_seconds"] == pytest.approx(runs[runs.kind.isin(["stl", "pair"])].device_seconds.sum())
    assert costs.loc["li", "marginal_device_seconds"] >= runs[runs.kind == "li"].device_seconds.sum()
    assert set(summary["stages"]) >= {"data", "training", "scorers", "evaluation", "total"}


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
    assert (runs.status == "failed").all() and runs.error.str.contains("at epoch 0").all()
    assert "td" in summary["scorers"] and "li" in summary["scorer_errors"]
    assert "Failed or missing" in (tmp_path / "out" / "report" / "index.html").read_text()


def test_report_rebuilds_from_results_alone(first_run, smoke, tmp_path):
    import shutil

    from raytaskaff.report.__main__ import main

    copy = tmp_path / "copy"
    shutil.copytree(Path(smoke.out) / "results", copy / "results")
    assert main([str(copy)]) == 0
    html = (copy / "report" / "index.html").read_text()
    for section in ("Noise ceiling", "Scorers against the ground truth", "Best partner per target", "Partner ranking per target",
                    "Cost", "Failed or missing", "Config"):
        assert section in html, section
    assert html.count("data:image/png;base64,") == 2 + len(smoke.scorers) and "src=''" not in html
    assert main([str(tmp_path / "nothing")]) == 2
