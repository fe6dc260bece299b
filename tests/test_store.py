"""The result store: atomic records keyed by run, local or through a pyarrow filesystem URI."""

import json

import pytest

from raytaskaff.store import ResultStore, StoreError
from raytaskaff.training.loop import RunResult, RunSpec


def _result(model_path=None):
    return RunResult(RunSpec(("depth_zbuffer", "normal")), 3, {"depth_zbuffer": 0.5, "normal": 0.25}, {"depth_zbuffer": 0.6, "normal": 0.3},
                     {"normal": {"angular_error": 20.0}}, 1, 2, [{"epoch": 0}], 1.5, 2.5, "cpu", 123,
                     probes={"gs": [[[1.0, 0.5], [0.5, 1.0]]]}, probe_variant="corrected", model_path=model_path)


@pytest.mark.parametrize("remote", [False, True])
def test_round_trip(tmp_path, remote):
    uri = f"file://{tmp_path / 'store'}" if remote else str(tmp_path / "store")
    store = ResultStore(uri, cache=tmp_path / "cache")
    assert not store.has("k1")
    model = store.run_dir("k1") / "model.pt"
    model.write_bytes(b"weights")
    store.save("k1", _result(str(model)), node="10.0.0.1", attempts=2)
    assert store.has("k1") and store.record("k1")["node"] == "10.0.0.1"
    loaded = store.load("k1")
    assert loaded.test_losses == {"depth_zbuffer": 0.5, "normal": 0.25} and loaded.spec == RunSpec(("depth_zbuffer", "normal"))
    assert loaded.probes == {"gs": [[[1.0, 0.5], [0.5, 1.0]]]}
    assert open(loaded.model_path, "rb").read() == b"weights"
    assert (tmp_path / "store" / "runs" / "k1" / "model.pt").read_bytes() == b"weights"
    assert not list((tmp_path / "store" / "runs" / "k1").glob("*.tmp*"))


def test_incomplete_or_foreign_records_do_not_count(tmp_path):
    store = ResultStore(str(tmp_path))
    folder = tmp_path / "runs" / "k2"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text('{"key": "k2", "res')  # a write cut short
    assert not store.has("k2")
    (folder / "result.json").write_text(json.dumps({"key": "other", "result": {}}))
    assert not store.has("k2")
    with pytest.raises(StoreError, match="no complete result"):
        store.load("k2")


def test_unwritable_store_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the result store"):
        ResultStore(str(blocker / "store"))
