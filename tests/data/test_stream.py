"""Streaming a split in shard groups: the same batches as random access, in bounded memory."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from raytaskaff.data.reader import SplitData
from raytaskaff.data.stream import StreamingSplit
from raytaskaff.errors import DataError

DOMAINS = ["rgb", "depth_zbuffer", "segment_semantic"]


def uri(path):
    return f"file://{path}"  # the pyarrow.fs path, as for s3:// (no memory map, whole shards read)


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for name in x:
            assert x[name].dtype == y[name].dtype
            np.testing.assert_array_equal(x[name].numpy(), y[name].numpy())


@pytest.mark.parametrize("window", [1, 2, 5])
@pytest.mark.parametrize("batch_size,drop_last", [(3, False), (5, True), (16, False), (64, False)])
def test_streamed_batches_equal_random_access_batches(tiny_dataset, window, batch_size, drop_last):
    local = SplitData.open(tiny_dataset, "train", window=window)
    stream = StreamingSplit(uri(tiny_dataset), "train", window=window, readahead=1)
    assert len(stream) == len(local) and stream.shard_rows == local.shard_rows and len(stream.shard_rows) > 2
    for seed in (0, 9):
        want = list(local.batches(batch_size, DOMAINS, shuffle=True, seed=seed, drop_last=drop_last))
        _same(list(stream.batches(batch_size, DOMAINS, shuffle=True, seed=seed, drop_last=drop_last)), want)
    _same(list(stream.batches(batch_size, DOMAINS)), list(local.batches(batch_size, DOMAINS)))


def test_a_local_path_streams_the_same_rows(tiny_dataset):
    a = StreamingSplit(tiny_dataset, "val", window=1)
    b = StreamingSplit(uri(tiny_dataset), "val", window=1)
    _same(list(a.batches(4, DOMAINS, shuffle=True, seed=3)), list(b.batches(4, DOMAINS, shuffle=True, seed=3)))


@pytest.mark.parametrize("readahead", [0, 1, 2])
def test_read_ahead_is_bounded(tiny_dataset, monkeypatch, readahead):
    """A trial never holds more than 1 + readahead groups of shards: while it trains on group g,
    at most groups g+1 .. g+readahead have been read."""
    from raytaskaff.data.order import row_order

    stream = StreamingSplit(uri(tiny_dataset), "train", window=1, readahead=readahead)
    reads = []
    original = StreamingSplit._read
    monkeypatch.setattr(StreamingSplit, "_read", lambda self, group, names: reads.append(tuple(group)) or original(self, group, names))
    groups = row_order(stream.shard_rows, shuffle=True, seed=0, window=1)
    group_of_position = np.concatenate([np.full(len(rows), g) for g, (_, rows) in enumerate(groups)])
    for position, _ in enumerate(stream.batches(1, ["rgb"], shuffle=True, seed=0)):
        current = group_of_position[position]
        assert current + 1 <= len(reads) <= current + 1 + readahead
    assert len(reads) == len(groups)


def test_readahead_reads_each_group_once_in_order(tiny_dataset, monkeypatch):
    stream = StreamingSplit(uri(tiny_dataset), "train", window=2, readahead=2)
    reads = []
    original = StreamingSplit._read
    monkeypatch.setattr(StreamingSplit, "_read", lambda self, group, names: reads.append(tuple(group)) or original(self, group, names))
    list(stream.batches(4, ["rgb"], shuffle=True, seed=4))
    from raytaskaff.data.order import row_order

    assert reads == [tuple(g) for g, _ in row_order(stream.shard_rows, shuffle=True, seed=4, window=2)]


def test_one_permutation_of_every_row_cannot_stream(tiny_dataset):
    stream = StreamingSplit(uri(tiny_dataset), "train", window=0)
    with pytest.raises(DataError, match="shuffle window of at least 1"):
        next(stream.batches(4, ["rgb"], shuffle=True))
    assert sum(len(b["rgb"]) for b in stream.batches(4, ["rgb"])) == len(stream)  # in shard order it can


def test_head_reads_only_the_first_rows(tiny_dataset):
    local = SplitData.open(tiny_dataset, "test")
    stream = StreamingSplit(uri(tiny_dataset), "test", ["rgb"])
    for n in (1, 7, 8, 1000):
        head = stream.head(n)
        assert len(head) == min(n, len(local))
        np.testing.assert_array_equal(np.concatenate(head.arrays("rgb")), np.concatenate(local.arrays("rgb"))[:n])


def test_a_shard_gone_mid_stream_is_a_data_error(tmp_path, tiny_dataset):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    stream = StreamingSplit(uri(copy), "train", window=1)
    last = copy / stream.shards[-1].file
    last.unlink()
    with pytest.raises(DataError, match="missing"):
        list(stream.batches(4, ["rgb"]))


def test_unknown_domain_and_split_are_refused(tiny_dataset):
    with pytest.raises(DataError, match="no domain 'keypoints3d'"):
        StreamingSplit(uri(tiny_dataset), "train", ["keypoints3d"])
    with pytest.raises(DataError, match="no split 'dev'"):
        StreamingSplit(uri(tiny_dataset), "dev")
    with pytest.raises(DataError, match="no manifest.json"):
        StreamingSplit(uri(tiny_dataset / "nothing"), "train")


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def silent_storage():
    """(port, connections taken): a local endpoint that accepts connections and never answers, as
    storage behind a dead network or a wrong endpoint looks to its client."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    taken: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                taken.append(server.accept()[0])
            except OSError:  # closed at teardown
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], taken
    server.close()
    for connection in taken:
        connection.close()


