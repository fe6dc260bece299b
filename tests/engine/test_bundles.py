"""A bundle's trial: each network stored under its own key, a diverging network alone, resume by key."""

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


def _trial(config, shared, bundle, store) -> list[dict]:
    """The trial run here; what it reported to Tune."""
    trial_config = {"bundle": {"key": bundle.key, "runs": [dataclasses.asdict(r) for r in bundle.runs]}}
    with mock.patch.object(engine_runs.tune, "report") as report:  # no Tune session here
        engine_runs._trial(trial_config, shared, {}, config, store.uri)
    return [c.args[0] for c in report.call_args_list]


def test_a_diverging_network_is_stored_as_diverged_the_others_as_usual_and_none_retrained(setup, tmp_path):
    config, shared = setup
    [bundle] = bundles(plan(config))
    assert len(bundle.runs) == 6  # 3 STL, 3 pairs of seed 0
    broken = next(r for r in bundle.runs if r.tasks == ("depth_zbuffer", "normal"))
    real = FusedNets.predictions

    def poisoned(self, out, i):
        preds = real(self, out, i)
        return {t: p * float("nan") for t, p in preds.items()} if self.task_names[i] == list(broken.tasks) else preds

    store = ResultStore(str(tmp_path / "store"))
    with mock.patch.object(FusedNets, "predictions", poisoned):
        reports = _trial(config, shared, bundle, store)  # the trial does not fail: nothing for Tune to retry
    line = f"{broken.label}: loss of depth_zbuffer is nan at epoch 0 step 0: training stopped"
    assert engine_runs.diverged_of(reports[-1]) == {broken.key: line}
    assert all(store.has(r.key) for r in bundle.runs)
    diverged = store.find(broken.key)
    assert diverged.diverged == {"epoch": 0, "step": 0, "task": "depth_zbuffer", "loss": "nan", "message": line.split(": ", 1)[1]}
    assert diverged.test_losses == {} and diverged.model_path is None
    stored = {r.key: store.find(r.key) for r in bundle.runs if r is not broken}
    assert all(result.bundle_size == 6 and result.diverged is None and result.test_losses for result in stored.values())

    # a retry (Tune's, or the next sweep) trains nothing: the diverged network is stored
    assert _trial(config, shared, bundle, store) == []
    assert store.find(broken.key).diverged == diverged.diverged
    assert {k: store.find(k).test_losses for k in stored} == {k: v.test_losses for k, v in stored.items()}  # untouched
