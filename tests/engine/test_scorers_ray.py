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