def _silent_uri(scheme: str, port: int) -> str:
    return f"{scheme}://bucket/taskonomy?endpoint_override=127.0.0.1:{port}&scheme=http"


def _sweep(tmp_path, data_path: str, bound: float) -> subprocess.Popen:
    """The sweep command on shards at `data_path`, its first contact with storage bounded to `bound` s."""
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    raw.update({"data": {"kind": "shards", "path": data_path, "shuffle_window": 1}, "tasks": ["depth_zbuffer", "normal"],
                "seeds": [0], "out": str(tmp_path / "out"), "scorers": {"td": raw["scorers"]["td"]},
                "grouping": {"groups": []}})
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "RAYTASKAFF_STORAGE_TIMEOUT": str(bound)}
    return subprocess.Popen([sys.executable, "-m", "raytaskaff.sweep", "--config", str(tmp_path / "sweep.yaml")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_storage_that_never_answers_stops_the_sweep_in_one_line_within_the_bound(tmp_path, silent_storage, scheme):
    """The process ends soon after the bound, not once the storage client's own retries run out
    (S3: about 100 s after the error line; GCS: 15 minutes)."""
    port, _ = silent_storage
    uri = _silent_uri(scheme, port)
    start = time.perf_counter()
    sweep = _sweep(tmp_path, uri, bound=2)
    out, err = sweep.communicate(timeout=300)
    seconds = time.perf_counter() - start
    assert sweep.returncode == 2 and err.strip().splitlines() == [
        f"error: {uri}: the storage did not answer within 2 s (no network, or a wrong endpoint or bucket; "
        "RAYTASKAFF_STORAGE_TIMEOUT sets the bound)"], err[-3000:]
    assert seconds < 45, f"the sweep took {seconds:.0f} s to end"
    assert not (tmp_path / "out").exists()


def test_sigterm_while_storage_is_silent_stops_the_sweep_promptly(tmp_path, silent_storage):
    port, taken = silent_storage
    sweep = _sweep(tmp_path, _silent_uri("s3", port), bound=120)
    deadline = time.monotonic() + 60
    while not taken and time.monotonic() < deadline:  # the first contact is under way
        time.sleep(0.1)
    assert taken, "the sweep never reached the storage"
    sent = time.perf_counter()
    sweep.send_signal(signal.SIGTERM)
    out, err = sweep.communicate(timeout=300)
    seconds = time.perf_counter() - sent
    assert sweep.returncode == 130 and err.strip().splitlines() == [
        "interrupted: finished runs are stored; run the same command again to resume"], err[-3000:]
    assert seconds < 20, f"the sweep took {seconds:.0f} s to end after SIGTERM"
    assert not (tmp_path / "out").exists()


def test_a_command_ends_at_once_while_a_given_up_contact_still_waits(monkeypatch):
    """`exit_process`: sys.exit normally; os._exit (no interpreter teardown under a storage client
    still blocked in native code) while a first contact's thread is alive."""
    import threading

    from raytaskaff.data import shards

    class Ended(BaseException):
        pass

    def end(code):
        raise Ended(code)

    monkeypatch.setattr(shards.os, "_exit", end)
    monkeypatch.setattr(shards.logging, "shutdown", lambda: None)  # the test process's handlers stay open
    with pytest.raises(SystemExit) as normal:
        shards.exit_process(2)
    assert normal.value.code == 2
    release = threading.Event()
    with pytest.raises(shards.DataError, match="did not answer within 0.2 s"):
        shards.first_contact("gs://silent", release.wait, timeout=0.2)
    try:
        with pytest.raises(Ended) as ended:
            shards.exit_process(2)
        assert ended.value.args == (2,)
    finally:
        release.set()
