"""CUDA path of the training loop (run with `pytest -m gpu` on a machine with a GPU)."""

import math

import pytest
import torch

from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.models import preset
from raytaskaff.training.loop import DataSplits, RunSpec, TrainConfig, train
from raytaskaff.training.probes import ProbeConfig

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_mtl_with_probes_on_cuda_matches_the_cpu_run(train_dataset, tmp_path):
    data = DataSplits(*(SplitData.open(train_dataset, s) for s in ("train", "val", "test")), stats=Manifest.load(train_dataset).stats)
    spec = RunSpec(("depth_zbuffer", "normal"))
    results = {}
    for device, amp in (("cuda", True), ("cuda", False), ("cpu", False)):
        config = TrainConfig(epochs=3, batch_size=16, lr=1e-2, device=device, amp=amp, probes=ProbeConfig(lookahead_every=2))
        results[device, amp] = train(spec, preset("small"), config, data, seed=0, checkpoint=tmp_path / f"{device}{amp}.pt")
    for (device, amp), r in results.items():
        assert r.device.startswith(device) and r.training == "separate"
        assert all(math.isfinite(v) for v in r.test_losses.values())
        assert all(math.isfinite(v) for m in r.probes["gt"] for row in m for v in row)
    fp32, cpu = results["cuda", False], results["cpu", False]
    for name in spec.tasks:  # the same training on another device: close, not bit-identical
        assert fp32.test_losses[name] == pytest.approx(cpu.test_losses[name], rel=0.1)
        assert results["cuda", True].test_losses[name] == pytest.approx(cpu.test_losses[name], rel=0.25)
    torch.load(tmp_path / "cudaTrue.pt", weights_only=True)


def test_a_fused_bundle_on_cuda_trains_each_network_as_its_separate_run(train_dataset):
    from itertools import combinations

    from raytaskaff.training.bundle import Member, train_bundle

    data = DataSplits(*(SplitData.open(train_dataset, s) for s in ("train", "val", "test")), stats=Manifest.load(train_dataset).stats)
    tasks = ("depth_zbuffer", "normal", "edge_texture")
    specs = [RunSpec((t,)) for t in tasks] + [RunSpec(p) for p in combinations(tasks, 2)] + [RunSpec(tasks)]
    for amp, rel in ((False, 0.01), (True, 0.1)):  # bf16 rounds differently in a grouped convolution
        config = TrainConfig(epochs=2, batch_size=32, lr=3e-3, device="cuda", amp=amp)
        separate = [train(s, preset("small"), config, data, seed=3) for s in specs]
        bundled = train_bundle([Member(s) for s in specs], preset("small"), config, data, seed=3, fuse=True)
        for a, b in zip(separate, bundled):
            assert b.device == f"cuda:0 {torch.cuda.get_device_name(0)}" and all(math.isfinite(v) for v in b.test_losses.values())
            # stacked, as recorded (a bundle that cannot stack raises: train_bundle falls back only when asked)
            assert (b.training, b.training_reason) == ("fused", None) and a.training == "separate", (amp, b.spec)
            assert b.test_losses == pytest.approx(a.test_losses, rel=rel), (amp, a.spec)
