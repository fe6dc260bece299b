"""The memory model: measured parts against the peak of real training steps (within 25 %), its
lines, and the bundles, preflight and dry run it sizes."""

import re
from pathlib import Path

import pytest

from bench.memory import measured_peak, predicted
from raytaskaff.config import load_config
from raytaskaff.plan import Run, bundles
from raytaskaff.preflight import Capacity, check_memory
from raytaskaff.settings import MODEL_PRESETS, ConfigError, RunKind
from raytaskaff.sweep import main
from raytaskaff.training.memory import Footprint, _envelope
from raytaskaff.training.memory_table import gpu_memory_gb, table_size

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("preset", sorted(MODEL_PRESETS))
def test_the_recorded_model_is_within_a_quarter_of_a_real_steps_peak(preset):
    """A pair network's real training step (PlainUnit, Taskonomy losses, Adam) at twice the
    size its parts were measured at and batch 4, against the recorded table's prediction."""
    size = 2 * table_size(MODEL_PRESETS[preset])
    peak = measured_peak(preset, size, 4)
    table, _ = predicted(preset, size, 4, "fp32", False)
    assert 0.75 <= table / peak <= 1.25, (preset, size, table / 2**20, peak / 2**20)


def test_a_fused_bundle_is_predicted_within_a_quarter():
    peak = measured_peak("small", 32, 4, fused=True)
    table, direct = predicted("small", 32, 4, "fp32", True)
    assert 0.75 <= table / peak <= 1.25 and 0.75 <= direct / peak <= 1.25, (table / peak, direct / peak)


def test_the_peak_is_the_highest_of_lines_through_two_batches():
    # two moments of a step: one grows with the batch (activations), one does not (a weight's scratch)
    lines = _envelope({2: [10, 100, 40, 6], 4: [12, 100, 80, 7]})
    assert lines == ((0.0, 20.0), (8.0, 1.0), (100.0, 0.0))  # (5, 0.5) lies under (8, 1) at every batch: dropped
    f = Footprint(16, "fp32", 1, 0, 1, 2, lines, (0.0, 15.0), 30, ((0.0, 5.0),))
    assert f.activation_bytes(2) == 100 and f.activation_bytes(10) == 200 and f.activation_bytes(10, 32) == 800
    assert f.train_bytes(10, 32) == 4 + 800 and f.train_bytes(1) == 4 + 100 and f.eval_bytes(4, 32) == 4 + 80


def _runs(n: int, seed: int = 0, inject: bool = False) -> list[Run]:
    return [Run(RunKind.LI if inject else RunKind.STL, (f"t{i}",), seed, ("p",) if inject else (), key=f"{seed}{inject}{i}")
            for i in range(n)]


def test_bundles_cut_where_memory_ends_and_spread_over_the_slots():
    runs = _runs(10) + _runs(6, inject=True)
    fits = lambda b: len(b) <= 4  # noqa: E731  (a stand-in for the memory model: four networks fit)
    sized = bundles(runs, 32, fits)
    assert [len(b.runs) for b in sized] == [4, 4, 2, 4, 2]
    assert [r for b in sized for r in b.runs] == runs  # plan order kept, nothing lost
    spread = bundles(runs, 32, fits, slots=8)
    assert len(spread) == 8 and max(len(b.runs) for b in spread) == 2
    assert len(bundles(_runs(3), 32, slots=8)) == 3  # never more trials than networks
    assert [len(b.runs) for b in bundles(_runs(3), 32, lambda b: False)] == [1, 1, 1]  # a network alone always trains


def test_gpu_memory_is_read_from_one_known_accelerator_type():
    assert gpu_memory_gb({"CPU": 8, "GPU": 8, "accelerator_type:H100": 1}) == 80.0
    assert gpu_memory_gb({"GPU": 8}) is None
    assert gpu_memory_gb({"accelerator_type:H100": 1, "accelerator_type:T4": 1}) is None  # mixed: the config must say
    assert gpu_memory_gb({"accelerator_type:MYSTERY": 1}) is None


def _config(tmp_path, resources: str):
    text = (ROOT / "sweeps" / "taskonomy-5.yaml").read_text()
    text = re.sub(r"^resources: .*$", f"resources: {resources}", text, flags=re.MULTILINE)
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return load_config(path)


def test_the_preflight_needs_the_gpu_memory_and_a_network_that_fits(tmp_path):
    unknown = _config(tmp_path, "{gpus_per_run: 0.5}")
    nodes = Capacity(({"CPU": 16, "GPU": 8},), {})
    with pytest.raises(ConfigError, match=r"^resources.gpu_memory_gb: the cluster reports no GPU type"):
        check_memory(unknown, nodes, 256)
    check_memory(unknown, Capacity(({"CPU": 16, "GPU": 8, "accelerator_type:H100": 1},), {}), 256)  # the cluster tells
    check_memory(_config(tmp_path, "{gpus_per_run: 0.5, bundle: 1}"), nodes, 256)  # one network per trial: nothing to size
    small = _config(tmp_path, "{gpus_per_run: 0.125, gpu_memory_gb: 16}")
    with pytest.raises(ConfigError) as raised:
        check_memory(small, nodes, 256)
    assert re.fullmatch(r"resources.gpus_per_run: one network \(.+\) is predicted to need [0-9.]+ GiB at 256 px, batch 64, "
                        r"more than the 1.5 GiB a trial may use \(0.8 of 0.125 x 16 GB\): .+", str(raised.value))
    with pytest.raises(ConfigError, match="resources.memory_fraction: must be a finite number > 0 and <= 1"):
        _config(tmp_path, "{gpus_per_run: 0.5, memory_fraction: 1.5}")


def test_the_dry_run_of_taskonomy_5_fits_half_an_80_gb_gpu(capsys):
    assert main(["--config", str(ROOT / "sweeps" / "taskonomy-5.yaml"), "--dry-run", "--views", "700000", "--size", "256",
                 "--gpus", "8"]) == 0
    text = capsys.readouterr().out
    found = re.findall(r"^memory per trial, .* bundles: (\d+) trials of [0-9-]+ networks?, predicted peak ([0-9.]+)-([0-9.]+) GiB "
                       r"at 256 px, batch 64, bf16 of ([0-9.]+) GiB allowed \(0.8 of 0.5 x 80 GB\)$", text, re.MULTILINE)
    assert len(found) == 2, text
    assert all(float(high) <= float(allowed) <= 40e9 / 2**30 for _, _, high, allowed in found)
    assert sum(int(n) for n, *_ in found) >= 16  # 8 GPUs at 0.5 each: 16 trials at once, none idle
