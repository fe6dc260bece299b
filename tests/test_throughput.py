"""Measured throughput and the dry run's estimates from it: known answers by hand."""

import json
import math
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
    # label injection: nothing measured on cuda, the factor of large's LI network measured side by side on cpu
    li = throughput.kind_factor(throughput.load_kind_factors(), throughput.load_table(), "cuda", "large", 256, 1, 1, [True])
    assert li.source == "measured" and "nothing measured on cuda" in li.note and 1 < li.value < 1.5
    injected = 20 * samples / one * li.value
    total = 3 * (first + injected)
    assert "sweep taskonomy-5: 5 tasks x 3 seeds, 108 runs\n" in text
    assert f"estimated device-hours: {total / 3600:.2f} GPU-hours (700000 training views of 256 px x 20 epochs, evaluation " \
           "not counted: the sizes of the validation and test splits are not known; " \
           "an STL run's rate measured on NVIDIA H200 (large, 256 px, batch 64, 2026-12-01); no bundle factor is measured on cuda" in text
    assert f"li x{li.value:.2f} ({li.note})" in text
    # bundled, a seed's 16 networks would keep a GPU for 41 h: one network per trial is faster
    # (estimate.choose_bundles), 108 trials, 16 at once (0.5 GPU each, at half speed), each plus
    # Tune's time per trial, placed longest first
    from raytaskaff.estimate import makespan

    per = throughput.trial_overhead("cuda").seconds
    runs = 3 * ([samples / one] * 5 + [samples / two] * 10 + [samples / five * 1.5] + [samples / one * li.value] * 20)
    wall = makespan([2 * s + per for s in runs], 16)
    assert "trials: 108, one network each (bundling would not be faster)" in text
    assert f"wall-clock on 8 GPUs: {wall / 3600:.2f} h;" in text
    assert wall < max(first, injected)  # the longest bundle alone, which the bundled plan waited for
    assert "a run trains on 699968 of them an epoch (10937 batches of 64, the last partial batch dropped)" in text


def test_the_wall_clock_places_the_longest_trials_first():
    from raytaskaff.estimate import makespan

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
    # without a GPU count nothing is compared: the memory-sized bundles
    assert re.search(r"trials: \d+ bundles of up to \d+ networks \(resources.bundle: auto, stacked on a GPU\)",
                     describe(config, views=700_000, size=256))
    data = json.loads(table.read_text())
    data["bundles"] = [{"device": "gpu y", "kind": "cuda", "model": "large", "size": 256, "batch_size": 64, "networks": 16,
                        "factor": 0.25}]
    table.write_text(json.dumps(data))
    text = describe(config, views=700_000, size=256)
    assert "bundled: x0.25 of one network after another, measured for 16 networks of large at 256 px on gpu y" in text
    assert hours(config) == pytest.approx(hours(one) * 0.25, abs=0.01)
    assert describe(one, views=700_000, size=256).count("bundled") == 0


# --- per-kind cost factors (pair, all-task, LI, group over STL) ---------------------------------

from raytaskaff.throughput import KindFactors, kind_factor  # noqa: E402

POOLED_CPU = KindFactors("cpu x", "cpu", "tag_celeba", "pooled", 64, 64, {"2": 1.02, "10": 1.2, "40": 2.0, "li": 1.1})
DENSE_CPU = KindFactors("cpu x", "cpu", "tag_celeba", "dense", 64, 64, {"2": 1.6, "5": 3.0, "li": 1.3})


def test_a_measured_kind_factor_is_used_for_its_model_and_heads_and_interpolated_in_tasks():
    pair = kind_factor([POOLED_CPU, DENSE_CPU], [], "cpu", "tag_celeba", 64, 2, 0, [False, False])
    assert (pair.value, pair.source) == (1.02, "measured") and "measured side by side on cpu" in pair.note
    # 20 tasks: a third of the way from 10 (1.2) to 40 (2.0), linear in the task count
    assert kind_factor([POOLED_CPU], [], "cpu", "tag_celeba", 64, 20, 0, [False] * 20).value == pytest.approx(1.2 + 0.8 / 3)
    # 50 tasks: beyond the measured counts, along the last two (0.8 per 30 tasks)
    beyond = kind_factor([POOLED_CPU], [], "cpu", "tag_celeba", 64, 50, 0, [False] * 50)
    assert beyond.value == pytest.approx(2.0 + 0.8 / 3) and "50 tasks extended from 10 and 40" in beyond.note
    # label injection: one task, one partner's label
    assert kind_factor([POOLED_CPU], [], "cpu", "tag_celeba", 64, 1, 1, [False]).value == 1.1
    # an STL run is the unit
    assert kind_factor([], [], "cpu", "tag_celeba", 64, 1, 0, [False]).value == 1.0


