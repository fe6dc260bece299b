"""Measured throughput and the dry run's estimates from it: known answers by hand."""

import json
import shutil

import pytest

from raytaskaff import throughput
from raytaskaff.throughput import Measurement, rate, record, run_seconds

CPU = Measurement("cpu x", "cpu", "small", 32, 64, {1: 1000.0, 2: 500.0, 10: 100.0})
GPU = Measurement("gpu y", "cuda", "large", 256, 64, {1: 400.0, 5: 100.0})


def test_a_measured_task_count_is_used_as_it_is():
    found = rate([CPU, GPU], "cpu", "small", 32, 2)
    assert found.samples_per_second == 500.0 and found.measurement is CPU and found.note == ""


def test_between_task_counts_the_time_per_sample_is_interpolated():
    # 6 tasks: halfway from 2 to 10 in seconds per sample: (1/500 + 1/100) / 2
    assert rate([CPU], "cpu", "small", 32, 6).samples_per_second == pytest.approx(1 / ((1 / 500 + 1 / 100) / 2))


def test_beyond_the_measured_counts_and_sizes_it_is_scaled_and_says_so():
    found = rate([GPU], "cuda", "large", 128, 10)
    assert found.samples_per_second == pytest.approx(100.0 * 5 / 10 * 4)  # 10 tasks from 5; a quarter of the pixels
    assert "10 tasks scaled from 5" in found.note and "128 px scaled from 256 px" in found.note


def test_no_measurement_on_the_device_kind_means_no_estimate():
    assert rate([CPU], "cuda", "small", 32, 1) is None
    assert rate([GPU], "cpu", "large", 256, 1) is None
    assert run_seconds([CPU], "cuda", "small", 32, 1, 1000, False) is None


def test_an_unmeasured_model_is_scaled_by_flops_from_the_nearest_measurement_and_says_so():
    from raytaskaff.settings import MODEL_PRESETS, preset
    from raytaskaff.throughput import flops_per_sample

    # medium at 64 px: small at 32 px is nearer in FLOPs than large at 256 px
    small, large = Measurement("gpu s", "cuda", "small", 32, 64, {1: 9000.0, 5: 2700.0}), GPU
    found = rate([small, large], "cuda", "medium", 64, 5)
    ratio = flops_per_sample(MODEL_PRESETS["small"], 32, [(1, True)] * 5) / flops_per_sample(MODEL_PRESETS["medium"], 64, [(1, True)] * 5)
    assert found.measurement is small and found.samples_per_second == pytest.approx(2700.0 * ratio)
    assert "estimate: model 'medium' has no cuda measurement" in found.note
    assert "scaled by FLOPs per sample from small at 32 px, batch 64, measured on gpu s" in found.note
    # image-level heads: the pooled linear head, not a decoder
    pooled = rate([small], "cuda", "tag_celeba", 64, 1, dense=[False])
    assert pooled.samples_per_second == pytest.approx(
        9000.0 * flops_per_sample(MODEL_PRESETS["small"], 32) / flops_per_sample(MODEL_PRESETS["tag_celeba"], 64, [(1, False)]))
    # a measured preset keeps its own rate; overridden sizes are named, not scaled
    wide = rate([small], "cuda", "small", 32, 1, network=preset("small", decoder_width=64))
    assert wide.samples_per_second == 9000.0 and "its sizes overridden here (decoder_width 64) are not scaled" in wide.note


def _brute_force_flops(net, size: int, inject: int = 0) -> int:
    """2 x the multiply-adds of every Conv2d, ConvTranspose2d and Linear of one forward pass of one
    image, counted from the layers' shapes by forward hooks."""
    import torch
    from torch import nn

    macs = []

    def hook(layer, inputs, output):
        if isinstance(layer, nn.Conv2d):  # every output value: in_channels / groups x kernel taps
            macs.append(output[0].numel() * layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1])
        elif isinstance(layer, nn.ConvTranspose2d):  # every input value: out_channels / groups x kernel taps
            macs.append(inputs[0][0].numel() * layer.out_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1])
        else:
            macs.append(layer.in_features * layer.out_features)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, size, size), torch.zeros(1, inject, size, size) if inject else None)
    for h in handles:
        h.remove()
    return 2 * sum(macs)


