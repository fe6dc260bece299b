"""The splits in Ray: one copy in the object store, memory-mapped shards, or a stream, and the
same batches from each."""

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from raytaskaff.data.reader import SplitData  # noqa: E402
from raytaskaff.engine.data import share_splits  # noqa: E402

pytestmark = pytest.mark.ray


@ray.remote(num_cpus=0.5)
class _Reader:
    def __init__(self, shared):
        self.data = shared.open("train")

    def probe(self):
        """The file (or shared-memory segment) whose mapping holds the first depth array."""
        array = self.data.arrays("depth_zbuffer")[0]
        address, mapping = array.ctypes.data, None
        for line in open("/proc/self/maps"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= address < hi:
                parts = line.split()
                mapping = " ".join(parts[5:]) if len(parts) > 5 else "[anonymous]"
        return mapping, array.flags.writeable, int(array.sum())


def test_actors_share_one_copy_in_the_object_store(local_ray, tiny_dataset):
    shared = share_splits(tiny_dataset, "object_store", splits=("train",))
    results = ray.get([a.probe.remote() for a in [_Reader.remote(shared) for _ in range(2)]])
    local = SplitData.open(tiny_dataset, "train")
    for mapping, writeable, checksum in results:
        assert mapping is not None and "plasma" in mapping  # Ray's shared-memory store, not a private copy
        assert not writeable and checksum == int(local.arrays("depth_zbuffer")[0].sum())


def test_memory_mapped_trials_read_the_shard_files_themselves(local_ray, tiny_dataset):
    """mmap: nothing goes to the object store; a trial's arrays are pages of the shard file (the
    page cache is what the trials of a node share)."""
    shared = share_splits(tiny_dataset, "mmap", splits=("train",))
    assert shared.refs == {} and shared.root == str(tiny_dataset.resolve())
    mapping, writeable, _ = ray.get(_Reader.remote(shared).probe.remote())
    assert mapping is not None and mapping.endswith(".arrow") and "train-00000" in mapping and not writeable


@ray.remote(num_cpus=0.5)
def _epoch(shared, split, seed):
    data = shared.open(split)
    return [{k: v.numpy() for k, v in b.items()} for b in data.batches(6, ["rgb", "normal"], shuffle=True, seed=seed, drop_last=True)]


@pytest.mark.parametrize("reader", ["object_store", "mmap", "streaming"])
def test_every_reader_gives_a_trial_the_local_batches(local_ray, tiny_dataset, reader):
    """Paired seeds across readers: a trial sees the very batches the driver's random-access
    reader gives for the seed, with a shuffle window of 2 shards."""
    root = f"file://{tiny_dataset}" if reader == "streaming" else tiny_dataset
    shared = share_splits(root, reader, window=2, splits=("train", "val"))
    for split in ("train", "val"):
        local = SplitData.open(tiny_dataset, split, window=2)
        want = list(local.batches(6, ["rgb", "normal"], shuffle=True, seed=4, drop_last=True))
        got = ray.get(_epoch.remote(shared, split, 4))
        assert len(got) == len(want) > 0
        for g, w in zip(got, want):
            for name in ("rgb", "normal"):
                np.testing.assert_array_equal(g[name], w[name].numpy())


def test_an_unknown_reader_is_refused(tiny_dataset):
    with pytest.raises(ValueError, match="unknown reader 'ray_data'"):
        share_splits(tiny_dataset, "ray_data")
