"""Every scorer on real trainings with a planted relation: depth_euclidean is depth_zbuffer seen
along the ray instead of the optical axis (a near copy), segment_semantic is something else. For
the target depth_zbuffer, the label and gradient scorers should rank depth_euclidean first.

ias and rsa are not asked to here: after a few dozen steps from one shared initialisation (paired
seeds) the STL encoders still differ mostly by noise; their planted-relation test uses networks
with identical encoders (test_ias_rsa.py). Here they must only run on real networks."""

import pytest
import torch

from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.engine.scorers import first_images
from raytaskaff.models import preset
from raytaskaff.scorers import Artifacts, SeedRuns, cost_of, scorer
from raytaskaff.training.loop import DataSplits, RunSpec, TrainConfig, train
from raytaskaff.training.probes import ProbeConfig

TASKS = ("depth_zbuffer", "depth_euclidean", "segment_semantic")


@pytest.fixture(scope="module")
def artifacts(train_dataset, tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    data = DataSplits(*(SplitData.open(train_dataset, s) for s in ("train", "val", "test")), stats=Manifest.load(train_dataset).stats)
    config = TrainConfig(epochs=4, batch_size=16, lr=1e-2, probes=ProbeConfig(lookahead_every=2))
    model = preset("small")
    runs = SeedRuns(0)
    for t in TASKS:
        runs.stl[t] = train(RunSpec((t,)), model, config, data, seed=0, model_path=root / f"{t}.pt")
        for p in TASKS:
            if p != t:
                runs.li[t, p] = train(RunSpec((t,), (p,)), model, config, data, seed=0)
    runs.all_tasks = train(RunSpec(TASKS), model, config, data, seed=0)
    return Artifacts(TASKS, [runs], test_images=lambda n: first_images(data.test, n))


@pytest.mark.parametrize("name", ["li", "gs", "gt", "etap"])
def test_the_near_copy_is_the_best_partner(artifacts, name):
    score = scorer(name).score(artifacts)
    table = {(r.target, r.partner): r.value for r in score.table.itertuples()}
    assert table["depth_zbuffer", "depth_euclidean"] > table["depth_zbuffer", "segment_semantic"], table
    cost = cost_of(score, scorer(name).requirements(), artifacts)
    assert cost["wall_seconds"] >= cost["marginal_wall_seconds"] >= score.compute.wall_seconds >= 0


@pytest.mark.parametrize("name", ["ias", "rsa"])
def test_stl_scorers_on_trained_networks(artifacts, name):
    score = scorer(name).score(artifacts, images=16)
    assert score.table.value.between(-1, 1).all() and len(score.table) == 6
    assert cost_of(score, scorer(name).requirements(), artifacts)["marginal_wall_seconds"] == score.compute.wall_seconds
