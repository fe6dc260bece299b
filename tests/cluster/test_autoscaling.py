"""The smoke sweep on Ray's fake multi-node autoscaler, with cluster.yaml's own node types: a CPU-only
head, GPU workers (logical GPUs) launched for the pending runs, removed when idle, and a worker
terminated mid-sweep without losing a run. The head is this test's own (port 6379, where the fake
provider's workers join it), started in its own session and temp dir; only its processes are
stopped, never with `ray stop`."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        try:
            s.bind(("", port))
            return True
        except OSError:
            return False


FAKE_HEAD_TYPE = "ray.head.default"  # the fake provider tags its head with this type, whatever the config says


def autoscaling_config() -> dict:
    """cluster.yaml's node types and resources on the fake provider (its head type under the name the
    provider gives its head); at most two workers here, and idle ones removed after 6 s."""
    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    types = {}
    for name, spec in cluster["available_node_types"].items():
        entry = {"resources": dict(spec["resources"]), "node_config": {}}
        if name == cluster["head_node_type"]:
            entry["max_workers"] = 0
            name = FAKE_HEAD_TYPE
        else:
            entry.update(min_workers=0, max_workers=2)
            entry["resources"]["object_store_memory"] = 100 * 2**20
        types[name] = entry
    return {"cluster_name": "fake", "max_workers": 2, "upscaling_speed": 1.0, "idle_timeout_minutes": 0.1,
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True},
            "available_node_types": types, "head_node_type": FAKE_HEAD_TYPE, "auth": {}, "docker": {},
            "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
            "head_start_ray_commands": [], "worker_start_ray_commands": [], "file_mounts": {}, "cluster_synced_files": [],
            "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": []}


def _environ(entry: str) -> dict[str, str]:
    pairs = Path(f"/proc/{entry}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(p.split("=", 1) for p in pairs if "=" in p)


def _worker_nodes(token: Path) -> dict[str, list[int]]:
    """{fake node id: its processes} of this cluster's launched worker nodes."""
    nodes: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                env = _environ(entry)
                if env.get("RAY_AUTH_TOKEN_PATH") == str(token) and env.get("RAY_NODE_TYPE_NAME") == "gpu_worker":
                    nodes.setdefault(env.get("RAY_OVERRIDE_NODE_ID_FOR_TESTING", "?"), []).append(int(entry))
    return nodes


@pytest.fixture(scope="module")
def fake_cluster(own_ray_head, tmp_path_factory):
    if not _port_free(6379):
        pytest.skip("port 6379 is taken: the fake provider's workers can only join a head there")
    config = tmp_path_factory.mktemp("autoscaling") / "autoscaling.yaml"
    config.write_text(yaml.safe_dump(autoscaling_config()))
    head = autoscaling_config()["available_node_types"][FAKE_HEAD_TYPE]["resources"]
    args = ["--port=6379", f"--autoscaling-config={config}", f"--num-cpus={head['CPU']}", f"--num-gpus={head['GPU']}",
            "--include-dashboard=false", "--object-store-memory=100000000"]
    from ray._private.services import get_node_ip_address

    # the GPUs are logical: the runs, planned for CUDA, train on the nodes' CPUs (engine.runs.CPU_FOR_LOGICAL_GPUS)
    with own_ray_head(args, {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                             "RAYTASKAFF_CPU_FOR_LOGICAL_GPUS": "1"}) as (base, token, env):
        for _ in range(120):
            if not _port_free(6379):
                break
            time.sleep(0.5)
        time.sleep(3)
        yield {"address": f"{get_node_ip_address()}:6379", "env": env, "base": base, "token": token}


def _nodes(cluster) -> list[dict]:
    """The cluster's nodes, asked from another process (this one never joins the cluster)."""
    code = ("import json, ray; ray.init(address=%r, log_to_driver=False);"
            "print(json.dumps([{'id': n['NodeID'], 'alive': n['Alive'], 'resources': n['Resources']} for n in ray.nodes()]))")
    done = subprocess.run([sys.executable, "-c", code % cluster["address"]], env=cluster["env"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _sweep_config(tmp_path) -> Path:
    from raytaskaff.data.synth import SynthConfig, generate

    generate(tmp_path / "data", SynthConfig(n=192, size=16, seed=5))
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    raw.update({"data": {"kind": "shards", "path": str(tmp_path / "data")}, "tasks": ["depth_zbuffer", "normal"],
                "seeds": [0, 1], "scorers": {"td": raw["scorers"]["td"], "rsa": {"images": 16}}, "grouping": {"groups": []},
                "training": {**raw["training"], "epochs": 6}, "retries": 3, "out": str(tmp_path / "out"),
                "resources": {"cpus_per_run": 1, "gpus_per_run": 0.5, "scorer_actors": 1,
                              "gpu_memory_gb": 16}})  # logical GPUs of no known type: their memory said
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_workers_are_launched_used_removed_and_a_lost_one_loses_nothing(fake_cluster, tmp_path):
    config = _sweep_config(tmp_path)
    head_id = next(n["id"] for n in _nodes(fake_cluster) if n["alive"])
    terminated = []

    def terminate_a_worker():
        """The provider's terminate: every process of one fake worker node, once a run checkpointed."""
        deadline = time.time() + 240
        while time.time() < deadline and not terminated:
            nodes = _worker_nodes(fake_cluster["token"])
            if nodes and list((tmp_path / "out" / "store").glob("runs/*/checkpoint.pt")):
                victims = nodes[sorted(nodes)[0]]
                for pid in victims:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if victims:
                    terminated.append(len(victims))
            time.sleep(0.2)

    killer = threading.Thread(target=terminate_a_worker, daemon=True)
    killer.start()
    env = {k: v for k, v in fake_cluster["env"].items() if k != "RAY_FAKE_CLUSTER"}
    done = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(config), "--address", fake_cluster["address"]],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    killer.join(timeout=1)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert terminated, "no worker node was running when the first checkpoint appeared"

    runs = pd.read_parquet(tmp_path / "out" / "results" / "runs.parquet")
    assert len(runs) == 6 and (runs.status == "done").all()  # nothing lost with the worker
    assert head_id not in set(runs.node_id) and runs.node_id.nunique() >= 1  # the runs ran on launched GPU workers
    evaluation = json.loads((tmp_path / "out" / "results" / "evaluation.json").read_text())
    assert not evaluation["scorer_errors"] and "rsa" in evaluation["scorers"]

    for _ in range(60):  # idle workers go after idle_timeout_minutes
        workers = [n for n in _nodes(fake_cluster) if n["alive"] and n["id"] != head_id]
        if not workers:
            break
        time.sleep(3)
    assert not workers, f"{len(workers)} workers still up after the sweep"
