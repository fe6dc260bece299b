"""The torch-free core: config, plan and store load without torch; the presets as plain data."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raytaskaff.settings import MODEL_PRESETS, TASK_PRESETS, ModelConfig, RunResult, RunSpec, TRAINING_MODES, UnknownTask, preset, task_preset

ROOT = Path(__file__).resolve().parent.parent


def test_config_plan_and_store_import_no_torch():
    code = (
        "import json, sys\n"
        "from raytaskaff.config import load_config\n"
        "from raytaskaff.plan import plan\n"
        "from raytaskaff.store import ResultStore\n"
        f"runs = plan(load_config({str(ROOT / 'sweeps' / 'smoke.yaml')!r}))\n"
        "heavy = [m for m in ('torch', 'captum', 'ray', 'raytaskaff.models', 'raytaskaff.tasks', 'raytaskaff.training.loop') if m in sys.modules]\n"
        "print(json.dumps([len(runs), heavy]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout) == [20, []]


def test_presets_are_plain_data():
    assert preset("small") == ModelConfig() and preset("small", widths=(8, 16)).widths == (8, 16)
    assert MODEL_PRESETS["large"].neck == 512
    with pytest.raises(ValueError, match="unknown model preset 'tiny'"):
        preset("tiny")
    assert task_preset("normal").masked and task_preset("autoencoding").field == "rgb"
    assert task_preset("segment_semantic").family == "dense_classes"
    assert set(TASK_PRESETS) >= {"segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal"}
    with pytest.raises(UnknownTask, match="unknown task 'depht'"):
        task_preset("depht")


def test_a_run_result_round_trips_through_plain_data():
    result = RunResult(RunSpec(("normal",), ("depth_zbuffer",)), 1, {"normal": 0.5}, {"normal": 0.6}, {}, 0, 1, [], 1.0, 2.0, "cpu", 10)
    again = RunResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result and again.spec.kind == "li"


def test_a_result_says_how_it_was_trained_and_older_ones_still_load():
    result = RunResult(RunSpec(("normal",)), 1, {"normal": 0.5}, {"normal": 0.6}, {}, 0, 1, [], 1.0, 2.0,
                       "cuda:0 NVIDIA H100 80GB HBM3", 10, training="fell back", training_reason="stacked first step failed")
    again = RunResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result and (again.training, again.device) == ("fell back", "cuda:0 NVIDIA H100 80GB HBM3")
    older = {k: v for k, v in result.to_dict().items() if k not in ("training", "training_reason")}
    assert (RunResult.from_dict(older).training, RunResult.from_dict(older).training_reason) == (None, None)
    assert TRAINING_MODES == ("fused", "separate", "fell back")
