"""A bundle's trial: each network stored under its own key, a failing network alone, resume by key."""

import dataclasses
from pathlib import Path
from unittest import mock

import pytest

ray = pytest.importorskip("ray")

from raytaskaff.config import load_config  # noqa: E402
from raytaskaff.data.synth import SynthConfig, generate  # noqa: E402
from raytaskaff.engine import runs as engine_runs  # noqa: E402
from raytaskaff.engine.data import share_splits  # noqa: E402
from raytaskaff.plan import bundles, plan  # noqa: E402
from raytaskaff.store import ResultStore  # noqa: E402
from raytaskaff.training.fused import FusedNets  # noqa: E402

pytestmark = pytest.mark.ray
SMOKE = Path(__file__).resolve().parents[2] / "sweeps" / "smoke.yaml"


@pytest.fixture(scope="module")
def setup(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    config = load_config(SMOKE, out=str(root / "out"))
    config = dataclasses.replace(config, seeds=(0,), scorers={"td": config.scorers["td"]},
                                 grouping=dataclasses.replace(config.grouping, groups=()),
                                 data=dataclasses.replace(config.data, path=str(root / "data")),
                                 resources=dataclasses.replace(config.resources, fuse=True))
    generate(root / "data", SynthConfig(n=config.data.n, size=config.data.size, seed=config.data.seed))
    return config, share_splits(root / "data", "mmap")


def _trial(config, shared, bundle, store):
    trial_config = {"bundle": {"key": bundle.key, "runs": [dataclasses.asdict(r) for r in bundle.runs]}}
    with mock.patch.object(engine_runs.tune, "report"):  # no Tune session here
        engine_runs._trial(trial_config, shared, {}, config, store.uri)


def test_a_failing_network_is_named_and_the_others_are_stored(setup, tmp_path):
    config, shared = setup
    [bundle] = bundles(plan(config))
    assert len(bundle.runs) == 6  # 3 STL, 3 pairs of seed 0
    broken = next(r for r in bundle.runs if r.tasks == ("depth_zbuffer", "normal"))
    real = FusedNets.predictions

    def poisoned(self, out, i):
        preds = real(self, out, i)
        return {t: p * float("nan") for t, p in preds.items()} if self.task_names[i] == list(broken.tasks) else preds

    store = ResultStore(str(tmp_path / "store"))
    with mock.patch.object(FusedNets, "predictions", poisoned), pytest.raises(engine_runs.NetworksFailed) as e:
        _trial(config, shared, bundle, store)
    assert f"1 of 6 networks failed ({broken.label}: loss of depth_zbuffer is nan at epoch 0 step 0" in str(e.value)
    assert [store.has(r.key) for r in bundle.runs] == [r is not broken for r in bundle.runs]
    stored = {r.key: store.find(r.key) for r in bundle.runs if r is not broken}
    assert all(result.bundle_size == 6 for result in stored.values())

    # the retry (Tune's, or the next sweep) trains only the missing network, as a bundle of one
    _trial(config, shared, bundle, store)
    assert all(store.has(r.key) for r in bundle.runs)
    assert store.find(broken.key).bundle_size == 1
    assert {k: store.find(k).test_losses for k in stored} == {k: v.test_losses for k, v in stored.items()}  # untouched
