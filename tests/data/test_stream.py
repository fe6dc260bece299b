"""Streaming a split in shard groups: the same batches as random access, in bounded memory."""

import numpy as np
import pytest

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
