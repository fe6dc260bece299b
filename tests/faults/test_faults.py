"""Faults on a Ray cluster simulated on this machine (`ray.cluster_utils.Cluster`: a head that runs
no trials and two one-CPU worker nodes). Each test counts what was lost, and that must be nothing."""

import contextlib
import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from raytaskaff.config import load_config, to_dict  # noqa: E402
from raytaskaff.engine.sweep import run_sweep  # noqa: E402
from raytaskaff.plan import plan  # noqa: E402
from raytaskaff.store import ResultStore  # noqa: E402

pytestmark = pytest.mark.ray
SMOKE = Path(__file__).resolve().parents[2] / "sweeps" / "smoke.yaml"


@pytest.fixture(scope="module")
def nodes_cache(tmp_path_factory):
    """The worker nodes' caches, one folder each (on a real cluster, each node's own disk)."""
    return tmp_path_factory.mktemp("nodes-cache")


@pytest.fixture(scope="module")
def cluster(nodes_cache):
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # the engine tests' local Ray lives for the session; this module needs a cluster
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [c.add_node(num_cpus=1, env_vars={"RAYTASKAFF_CACHE": str(nodes_cache / f"node-{i}")}) for i in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c, workers
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Two tasks, two seeds, runs of a few seconds (so that a fault lands mid-run), two retries."""
    root = tmp_path_factory.mktemp("faults")
    config = load_config(SMOKE, out=str(root / "out"))
    return dataclasses.replace(config, data=dataclasses.replace(config.data, path=str(root / "data")),
                               tasks=("depth_zbuffer", "normal"), scorers={"td": config.scorers["td"]}, retries=2,
                               training=dataclasses.replace(config.training, epochs=8),
                               grouping=dataclasses.replace(config.grouping, groups=()))


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def _children(parent: int) -> list[int]:
    """PIDs of the processes whose parent is `parent`."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and _parent(int(e)) == parent]


def _trial_processes(cluster) -> list[int]:
    """PIDs of the processes running a Tune trial on `cluster` (Ray titles them after the
    trainable's actor; each is a child of its node's raylet), never another Ray's on this machine."""
    raylets = {node.all_processes["raylet"][0].process.pid for node in cluster.list_all_nodes()}
    pids = []
    for raylet in raylets:
        for pid in _children(raylet):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::ImplicitFunc"):
                pids.append(pid)
    return pids


class _WhenMidRun(threading.Thread):
    """Calls `action()` once some run has written an epoch checkpoint but not yet its result;
    `join()` re-raises what the action raised."""

    def __init__(self, store_root: Path, action, timeout: float = 120) -> None:
        super().__init__(daemon=True)
        self.store_root, self.action, self.timeout, self.error = store_root, action, timeout, None
        self.start()

    def run(self) -> None:
        end = time.time() + self.timeout
        while time.time() < end:
            if list(self.store_root.glob("runs/*/checkpoint.pt")):
                try:
                    self.action()
                except BaseException as e:  # noqa: BLE001 - handed to the test's thread
                    self.error = e
                return
            time.sleep(0.05)

    def join(self, timeout=None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error


def _assert_nothing_lost(config, summary) -> pd.DataFrame:
    runs = pd.read_parquet(Path(config.out) / "results" / "runs.parquet")
    store = ResultStore(config.storage or str(Path(config.out) / "store"), cache=Path(config.out) / "driver-cache")
    assert not summary["runs"]["failed"] and (runs.status == "done").all()
    assert all(store.has(r.key) for r in plan(config))  # every planned run has its result
    return runs


def test_scorer_actors_on_other_nodes_fetch_each_network_by_key(cluster, nodes_cache, tiny_dataset, tmp_path, monkeypatch):
    """A file:// store stands for a bucket. The driver (on the head, which runs nothing) finds the
    runs without fetching their networks; the actors on the worker nodes fetch them, checked, into
    their own cache, and give the tables the driver computes alone. A damaged network stops the
    scorer with its name."""
    from raytaskaff.data.reader import SplitData
    from raytaskaff.engine.data import share_splits
    from raytaskaff.engine.scorers import ModelMappers, first_images
    from raytaskaff.models import MultiTaskNet, preset, save_model
    from raytaskaff.scorers import Artifacts, SeedRuns, scorer
    from raytaskaff.tasks import task
    from raytaskaff.training.loop import RunResult, RunSpec

    tasks = ("depth_zbuffer", "normal", "edge_texture")
    store = ResultStore(f"file://{tmp_path / 'bucket'}", cache=tmp_path / "trials")
    for i, t in enumerate(tasks):
        path = store.run_dir(f"stl-{t}") / "model.pt"
        save_model(MultiTaskNet([task(t)], preset("small", widths=(8, 8)), seed=i), path, i)
        store.save(f"stl-{t}", RunResult(RunSpec((t,)), 0, {t: 1.0}, {t: 1.0}, {}, 0, 1, [], 1.0, 1.0, "cpu", 1, model_path=str(path)))
    driver = ResultStore(store.uri, cache=tmp_path / "driver")
    runs = SeedRuns(0, stl={t: driver.find(f"stl-{t}") for t in tasks})
    assert not list((tmp_path / "driver").rglob("model.pt"))

    monkeypatch.setenv("RAYTASKAFF_CACHE", str(tmp_path / "alone"))
    test = SplitData.open(tiny_dataset, "test")
    alone = scorer("rsa").score(Artifacts(tasks, [runs], test_images=lambda n: first_images(test, n)), images=6)
    with ModelMappers(share_splits(tiny_dataset, "object_store"), actors=2, num_cpus=0.5) as mapper:
        spread = scorer("rsa").score(Artifacts(tasks, [runs], map_models=mapper), images=6)
        assert spread.table.equals(alone.table)
        fetched = list(nodes_cache.rglob("model.pt"))
        assert {p.parent.name for p in fetched} == {f"stl-{t}" for t in tasks}
        assert {p.relative_to(nodes_cache).parts[0] for p in fetched} <= {"node-0", "node-1"}
        assert not list((tmp_path / "driver").rglob("model.pt"))

        (tmp_path / "bucket" / "runs" / "stl-normal" / "model.pt").write_bytes(b"truncated")
        for cached in nodes_cache.rglob("model.pt"):
            cached.unlink()
        with pytest.raises(Exception, match=r"stl-normal/model.pt: 9 bytes where its record says \d+: the network is damaged"):
            scorer("rsa").score(Artifacts(tasks, [runs], map_models=mapper), images=6)


@pytest.mark.parametrize("where", ["shared folder", "bucket"])
def test_a_killed_trial_process_is_retried_and_the_sweep_completes(cluster, small, tmp_path, where):
    """With a bucket (a file:// store; each node its own cache) the retried trial may run on the
    other node: it resumes from the checkpoint its predecessor uploaded, and stores every network."""
    bucket = tmp_path / "bucket"
    config = dataclasses.replace(small, out=str(tmp_path / "out"), storage=f"file://{bucket}" if where == "bucket" else None)
    killed = []

    def kill_one():
        pids = _trial_processes(cluster[0])
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    watcher = _WhenMidRun(bucket if where == "bucket" else tmp_path / "out" / "store", kill_one)
    summary = run_sweep(config, address=cluster[0].address, say=lambda *a: None)
    watcher.join()
    assert killed, "no trial process was found to kill"
    runs = _assert_nothing_lost(config, summary)
    assert runs.retries.sum() >= 1 and len(runs) == len(plan(config))
    if where == "bucket":
        assert not list(bucket.glob("runs/*/checkpoint.pt"))  # dropped once each result was stored
        assert {p.parent.name for p in bucket.glob("runs/*/model.pt")} == {r.key for r in plan(config)}


def test_a_node_removed_mid_sweep_loses_nothing(cluster, small, tmp_path):
    c, workers = cluster
    config = dataclasses.replace(small, out=str(tmp_path / "out"))
    removed = []

    def remove_node():
        node = workers.pop()
        # a machine that goes takes its processes with it; a worker Ray leaves behind would finish a
        # run it holds in memory (memory-mapped data needs no Ray until the result is stored)
        processes = _children(node.all_processes["raylet"][0].process.pid)
        c.remove_node(node, allow_graceful=False)
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        removed.append(node)  # the sweep goes on with the other worker node

    watcher = _WhenMidRun(tmp_path / "out" / "store", remove_node)
    summary = run_sweep(config, address=c.address, say=lambda *a: None)
    watcher.join()
    assert removed
    runs = _assert_nothing_lost(config, summary)
    assert len(runs) == len(plan(config)) and runs.retries.sum() >= 1  # the runs on the removed node ran again


def _sweep_command(config_path: Path, out: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "raytaskaff.sweep", "--config", str(config_path), "--out", str(out)]


def test_a_killed_driver_resumes_and_ends_as_an_uninterrupted_sweep(small, tmp_path):
    """The whole sweep command is killed (driver and its local Ray) once two runs are stored; the
    same command run again trains only what is missing, and every result equals an uninterrupted
    sweep's."""
    import json
    import subprocess

    import yaml

    # one network per trial, so that results land one by one and the kill falls between them
    small = dataclasses.replace(small, resources=dataclasses.replace(small.resources, bundle=1))
    config_path = tmp_path / "sweep.yaml"
    config_path.write_text(yaml.safe_dump(to_dict(small)))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray of its own
    out = tmp_path / "interrupted"
    process = subprocess.Popen(_sweep_command(config_path, out), env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "store" / "runs"
    deadline = time.time() + 180
    while time.time() < deadline and len(list(results.glob("*/result.json"))) < 2 and process.poll() is None:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    stored = {p.parent.name for p in results.glob("*/result.json")}
    assert 2 <= len(stored) < len(plan(small)), "the kill did not land mid-sweep"

    done = subprocess.run(_sweep_command(config_path, out), env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "results" / "evaluation.json").read_text())
    assert summary["runs"]["skipped"] == len(stored) and summary["runs"]["trained"] == len(plan(small)) - len(stored)

    reference = tmp_path / "uninterrupted"
    assert subprocess.run(_sweep_command(config_path, reference), env=env, capture_output=True, check=False).returncode == 0
    resumed, clean = ResultStore(str(out / "store")), ResultStore(str(reference / "store"))
    for run in plan(small):
        assert resumed.find(run.key).test_losses == clean.find(run.key).test_losses, run.label


@pytest.mark.parametrize("where", ["out", "storage"])
def test_unwritable_outputs_or_store_stop_the_sweep_before_training(tmp_path, where):
    """/sys exists but takes no new file, even for root: a read-only storage stand-in."""
    import subprocess
    import sys

    if os.access("/sys", os.W_OK) and not Path("/sys").is_dir():
        pytest.skip("no read-only directory to stand in for read-only storage")
    out = tmp_path / "out"
    args = ["--out", "/sys"] if where == "out" else ["--out", str(out)]
    import yaml

    raw = yaml.safe_load(SMOKE.read_text())
    raw["data"] = {**raw["data"], "path": str(tmp_path / "data")}  # smoke.yaml's data/synthetic-smoke is relative to the cwd
    if where == "storage":
        raw["storage"] = "/sys"
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(config), *args],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: /sys"), done.stderr[-1000:]
    assert "not writable" in lines[0] or "cannot" in lines[0]
    assert not (out / "results").exists() and not list(Path("/sys").glob("runs"))  # nothing half-written


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs (needs root and mount; skipped where the machine allows neither)."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a small tmpfs to fill up")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> None:
    """Take every free byte of `disk` with one file."""
    with open(disk / "filler", "wb", buffering=0) as f:  # unbuffered: nothing left to flush on close
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                continue


