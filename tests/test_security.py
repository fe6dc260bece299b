"""Security: nothing unpickles what it reads, the dashboard stays on localhost, the cluster opens
only SSH to the world."""

import ast
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.models import load_model, preset
from raytaskaff.training.loop import DataSplits, RunSpec, TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "raytaskaff").rglob("*.py"))


def _calls(name: str):
    """(file, call) for every call of `name` (a dotted name such as torch.load) in the package."""
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                yield path.relative_to(ROOT), node


def test_every_torch_load_is_weights_only():
    calls = list(_calls("torch.load"))
    assert calls  # the scan sees the loaders
    for path, call in calls:
        keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
        assert keywords.get("weights_only") == "True", f"{path}:{call.lineno}"


def test_no_module_unpickles():
    banned = {"pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & banned, f"{path.relative_to(ROOT)}:{node.lineno}"
    for loader in ("np.load", "pd.read_pickle", "yaml.load", "yaml.unsafe_load"):
        for path, call in _calls(loader):
            assert loader == "np.load" and all(k.arg != "allow_pickle" for k in call.keywords), f"{path}:{call.lineno} {loader}"


class _Payload:
    """Runs a command when unpickled: what a tampered network or checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_tampered_network_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state": _Payload(marker)}, tmp_path / "model.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        load_model(tmp_path / "model.pt")
    assert not marker.exists()


def test_a_tampered_checkpoint_is_ignored_and_the_run_trains_from_the_start(train_dataset, tmp_path):
    splits = DataSplits(*(SplitData.open(train_dataset, s) for s in ("train", "val", "test")), stats=Manifest.load(train_dataset).stats)
    config, spec = TrainConfig(epochs=1, batch_size=32), RunSpec(("depth_zbuffer",))
    torch.set_num_threads(1)
    clean = train(spec, preset("small"), config, splits, seed=0)
    marker = tmp_path / "pwned"
    torch.save({"spec": _Payload(marker)}, tmp_path / "checkpoint.pt")
    with pytest.warns(UserWarning, match="unreadable checkpoint ignored"):
        result = train(spec, preset("small"), config, splits, seed=0, checkpoint=tmp_path / "checkpoint.pt")
    assert not marker.exists()
    assert result.test_losses == clean.test_losses  # trained afresh, exactly as without the file


def test_cluster_opens_only_ssh_to_the_world():
    """The security groups Ray's AWS provider creates for cluster.yaml: intra-cluster traffic, SSH,
    and the config's own extra rules (none); no node type brings security groups of its own."""
    rules_of = pytest.importorskip("ray.autoscaler._private.aws.config")._create_default_inbound_rules
    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    extra = raw["provider"].get("security_group", {}).get("IpPermissions", [])
    assert not any("SecurityGroupIds" in t.get("node_config", {}) for t in raw["available_node_types"].values())
    rules = rules_of({"sg-cluster"}, copy.deepcopy(extra))
    from_anywhere = [r for r in rules if r.get("IpRanges") or r.get("Ipv6Ranges") or r.get("PrefixListIds")]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in from_anywhere] == [("tcp", 22, 22)]
    for r in rules:
        if r not in from_anywhere:
            assert r["UserIdGroupPairs"] == [{"GroupId": "sg-cluster"}]  # only the cluster's own nodes
    starts = " ".join(raw["head_start_ray_commands"] + raw["worker_start_ray_commands"])
    assert "--dashboard-host" not in starts and "0.0.0.0" not in starts


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) of the sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if int(hex_port, 16) == port and state == "0A":  # LISTEN
                    found.add(address)
    return found


@pytest.mark.ray
@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads the listening sockets from /proc/net/tcp")
def test_a_local_sweep_dashboard_listens_on_localhost_only():
    """Ray as the sweep starts it: the dashboard answers on 127.0.0.1 and on no other address."""
    script = ("import ray, sys; from raytaskaff.config import load_config; from raytaskaff.engine.cluster import connect; "
              "connect(None, load_config('sweeps/smoke.yaml').resources.num_cpus); "
              "print(ray._private.worker.global_worker.node.address_info['webui_url']); sys.stdout.flush(); input()")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        host, port = url.rsplit(":", 1)
        assert host.removeprefix("http://") == "127.0.0.1", url
        assert _listening(int(port)) == {"0100007F"}  # 127.0.0.1, and not 0.0.0.0 nor any IPv6 address
    finally:
        process.communicate("\n", timeout=60)
