"""A DDP run (`resources.workers`) whose network diverges comes back recorded, as from a bundle,
so that its trial stores it and Tune does not retry it. Ray Train's trainer is replaced by one
that runs the worker function in this process as rank 0 (tests/engine/test_ray_train.py runs
the real one)."""

import pytest

ray = pytest.importorskip("ray")

from raytaskaff.engine import runs  # noqa: E402
from raytaskaff.plan import Run  # noqa: E402
from raytaskaff.settings import RunResult, RunSpec  # noqa: E402
from raytaskaff.training.tally import TrainingDiverged  # noqa: E402


class _Context:
    def get_world_rank(self):
        return 0


class _Trainer:
    """TorchTrainer's shape: fit() runs the worker on its loop config and returns its value."""

    def __init__(self, worker, train_loop_config, **_):
        self.worker, self.config = worker, train_loop_config

    def fit(self):
        return type("Fitted", (), {"return_value": self.worker(self.config)})()


def _diverged(spec: RunSpec) -> TrainingDiverged:
    error = TrainingDiverged("loss of normal is nan at epoch 1 step 7", epoch=1, step=7, task="normal", loss=float("nan"))
    error.result = RunResult(spec=spec, seed=0, test_losses={}, val_losses={}, test_metrics={}, best_epoch=0, epochs=1,
                             history=[], wall_seconds=1.0, cpu_seconds=2.0, device="cpu", parameters=10,
                             diverged=error.as_record())
    return error


@pytest.fixture
def fake_ray_train(monkeypatch):
    import ray.train.torch

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", _Trainer)
    monkeypatch.setattr(ray.train, "get_context", lambda: _Context())


def test_a_diverged_ddp_run_is_its_record_not_a_failed_trial(fake_ray_train, monkeypatch, tmp_path):
    spec = RunSpec(("depth_zbuffer", "normal"))

    def diverges(**_):
        raise _diverged(spec)

    monkeypatch.setattr(runs, "_train_here", diverges)
    config = type("Sweep", (), {"resources": type("R", (), {"workers": 2, "cpus_per_run": 1, "gpus_per_run": 0})()})()
    back = runs.train_with_ray_train(Run("pair", spec.tasks, seed=0, key="k"), None, {}, config, tmp_path)
    assert isinstance(back, TrainingDiverged) and str(back) == "loss of normal is nan at epoch 1 step 7"
    assert (back.epoch, back.step, back.task) == (1, 7, "normal")
    assert back.result.diverged == {"epoch": 1, "step": 7, "task": "normal", "loss": "nan",
                                    "message": "loss of normal is nan at epoch 1 step 7"}
    assert back.result.model_path is None and not list(tmp_path.glob("model.pt*"))


def test_any_other_failure_of_a_ddp_run_still_fails_its_trial(fake_ray_train, monkeypatch, tmp_path):
    def crashes(**_):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(runs, "_train_here", crashes)
    config = type("Sweep", (), {"resources": type("R", (), {"workers": 2, "cpus_per_run": 1, "gpus_per_run": 0})()})()
    with pytest.raises(RuntimeError, match="worker lost"):
        runs.train_with_ray_train(Run("pair", ("depth_zbuffer", "normal"), seed=0, key="k"), None, {}, config, tmp_path)
