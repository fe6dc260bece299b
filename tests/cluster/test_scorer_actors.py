"""Scorer actors on a cluster with one logical GPU (Ray's resources need no real GPU: the actors
compute on the CPU): taskonomy-5's four actors of 0.5 GPU finish with the two that fit, said in one
line, and actors that cannot start fail in one line within their bound, never waiting forever."""

import time

import pytest

ray = pytest.importorskip("ray")

from raytaskaff.data.reader import SplitData  # noqa: E402
from raytaskaff.engine.data import share_splits  # noqa: E402
from raytaskaff.engine.scorers import ModelMappers, ScorerActorsError, first_images  # noqa: E402
from raytaskaff.models import MultiTaskNet, preset, save_model  # noqa: E402
from raytaskaff.scorers import Artifacts, SeedRuns, scorer  # noqa: E402
from raytaskaff.tasks import task  # noqa: E402
from raytaskaff.training.loop import RunResult, RunSpec  # noqa: E402

pytestmark = pytest.mark.ray
TASKS = ("depth_zbuffer", "normal", "edge_texture")


@pytest.fixture(scope="module")
def one_gpu():
    if ray.is_initialized():  # another module's Ray: this one needs its own resources
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _seed_runs(tmp_path) -> SeedRuns:
    runs = SeedRuns(0)
    for i, t in enumerate(TASKS):
        save_model(MultiTaskNet([task(t)], preset("small", widths=(8, 8)), seed=i), tmp_path / f"{t}.pt", i)
        runs.stl[t] = RunResult(RunSpec((t,)), 0, {t: 1.0}, {t: 1.0}, {}, 0, 1, [], 1.0, 1.0, "cpu", 1,
                                model_path=str(tmp_path / f"{t}.pt"))
    return runs


def test_four_actors_of_half_a_gpu_on_one_gpu_start_the_two_that_fit(one_gpu, tiny_dataset, tmp_path):
    runs, said = _seed_runs(tmp_path), []
    test = SplitData.open(tiny_dataset, "test")
    local = scorer("rsa").score(Artifacts(TASKS, [runs], test_images=lambda n: first_images(test, n)), images=6)
    start = time.perf_counter()
    with ModelMappers(share_splits(tiny_dataset, "object_store"), actors=4, num_cpus=0.5, num_gpus=0.5, say=said.append,
                      start_timeout=60) as mapper:
        remote = scorer("rsa").score(Artifacts(TASKS, [runs], map_models=mapper), images=6)
        assert len(mapper.actors) == 2 and mapper.started >= 1  # the work began with the first that started
        assert ray.get([a.ready.remote() for a in mapper.actors], timeout=60) == [True, True]  # both fit at once
        again = scorer("rsa").score(Artifacts(TASKS, [runs], map_models=mapper), images=6)
        assert mapper.started == 2  # the second took work once it had started
    assert time.perf_counter() - start < 90
    assert remote.table.equals(local.table) and again.table.equals(local.table)
    assert said == ["scorer actors: 2 of the 4 asked for (resources.scorer_actors) fit on the cluster at once, at 0.5 CPU, "
                    "0.5 GPU each: starting 2"]


@ray.remote(num_gpus=1, num_cpus=0)
class _Holder:
    def ping(self) -> bool:
        return True


def test_actors_that_cannot_start_fail_in_one_line_within_their_bound(one_gpu, tiny_dataset, tmp_path):
    """The GPU is held by something else (another job, say): the actor fits the cluster but cannot
    start; the first call waits its bound, then fails, and the waiting actor is ended."""
    holder = _Holder.remote()
    ray.get(holder.ping.remote())
    try:
        start = time.perf_counter()
        mapper = ModelMappers(share_splits(tiny_dataset, "object_store"), actors=1, num_cpus=0.5, num_gpus=0.5, start_timeout=3)
        with pytest.raises(ScorerActorsError) as failed:
            scorer("rsa").score(Artifacts(TASKS, [_seed_runs(tmp_path)], map_models=mapper), images=6)
        assert time.perf_counter() - start < 30 and not mapper.actors
        assert str(failed.value) == ("no scorer actor started within 3 s: each asks for 0.5 CPU, 0.5 GPU, the cluster has "
                                     "2 CPU, 0 GPU free (resources.scorer_actors, cpus_per_run, gpus_per_run)")
    finally:
        ray.kill(holder)
