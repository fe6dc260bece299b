"""Ctrl-C (SIGINT) or SIGTERM stops a sweep cleanly: exit code 130, one line saying how to resume,
every stored run kept whole, no report written from half a sweep."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("signum", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGTERM])  # one handler for both
def test_a_signal_mid_sweep_stops_it_and_keeps_what_is_stored(tmp_path, train_dataset, signum):
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    raw.update({"data": {"kind": "shards", "path": str(train_dataset)}, "tasks": ["depth_zbuffer", "normal"], "seeds": [0, 1, 2],
                "scorers": {"td": raw["scorers"]["td"]}, "grouping": {"groups": []}, "out": str(tmp_path / "out"),
                "training": {**raw["training"], "epochs": 40}})
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(raw))
    log = open(tmp_path / "stdout", "w"), open(tmp_path / "stderr", "w")  # files: a full pipe would block the sweep
    sweep = subprocess.Popen([sys.executable, "-m", "raytaskaff.sweep", "--config", str(config)], cwd=ROOT,
                             stdout=log[0], stderr=log[1], text=True)
    store = tmp_path / "out" / "store" / "runs"
    deadline = time.time() + 240
    while time.time() < deadline and not list(store.glob("*/result.json")):
        time.sleep(0.2)
    assert list(store.glob("*/result.json")), f"no run finished in time: {(tmp_path / 'stderr').read_text()[-2000:]}"
    sweep.send_signal(signum)
    start = time.time()
    sweep.wait(timeout=90)
    err = (tmp_path / "stderr").read_text()
    assert sweep.returncode == 130, err[-3000:]
    assert time.time() - start < 60
    assert err.strip().splitlines()[-1] == "interrupted: finished runs are stored; run the same command again to resume"
    stored = list(store.glob("*/result.json"))
    assert 1 <= len(stored) < 9
    assert all(json.loads(p.read_text())["key"] == p.parent.name for p in stored)  # whole, under their own keys
    assert not list(store.rglob("*.tmp*")) and not (tmp_path / "out" / "report").exists()