def test_the_factor_respects_the_head_families():
    """A dense row is never used for pooled heads (nor the other way round); mixed heads take the
    FLOPs model. The FLOPs factor of pooled heads is near 1 (a linear layer each), of dense
    decoders far above."""
    from raytaskaff.settings import MODEL_PRESETS
    from raytaskaff.throughput import flops_per_sample

    dense = kind_factor([DENSE_CPU], [], "cpu", "tag_celeba", 64, 2, 0, [True, True])
    assert dense.value == 1.6 and dense.source == "measured"
    pooled = kind_factor([DENSE_CPU], [], "cpu", "tag_celeba", 64, 2, 0, [False, False])
    net = MODEL_PRESETS["tag_celeba"]
    assert pooled.source == "flops" and "nothing measured for tag_celeba with pooled heads" in pooled.note
    assert pooled.value == pytest.approx(flops_per_sample(net, 64, [(1, False)] * 2) / flops_per_sample(net, 64, [(1, False)]))
    assert 1.0 < pooled.value < 1.001
    mixed = kind_factor([DENSE_CPU, POOLED_CPU], [], "cpu", "tag_celeba", 64, 2, 0, [True, False])
    assert mixed.source == "flops" and "mixed heads" in mixed.note
    assert mixed.value == pytest.approx(flops_per_sample(net, 64, [(1, True), (1, False)]) / flops_per_sample(net, 64, [(1, True)]))


def test_without_a_side_by_side_row_the_rates_by_task_count_then_the_other_device_then_flops():
    """On cuda, the same model's rates by task count (dense heads) come before a cpu row; without
    them the cpu row is used and said so; label injection is never read off the rates."""
    small_cpu = KindFactors("cpu x", "cpu", "small", "dense", 32, 64, {"2": 1.7, "li": 1.2})
    gpu_rates = Measurement("gpu y", "cuda", "small", 32, 64, {1: 9000.0, 2: 5000.0})
    rates = kind_factor([small_cpu], [gpu_rates], "cuda", "small", 32, 2, 0, [True, True])
    assert rates.source == "rates" and rates.value == pytest.approx(9000 / 5000) and "measured on gpu y" in rates.note
    other = kind_factor([small_cpu], [], "cuda", "small", 32, 2, 0, [True, True])
    assert other.value == 1.7 and other.source == "measured" and "nothing measured on cuda" in other.note
    li = kind_factor([small_cpu], [gpu_rates], "cuda", "small", 32, 1, 1, [True])
    assert li.value == 1.2 and "nothing measured on cuda" in li.note
    none = kind_factor([], [gpu_rates], "cuda", "small", 32, 1, 1, [True])
    assert none.source == "flops" and "nothing measured for small with label injection" in none.note


def test_a_row_measured_with_the_configs_own_sizes_is_preferred_and_others_are_named():
    from raytaskaff.settings import preset

    shipped = KindFactors("cpu x", "cpu", "small", "dense", 16, 64, {"2": 1.5})
    wide = KindFactors("cpu x", "cpu", "small", "dense", 16, 64, {"2": 1.9}, {"decoder_width": 64})
    network = preset("small", decoder_width=64)
    assert kind_factor([shipped, wide], [], "cpu", "small", 16, 2, 0, [True] * 2, network).value == 1.9
    assert kind_factor([wide, shipped], [], "cpu", "small", 16, 2, 0, [True] * 2).value == 1.5
    only = kind_factor([shipped], [], "cpu", "small", 32, 2, 0, [True] * 2, network)
    assert only.value == 1.5 and "at 16 px" in only.note and "small as shipped" in only.note


def test_kind_factors_record_and_load(tmp_path):
    table = tmp_path / "throughput.json"
    shutil.copy(throughput.TABLE, table)
    before = throughput.load_kind_factors(table)
    throughput.record_kind_factors(POOLED_CPU, table)
    throughput.record_kind_factors(KindFactors(**{**POOLED_CPU.__dict__, "factors": {"2": 0.9}}), table)
    after = throughput.load_kind_factors(table)
    assert len(after) == len(before) + 1 and after[-1].factors == {"2": 0.9}
    throughput.record_trial_overhead(throughput.TrialOverhead("cpu x", "cpu", 0.4, 20, "2099-01-01"), table)
    assert throughput.trial_overhead("cuda", table).seconds == 0.4  # none on cuda: the latest cpu one, named by its device
    throughput.record_trial_overhead(throughput.TrialOverhead("gpu y", "cuda", 0.9, 20, "2000-01-01"), table)
    assert throughput.trial_overhead("cuda", table).seconds == 0.9 and throughput.trial_overhead("cpu", table).seconds == 0.4
    assert throughput.load_table(table) == throughput.load_table(throughput.TABLE)  # the rates untouched


def test_the_shipped_table_measures_each_presets_kinds_on_cpu():
    shipped = throughput.load_kind_factors()
    measured = {(k.model, k.heads) for k in shipped if k.kind == "cpu"}
    assert {("small", "dense"), ("medium", "dense"), ("large", "dense"), ("resnet18", "dense"), ("tag_celeba", "pooled")} <= measured
    assert all("2" in k.factors and "li" in k.factors and k.command.startswith("python -m bench.training --kinds") for k in shipped)


