"""synthetic-10, reduced (tiny data and model, one seed, no label injection): ten tasks end to end."""

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from raytaskaff.config import load_config  # noqa: E402
from raytaskaff.sections import ModelSection  # noqa: E402
from raytaskaff.engine.sweep import run_sweep  # noqa: E402
from raytaskaff.plan import plan, summary  # noqa: E402
from raytaskaff.settings import Training  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # many tasks end to end: the forty-task test, in the default suite
TEN = Path(__file__).resolve().parents[2] / "sweeps" / "synthetic-10.yaml"


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    root = tmp_path_factory.mktemp("ten")
    config = load_config(TEN, out=str(root / "out"))
    return dataclasses.replace(
        config, data=dataclasses.replace(config.data, path=str(root / "data"), n=160, size=16, workers=2), seeds=(0,),
        model=ModelSection(preset="small", widths=(8, 16), decoder_width=4), training=Training(epochs=1, batch_size=32, lr=0.01),
        scorers={k: v for k, v in config.scorers.items() if k in ("td", "rsa", "gs", "gt")} | {"rsa": {"images": 16}},
        resources=dataclasses.replace(config.resources, cpus_per_run=1, gpus_per_run=0, scorer_actors=1),
        grouping=dataclasses.replace(config.grouping, groups=(2, 3)), bootstrap=50)


def test_ten_tasks_end_to_end(local_ray, reduced):
    assert summary(plan(reduced)) == {"stl": 10, "pair": 45, "all": 1}
    result = run_sweep(reduced, say=lambda *a: None)
    out = Path(reduced.out)
    runs = pd.read_parquet(out / "results" / "runs.parquet")
    assert (runs.status == "done").all() and runs.kind.value_counts()["group"] >= 1  # chosen groups of 3+ tasks were trained
    truth = pd.read_csv(out / "results" / "ground_truth.csv")
    assert len(truth) == 90 and truth.gain.notna().all()
    affinity = pd.read_csv(out / "results" / "affinity.csv")
    assert affinity.groupby("scorer").size().to_dict() == {name: 90 for name in reduced.scorers}
    grouping = pd.read_csv(out / "results" / "grouping.csv")
    assert set(grouping.max_groups) >= {2, 3} and grouping.test_total.notna().all()
    for row in grouping.itertuples():
        assert set().union(*(g.split("+") for g in row.groups.split(" | "))) == set(reduced.tasks)
    assert result["grouping"]["errors"] == {}
    html = (out / "report" / "index.html").read_text()
    # every task in every per-target table, one heatmap per scorer plus the ground truth, the three plots
    assert html.count("data:image/png;base64,") == 4 + len(reduced.scorers)
    # a target may carry the "(did not learn)" mark: one epoch on 160 views need not beat chance
    assert all(len(re.findall(rf"<td>{t}( \(did not learn\))?</td>", html)) >= 2 for t in reduced.tasks)
    learning = json.loads((out / "results" / "evaluation.json").read_text())["learning"]
    assert set(learning) == set(reduced.tasks) and all(v["chance_loss"] > 0 for v in learning.values())
    assert json.loads((out / "results" / "evaluation.json").read_text())["tasks"] == list(reduced.tasks)
