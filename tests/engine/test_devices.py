"""Where a trial trains: a run planned for CUDA never trains on a CPU under its CUDA key."""

import dataclasses
from pathlib import Path

import pytest
import torch

pytest.importorskip("ray")

from raytaskaff.config import load_config  # noqa: E402
from raytaskaff.engine import runs  # noqa: E402

SMOKE = Path(__file__).resolve().parents[2] / "sweeps" / "smoke.yaml"


def _gpus(share: float):
    config = load_config(SMOKE)
    return dataclasses.replace(config, resources=dataclasses.replace(config.resources, gpus_per_run=share))


def test_a_cuda_run_on_a_node_without_cuda_fails_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(runs.CPU_FOR_LOGICAL_GPUS, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(runs.NoCuda) as refused:
        runs._device(_gpus(0.5))
    message = str(refused.value)
    assert "\n" not in message and message.startswith("resources.gpus_per_run is 0.5, but node ")
    assert "has no working CUDA" in message and "CUDA_VISIBLE_DEVICES=0" in message and "runs keyed cuda-bf16" in message
    assert runs._device(_gpus(0)) == "cpu"  # a CPU sweep is where it belongs


def test_logical_gpus_train_on_the_cpu_only_when_asked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(runs.CPU_FOR_LOGICAL_GPUS, "1")
    assert runs._device(_gpus(0.5)) == "cpu"
