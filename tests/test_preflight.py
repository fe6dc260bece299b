"""The preflight: what the config, the manifest and the cluster's resources already tell, refused in
one line before anything trains or is written."""

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from raytaskaff.config import load_config
from raytaskaff.data.shards import Manifest, ShardWriter
from raytaskaff.data.synth import SynthConfig, synth_views
from raytaskaff.errors import DataError
from raytaskaff.preflight import Capacity, ResourceError, actors_that_fit, check_data, check_resources

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "sweeps" / "smoke.yaml"


def test_the_config_the_preflight_and_the_planner_import_neither_torch_nor_ray():
    code = ("import sys, raytaskaff.config, raytaskaff.preflight, raytaskaff.plan\n"
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def _smoke(**changes):
    return dataclasses.replace(load_config(SMOKE), **changes)


@pytest.fixture(scope="module")
def three_domains(tmp_path_factory):
    """Shards of rgb, depth and normals only: no reshading, no edges."""
    out = tmp_path_factory.mktemp("data") / "three"
    with ShardWriter(out, 16, ["rgb", "depth_zbuffer", "normal"]) as writer:
        for split, building, point, view, fov, arrays in synth_views(SynthConfig(n=120, size=16, seed=2)):
            writer.add(split, building, point, view, fov, {k: arrays[k] for k in ("rgb", "depth_zbuffer", "normal")})
    return out


def test_a_task_whose_domain_the_data_lacks_is_named(three_domains):
    manifest = Manifest.load(three_domains)
    config = _smoke(tasks=("depth_zbuffer", "reshading"), scorers={"li": {}})
    with pytest.raises(DataError, match="task reshading needs the domain 'reshading', which the dataset does not hold "
                                        r"\(it has: rgb, depth_zbuffer, normal\)"):
        check_data(config, manifest, str(three_domains))
    check_data(_smoke(tasks=("depth_zbuffer", "normal")), manifest, str(three_domains))


def test_a_train_split_smaller_than_a_batch_is_refused(three_domains):
    manifest = Manifest.load(three_domains)
    train = manifest.splits["train"]["count"]
    config = _smoke(tasks=("depth_zbuffer", "normal"))
    big = dataclasses.replace(config, training=dataclasses.replace(config.training, batch_size=train + 1))
    with pytest.raises(DataError, match=f"the train split holds {train} views, fewer than one batch of {train + 1}"):
        check_data(big, manifest, "d")
    empty = dataclasses.replace(manifest, splits={**manifest.splits, "test": {"count": 0, "buildings": {}}})
    with pytest.raises(DataError, match="the test split is empty"):
        check_data(config, empty, "d")


def _resources(**r):
    config = load_config(SMOKE)
    return dataclasses.replace(config, resources=dataclasses.replace(config.resources, **r))


def test_a_run_no_node_can_hold_names_the_request_and_the_largest_node():
    laptop = Capacity(({"CPU": 2.0, "memory": 1e9},), {})
    with pytest.raises(ResourceError, match=r"every run \(pair, stl\) asks for 4 CPU, 0 GPU, more than any node holds: "
                                            r"the largest has 2 CPU, 0 GPU; node types the autoscaler can add: none"):
        check_resources(_resources(cpus_per_run=4), laptop, ["pair", "stl"])
    check_resources(_resources(cpus_per_run=2), laptop, ["stl"])
    with pytest.raises(ResourceError, match="asks for 1 CPU, 0.5 GPU"):
        check_resources(_resources(gpus_per_run=0.5), laptop, ["stl"])


def test_node_types_the_autoscaler_can_add_count():
    cpu_head = Capacity(({"CPU": 8.0, "GPU": 0.0},), {"gpu_worker": {"CPU": 8, "GPU": 1}})
    check_resources(_resources(gpus_per_run=0.5), cpu_head, ["stl"])
    check_resources(_resources(gpus_per_run=1, cpus_per_run=8), cpu_head, ["stl"])
    with pytest.raises(ResourceError, match=r"asks for 1 CPU, 2 GPU.*largest has 8 CPU, 1 GPU; .*gpu_worker \(8 CPU, 1 GPU\)"):
        check_resources(_resources(gpus_per_run=2), cpu_head, ["stl"])


def test_scorer_actors_that_fit_together_are_counted_node_by_node():
    """taskonomy-5's four actors of 0.5 GPU: two on a one-GPU machine, all four on two GPUs or
    where the autoscaler adds GPU nodes; a node's CPUs bound them too, and nodes do not pool."""
    actor = {"CPU": 1.0, "GPU": 0.5}
    assert actors_that_fit(Capacity(({"CPU": 16.0, "GPU": 1.0},), {}), actor, 4) == 2
    assert actors_that_fit(Capacity(({"CPU": 16.0, "GPU": 2.0},), {}), actor, 4) == 4
    assert actors_that_fit(Capacity(({"CPU": 1.0, "GPU": 1.0},), {}), actor, 4) == 1
    assert actors_that_fit(Capacity(({"CPU": 8.0, "GPU": 0.5}, {"CPU": 8.0, "GPU": 0.5}), {}), actor, 4) == 2
    assert actors_that_fit(Capacity(({"CPU": 8.0},), {"gpu_worker": {"CPU": 8, "GPU": 1}}), actor, 4) == 4
    assert actors_that_fit(Capacity(({"CPU": 8.0},), {}), actor, 4) == 0
    assert actors_that_fit(Capacity(({"CPU": 1.0, "GPU": 1.0},), {}), {"CPU": 0.1, "GPU": 0.1}, 12) == 10
    assert actors_that_fit(Capacity(({"CPU": 2.0},), {}), {"CPU": 1.0, "GPU": 0.0}, 3) == 2


def test_node_types_are_read_from_an_autoscaling_config(tmp_path):
    from raytaskaff.engine.cluster import node_types

    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    path = tmp_path / "bootstrap.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert node_types(path) == {"gpu_worker": {"CPU": 8, "GPU": 1}}  # the head is not a type to add
    assert node_types(tmp_path / "absent.yaml") == {}


@pytest.mark.parametrize("text, message", [
    ("available_node_types: [unclosed", "is not valid YAML"),
    ("- a list", "must be a mapping with a mapping available_node_types"),
    ("available_node_types: [gpu_worker]", "must be a mapping with a mapping available_node_types"),
    ("available_node_types: {gpu_worker: {max_workers: 2, resources: {GPU: lots}}}", "available_node_types.gpu_worker needs a mapping of numbers"),
    (b"\xff\xfe not text", "cannot be read"),
])
def test_a_malformed_autoscaling_config_is_one_line_not_no_autoscaler(tmp_path, text, message):
    from raytaskaff.engine.cluster import ClusterError, node_types

    path = tmp_path / "bootstrap.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ClusterError, match=message) as caught:
        node_types(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def _sweep(tmp_path, config: dict, *args, timeout=120):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(path), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    return done, time.perf_counter() - start


def _small_config(tmp_path, data, **changes) -> dict:
    raw = yaml.safe_load(SMOKE.read_text())
    raw.update({"data": data, "tasks": ["depth_zbuffer", "normal"], "seeds": [0], "out": str(tmp_path / "out"),
                "scorers": {"td": raw["scorers"]["td"]}, "grouping": {"groups": []}}, **changes)
    return raw


def _one_error_line(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("address,says", [
    ("127.0.0.1:1", "--address 127.0.0.1:1: no Ray cluster answers there"),
    ("http://127.0.0.1:8265", "that is a dashboard (job submission) address"),
    ("localhost", "expected host:port"),
])
def test_an_address_where_no_cluster_answers_fails_fast_and_writes_nothing(tmp_path, three_domains, address, says):
    data = {"kind": "shards", "path": str(three_domains)}
    done, seconds = _sweep(tmp_path, _small_config(tmp_path, data), "--address", address)
    assert says in _one_error_line(done) and seconds < 30
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tasks,says", [
    (["depth_zbuffer", "reshading"], "task reshading needs the domain 'reshading'"),
])
def test_data_the_tasks_cannot_use_stops_the_cli_before_ray(tmp_path, three_domains, tasks, says):
    data = {"kind": "shards", "path": str(three_domains)}
    done, seconds = _sweep(tmp_path, {**_small_config(tmp_path, data), "tasks": tasks, "scorers": {"li": {}}})
    assert says in _one_error_line(done) and "Ray" not in done.stderr and seconds < 30
    assert not (tmp_path / "out").exists()


def test_a_batch_larger_than_the_train_split_stops_the_cli(tmp_path, three_domains):
    data = {"kind": "shards", "path": str(three_domains)}
    raw = _small_config(tmp_path, data)
    raw["training"] = {**raw["training"], "batch_size": 4096}
    done, seconds = _sweep(tmp_path, raw)
    assert "fewer than one batch of 4096" in _one_error_line(done) and seconds < 30
    assert not (tmp_path / "out").exists()


@pytest.mark.ray
def test_more_cpus_per_run_than_the_machine_has_stops_the_sweep_in_one_line(tmp_path, three_domains):
    data = {"kind": "shards", "path": str(three_domains)}
    raw = _small_config(tmp_path, data, resources={"cpus_per_run": 64, "num_cpus": 2})
    done, seconds = _sweep(tmp_path, raw)
    line = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and line.startswith("error: resources: every run (pair, stl) asks for 64 CPU, 0 GPU"), done.stderr[-3000:]
    assert "the largest has 2 CPU, 0 GPU" in line and seconds < 60
    assert not (tmp_path / "out").exists()


def test_declared_tasks_are_checked_against_the_declared_fields(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import declared

    from raytaskaff.config import SweepConfig, from_dict

    root = tmp_path / "data"
    manifest = declared.write(root)

    def config(tasks, **data):
        return from_dict(SweepConfig, {"data": {"kind": "shards", "path": str(root), **data}, "tasks": tasks,
                                       "scorers": {"li": {}}, "training": {"batch_size": 16}})

    good = [{"name": "top", "family": "binary", "field": "attributes", "index": 0},
            {"name": "colour", "family": "classification", "field": "colour"}]
    check_data(config(good), manifest, str(root))
    with pytest.raises(DataError, match="task colour: a dense_classes task reads a field of kind class_map; colour is a class_label field"):
        check_data(config([good[0], {**good[1], "family": "dense_classes"}]), manifest, str(root))
    with pytest.raises(DataError, match="task top: index 5 is past the 3 entries of attributes"):
        check_data(config([{**good[0], "index": 5}, good[1]]), manifest, str(root))
    with pytest.raises(DataError, match=r"the input \(data.input\) 'bright' is a class_map field of shape \[16, 16, 1\], not a 3-channel image"):
        check_data(config(good, input="bright"), manifest, str(root))
    with pytest.raises(DataError, match="task normal needs the domain 'normal', which the dataset does not hold"):
        check_data(config([good[0], "normal"]), manifest, str(root))


def test_a_tracking_uri_mlflow_does_not_know_is_one_line_before_ray(tmp_path):
    raw = _small_config(tmp_path, {"kind": "synthetic", "path": str(tmp_path / "data"), "n": 48, "size": 16},
                        tracking={"mlflow": {"tracking_uri": "htp://mlflow:5000"}})
    done, seconds = _sweep(tmp_path, raw, timeout=60)
    assert done.returncode == 2 and seconds < 30
    assert _one_error_line(done) == (f"error: {tmp_path / 'sweep.yaml'}: tracking.mlflow.tracking_uri: 'htp://mlflow:5000' has the scheme 'htp', which "
                                     "MLflow does not know (one of http, https, file, sqlite, postgresql, mysql, mssql, "
                                     "databricks, databricks-uc, or a plain path)")
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()


def _with_mlflow(monkeypatch, uri):
    """The smoke config tracking to `uri` (the mlflow package need not be installed for the preflight)."""
    import raytaskaff.sections as sections_module
    from raytaskaff.sections import MlflowSection

    monkeypatch.setattr(sections_module, "_check_installed", lambda *a: None)
    config = load_config(SMOKE)
    return dataclasses.replace(config, tracking=dataclasses.replace(config.tracking, mlflow=MlflowSection(tracking_uri=uri)))


def test_an_mlflow_server_that_does_not_answer_is_one_line_within_the_bound(monkeypatch):
    import socket
    import threading

    from raytaskaff.preflight import TrackingError, check_tracking

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    with pytest.raises(TrackingError, match=rf"no MLflow server answers at http://127.0.0.1:{port} within 5 s \(.*refused"):
        check_tracking(_with_mlflow(monkeypatch, f"http://127.0.0.1:{port}"))

    silent = socket.socket()  # accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
    start = time.perf_counter()
    with pytest.raises(TrackingError, match=r"within 0.5 s \(timed out\)"):
        check_tracking(_with_mlflow(monkeypatch, f"http://127.0.0.1:{silent.getsockname()[1]}"), timeout=0.5)
    assert time.perf_counter() - start < 5
    silent.close()


def test_an_mlflow_server_that_answers_or_a_file_store_passes(monkeypatch, tmp_path):
    import http.server
    import threading

    from raytaskaff.preflight import check_tracking

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers 501 to a GET
    threading.Thread(target=server.handle_request, daemon=True).start()
    check_tracking(_with_mlflow(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}"))  # any answer: a server is there
    server.server_close()
    check_tracking(_with_mlflow(monkeypatch, f"file://{tmp_path / 'mlruns'}"))
    check_tracking(_with_mlflow(monkeypatch, str(tmp_path / "mlruns")))


def test_a_name_lookup_that_hangs_is_cut_at_the_bound(monkeypatch):
    """urllib's timeout covers socket reads, not the name lookup: a dead DNS server must not hold
    the preflight past its bound either."""
    import socket

    from raytaskaff.preflight import TrackingError, check_tracking

    config = _with_mlflow(monkeypatch, "http://mlflow.internal:5000")
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(20))
    start = time.perf_counter()
    with pytest.raises(TrackingError, match=r"^tracking.mlflow.tracking_uri: no MLflow server answers at "
                                            r"http://mlflow.internal:5000 within 0.5 s \(timed out\)$"):
        check_tracking(config, timeout=0.5)
    assert time.perf_counter() - start < 2


def test_mlflow_tracking_uri_from_the_environment_is_checked_when_the_config_has_none(monkeypatch, tmp_path):
    import socket

    from raytaskaff.preflight import TrackingError, check_tracking

    config = _with_mlflow(monkeypatch, None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    check_tracking(config)  # MLflow's local default: nothing to ask
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "htp://mlflow:5000")
    with pytest.raises(TrackingError, match=r"^MLFLOW_TRACKING_URI \(tracking.mlflow.tracking_uri is unset\): "
                                            r"'htp://mlflow:5000' has the scheme 'htp', which MLflow does not know "
                                            r"\(one of http, https, file, sqlite, postgresql, mysql, mssql, "
                                            r"databricks, databricks-uc, or a plain path\)$"):
        check_tracking(config)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises(TrackingError, match=rf"^MLFLOW_TRACKING_URI .*: no MLflow server answers at http://127.0.0.1:{port} "
                                            r"within 5 s \(.*refused"):
        check_tracking(config)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path / 'mlruns'}")
    check_tracking(config)


def test_a_silent_mlflow_server_stops_the_cli_in_one_line_before_anything_is_written(monkeypatch, tmp_path, capsys):
    """The whole command, in this process (it stops before Ray starts): exit code 2, one line, no
    output or data folder, within the preflight's bound rather than MLflow's minutes of retries."""
    import socket
    import threading

    import raytaskaff.sections as sections_module
    import raytaskaff.sweep as cli

    monkeypatch.setattr(sections_module, "_check_installed", lambda *a: None)  # mlflow need not be installed
    monkeypatch.setattr(cli, "_interrupt_on_sigterm", lambda: None)  # leave pytest's SIGTERM alone
    silent = socket.socket()  # accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
    uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
    raw = _small_config(tmp_path, {"kind": "synthetic", "path": str(tmp_path / "data"), "n": 48, "size": 16},
                        tracking={"mlflow": {"tracking_uri": uri}})
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(raw))
    start = time.perf_counter()
    code = cli.main(["--config", str(tmp_path / "sweep.yaml")])
    seconds = time.perf_counter() - start
    silent.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"error: tracking.mlflow.tracking_uri: no MLflow server answers at {uri} within 5 s "
                                 "(timed out)"], err
    assert held and 4.5 < seconds < 15
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()
