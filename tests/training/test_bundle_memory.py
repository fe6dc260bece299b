"""Bundles that fit: evaluation in chunks gives the unchunked losses, and an out-of-memory error
splits a bundle (or stops in one line naming the memory), never a silent fallback."""

import warnings

import pytest
import torch

from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.models import preset
from raytaskaff.settings import RunSpec
from raytaskaff.training import bundle
from raytaskaff.training.bundle import Member, OutOfMemory, train_bundle
from raytaskaff.training.evaluation import evaluate_units, fields_of
from raytaskaff.training.units import FusedUnit, PlainUnit, build_units
from raytaskaff.training.loop import DataSplits, TrainConfig
from raytaskaff.training.prefetch import Feed

MODEL = preset("small")
FAST = TrainConfig(epochs=1, batch_size=32, lr=3e-3, eval_batch_size=48)
# losses that are means over every pixel (masked pixels stay in the denominator): chunks add up exactly
SPECS = [RunSpec(("depth_zbuffer",)), RunSpec(("normal",)), RunSpec(("depth_zbuffer", "normal")), RunSpec(("edge_texture",))]


@pytest.fixture(scope="module")
def splits(train_dataset):
    return DataSplits(*(SplitData.open(train_dataset, s) for s in ("train", "val", "test")), stats=Manifest.load(train_dataset).stats)


def _fused_units(splits):
    device = torch.device("cpu")
    clock = bundle._Clock(len(SPECS), device, 1.0)
    states = [bundle._start(Member(s), MODEL, FAST, splits, 0, device, clock) for s in SPECS]
    units = build_units(states, FAST, device, 1, lambda s: 1.0, fuse=True)
    assert [type(u) for u in units] == [FusedUnit]  # one stack of the four networks
    return units, states


@pytest.fixture(scope="module")
def splits_256(tmp_path_factory):
    """16 views of 256 px, taskonomy-5's size."""
    from raytaskaff.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("data") / "256"
    generate(out, SynthConfig(n=40, size=256, seed=3, points_per_building=2, views_per_point=2))
    return DataSplits(*(SplitData.open(out, s) for s in ("train", "val", "test")), stats=Manifest.load(out).stats)


def test_chunked_validation_at_256_px_gives_the_unchunked_losses(splits_256):
    """The flagship's size: a stacked bundle's validation in chunks of 3 rows against one pass of
    the whole batch of 4."""
    assert len(splits_256.val) >= 4 and splits_256.val.size == 256
    _chunked_equals_whole(splits_256, splits_256.val, 4, (3,))


def test_chunked_validation_of_a_fused_bundle_gives_the_unchunked_losses(splits):
    split = splits.train  # the largest split: batches and chunks that do not divide it
    _chunked_equals_whole(splits, split, 48, (7, 36))
    assert all(len(split) % c and 48 % c for c in (7, 36)) and len(split) % 48  # chunks that divide neither batch nor split


def _chunked_equals_whole(splits, split, batch: int, chunks: tuple[int, ...]) -> None:
    units, states = _fused_units(splits)
    fields = fields_of(states, split, "rgb")
    args = (units, split, states, splits.stats, torch.device("cpu"), batch, bundle._no_autocast, Feed(0, 0), "rgb", fields)
    whole = evaluate_units(*args)
    for chunk in chunks:
        chunked = evaluate_units(*args, chunk=chunk)
        for s in states:
            for name, loss in whole[id(s)][0].items():
                assert chunked[id(s)][0][name] == pytest.approx(loss, rel=1e-5, abs=1e-7), (chunk, s.member.spec, name)
            assert chunked[id(s)][1].keys() == whole[id(s)][1].keys()
            for name, metrics in whole[id(s)][1].items():
                for k, v in metrics.items():
                    assert chunked[id(s)][1][name][k] == pytest.approx(v, rel=1e-4, abs=1e-6), (chunk, name, k)


def _oom_above(limit: int, monkeypatch, counter: list) -> None:
    """Training passes of more than `limit` networks run out of memory in their first step, as
    CUDA's allocator says it."""
    train_pass = bundle.train_pass

    def failing(states, *args, **kwargs):
        if len(states) > limit:
            counter.append(len(states))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return train_pass(states, *args, **kwargs)

    monkeypatch.setattr(bundle, "train_pass", failing)


def test_out_of_memory_splits_the_bundle_and_trains_on_as_the_halves_would(splits, monkeypatch):
    members = [Member(s) for s in SPECS[:3]]
    expected = train_bundle(members[:2], MODEL, FAST, splits, 0, fuse=False) + train_bundle(members[2:], MODEL, FAST, splits, 0, fuse=False)
    tried = []
    _oom_above(2, monkeypatch, tried)
    with pytest.warns(UserWarning, match=r"^3 networks out of memory on cpu \(predicted [0-9.]+ GiB, the CPU allocator "
                                         r"keeps no peak\): trained on as bundles of 2 and 1$"):
        got = train_bundle(members, MODEL, FAST, splits, 0, fuse=False)
    assert tried == [3]
    assert [r.spec for r in got] == SPECS[:3]
    for g, e in zip(got, expected):
        assert g.test_losses == e.test_losses and g.val_losses == e.val_losses  # the halves' very operations


def test_out_of_memory_in_a_stacked_first_step_is_not_taken_for_a_kernel_refusing_stacks(splits, monkeypatch):
    """The unstacked fallback is for kernels without a batching rule; memory splits the bundle."""
    def failing(self, inputs, step, autocast):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(FusedUnit, "_step", failing)
    unit = FusedUnit.__new__(FusedUnit)
    unit.stepped = False
    with pytest.raises(torch.OutOfMemoryError):
        unit.step(None, 0, bundle._no_autocast, False)


def test_a_network_alone_out_of_memory_stops_in_one_line_naming_the_memory(splits, monkeypatch):
    def failing(self, inputs, step, autocast, amp):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes. Out of memory")

    monkeypatch.setattr(PlainUnit, "step", failing)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no silent (or warned) fallback: it stops
        with pytest.raises(OutOfMemory) as raised:
            train_bundle([Member(SPECS[0])], MODEL, FAST, splits, 0, fuse=True)
    message = str(raised.value)
    assert "\n" not in message and "alone is out of memory on cpu (predicted " in message and " GiB" in message


def test_other_runtime_errors_are_not_taken_for_memory(splits, monkeypatch):
    def failing(self, inputs, step, autocast, amp):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(PlainUnit, "step", failing)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        train_bundle([Member(SPECS[0])], MODEL, FAST, splits, 0, fuse=True)
