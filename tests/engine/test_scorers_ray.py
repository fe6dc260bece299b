"""ias and rsa through Ray actors give the same tables as without Ray."""

import pytest

ray = pytest.importorskip("ray")

from raytaskaff.data.reader import SplitData  # noqa: E402
from raytaskaff.engine.data import share_splits  # noqa: E402
from raytaskaff.engine.scorers import ModelMappers, first_images  # noqa: E402
from raytaskaff.models import MultiTaskNet, preset, save_model  # noqa: E402
from raytaskaff.scorers import Artifacts, SeedRuns, scorer  # noqa: E402
from raytaskaff.tasks import task  # noqa: E402
from raytaskaff.training.loop import RunResult, RunSpec  # noqa: E402

pytestmark = pytest.mark.ray
TASKS = ("depth_zbuffer", "normal", "edge_texture")


def _stl(name, path):
    return RunResult(RunSpec((name,)), 0, {name: 1.0}, {name: 1.0}, {}, 0, 1, [], 1.0, 1.0, "cpu", 1, model_path=str(path))


@pytest.mark.parametrize("reader", ["object_store", "mmap", "streaming"])
@pytest.mark.parametrize("name", ["ias", "rsa"])
def test_actors_match_the_local_computation(local_ray, tiny_dataset, tmp_path, name, reader):
    runs = SeedRuns(0)
    for i, t in enumerate(TASKS):
        save_model(MultiTaskNet([task(t)], preset("small", widths=(8, 8)), seed=i), tmp_path / f"{t}.pt", i)
        runs.stl[t] = _stl(t, tmp_path / f"{t}.pt")
    test = SplitData.open(tiny_dataset, "test")
    local = scorer(name).score(Artifacts(TASKS, [runs], test_images=lambda n: first_images(test, n)), images=6)
    root = f"file://{tiny_dataset}" if reader == "streaming" else tiny_dataset
    with ModelMappers(share_splits(root, reader, window=1), actors=2, num_cpus=0.5) as mapper:
        remote = scorer(name).score(Artifacts(TASKS, [runs], map_models=mapper), images=6)
    assert remote.table.equals(local.table)


USER_SCORER = '''
import numpy as np

from raytaskaff.scorers.base import Needs, Scorer


def mean_representation(model, images):
    return float(model.represent(images).mean())


class MeanGap(Scorer):
    needs = Needs(stl=True)

    def compute(self, artifacts, images: int = 4):
        means = artifacts.apply_to_models(mean_representation, artifacts.stl_model_paths(artifacts.seeds[0]), images)
        return {(t, p): -abs(means[t] - means[p]) for t, p in artifacts.ordered_pairs()}
'''


def test_a_scorer_from_the_users_file_runs_on_the_actors(local_ray, tiny_dataset, tmp_path):
    """Its functions are not importable on the workers: they travel by value."""
    from raytaskaff.engine.sweep import ship_by_value
    from raytaskaff.scorers.base import load_scorer

    runs = SeedRuns(0)
    for i, t in enumerate(TASKS):
        save_model(MultiTaskNet([task(t)], preset("small", widths=(8, 8)), seed=i), tmp_path / f"{t}.pt", i)
        runs.stl[t] = _stl(t, tmp_path / f"{t}.pt")
    (tmp_path / "gap.py").write_text(USER_SCORER)
    mine = load_scorer("gap", str(tmp_path / "gap.py"))
    test = SplitData.open(tiny_dataset, "test")
    local = mine.score(Artifacts(TASKS, [runs], test_images=lambda n: first_images(test, n)), images=5)
    ship_by_value(mine)
    with ModelMappers(share_splits(tiny_dataset, "object_store"), actors=1, num_cpus=0.5) as mapper:
        remote = mine.score(Artifacts(TASKS, [runs], map_models=mapper), images=5)
    assert remote.name == "gap" and remote.table.equals(local.table) and (local.table.value < 0).all()
