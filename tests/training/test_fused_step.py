"""A fused step reads nothing back to the host; divergence is noticed on the device and read late.

On a GPU, a read of a device value on the host (`.item()`, `bool()`, `.tolist()`, `float()`)
waits for every queued kernel. These tests run the fused step on the `meta` device, where a tensor
has no values: any such read raises there, so a step that completes read nothing.
"""

from unittest import mock

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.models import preset
from raytaskaff.training import bundle
from raytaskaff.training.bundle import Member, TrainingDiverged, _start, train_bundle
from raytaskaff.training.evaluation import Inputs, fields_of
from raytaskaff.training.tally import Tally
from raytaskaff.training.units import FusedUnit, StackingFailed
from raytaskaff.training.fused import FusedNets
from raytaskaff.training.loop import DataSplits, RunSpec, TrainConfig

MODEL = preset("small")
SPECS = [RunSpec(("depth_zbuffer",)), RunSpec(("normal",)), RunSpec(("depth_zbuffer", "normal")),
         RunSpec(("edge_texture",), ("normal",)), RunSpec(("depth_zbuffer",), ("normal",))]


@pytest.fixture(scope="module")
def splits(train_dataset):
    return DataSplits(*(SplitData.open(train_dataset, s) for s in ("train", "val", "test")), stats=Manifest.load(train_dataset).stats)


class _Reads(TorchDispatchMode):
    """Counts the operators that bring a tensor's value to the host."""

    READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default,
             torch.ops.aten.nonzero.default, torch.ops.aten.masked_select.default}

    def __init__(self) -> None:
        super().__init__()
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        device = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
        if func in self.READS and device is not None and device.type != "cpu":
            self.reads.append(func)
        return out


def _unit(splits, specs, device, grad_scale=True):
    config = TrainConfig(epochs=1, batch_size=16, lr=3e-3, grad_scale=grad_scale)
    states = [_start(Member(s), MODEL, config, splits, 0, torch.device("cpu"), None) for s in specs]
    groups = {}
    for s in states:  # one unit per injected-channel count, as build_units groups them
        groups.setdefault(sum(t.inject_channels for t in s.inject), []).append(s)
    return [FusedUnit(g, config, device, lambda step: 1.0) for g in groups.values()], states


def _inputs(splits, states, device):
    names = fields_of(states, splits.train, "rgb")
    raw = next(iter(splits.train.batches(16, names, shuffle=True, seed=1, drop_last=True)))
    return Inputs({k: v.to(device) for k, v in raw.items()}, states, splits.stats, "rgb")


def test_a_fused_step_reads_nothing_back_to_the_host(splits):
    device = torch.device("meta")
    units, states = _unit(splits, SPECS, device)
    assert len(units) == 2 and units[0].fused._scaled  # decided when stacked
    inputs = _inputs(splits, states, device)
    with _Reads() as seen:
        for step in range(3):
            for u in units:
                u.step(inputs, step, bundle._no_autocast, False)
    assert seen.reads == []
    # the tally counted the three steps on the device; reading it is the one transfer, on the host's
    # schedule (on `meta` it cannot be read at all)
    with pytest.raises((RuntimeError, NotImplementedError)):
        bundle.read_tallies(units, 0)


def test_the_read_counter_sees_a_read(splits):
    """The same step with a read of a loss on the host does fail on `meta`: the test above can fail."""
    device = torch.device("meta")
    units, states = _unit(splits, SPECS[:2], device)
    inputs = _inputs(splits, states, device)
    real = Tally.add

    def reading(self, values, rows, step):
        float(values[0])
        return real(self, values, rows, step)

    with mock.patch.object(Tally, "add", reading), pytest.raises(StackingFailed):
        units[0].step(inputs, 0, bundle._no_autocast, False)


