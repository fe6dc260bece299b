"""ias and rsa against independent computations on small inputs."""

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr

from raytaskaff.models import MultiTaskNet, preset, save_model
from raytaskaff.scorers import Artifacts, SeedRuns, scorer
from raytaskaff.scorers.ias import attribution_maps, mean_cosine
from raytaskaff.scorers.rsa import pearson, ranked_upper_triangle, rdm, representations
from raytaskaff.tasks import task

TASKS = ("depth_zbuffer", "normal", "edge_texture")
IMAGES = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _net(name, seed):
    return MultiTaskNet([task(name)], preset("small", widths=(8, 8)), seed=seed).eval()


def test_attribution_maps_are_gradient_times_input():
    net = _net("normal", 0)
    maps = attribution_maps(net, IMAGES, batch_size=5)
    x = IMAGES.clone().requires_grad_(True)
    net.represent(x).sum().backward()
    manual = (x.grad * x).mean(dim=1).flatten(1).detach().numpy()
    np.testing.assert_allclose(maps, manual, rtol=1e-4, atol=1e-6)


def test_mean_cosine_by_brute_force():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    a[2] = 0
    expected = np.mean([0.0 if not a[i].any() else a[i] @ b[i] / np.linalg.norm(a[i]) / np.linalg.norm(b[i]) for i in range(5)])
    assert mean_cosine(a, b) == pytest.approx(expected)
    assert mean_cosine(a[[0, 1, 3]], a[[0, 1, 3]]) == pytest.approx(1.0)


def test_rdm_and_spearman_against_scipy():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(6, 10))
    centred = features - features.mean(axis=0)
    manual = np.array([[1 - pearsonr(centred[i], centred[j])[0] for j in range(6)] for i in range(6)])
    np.testing.assert_allclose(rdm(features), manual, atol=1e-12)
    a, b = _net("normal", 0), _net("depth_zbuffer", 1)
    upper = np.triu_indices(len(IMAGES), k=1)
    rdm_a, rdm_b = rdm(representations(a, IMAGES)), rdm(representations(b, IMAGES))
    expected = spearmanr(rdm_a[upper], rdm_b[upper]).statistic
    assert pearson(ranked_upper_triangle(a, IMAGES), ranked_upper_triangle(b, IMAGES)) == pytest.approx(expected, abs=1e-6)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    paths = {}
    for seed in (0, 1):
        for i, name in enumerate(TASKS):
            path = root / f"{name}-{seed}.pt"
            # planted relation: edge_texture's encoder is a copy of depth's; normal's is another one
            source = _net("normal", seed + 100) if name == "normal" else _net("depth_zbuffer", seed)
            net = MultiTaskNet([task(name)], preset("small", widths=(8, 8)), seed=seed)
            net.encoder.load_state_dict(source.encoder.state_dict())
            save_model(net, path, seed)
            paths[name, seed] = str(path)
    return paths


def _artifacts(saved_models, result, tasks=TASKS):
    seeds = [SeedRuns(s, stl={t: result([t], model_path=saved_models[t, s]) for t in tasks}) for s in (0, 1)]
    return Artifacts(tasks, seeds, test_images=lambda n: IMAGES[:n])


@pytest.mark.parametrize("name", ["ias", "rsa"])
def test_symmetric_order_invariant_and_finds_the_planted_copy(saved_models, result, name):
    score = scorer(name).score(_artifacts(saved_models, result), images=10)
    table = {(r.target, r.partner): r.value for r in score.table.itertuples()}
    for a, b in itertools.permutations(TASKS, 2):
        assert table[a, b] == pytest.approx(table[b, a])
    assert table["depth_zbuffer", "edge_texture"] == pytest.approx(1.0)  # identical encoders
    assert max(TASKS[1:], key=lambda p: table["depth_zbuffer", p]) == "edge_texture"
    reordered = scorer(name).score(_artifacts(saved_models, result, TASKS[::-1]), images=10)
    assert {(r.target, r.partner): r.value for r in reordered.table.itertuples()} == pytest.approx(table)
    assert score.details == {"images": 10}


class _Seen(Exception):
    pass


class _DeviceSpy(torch.nn.Module):
    """A network on the meta device (the only other device a CPU machine has) whose forward notes
    where its input lives and stops there: meta tensors have no values to go on with."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(1, device="meta"))
        self.seen = []

    def represent(self, x):
        self.seen.append(x.device.type)
        raise _Seen


@pytest.mark.parametrize("fn", [attribution_maps, ranked_upper_triangle])
def test_per_network_functions_take_the_images_to_the_network(fn):
    """A scorer actor's network and images on one device: a GPU network fed CPU images fails."""
    spy = _DeviceSpy()
    with pytest.raises(_Seen):
        fn(spy, IMAGES)
    assert spy.seen == ["meta"]
