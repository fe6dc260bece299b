"""The result store: atomic records keyed by run, local or through a pyarrow filesystem URI;
networks fetched by key and checked; transient read errors retried; two writers at once."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest

import raytaskaff.store as store_module
from raytaskaff.store import ResultStore, StoreError, local_model
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
    loaded = store.find("k1")
    assert loaded.test_losses == {"depth_zbuffer": 0.5, "normal": 0.25} and loaded.spec == RunSpec(("depth_zbuffer", "normal"))
    assert loaded.probes == {"gs": [[[1.0, 0.5], [0.5, 1.0]]]}
    assert store.record("k1")["files"] == {"model.pt": {"size": 7, "sha256": hashlib.sha256(b"weights").hexdigest()}}
    if remote:  # found by the driver, not downloaded there: named by its place in the store
        assert loaded.model_path == f"{uri}/runs/k1/model.pt"
    assert open(local_model(loaded.model_path), "rb").read() == b"weights"
    assert (tmp_path / "store" / "runs" / "k1" / "model.pt").read_bytes() == b"weights"
    assert not list((tmp_path / "store" / "runs" / "k1").glob("*.tmp*"))


def test_incomplete_or_foreign_records_do_not_count(tmp_path):
    """`has` reads no record; the first read of a damaged or foreign one sets it aside, said once,
    and from then on the run is not done (trained again)."""
    store = ResultStore(str(tmp_path))
    folder = tmp_path / "runs" / "k2"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text('{"key": "k2", "res')  # damaged: trained again, and said so
    assert store.has("k2")  # a file is there: `has` does not parse it
    with pytest.warns(UserWarning, match=r"k2/result.json: not valid JSON .*set aside as result.json.damaged-\w+; the run counts as not done"):
        assert store.record("k2") is None
    assert not store.has("k2") and len(list(folder.glob("result.json.damaged-*"))) == 1
    (folder / "result.json").write_text(json.dumps({"key": "other", "result": {}}))
    with pytest.warns(UserWarning, match=r"the record of 'other', not of 'k2'"):
        assert store.find("k2") is None
    assert not store.has("k2") and store.stored(["k2"]) == set()
    assert len(list(folder.glob("result.json.damaged-*"))) == 2


def test_unwritable_store_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the result store"):
        ResultStore(str(blocker / "store"))


def _stored(tmp_path, data=b"weights" * 100):
    """A remote (file://) store holding run k with a network, and a driver's cache apart from it."""
    uri = f"file://{tmp_path / 'store'}"
    store = ResultStore(uri, cache=tmp_path / "driver")
    model = store.run_dir("k") / "model.pt"
    model.write_bytes(data)
    store.save("k", _result(str(model)))
    model.unlink()
    return uri, store


def test_a_network_is_fetched_by_key_where_it_is_read_and_checked(tmp_path, monkeypatch):
    uri, store = _stored(tmp_path)
    found = store.find("k")
    assert not (tmp_path / "driver" / "runs" / "k" / "model.pt").exists()  # the driver fetched nothing
    monkeypatch.setenv("RAYTASKAFF_CACHE", str(tmp_path / "node"))  # another node's cache
    path = local_model(found.model_path)
    assert path == str(tmp_path / "node" / "runs" / "k" / "model.pt") and Path(path).read_bytes() == b"weights" * 100
    # a damaged copy in the cache is fetched again; a damaged network in the store is a one-line error, no file left
    Path(path).write_bytes(b"weights")
    assert Path(local_model(found.model_path)).read_bytes() == b"weights" * 100
    (tmp_path / "store" / "runs" / "k" / "model.pt").write_bytes(b"weights" * 50)  # truncated
    Path(path).unlink()
    with pytest.raises(StoreError, match=r"runs/k/model.pt: 350 bytes where its record says 700: the network is damaged"):
        local_model(found.model_path)
    (tmp_path / "store" / "runs" / "k" / "model.pt").write_bytes(b"weighty" * 100)  # same size, other bytes
    with pytest.raises(StoreError, match="its SHA-256 differs from its record's"):
        local_model(found.model_path)
    assert not list((tmp_path / "node" / "runs" / "k").iterdir())
    (tmp_path / "store" / "runs" / "k" / "model.pt").unlink()
    with pytest.raises(StoreError, match="the run's network is missing from the store"):
        local_model(found.model_path)


def test_a_local_store_checks_its_networks(tmp_path):
    store = ResultStore(str(tmp_path / "store"))
    model = store.run_dir("k") / "model.pt"
    model.write_bytes(b"weights")
    store.save("k", _result(str(model)))
    assert store.find("k").model_path == str(model)
    model.write_bytes(b"weight")
    with pytest.raises(StoreError, match="6 bytes where its record says 7"):
        store.find("k")
    model.unlink()
    with pytest.raises(StoreError, match="the run's network is missing"):
        store.find("k")


class _Flaky(pafs.LocalFileSystem):
    """A file system whose reads fail `failures` times before they work."""

    def __init__(self, failures):
        super().__init__()
        self.failures = failures

    def open_input_stream(self, path, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            raise OSError("connection reset by peer")
        return super().open_input_stream(path, *args, **kwargs)


@pytest.mark.parametrize("failures", [2, 9])
def test_transient_read_errors_are_retried_and_lasting_ones_stop_in_one_line(tmp_path, monkeypatch, failures):
    monkeypatch.setattr(store_module, "RETRY_WAIT", 0.001)
    store = ResultStore(str(tmp_path / "store"))
    store.save("k", _result())
    store.fs = _Flaky(failures)
    if failures <= store_module.READ_RETRIES:
        assert store.record("k")["key"] == "k"  # not "not done": a retrained run would be wasted work
    else:
        with pytest.raises(StoreError, match=r"k/result.json: not readable after 4 tries \(connection reset by peer\)"):
            store.record("k")


WRITER = """
import sys
from raytaskaff.atomic import write_text
from raytaskaff.store import ResultStore
from pathlib import Path

target, store, me = Path(sys.argv[1]), ResultStore(sys.argv[2], cache=sys.argv[4]), sys.argv[3]
text = me * 200_000
claimed = []
for i in range(60):
    write_text(target, text)
    store.write_bytes("shared", "result.json", text.encode())
    claimed.append(store.claim_attempt("shared"))
print(" ".join(map(str, claimed)))
"""


@pytest.mark.parametrize("remote", [False, True])
def test_two_processes_writing_one_key_at_once_lose_nothing(tmp_path, remote):
    target = tmp_path / "report.txt"
    uri = f"file://{tmp_path / 'store'}" if remote else str(tmp_path / "store")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(target), uri, me, str(tmp_path / f"cache-{me}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for me in "ab"]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    claimed = [[int(n) for n in out.split()] for out, _ in outs]
    if remote:  # object storage cannot claim exclusively: each counts on, and every attempt is there
        assert all(c == sorted(c) and len(set(c)) == 60 for c in claimed) and max(map(max, claimed)) == 120
        assert len(list((tmp_path / "store" / "runs" / "shared" / "attempts").iterdir())) == 120
    else:  # every attempt counted once, none twice
        assert sorted(claimed[0] + claimed[1]) == list(range(1, 121))
    for written in (target, tmp_path / "store" / "runs" / "shared" / "result.json"):
        assert written.read_text() in ("a" * 200_000, "b" * 200_000)  # one writer's whole file, never a mix
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_a_checkpoint_travels_through_a_remote_store_to_another_node(tmp_path):
    uri = f"file://{tmp_path / 'bucket'}"
    first, other = ResultStore(uri, cache=tmp_path / "node-0"), ResultStore(uri, cache=tmp_path / "node-1")
    (first.run_dir("k") / "checkpoint.pt").write_bytes(b"epoch 3")
    first.push_checkpoint("k")
    assert (tmp_path / "bucket" / "runs" / "k" / "checkpoint.pt").read_bytes() == b"epoch 3"
    other.pull_checkpoint("k")  # the trial retried on node 1 resumes from epoch 3
    assert (tmp_path / "node-1" / "runs" / "k" / "checkpoint.pt").read_bytes() == b"epoch 3"
    (other.run_dir("k") / "checkpoint.pt").write_bytes(b"epoch 5")
    other.push_checkpoint("k")
    first.pull_checkpoint("k")  # the remote one is the latest, even over a stale local copy
    assert (tmp_path / "node-0" / "runs" / "k" / "checkpoint.pt").read_bytes() == b"epoch 5"
    first.drop_checkpoint("k")
    assert not (tmp_path / "bucket" / "runs" / "k" / "checkpoint.pt").exists()
    assert not (tmp_path / "node-0" / "runs" / "k" / "checkpoint.pt").exists()
    other.drop_checkpoint("k")  # nothing left to drop is not an error
    other.pull_checkpoint("k")
    assert not (tmp_path / "node-1" / "runs" / "k" / "checkpoint.pt").exists()
    local = ResultStore(str(tmp_path / "here"))
    (local.run_dir("k") / "checkpoint.pt").write_bytes(b"epoch 1")
    local.push_checkpoint("k")
    local.pull_checkpoint("k")
    assert (tmp_path / "here" / "runs" / "k" / "checkpoint.pt").read_bytes() == b"epoch 1"


PAIR_WRITER = """
import hashlib, sys
from raytaskaff.settings import RunResult, RunSpec
from raytaskaff.store import ResultStore, staged_network

store, me = ResultStore(sys.argv[1]), int(sys.argv[2])
for i in range(50):  # each save its own network (its size and bytes tell the writer and the step)
    staged = staged_network(store.run_dir("shared"))
    staged.write_bytes(bytes([me]) * (1000 + 97 * i + me))
    store.save("shared", RunResult(RunSpec(("normal",)), me, {"normal": float(i)}, {"normal": 0.0}, {}, 0, 1, [],
                                   1.0, 1.0, "cpu", 1, model_path=str(staged)))
"""


def test_two_writers_of_one_key_leave_a_network_and_record_that_match(tmp_path):
    """Two processes save one key 50 times each, each time another network: every read meanwhile
    (`find`, which checks the network against the record) and the pair left in place are one
    writer's network and record, whichever won."""
    root = tmp_path / "store"
    store = ResultStore(str(root))
    procs = [subprocess.Popen([sys.executable, "-c", PAIR_WRITER, str(root), str(me)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for me in (1, 2)]
    found = 0
    while any(p.poll() is None for p in procs):
        found += store.find("shared") is not None  # a pair from two writers would be a StoreError here
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert found > 0
    record = store.record("shared")
    network = (root / "runs" / "shared" / "model.pt").read_bytes()
    writer, step = record["result"]["seed"], int(record["result"]["test_losses"]["normal"])
    assert network == bytes([writer]) * (1000 + 97 * step + writer)  # the record's own network
    assert record["files"]["model.pt"] == {"size": len(network), "sha256": hashlib.sha256(network).hexdigest()}
    assert store.find("shared").model_path == str(root / "runs" / "shared" / "model.pt")  # checked: no StoreError
    assert sorted(p.name for p in (root / "runs" / "shared").iterdir()) == ["model.pt", "result.json", "result.lock"]


@pytest.mark.parametrize("remote", [False, True])
def test_a_staged_network_is_put_in_place_with_its_digest(tmp_path, remote):
    """The trainer's own name for a network (`staged_network`) becomes model.pt; the record holds
    the digest of those bytes; on a remote store the node's cache keeps the checked copy."""
    from raytaskaff.store import staged_network

    uri = f"file://{tmp_path / 'store'}" if remote else str(tmp_path / "store")
    store = ResultStore(uri, cache=tmp_path / "cache")
    staged = staged_network(store.run_dir("k"))
    staged.write_bytes(b"net" * 10)
    store.save("k", _result(str(staged)))
    assert not staged.exists() and (store.run_dir("k") / "model.pt").read_bytes() == b"net" * 10
    assert (tmp_path / "store" / "runs" / "k" / "model.pt").read_bytes() == b"net" * 10
    assert store.record("k")["files"]["model.pt"] == {"size": 30, "sha256": hashlib.sha256(b"net" * 10).hexdigest()}
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
