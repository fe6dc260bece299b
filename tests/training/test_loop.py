"""The training loop: determinism, learning, model selection, checkpoints, bad losses."""

import contextlib
import math
import time
from unittest import mock

import pytest
import torch

from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.models import MultiTaskNet, preset
from raytaskaff.tasks import Task, task
from raytaskaff.training.loop import (
    DataSplits,
    RunSpec,
    TrainConfig,
    TrainingDiverged,
    train,
)
from raytaskaff.training.evaluation import evaluate_network
from raytaskaff.training.bundle import _Clock
from raytaskaff.training.probes import ProbeConfig

MODEL = preset("small")
FAST = TrainConfig(epochs=2, batch_size=32, lr=3e-3)


@pytest.fixture(scope="module")
def splits(train_dataset):
    return DataSplits(*(SplitData.open(train_dataset, s) for s in ("train", "val", "test")), stats=Manifest.load(train_dataset).stats)


def test_same_seed_same_result(splits):
    torch.set_num_threads(1)
    a = train(RunSpec(("depth_zbuffer", "normal")), MODEL, FAST, splits, seed=5)
    b = train(RunSpec(("depth_zbuffer", "normal")), MODEL, FAST, splits, seed=5)
    assert a.test_losses == b.test_losses and a.history == b.history
    c = train(RunSpec(("depth_zbuffer", "normal")), MODEL, FAST, splits, seed=6)
    assert c.test_losses != a.test_losses


def test_training_lowers_the_test_loss_well_below_the_untrained_model(splits):
    spec = RunSpec(("segment_semantic", "normal", "depth_zbuffer"))
    tasks = [task(n) for n in spec.tasks]
    untrained, _ = evaluate_network(MultiTaskNet(tasks, MODEL, seed=0), splits.test, tasks, [], splits.stats,
                            torch.device("cpu"), 256, contextlib.nullcontext)
    result = train(spec, MODEL, TrainConfig(epochs=4, batch_size=16, lr=1e-2), splits, seed=0)
    for name in spec.tasks:
        assert result.test_losses[name] < 0.75 * untrained[name], name
    assert result.test_metrics["segment_semantic"]["pixel_accuracy"] > 0.5
    assert result.test_metrics["normal"]["angular_error"] < 60
    assert result.parameters == sum(p.numel() for p in MultiTaskNet(tasks, MODEL).parameters())
    assert result.wall_seconds > 0 and result.cpu_seconds > 0 and result.gpu_seconds == (result.wall_seconds if torch.cuda.is_available() else 0)
    assert result.device == (f"cuda:0 {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu")
    assert (result.training, result.training_reason) == ("separate", "no other network of its architecture in its trial")
    assert len(result.history) == 4 and result.best_epoch == min(range(4), key=lambda e: sum(result.history[e]["val"].values()))
    assert result.val_losses == result.history[result.best_epoch]["val"]


def test_label_injection_uses_the_partner_label(splits):
    """Injecting the target's own geometry (depth from euclidean depth) makes depth almost free."""
    config = TrainConfig(epochs=5, batch_size=16, lr=3e-3)
    stl = train(RunSpec(("depth_zbuffer",)), MODEL, config, splits, seed=1)
    li = train(RunSpec(("depth_zbuffer",), inject=("depth_euclidean",)), MODEL, config, splits, seed=1)
    assert li.spec.kind == "li" and stl.spec.kind == "stl"
    assert li.test_losses["depth_zbuffer"] < 0.8 * stl.test_losses["depth_zbuffer"]


def test_probes_are_recorded_per_epoch_and_oriented(splits):
    result = train(RunSpec(("depth_zbuffer", "normal", "edge_texture")), MODEL,
                   TrainConfig(epochs=2, batch_size=32, probes=ProbeConfig(lookahead_every=2, variant="faithful")), splits, seed=0)
    assert set(result.probes) == {"gs", "gs_kernels", "gt", "etap"} and result.probe_variant == "faithful"
    for name, epochs in result.probes.items():
        assert len(epochs) == 2 and all(len(m) == 3 and all(len(r) == 3 for r in m) for m in epochs)
        assert all(math.isfinite(v) for m in epochs for r in m for v in r)
    gs = result.probes["gs"][0]
    assert all(abs(gs[i][i] - 1) < 1e-6 for i in range(3)) and all(abs(gs[i][j] - gs[j][i]) < 1e-6 for i in range(3) for j in range(3))


def test_checkpoint_resumes_an_interrupted_run(splits, tmp_path):
    spec = RunSpec(("keypoints2d", "edge_texture"))
    config = TrainConfig(epochs=3, batch_size=32, probes=ProbeConfig(lookahead_every=3))
    whole = train(spec, MODEL, config, splits, seed=2)

    def crash(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        train(spec, MODEL, config, splits, seed=2, checkpoint=path, on_epoch=crash)
    first = torch.load(path, weights_only=True)["spent"]  # what the crashed attempt had spent by epoch 1
    epochs_run = []
    start = time.perf_counter()
    resumed = train(spec, MODEL, config, splits, seed=2, checkpoint=path, on_epoch=lambda e, r: epochs_run.append(e))
    second = time.perf_counter() - start
    assert epochs_run == [2]  # epochs 0 and 1 came from the checkpoint
    assert resumed.test_losses == whole.test_losses and resumed.probes == whole.probes
    assert [h["val"] for h in resumed.history] == [h["val"] for h in whole.history]
    # its costs are both attempts': the first's from its checkpoint, plus the second's
    assert first["wall"] > 0 and first["cpu"] > 0 and first["gpu"] == 0
    assert first["wall"] < resumed.wall_seconds <= first["wall"] + second
    assert resumed.cpu_seconds > first["cpu"]


def test_gpu_seconds_are_wall_time_times_the_gpu_fraction_held():
    clock = _Clock(2, torch.device("cuda"), 0.25)
    time.sleep(0.05)
    share = clock.share()
    assert share["gpu"] == pytest.approx(share["wall"] * 0.25) and share["wall"] >= 0.05 / 2
    assert _Clock(1, torch.device("cpu"), 0.25).share()["gpu"] == 0


def test_nan_loss_stops_the_run(splits):
    real = Task.loss_value

    def poisoned(self, pred, target):
        value = real(self, pred, target)
        return value * float("nan") if self.name == "normal" else value

    with mock.patch.object(Task, "loss_value", poisoned), pytest.raises(TrainingDiverged) as e:
        train(RunSpec(("depth_zbuffer", "normal")), MODEL, FAST, splits, seed=0)
    assert "loss of normal is nan at epoch 0 step 0" in str(e.value) and "\n" not in str(e.value)


def test_bad_specs_and_configs(splits):
    with pytest.raises(ValueError, match="distinct"):
        RunSpec(("normal", "normal"))
    with pytest.raises(ValueError, match="distinct and not injected"):
        RunSpec(("normal",), inject=("normal",))
    with pytest.raises(KeyError, match="unknown task 'normals'"):
        train(RunSpec(("normals",)), MODEL, FAST, splits, seed=0)
    with pytest.raises(ValueError, match="training.schedule: 'step' is not one of cosine, constant"):
        TrainConfig(schedule="step")
    with pytest.raises(ValueError, match="training.epochs: must be an integer >= 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="normalisation: 'imagenet' is not one of dataset, taskonomy"):
        TrainConfig(normalisation="imagenet")
    assert RunSpec(("normal", "depth_zbuffer", "edge_texture")).kind == "group"