def test_losses_are_read_every_few_steps_and_at_each_epoch_end(splits):
    reads = []
    real = bundle.read_tallies

    def counted(units, epoch):
        reads.append(epoch)
        return real(units, epoch)

    config = TrainConfig(epochs=2, batch_size=32, lr=3e-3)
    steps = len(splits.train) // config.batch_size
    with mock.patch.object(bundle, "read_tallies", counted), mock.patch.object(bundle, "READ_EVERY", 2):
        results = train_bundle([Member(s) for s in SPECS[:2]], MODEL, config, splits, seed=0, fuse=True)
    assert steps >= 3 and reads == [e for e in range(2) for _ in range(steps // 2 + 1)]
    assert all(len(r.history) == 2 for r in results)


@pytest.fixture(scope="module")
def clean(splits):
    return train_bundle([Member(s) for s in SPECS[:3]], MODEL, TrainConfig(epochs=1, batch_size=32, lr=3e-3), splits, seed=5, fuse=True)


@pytest.mark.parametrize("every", [1, 1000])  # read after each step (as before), or at the epoch's end only
def test_a_network_diverging_mid_epoch_is_named_with_its_step_and_fails_alone(splits, clean, every):
    """A network whose weights blow up at step 2: named with its loss and step however late the
    host reads, and the others train exactly as when nothing diverged."""
    real = FusedUnit._step

    def blow_up(self, inputs, step, autocast):
        if step == 2:  # the pair's encoder stem goes infinite
            with torch.no_grad():
                self.fused.params["trunk"]["encoder.stem.weight"][2].fill_(float("inf"))
        return real(self, inputs, step, autocast)

    with mock.patch.object(FusedUnit, "_step", blow_up), mock.patch.object(bundle, "READ_EVERY", every):
        bundled = train_bundle([Member(s) for s in SPECS[:3]], MODEL, TrainConfig(epochs=1, batch_size=32, lr=3e-3),
                               splits, seed=5, fuse=True)
    assert isinstance(bundled[2], TrainingDiverged)
    assert str(bundled[2]) == "loss of depth_zbuffer is nan at epoch 0 step 2: training stopped"
    for a, b in zip(clean[:2], bundled[:2]):
        assert b.test_losses == pytest.approx(a.test_losses, rel=1e-6)
        assert b.history[0]["train"] == pytest.approx(a.history[0]["train"], rel=1e-6)
        assert b.history[0]["val"] == pytest.approx(a.history[0]["val"], rel=1e-6)


def test_a_plain_network_stops_at_its_first_non_finite_loss_and_is_named_at_the_read(splits):
    """The plain path (a network alone) decides on the host at once: after one NaN loss at step 1
    it takes no more steps, and the read at the epoch's end names that step."""
    from raytaskaff.tasks import Task
    from raytaskaff.training.loop import train

    real, calls = Task.loss_value, []

    def once(self, pred, target):
        calls.append(1)
        value = real(self, pred, target)
        return value * float("nan") if len(calls) == 2 else value

    with mock.patch.object(Task, "loss_value", once), mock.patch.object(bundle, "READ_EVERY", 1000), \
            pytest.raises(TrainingDiverged, match="^loss of depth_zbuffer is nan at epoch 0 step 1: training stopped$"):
        train(SPECS[0], MODEL, TrainConfig(epochs=2, batch_size=32, lr=3e-3), splits, seed=0)
    assert len(calls) == 2  # no step after it, no validation


def test_the_input_is_made_once_in_the_layout_of_the_stacked_networks(splits):
    units, states = _unit(splits, SPECS[:2], torch.device("cpu"))
    inputs = _inputs(splits, states, torch.device("cpu"))
    standard = inputs.image(torch.contiguous_format)
    assert standard.is_contiguous() and inputs.image(torch.contiguous_format) is standard
    torch.testing.assert_close(standard, inputs.x, rtol=0, atol=0)  # the same values, the plain layout
    assert inputs.x.is_contiguous(memory_format=torch.channels_last)
    seen = []
    real = FusedNets.__call__

    def spy(self, x, extra=None):
        seen.append(x)
        return real(self, x, extra)

    with mock.patch.object(FusedNets, "__call__", spy):
        units[0].step(inputs, 0, bundle._no_autocast, False)
    assert seen[0] is standard  # no conversion between the batch and the stacked forward


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [False, True])
def test_a_fused_step_on_cuda_never_synchronises(splits, amp):
    """On CUDA itself: after a first step (the optimizer's state is made there), steps under
    `torch.cuda.set_sync_debug_mode("error")`, which raises on any call that waits for the GPU."""
    device = torch.device("cuda")
    units, states = _unit(splits, SPECS, device)
    inputs = _inputs(splits, states, device)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else bundle._no_autocast
    for u in units:
        u.step(inputs, 0, autocast, amp)  # stacked for real: no StackingFailed
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(1, 4):
            for u in units:
                u.step(inputs, step, autocast, amp)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert bundle.read_tallies(units, 0)  # the one read, on the host's schedule
    assert all(s.alive for s in states)
