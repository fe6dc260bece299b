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


def test_no_measurement_of_the_model_on_the_device_means_no_estimate():
    assert rate([CPU, GPU], "cuda", "small", 32, 1) is None
    assert rate([CPU, GPU], "cpu", "large", 256, 1) is None
    assert run_seconds([CPU], "cuda", "small", 32, 1, 1000, False) is None


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


def test_the_dry_run_estimates_gpu_hours_from_a_recorded_measurement(tmp_path, monkeypatch):
    """sweeps/taskonomy-5.yaml at the paper's scale, with a stand-in measurement of its model: the
    GPU-hours are the runs' samples over the rates, summed by hand."""
    from pathlib import Path

    from raytaskaff.config import load_config
    from raytaskaff.plan import plan
    from raytaskaff.sweep import describe

    table = tmp_path / "throughput.json"
    table.write_text(json.dumps({"about": "test", "measurements": []}))
    record(GPU, table)
    monkeypatch.setattr(throughput, "TABLE", table)
    config = load_config(Path(__file__).resolve().parent.parent / "sweeps" / "taskonomy-5.yaml")
    text = describe(config, views=700_000, size=256, devices=8)
    samples = 700_000 * config.training.epochs
    rates = {1: 400.0, 2: 1 / (0.75 / 400 + 0.25 / 100), 5: 100.0}
    expected = sum(samples / rates[len(r.tasks)] * (1.5 if r.probes else 1.0) for r in plan(config, "stand-in"))
    assert f"estimated device-hours: {expected / 3600:.2f} GPU-hours (700000 training views of 256 px" in text
    assert f"wall-clock on 8 GPUs: {expected / 8 / 3600:.2f} h" in text and "gpu y" in text


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
    assert "no bundle factor is measured on cuda" in describe(config, views=700_000, size=256)
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