@pytest.mark.parametrize("name", ["small", "medium", "large", "resnet18", "tag_celeba"])
@pytest.mark.parametrize("size", [32, 48])
def test_flops_per_sample_counts_the_layers_of_the_built_network(name, size):
    """The analytic count against the built network's layers (dense and pooled heads, injected
    channels), within 0.1 % (the count is meant to be exact: same layers, same shapes)."""
    from raytaskaff.models import HeadSpec, InjectSpec, MultiTaskNet
    from raytaskaff.settings import MODEL_PRESETS
    from raytaskaff.throughput import flops_per_sample

    heads = [HeadSpec("classes", 18, True), HeadSpec("depth", 1, True), HeadSpec("attributes", 3, False)]
    net = MultiTaskNet(heads, MODEL_PRESETS[name], inject=[InjectSpec("partner", 2)])
    counted = flops_per_sample(MODEL_PRESETS[name], size, [(h.out_channels, h.dense) for h in heads], inject_channels=2)
    assert counted == pytest.approx(_brute_force_flops(net, size, inject=2), rel=1e-3)
    # a known answer by hand: small at 32 px, one dense head of one output (multiply-adds)
    if name == "small" and size == 32:
        encoder = 32 * 32 * 3 * 16 * 9 + 16 * 16 * 16 * 16 * 9 + 8 * 8 * 16 * 32 * 9 + 4 * 4 * 32 * 64 * 9
        decoder = (4 * 4 * 64 * 8 * 4 + 8 * 8 * 8 * 8 * 9) + (8 * 8 * 8 * 8 * 4 + 16 * 16 * 8 * 8 * 9) \
            + (16 * 16 * 8 * 8 * 4 + 32 * 32 * 8 * 8 * 9) + 32 * 32 * 8
        assert flops_per_sample(MODEL_PRESETS["small"], 32) == 2 * (encoder + decoder)


def test_run_seconds_counts_samples_and_probes():
    seconds, used = run_seconds([CPU], "cpu", "small", 32, 1, 3000, probes=True)
    assert seconds == pytest.approx(3000 / 1000 * throughput.PROBE_FACTOR) and used.measurement is CPU


def test_the_shipped_table_loads_and_record_replaces_its_own_entry(tmp_path):
    table = tmp_path / "throughput.json"
    shutil.copy(throughput.TABLE, table)
    before = throughput.load_table(table)
    assert before and all(m.kind in ("cpu", "cuda") and m.samples_per_second for m in before)
    record(GPU, table)
    record(Measurement(**{**GPU.__dict__, "samples_per_second": {1: 800.0}}), table)
    after = throughput.load_table(table)
    assert len(after) == len(before) + 1 and after[-1].samples_per_second == {1: 800.0}
    assert json.loads(table.read_text())["about"] and not list(tmp_path.glob("*.tmp-*"))


def test_the_shipped_table_holds_the_h200_rates_of_large_at_256_px():
    h200 = {m.batch_size: m for m in throughput.load_table() if m.device == "NVIDIA H200"}
    assert h200[64].samples_per_second == {1: 2282.0, 5: 783.0} and h200[256].samples_per_second == {1: 2278.0, 5: 771.0}
    assert all(m.kind == "cuda" and m.model == "large" and m.size == 256 and m.torch == "2.11.0+cu130"
               and m.date == "2026-12-01" for m in h200.values())
    assert h200[256].command == "python -m bench.training --device cuda --model large --size 256 --batch-size 256"


