"""Load: a sweep of a few hundred tiny runs on a local Ray ends with every result stored, and the
driver's memory does not grow with the number of runs."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from raytaskaff.config import load_config
from raytaskaff.plan import plan
from raytaskaff.store import ResultStore

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]
ELEVEN = ["segment_semantic", "depth_zbuffer", "normal", "keypoints2d", "edge_texture", "depth_euclidean", "reshading",
          "edge_occlusion", "principal_curvature", "mask_valid", "autoencoding"]


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@pytest.mark.slow  # a load test (about 80 s): pytest -m slow; bench.forty runs a thousand runs end to end
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the driver's memory from /proc")
def test_hundreds_of_tiny_runs_lose_nothing_and_the_driver_stays_bounded(tmp_path):
    config_path = tmp_path / "load.yaml"
    config_path.write_text(yaml.safe_dump({
        "name": "load", "data": {"kind": "synthetic", "path": str(tmp_path / "data"), "n": 192, "size": 8, "seed": 0, "workers": 1},
        "tasks": ELEVEN, "seeds": [0, 1, 2, 3, 4, 5], "model": {"preset": "small", "widths": [4, 8], "decoder_width": 4},
        "training": {"epochs": 1, "batch_size": 16}, "scorers": {}, "resources": {"cpus_per_run": 1, "num_cpus": 2},
        "retries": 0, "bootstrap": 0, "out": str(tmp_path / "out"),
    }))
    config = load_config(config_path)
    planned = plan(config)
    assert len(planned) == 6 * (11 + 55)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    process = subprocess.Popen([sys.executable, "-m", "raytaskaff.sweep", "--config", str(config_path)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    results = tmp_path / "out" / "store" / "runs"
    samples = []  # (results stored, driver RSS in MB)
    while process.poll() is None:
        rss = _rss_mb(process.pid)
        if rss is not None:
            samples.append((len(list(results.glob("*/result.json"))), rss))
        time.sleep(0.5)
    stderr = process.stderr.read()
    assert process.returncode == 0, stderr[-2000:]

    store = ResultStore(str(results.parent))
    assert all(store.has(r.key) for r in planned)  # nothing lost
    summary = json.loads((tmp_path / "out" / "results" / "evaluation.json").read_text())
    assert summary["runs"] == {"planned": len(planned), "trained": len(planned), "skipped": 0, "failed": {}}
    quarter = max(rss for n, rss in samples if n <= len(planned) // 4)
    training = max(rss for n, rss in samples if n < len(planned))
    # bounded: from a quarter of the runs to the last one, the driver grows by far less than a run's share
    assert training - quarter < 100, (quarter, training)
    assert max(rss for _, rss in samples) < 2000
