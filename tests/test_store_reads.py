"""An index of the store, read once per stage: `has` and `stored` answer without reading a record;
a stage (`pipeline.Results`) reads each result.json once and checks each network once against it;
networks fetched from a remote store go through one store per process."""

import hashlib

import pytest

import raytaskaff.store as store_module
from raytaskaff.pipeline import Results
from raytaskaff.plan import Run
from raytaskaff.settings import RunKind, RunResult, RunSpec
from raytaskaff.store import ResultStore, local_model, staged_network

TASKS = ("depth_zbuffer", "normal", "edge_texture", "keypoints2d", "segment_semantic", "reshading")


def _runs():
    return [Run(RunKind.STL, (t,), seed=0, key=f"stl-{t}") for t in TASKS]


def _filled(uri, cache):
    """A store holding every run of `_runs()` with its network (each network other bytes)."""
    store = ResultStore(uri, cache=cache)
    for i, run in enumerate(_runs()):
        staged = staged_network(store.run_dir(run.key))
        staged.write_bytes(bytes([i]) * (100 + i))
        store.save(run.key, RunResult(RunSpec(run.tasks), 0, {run.tasks[0]: 0.5}, {run.tasks[0]: 0.6}, {}, 0, 1, [],
                                      1.0, 1.0, "cpu", 1, model_path=str(staged)))
    return store


@pytest.fixture
def reads(monkeypatch):
    """Every path a ResultStore reads (`_read`), in order, in any store of this process."""
    seen = []
    real = ResultStore._read

    def counted(self, path):
        seen.append(path.rpartition("/runs/")[2])
        return real(self, path)

    monkeypatch.setattr(ResultStore, "_read", counted)
    return seen


@pytest.mark.parametrize("remote", [False, True])
def test_a_resumed_stage_reads_each_record_once(tmp_path, monkeypatch, reads, remote):
    uri = f"file://{tmp_path / 'store'}" if remote else str(tmp_path / "store")
    _filled(uri, tmp_path / "trials")
    store = ResultStore(uri, cache=tmp_path / "driver")
    runs = _runs()
    keys = [r.key for r in runs]
    reads.clear()
    # what is done: from a listing (training's skip) or a stat each (a trial's), no record read
    assert store.stored(keys + ["never-trained"]) == set(keys)
    assert all(store.has(k) for k in keys) and not store.has("never-trained")
    assert reads == []
    hashed = store_module._digest.cache_info().misses
    results = Results(store, runs)  # a stage: every record read, each network found and (locally) checked
    found = {k: results.find(k) for k in keys}
    assert {k: found[k].test_losses for k in keys} == {f"stl-{t}": {t: 0.5} for t in TASKS}
    assert [results.find(k) for k in keys] == list(found.values())  # asked again: nothing read again
    assert sorted(reads) == sorted(f"{k}/result.json" for k in keys)  # each once
    if not remote:  # each network hashed once, against the record the stage read
        assert store_module._digest.cache_info().misses - hashed == len(keys)
        return
    # a remote store's networks are fetched where they are read: one store opened for them all,
    # each network checked against its record there
    opened = []
    real_reach = store_module._reach
    monkeypatch.setattr(store_module, "_reach", lambda u: opened.append(u) or real_reach(u))
    monkeypatch.setattr(store_module, "_OPENED", {})
    monkeypatch.setenv("RAYTASKAFF_CACHE", str(tmp_path / "node"))
    reads.clear()
    for i, k in enumerate(keys):
        path = local_model(found[k].model_path)
        with open(path, "rb") as f:
            data = f.read()
        assert data == bytes([i]) * (100 + i) and path.startswith(str(tmp_path / "node"))
    assert len(opened) == 1
    assert sorted(reads) == sorted([f"{k}/result.json" for k in keys] + [f"{k}/model.pt" for k in keys])


def test_the_record_a_stage_read_is_the_one_a_network_is_checked_against(tmp_path, reads):
    store = _filled(str(tmp_path / "store"), None)
    record = store.record("stl-normal")
    reads.clear()
    result = store.result_of("stl-normal", record)
    assert reads == [] and open(result.model_path, "rb").read() == bytes([1]) * 101
    assert record["files"]["model.pt"]["sha256"] == hashlib.sha256(bytes([1]) * 101).hexdigest()


@pytest.mark.parametrize("remote", [False, True])
def test_a_resumed_sweep_reads_no_record_to_skip_and_each_once_to_collect(tmp_path, reads, remote):
    """The smoke sweep's runs all stored: training skips every one from one listing (no record
    read, no Ray started: nothing is pending), then the stage after reads each record once."""
    from pathlib import Path

    from raytaskaff.config import load_config
    from raytaskaff.engine.runs import train_runs
    from raytaskaff.plan import plan

    config = load_config(Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml", out=str(tmp_path / "out"))
    runs = plan(config)
    uri = f"file://{tmp_path / 'store'}" if remote else str(tmp_path / "store")
    store = ResultStore(uri, cache=tmp_path / "cache")
    for run in runs:
        store.save(run.key, RunResult(RunSpec(run.tasks, run.inject), run.seed, {run.tasks[0]: 0.5}, {run.tasks[0]: 0.6},
                                      {}, 0, 1, [], 1.0, 1.0, "cpu", 1))
    reads.clear()
    execution = train_runs(config, runs, store, shared=None, stats={}, tune_dir=str(tmp_path / "tune"))
    assert sorted(execution.skipped) == sorted(r.key for r in runs) and not execution.trained and reads == []
    results = Results(store, runs)
    assert all(results.find(r.key).seed == r.seed for r in runs)
    assert sorted(reads) == sorted(f"{r.key}/result.json" for r in runs) and len(runs) == 20