# --- the wall-clock model ----------------------------------------------------------------------

def _brute_makespan(durations: list[float], slots: int) -> float:
    """The optimum: every assignment of the trials to the slots."""
    import itertools

    best = math.inf
    for assignment in itertools.product(range(slots), repeat=len(durations)):
        loads = [0.0] * slots
        for d, slot in zip(durations, assignment):
            loads[slot] += d
        best = min(best, max(loads))
    return best if durations else 0.0


@pytest.mark.parametrize("seed", range(12))
def test_the_wall_clock_with_trial_overhead_against_the_optimum_by_brute_force(seed):
    """Random small cases: the LPT makespan of the trials (device-seconds x slowdown + overhead)
    lies between the optimum and 4/3 of it, and never below the longest trial or the work over
    the slots."""
    import random

    from raytaskaff.estimate import trial_slots, wall_seconds

    rng = random.Random(seed)
    trials = [rng.uniform(1, 20) for _ in range(rng.randint(1, 7))]
    devices, overhead = rng.randint(1, 3), rng.choice([0.0, 0.5, 3.0])
    kind, cpus, gpus = rng.choice([("cpu", 1.0, 0.0), ("cpu", 2.0, 0.0), ("cuda", 1.0, 0.5), ("cuda", 1.0, 0.25), ("cuda", 1.0, 1.0)])
    slots, slowdown = trial_slots(devices, kind, cpus, gpus, None, len(trials))
    durations = [s * slowdown + overhead for s in trials]
    wall = wall_seconds(trials, devices, kind, cpus, gpus, overhead=overhead)
    optimum = _brute_makespan(durations, slots)
    assert optimum - 1e-9 <= wall <= optimum * 4 / 3 + 1e-9
    assert wall >= max(durations) - 1e-9 and wall >= sum(durations) / slots - 1e-9


def test_trial_slots_by_hand():
    from raytaskaff.estimate import trial_slots, wall_seconds

    # 8 GPUs at 0.25 GPU a trial: 32 at once, 4 to a GPU each at a quarter of its speed
    assert trial_slots(8, "cuda", 4, 0.25, None, 127) == (32, 4.0)
    # fewer trials than GPUs: each has a GPU of its own
    assert trial_slots(8, "cuda", 4, 0.5, None, 6) == (6, 1.0)
    # 12 trials at 0.5 GPU on 8 GPUs: 12 at once, two to a GPU on four of them: counted at half speed
    assert trial_slots(8, "cuda", 4, 0.5, None, 12) == (12, 2.0)
    # CPU cores: 2 cores a trial on 4 cores, 2 at once, each twice the one-core rate; max_concurrent caps
    assert trial_slots(4, "cpu", 2, 0, None, 10) == (2, 0.5) and trial_slots(4, "cpu", 1, 0, 3, 10) == (3, 1.0)
    # 4 trials of 10 s on 2 cores with 1 s of Tune each: two rounds of 11 s
    assert wall_seconds([10.0] * 4, 2, "cpu", 1, 0, overhead=1.0) == 22.0
    # the same on one GPU at 0.5 a trial: two at once at half speed, 21 s each, two rounds
    assert wall_seconds([10.0] * 4, 1, "cuda", 1, 0.5, overhead=1.0) == 42.0


def test_the_kinds_bench_times_the_networks_side_by_side(tmp_path):
    """`bench.training --kinds` on tiny synthetic data: every network timed, the LI and pair
    factors near an STL network's, ten dense decoders far above two."""
    from bench.training import kind_factors
    from raytaskaff.data.synth import SynthConfig, generate

    generate(tmp_path / "data", SynthConfig(n=48, size=8, seed=0))
    rate: dict[int, float] = {}
    factors, rows = kind_factors("small", "dense", "cpu", 1, 4, 8, repetitions=3, steps=1, data=str(tmp_path / "data"),
                                 counts=(2, 10), rate=rate)
    assert set(factors) == {"li", "2", "10"} and rate[1] > 0 and len(rows) == 4
    assert factors["10"] > 2 * factors["2"] > 0 and 0.5 < factors["li"] < 2


def test_a_factor_beyond_the_measured_counts_never_falls():
    """A pair measured a little below its 5-task network's per-task trend (noise) does not make
    40 tasks cheaper than 5."""
    row = KindFactors("cpu x", "cpu", "tag_celeba", "pooled", 64, 64, {"2": 1.03, "5": 1.02})
    assert kind_factor([row], [], "cpu", "tag_celeba", 64, 40, 0, [False] * 40).value == 1.02
    assert kind_factor([row], [], "cpu", "tag_celeba", 64, 3, 0, [False] * 3).value == pytest.approx(1.03 - 0.01 / 3)
