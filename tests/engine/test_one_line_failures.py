"""One line for one failure: a sweep whose networks diverge says so on the terminal once, in one
line naming the networks, and no Ray traceback reaches the terminal; a failed trial's line names
the sweep's log, where the tracebacks are."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "sweeps" / "smoke.yaml"


def test_diverged_networks_are_one_line_recorded_once_and_not_retried(tmp_path):
    """A network whose loss turns NaN is trained once (Tune's retry would diverge again on a CPU),
    stored as diverged with its step and loss, named in one line, listed in the report, and left
    out of the scores; the sweep still ends in one line and a non-zero exit."""
    raw = yaml.safe_load(SMOKE.read_text())
    raw.update(data={**raw["data"], "path": str(tmp_path / "data")}, tasks=["depth_zbuffer", "normal"], seeds=[0],
               training={**raw["training"], "epochs": 1, "lr": 1e30},  # every network's loss turns nan at once
               scorers={"td": raw["scorers"]["td"]}, grouping={"groups": []}, retries=1, bootstrap=50,
               resources={**raw["resources"], "bundle": 3}, out=str(tmp_path / "out"))
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(config)], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=600)
    terminal = done.stdout + done.stderr
    log = (tmp_path / "out" / "logs" / "sweep.log").resolve()
    assert done.returncode == 1, terminal[-3000:]
    assert "Traceback" not in terminal and "RayTaskError" not in terminal, terminal[-3000:]
    lines = [line for line in terminal.splitlines() if "DIVERGED" in line or "FAILED" in line]
    assert len(lines) == 1, terminal[-3000:]
    line = lines[0]
    assert line.startswith("[3/3] DIVERGED bundle of 3 seed 0 (2 stl, 1 pair): 3 networks diverged, recorded and not "
                           "retried ("), line
    for network in ("stl depth_zbuffer seed 0", "stl normal seed 0", "pair depth_zbuffer+normal seed 0"):
        assert f"{network}: loss of " in line and " is nan at epoch 0 step 1" in line  # the first step is finite, its update is not
    assert terminal.strip().splitlines()[-1] == f"3 runs failed (see the report; Ray's tracebacks are in {log})"
    assert "Trial task failed" not in log.read_text()  # one attempt: no retry
    records = [json.loads(f.read_text()) for f in (tmp_path / "out" / "store" / "runs").glob("*/result.json")]
    assert len(records) == 3
    for record in records:
        assert record["attempts"] == 1 and record["files"] == {}  # trained once; no network kept
        diverged = record["result"]["diverged"]
        assert diverged["epoch"] == 0 and diverged["step"] == 1 and diverged["loss"] == "nan"
        assert diverged["task"] in record["result"]["spec"]["tasks"] and record["result"]["test_losses"] == {}
    report = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "Diverged networks" in report and "3 networks diverged" in report


@pytest.mark.parametrize("text, line", [
    ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    raise NetworksFailed(...)\n"
     "raytaskaff.engine.runs.NetworksFailed: 1 of 3 networks failed (pair a+b seed 0: loss of a is nan at epoch 0 step 1)\n",
     "1 of 3 networks failed (pair a+b seed 0: loss of a is nan at epoch 0 step 1)"),
    ("Traceback ...\nray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.\n",
     "ActorDiedError: The actor died unexpectedly before finishing this task."),
    ("Traceback ...\nMemoryError\n", "MemoryError"),
    ("", "no error was recorded"),
])
def test_a_trials_error_is_its_last_line_without_the_module(text, line):
    from raytaskaff.engine.runs import error_line

    assert error_line(text) == line
