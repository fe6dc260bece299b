"""A run through Ray Train's TorchTrainer with 2 CPU workers (DDP over gloo)."""

import dataclasses
import math
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from raytaskaff.config import load_config  # noqa: E402
from raytaskaff.data.shards import Manifest  # noqa: E402
from raytaskaff.engine.data import share_splits  # noqa: E402
from raytaskaff.engine.runs import train_with_ray_train  # noqa: E402
from raytaskaff.models import load_model  # noqa: E402
from raytaskaff.plan import Run  # noqa: E402

pytestmark = pytest.mark.ray
SMOKE = Path(__file__).resolve().parents[2] / "sweeps" / "smoke.yaml"


def test_ddp_run_with_two_workers(local_ray, train_dataset, tmp_path):
    config = load_config(SMOKE)
    config = dataclasses.replace(config, resources=dataclasses.replace(config.resources, workers=2, cpus_per_run=1),
                                 training=dataclasses.replace(config.training, epochs=2, batch_size=32))
    shared = share_splits(train_dataset, "object_store")
    run = Run("pair", ("depth_zbuffer", "normal"), seed=0, key="ddp-test")
    result = train_with_ray_train(run, shared, Manifest.load(train_dataset).stats, config, tmp_path)
    assert result.spec.tasks == ("depth_zbuffer", "normal") and len(result.history) == 2
    assert all(math.isfinite(v) for v in result.test_losses.values())
    assert result.history[-1]["train"]["normal"] < result.history[0]["train"]["normal"] * 1.5
    assert Path(result.model_path).parent == tmp_path and Path(result.model_path).name.startswith("model.pt.tmp-")
    assert [p.name for p in tmp_path.glob("model.pt*")] == [Path(result.model_path).name]  # rank 0's copy, staged for the store
    model = load_model(result.model_path)  # written once, by rank 0
    assert model.task_names == ["depth_zbuffer", "normal"]
