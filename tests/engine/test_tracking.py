"""Experiment tracking and progress by kind: a tiny sweep's TensorBoard curves (and MLflow runs,
where mlflow is installed) are its stored histories, run by run; the per-kind gauges reach Ray's
metrics export; the `tracking` config section refuses what it cannot do in one line."""

import dataclasses
import importlib.util
import re
import struct
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from raytaskaff.config import ConfigError, SweepConfig, from_dict, load_config  # noqa: E402
from raytaskaff.sections import MlflowSection, TrackingSection  # noqa: E402
from raytaskaff.engine.sweep import run_sweep  # noqa: E402
from raytaskaff.engine.tracking import run_name  # noqa: E402
from raytaskaff.plan import Run, bundles, plan  # noqa: E402
from raytaskaff.store import ResultStore  # noqa: E402

pytestmark = pytest.mark.ray
SMOKE = Path(__file__).resolve().parents[2] / "sweeps" / "smoke.yaml"
HAVE_MLFLOW = importlib.util.find_spec("mlflow") is not None


@pytest.fixture(scope="module")
def tracked(local_ray, tmp_path_factory):
    """Two tasks, one seed, td only (the three runs of the ground truth), tracked by TensorBoard
    and, where mlflow is installed, by MLflow into a local file store."""
    root = tmp_path_factory.mktemp("tracking")
    smoke = load_config(SMOKE, out=str(root / "out"))
    mlflow = MlflowSection(tracking_uri=f"file://{root / 'mlruns'}", experiment="tracked") if HAVE_MLFLOW else None
    config = dataclasses.replace(smoke, tasks=("depth_zbuffer", "normal"), seeds=(0,), scorers={"td": smoke.scorers["td"]},
                                 grouping=dataclasses.replace(smoke.grouping, groups=()),
                                 data=dataclasses.replace(smoke.data, path=str(root / "data")),
                                 tracking=TrackingSection(mlflow=mlflow),
                                 # the three runs in one trial (auto trains one per trial on CPUs)
                                 resources=dataclasses.replace(smoke.resources, bundle=3))
    with pytest.MonkeyPatch.context() as patch:
        # unset for the sweep, so that MLflow's file store is opened by the callbacks' own opt-in,
        # and gone again afterwards
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "unset")
        patch.delenv("MLFLOW_ALLOW_FILE_STORE")
        summary = run_sweep(config, say=lambda *a: None)
    assert summary["runs"]["trained"] == 3 and not summary["runs"]["failed"]
    return config


def _histories(config) -> dict[Run, list[dict]]:
    store = ResultStore(str(Path(config.out) / "store"))
    return {run: store.find(run.key).history for run in plan(config)}


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} of the TensorBoard event files in `logdir`, read as TFRecords
    (u64 length, u32 CRC, an Event protobuf, u32 CRC) without TensorBoard itself."""
    from tensorboardX.proto.event_pb2 import Event

    scalars = defaultdict(list)
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack_from("<Q", data, at)
            event = Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                scalars[value.tag].append((event.step, value.simple_value))
    return dict(scalars)


def test_tensorboard_curves_are_the_stored_histories(tracked):
    logdir = Path(tracked.out) / "tensorboard"
    histories = _histories(tracked)
    assert sorted(p.name for p in logdir.iterdir()) == sorted(run_name(r) for r in histories)
    for run, history in histories.items():
        scalars = _scalars(logdir / run_name(run))
        assert set(scalars) == {f"{split}_loss/{t}" for split in ("train", "val") for t in run.tasks}, run.label
        assert len(history) == tracked.training.epochs
        for split in ("train", "val"):
            for task in run.tasks:
                curve = scalars[f"{split}_loss/{task}"]
                assert [step for step, _ in curve] == [h["epoch"] for h in history] == list(range(tracked.training.epochs))
                assert [v for _, v in curve] == pytest.approx([h[split][task] for h in history], rel=1e-6)  # float32


def test_trials_are_named_by_bundle_and_runs_by_kind_tasks_and_seed(tracked):
    names = {p.name for p in (Path(tracked.out) / "tune").glob("*/*") if p.is_dir()}
    [bundle] = bundles(plan(tracked), 3)  # the three runs of seed 0 train in one trial
    assert any(name.startswith(f"bundle_3_seed_0_{bundle.key[:8]}_") for name in names), names
    li = Run("li", ("depth_zbuffer",), 0, inject=("normal",), key="0123456789abcdef")
    assert run_name(li) == "li_depth_zbuffer_from_normal_seed_0_01234567"
    assert run_name(Run("pair", ("depth_zbuffer", "normal"), 2, key="fedcba98765")) == "pair_depth_zbuffer+normal_seed_2_fedcba98"


@pytest.mark.skipif(not HAVE_MLFLOW, reason="mlflow is not installed (pip install 'raytaskaff[mlflow]')")
def test_mlflow_runs_are_the_stored_histories(tracked):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracked.tracking.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name("tracked")
    found = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    histories = _histories(tracked)
    [bundle] = bundles(plan(tracked), 3)
    [name] = found  # one MLflow run per trial: the bundle's
    assert name.startswith(f"bundle_3_seed_0_{bundle.key[:8]}")
    logged = found[name]
    assert logged.info.status == "FINISHED" and logged.data.tags["sweep"] == tracked.name
    for run, history in histories.items():
        for split in ("train", "val"):
            for task in run.tasks:
                metric = f"{run_name(run)}/{split}_loss/{task}"
                curve = sorted(client.get_metric_history(logged.info.run_id, metric), key=lambda m: m.step)
                assert [m.step for m in curve] == [h["epoch"] + 1 for h in history]  # Tune's iteration
                assert [m.value for m in curve] == pytest.approx([h[split][task] for h in history])


def _gauges(text: str, name: str) -> dict[str, list[float]]:
    """{kind: [values]} of gauge `name` in a Prometheus text export."""
    values = defaultdict(list)
    for line in text.splitlines():
        if line.startswith(name + "{"):
            kind = re.search(r'kind="([^"]*)"', line).group(1)
            values[kind].append(float(line.rsplit(" ", 1)[1]))
    return dict(values)


def test_progress_by_kind_reaches_the_metrics_export(tracked):
    """The dashboard's metrics: runs planned and done per kind, as this sweep left them."""
    expected = {kind: [float(n)] for kind, n in Counter(r.kind for r in plan(tracked)).items()}  # stl 2, pair 1
    port = ray.nodes()[0]["MetricsExportPort"]
    planned = done = {}
    for _ in range(30):
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        planned = _gauges(text, "ray_raytaskaff_runs_planned_by_kind")
        done = _gauges(text, "ray_raytaskaff_runs_done_by_kind")
        if all(planned.get(k) == v and done.get(k) == v for k, v in expected.items()):
            break
        time.sleep(1)
    assert {k: planned.get(k) for k in expected} == expected
    assert {k: done.get(k) for k in expected} == expected