def test_a_full_store_stops_the_sweep_in_one_line_and_keeps_what_was_stored(small, small_disk, tmp_path):
    """The store's disk fills up once a run is stored: the sweep stops with one line saying so and
    writes no outputs; every stored result reads back whole and no partial file is left; with space
    freed, the same command trains only the runs that were not stored."""
    import json
    import subprocess

    import yaml

    config_path = tmp_path / "sweep.yaml"
    config_path.write_text(yaml.safe_dump({**to_dict(small), "storage": str(small_disk / "store")}))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = tmp_path / "out"
    process = subprocess.Popen(_sweep_command(config_path, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and not list(small_disk.glob("store/runs/*/result.json")) and process.poll() is None:
        time.sleep(0.05)
    _fill(small_disk)
    stdout, stderr = process.communicate(timeout=300)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert process.returncode == 2 and len(errors) == 1 and errors[0] == stderr.strip().splitlines()[-1], stderr[-2000:]
    assert "result store" in errors[0] and "No space left on device" in errors[0] and "run the same command again" in errors[0]
    assert not (out / "results").exists()  # no outputs from a sweep cut short

    store = ResultStore(str(small_disk / "store"))
    stored = {p.parent.name for p in small_disk.glob("store/runs/*/result.json")}
    assert 1 <= len(stored) < len(plan(small)), "the disk did not fill mid-sweep"
    assert all(store.record(key) is not None for key in stored)  # whole, and under their own keys
    assert not [p for p in small_disk.rglob("*") if ".tmp" in p.name]  # no partial file left behind

    (small_disk / "filler").unlink()
    done = subprocess.run(_sweep_command(config_path, out), env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "results" / "evaluation.json").read_text())
    assert summary["runs"]["skipped"] == len(stored) and summary["runs"]["trained"] == len(plan(small)) - len(stored)
    assert all(store.has(r.key) for r in plan(small))