def test_the_dry_run_of_taskonomy_5_at_the_study_scale_from_the_measured_h200_rates():
    """sweeps/taskonomy-5.yaml, 700000 views of 256 px on 8 GPUs: the GPU-hours and the
    wall-clock by hand from the shipped table's H200 rates of "large" at batch 64 (the config's)."""
    from pathlib import Path

    from raytaskaff.config import load_config
    from raytaskaff.sweep import describe

    config = load_config(Path(__file__).resolve().parent.parent / "sweeps" / "taskonomy-5.yaml")
    text = describe(config, views=700_000, size=256, devices=8)
    assert config.training.batch_size == 64 and config.training.epochs == 20
    samples = 700_000 // 64 * 64 * 20  # 10937 full batches an epoch: the last partial one is dropped
    one, five = 2282.0, 783.0
    two = 1 / (0.75 / one + 0.25 / five)  # 2 tasks: a quarter of the way from 1 to 5 in seconds per sample
    # per seed: one bundle of 5 STL, 10 pairs (not instrumented: no scorer reads pairs) and the
    # instrumented all-task network (x1.5), one bundle of 20 label-injection networks (1 task each)
    first = 5 * samples / one + 10 * samples / two + samples / five * 1.5
    injected = 20 * samples / one
    total = 3 * (first + injected)
    assert "sweep taskonomy-5: 5 tasks x 3 seeds, 108 runs\n" in text
    assert f"estimated device-hours: {total / 3600:.2f} GPU-hours (700000 training views of 256 px x 20 epochs; " \
           "measured on NVIDIA H200 (large, 256 px, batch 64, 2026-12-01); no bundle factor is measured on cuda" in text
    # 6 trials on 8 GPUs: each has a GPU of its own, the longest decides
    assert f"wall-clock on 8 GPUs: {max(first, injected) / 3600:.2f} h;" in text
    assert f"the longest trial alone: {max(first, injected) / 3600:.2f} h" in text
    assert round(total / 3600, 2) == 225.74 and round(max(first, injected) / 3600, 2) == 41.17
    assert "a run trains on 699968 of them an epoch (10937 batches of 64, the last partial batch dropped)" in text


def test_the_wall_clock_places_the_longest_trials_first():
    from raytaskaff.sweep import makespan

    assert makespan([5, 4, 3, 3, 3], 2) == 10  # {5, 3} and {4, 3, 3} (the optimum, {5, 4} and {3, 3, 3}, is 9)
    assert makespan([1.0] * 10, 4) == 3 and makespan([7.0, 1.0], 8) == 7 and makespan([], 2) == 0


def test_the_dry_run_applies_a_measured_bundle_factor(tmp_path, monkeypatch):
    """A measured bundle factor of the device kind scales a bundled sweep's estimate and is named;
    without one, or with one network per trial, the estimate is the runs' own."""
    import dataclasses
    import re
    from pathlib import Path

    from raytaskaff.config import load_config
    from raytaskaff.plan import plan
    from raytaskaff.sweep import describe

    table = tmp_path / "throughput.json"
    table.write_text(json.dumps({"about": "test", "measurements": []}))
    record(GPU, table)
    monkeypatch.setattr(throughput, "TABLE", table)
    config = load_config(Path(__file__).resolve().parent.parent / "sweeps" / "taskonomy-5.yaml")

    def hours(c) -> float:
        return float(re.search(r"estimated device-hours: ([0-9.]+) GPU-hours", describe(c, views=700_000, size=256)).group(1))

    one = dataclasses.replace(config, resources=dataclasses.replace(config.resources, bundle=1))
    assert "no bundle factor is measured on cuda: counted as one network after another" in describe(config, views=700_000, size=256)
    assert hours(config) == hours(one)
    runs = len(plan(one, "stand-in"))
    assert f"trials: {runs}, one network each (resources.bundle: 1)" in describe(one, views=700_000, size=256)
    assert "bundles of up to 20 networks (resources.bundle: auto, stacked on a GPU)" in describe(config, views=700_000, size=256)
    data = json.loads(table.read_text())
    data["bundles"] = [{"device": "gpu y", "kind": "cuda", "model": "large", "size": 256, "batch_size": 64, "networks": 16,
                        "factor": 0.25}]
    table.write_text(json.dumps(data))
    text = describe(config, views=700_000, size=256)
    assert "bundled: x0.25 of one network after another, measured for 16 networks of large at 256 px on gpu y" in text
    assert hours(config) == pytest.approx(hours(one) * 0.25, abs=0.01)
    assert describe(one, views=700_000, size=256).count("bundled") == 0
