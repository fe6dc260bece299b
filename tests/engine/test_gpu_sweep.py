"""The smoke sweep on a GPU through Tune, to the report: four runs share the GPU (0.25 each), train
under bf16 autocast, and the scorer actors apply ias and rsa to networks loaded onto CUDA."""

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

ray = pytest.importorskip("ray")

from raytaskaff.config import load_config  # noqa: E402
from raytaskaff.engine.sweep import run_sweep  # noqa: E402
from raytaskaff.plan import numerics, plan, stacking  # noqa: E402
from raytaskaff.store import ResultStore  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.ray,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
SMOKE = Path(__file__).resolve().parents[2] / "sweeps" / "smoke.yaml"


def test_smoke_sweep_on_a_quarter_gpu_per_run(local_ray, tmp_path):
    if not ray.cluster_resources().get("GPU"):
        pytest.skip("the local Ray instance sees no GPU")
    config = load_config(SMOKE, out=str(tmp_path / "out"))
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, path=str(tmp_path / "data")),
                                 resources=dataclasses.replace(config.resources, gpus_per_run=0.25))
    assert numerics(config) == "cuda-bf16"
    run_sweep(config, say=lambda *a: None)

    out = Path(config.out)
    assert (out / "report" / "index.html").is_file()
    summary = json.loads((out / "results" / "evaluation.json").read_text())
    assert not summary["scorer_errors"] and summary["runs"]["failed"] == {}
    affinity = pd.read_csv(out / "results" / "affinity.csv")
    for name in ("ias", "rsa"):
        rows = affinity[affinity.scorer == name]
        assert len(rows) == 6 and rows.value.notna().all(), name
    store = ResultStore(str(out / "store"))
    name = f"cuda:0 {torch.cuda.get_device_name(0)}"  # the trial's one visible GPU
    results = {r: store.find(r.key) for r in plan(config)}
    assert {result.device for result in results.values()} == {name}
    # each network trained as its key says (plan.stacking): stacked, or separate when instrumented
    # or alone in its architecture; none fell back
    lone = "no other network of its architecture in its trial"
    for run, result in results.items():
        planned = stacking(config, run)
        assert (result.training == planned or (planned, result.training, result.training_reason) == ("fused", "separate", lone),
                run.label, result.training, result.training_reason)
    assert {results[r].training for r in results if r.kind in ("stl", "pair") and not r.probes} == {"fused"}
    modes = pd.read_parquet(out / "results" / "runs.parquet").training
    assert "fell back" not in set(modes) and set(modes) <= {"fused", "separate"}
