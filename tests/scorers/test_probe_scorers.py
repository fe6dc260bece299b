"""gs, gt and etap read the probes of instrumented runs: mean over epochs, then seeds, oriented
[target][partner], from the all-task run or the pairwise runs."""

import numpy as np
import pytest

from raytaskaff.scorers import Artifacts, SeedRuns, scorer
from raytaskaff.scorers.base import ScorerError

TASKS = ("depth_zbuffer", "normal", "edge_texture")


def _table(score):
    return {(r.target, r.partner): r.value for r in score.table.itertuples()}


def _matrices(seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(3, 3)) for _ in range(2)]  # two epochs


@pytest.mark.parametrize("name", ["gs", "gt", "etap"])
def test_all_task_run_mean_over_epochs_then_seeds(result, name):
    seeds, expected = [], np.zeros((3, 3))
    for seed in range(2):
        epochs = _matrices(seed)
        expected += np.mean(epochs, axis=0) / 2
        run = result(TASKS, probes={name: [m.tolist() for m in epochs]}, variant="corrected")
        seeds.append(SeedRuns(seed, all_tasks=run))
    score = scorer(name).score(Artifacts(TASKS, seeds))
    table = _table(score)
    for i, t in enumerate(TASKS):
        for j, p in enumerate(TASKS):
            if i != j:
                assert table[t, p] == pytest.approx(expected[i, j])  # row = target
    assert score.details == {"source": "all", "variant": ["corrected"], **({"parameters": "all"} if name == "gs" else {})}
    # each seed's table is kept: seed 1's is its own mean over epochs
    seed_one = {(r.target, r.partner): r.value for r in score.per_seed[score.per_seed.seed == 1].itertuples()}
    own = np.mean(_matrices(1), axis=0)
    assert seed_one == pytest.approx({(t, p): own[i, j] for i, t in enumerate(TASKS) for j, p in enumerate(TASKS) if i != j})
    # the sweep's task order does not change any value
    assert _table(scorer(name).score(Artifacts(TASKS[::-1], seeds))) == pytest.approx(table)


def test_pairwise_runs(result):
    runs = {}
    for a, b, value in [("depth_zbuffer", "normal", 0.5), ("depth_zbuffer", "edge_texture", 0.1), ("edge_texture", "normal", -0.2)]:
        probes = {"gt": [[[0.0, value], [2 * value, 0.0]]]}  # [target][partner] in the run's own order
        runs[a, b] = result([a, b], probes=probes, variant="faithful")
    table = _table(scorer("gt").score(Artifacts(TASKS, [SeedRuns(0, pairs=runs)]), source="pairs"))
    assert table["depth_zbuffer", "normal"] == 0.5 and table["normal", "depth_zbuffer"] == 1.0
    assert table["edge_texture", "normal"] == -0.2 and table["normal", "edge_texture"] == -0.4


def test_runs_without_probes_are_an_error(result):
    with pytest.raises(ScorerError, match="trained without probes"):
        scorer("gs").score(Artifacts(TASKS, [SeedRuns(0, all_tasks=result(TASKS))]))
    with pytest.raises(ScorerError, match="source must be"):
        scorer("gs").score(Artifacts(TASKS, [SeedRuns(0, all_tasks=result(TASKS))]), source="both")


def test_gs_on_kernels_reads_the_kernel_probe(result):
    whole, kernels = _matrices(0)[0], _matrices(1)[0]
    run = result(TASKS, probes={"gs": [whole.tolist()], "gs_kernels": [kernels.tolist()]}, variant="corrected")
    artifacts = Artifacts(TASKS, [SeedRuns(0, all_tasks=run)])
    for parameters, expected in (("all", whole), ("kernels", kernels)):
        score = scorer("gs").score(artifacts, parameters=parameters)
        assert _table(score)["normal", "edge_texture"] == pytest.approx(expected[1, 2])
        assert score.details["parameters"] == parameters
    old = result(TASKS, probes={"gs": [whole.tolist()]}, variant="corrected")  # stored before gs_kernels existed
    with pytest.raises(ScorerError, match="has no 'gs_kernels' probe .stored before it was recorded; its probes: gs."):
        scorer("gs").score(Artifacts(TASKS, [SeedRuns(0, all_tasks=old)]), parameters="kernels")
    with pytest.raises(ScorerError, match="gs.parameters"):
        scorer("gs").check_options({"parameters": "weights"})


@pytest.mark.parametrize("name", ["gt", "etap"])
def test_variant_scorers_read_their_own_probe(result, name):
    own, faithful, raw = _matrices(2)[0], _matrices(3)[0], _matrices(4)[0]
    probes = {name: [own.tolist()], f"{name}/faithful": [faithful.tolist()], f"{name}/raw": [raw.tolist()]}
    artifacts = Artifacts(TASKS, [SeedRuns(0, all_tasks=result(TASKS, probes=probes, variant="corrected"))])
    for reader, expected, variant in ((name, own, "corrected"), (f"{name}/faithful", faithful, "faithful"), (f"{name}/raw", raw, "raw")):
        score = scorer(reader).score(artifacts)
        assert score.name == reader and score.details["variant"] == [variant]
        assert _table(score)["normal", "depth_zbuffer"] == pytest.approx(expected[1, 0])  # [target][partner]
    with pytest.raises(ScorerError, match=f"has no '{name}/corrected' probe .its lookahead variant is computed only when "
                                          "listed in probes.variants"):
        scorer(f"{name}/corrected").score(artifacts)


def test_variant_scorers_pickle_by_reference():
    import pickle

    one = scorer("gt/raw")
    again = pickle.loads(pickle.dumps(one))
    assert type(again) is type(one) and again.probe == "gt/raw" and again.variant == "raw"
