"""The GPU check's plumbing, on this machine's CPU: without CUDA it stops at once in one line, and
its flagship step (bench.flagship) counts the networks that trained fused and fails in one line
when they did not stack."""

import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--device", "cpu", "--model", "small", "--tasks", "depth_zbuffer,normal", "--size", "32", "--batch-size", "32",
         "--eval-batch-size", "64"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")
def test_without_cuda_the_gpu_check_exits_2_in_one_line_writing_nothing(tmp_path):
    env = {**os.environ, "GPU_CHECK_OUT": str(tmp_path / "check")}
    start = time.perf_counter()
    done = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"gpu_check: no CUDA device (torch {torch.__version__}: torch.cuda.is_available() is False)\n"
    assert not (tmp_path / "check").exists() and time.perf_counter() - start < 60


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_flagship_step_counts_the_networks_that_trained_fused(train_dataset, capsys, one_thread):
    from bench.flagship import main

    assert main([*SMALL, "--data", str(train_dataset)]) == 0
    table = capsys.readouterr().out.splitlines()
    fused = next(line for line in table if line.startswith("networks fused of 3"))
    assert "(3 networks of small at 32 px, batch 32, eval 16, fp32)" in fused
    assert fused.split()[-6:] == ["3", "on", "cpu", "1.00", ">=", "1"]  # all 3 stacked: the ratio meets its aim


def test_the_flagship_step_fails_in_one_line_when_the_networks_do_not_stack(train_dataset, one_thread):
    from bench.flagship import main
    from raytaskaff.training.fused import FusedNets

    def refused(self, x, extra=None):
        raise RuntimeError("Expected running_mean to have type BFloat16 but got Float")

    with mock.patch.object(FusedNets, "__call__", refused), pytest.raises(SystemExit) as stopped:
        main([*SMALL, "--data", str(train_dataset)])
    message = str(stopped.value.code)
    assert message.startswith("bench.flagship: 3 networks of small at 32 px, batch 32, eval 16, fp32 on cpu: stacking failed: "
                              "3 stacked networks failed their first step on cpu (Expected running_mean to have type "
                              "BFloat16 but got Float); nothing was stored")
    assert "\n" not in message


def test_the_flagship_step_without_cuda_exits_2(capsys):
    from bench.flagship import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["--device", "cuda"]) == 2
    assert capsys.readouterr().err == f"bench.flagship: no CUDA device (torch {torch.__version__})\n"


def test_a_network_that_did_not_train_fused_is_named_with_its_mode_and_reason():
    from bench.flagship import failures
    from raytaskaff.settings import RunResult, RunSpec

    def result(tasks, mode, reason):
        return RunResult(RunSpec(tasks), 0, {}, {}, {}, 0, 1, [], 1.0, 1.0, "cuda:0 NVIDIA H100 80GB HBM3", 1,
                         training=mode, training_reason=reason)

    results = [result(("normal",), "fused", None), result(("normal", "depth_zbuffer"), "fell back", "stacked first step failed"),
               result(("depth_zbuffer",), "separate", "no other network of its architecture in its trial"), ValueError("boom")]
    assert failures(results) == ["normal+depth_zbuffer: fell back (stacked first step failed)",
                                 "depth_zbuffer: separate (no other network of its architecture in its trial)",
                                 "a network failed: boom"]