def _load(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return load_config(path)


def test_tracking_defaults_to_tensorboard_alone(tmp_path):
    assert TrackingSection() == TrackingSection(tensorboard=True, mlflow=None, wandb=None)
    assert from_dict(SweepConfig, {}).tracking == TrackingSection()
    assert _load(tmp_path, "tracking: {tensorboard: false}\n").tracking == TrackingSection(tensorboard=False)


@pytest.mark.parametrize("text, message", [
    ("tracking: {tensorbord: true}\n", "tracking.tensorbord: unknown key (known: mlflow, tensorboard, wandb)"),
    ("tracking: {tensorboard: yes please}\n", "tracking.tensorboard: expected true or false"),
    ("tracking: {mlflow: {uri: x}}\n", "tracking.mlflow.uri: unknown key (known: experiment, tracking_uri)"),
    ("tracking: {mlflow: {experiment: ''}}\n", "tracking.mlflow.experiment: must not be empty"),
    ("tracking: {mlflow: [x]}\n", "tracking.mlflow: expected a mapping"),
])
def test_bad_tracking_is_refused_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_tracker_not_installed_is_one_line_naming_its_extra(tmp_path, monkeypatch):
    for package in ("wandb", "mlflow"):
        monkeypatch.setitem(sys.modules, package, None)  # as if not installed: find_spec gives None
        with pytest.raises(ConfigError) as e:
            _load(tmp_path, f"tracking: {{{package}: {{}}}}\n")
        assert str(e.value) == (f"{tmp_path / 'sweep.yaml'}: tracking.{package}: needs the {package} package, which is not "
                                f"installed: pip install 'raytaskaff[{package}]'")


def test_runs_table_says_how_many_networks_each_trial_trained(tracked):
    import pandas as pd

    runs = pd.read_parquet(Path(tracked.out) / "results" / "runs.parquet")
    assert len(runs) == 3 and (runs.bundle_size == 3).all() and (runs.status == "done").all()
    # a bundle's costs are split evenly among its networks
    assert runs.cpu_seconds.nunique() == 1 and (runs.cpu_seconds > 0).all() and (runs.gpu_seconds == 0).all()
    # how each network was trained, recorded by the trial (CPUs do not stack under fuse: auto)
    assert set(zip(runs.training, runs.training_reason, runs.device)) == {
        ("separate", "stacking is off for this device (resources.fuse)", "cpu")}


def test_tensorboard_keeps_few_writers_open_and_loses_no_scalar(tmp_path):
    """Eight runs in two trials, three writers open at most: every run's curve whole, in event
    files that sort in the order they were written, and no file left open."""
    import os
    from types import SimpleNamespace

    from raytaskaff.engine.tracking import TensorBoardCallback

    callback = TensorBoardCallback(tmp_path, open_writers=3)
    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(2)]
    fds = Path("/proc/self/fd")

    def open_under(folder) -> int:  # files of this process open below `folder` (others come and go)
        found = 0
        for fd in os.listdir(fds):
            try:
                found += os.readlink(fds / fd).startswith(str(folder))
            except OSError:
                continue
        return found

    for epoch in range(3):
        for trial in trials:
            callback.on_trial_result(0, trials, trial, {"epoch": epoch, **{
                f"{trial.trial_id}_run{k}/train_loss/a": float(10 * k + epoch) for k in range(4)}})
            assert sum(map(len, callback._writers.values())) <= 3
    callback.on_experiment_end(trials)
    if fds.exists():
        assert open_under(tmp_path) == 0
    for trial in trials:
        for k in range(4):
            run = tmp_path / f"{trial.trial_id}_run{k}"
            assert len(list(run.glob("events.out.tfevents.*"))) == 3  # reopened each epoch: 8 runs, 3 writers
            assert _scalars(run) == {"train_loss/a": [(e, float(10 * k + e)) for e in range(3)]}
