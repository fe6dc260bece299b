"""The dataset in Ray: one copy in the object store read by several actors, and Ray Data."""

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from raytaskaff.data.reader import SplitData  # noqa: E402
from raytaskaff.engine.data import put_split, read_split, split_from_store, torch_batches  # noqa: E402

pytestmark = pytest.mark.ray


@ray.remote(num_cpus=0.5)
class _Reader:
    def __init__(self, table):
        self.data = split_from_store(table, 16)

    def probe(self):
        """Where the depth array lives: the mapping that holds its first byte."""
        array = self.data.arrays("depth_zbuffer")[0]
        address = array.ctypes.data
        for line in open("/proc/self/maps"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= address < hi:
                return line.split()[-2] if line.rstrip().endswith("(deleted)") else line.split()[-1], array.flags.writeable, int(array.sum())
        return None, array.flags.writeable, int(array.sum())


def test_actors_share_one_copy_in_the_object_store(local_ray, tiny_dataset):
    data = SplitData.open(tiny_dataset, "train")
    ref = put_split(data)
    actors = [_Reader.remote(ref) for _ in range(2)]
    results = ray.get([a.probe.remote() for a in actors])
    total = int(np.concatenate(data.arrays("depth_zbuffer")).sum())
    for mapping, writeable, checksum in results:
        assert mapping is not None and "plasma" in mapping  # Ray's shared-memory store, not a private copy
        assert not writeable
    assert results[0][2] == results[1][2] == int(data.arrays("depth_zbuffer")[0].sum())
    assert total >= results[0][2]


@pytest.mark.parametrize("format", ["arrow", "parquet"])
def test_ray_data_yields_the_same_batches(local_ray, tmp_path, tiny_config, format):
    from raytaskaff.data.synth import SynthConfig, generate

    root = tmp_path / format
    generate(root, SynthConfig(n=16, size=16, seed=1, points_per_building=2, views_per_point=2), format=format)
    local = SplitData.open(root, "train")
    batches = list(torch_batches(read_split(root, "train"), 16, 4, ["rgb", "normal"]))
    assert sum(len(b["rgb"]) for b in batches) == len(local)
    got = np.concatenate([b["normal"].numpy() for b in batches])
    np.testing.assert_array_equal(got, np.concatenate(local.arrays("normal")))


@pytest.mark.parametrize("reader", ["object_store", "ray_data"])
def test_shared_splits_hold_the_local_rows_in_order(local_ray, tmp_path, reader):
    """Trials see every row of a split in the order of its shards, whichever way it was shared:
    paired seeds rely on the row order being the same as the local reader's."""
    from raytaskaff.data.synth import SynthConfig, generate
    from raytaskaff.engine.data import share_splits

    root = tmp_path / "parquet"
    generate(root, SynthConfig(n=48, size=16, seed=2, points_per_building=2, views_per_point=4), format="parquet", rows_per_shard=5)
    shared = share_splits(root, reader, ("train", "val"))

    @ray.remote(num_cpus=0.5)
    def rows(tables):  # as a trial gets them: nested in a mapping, so Ray hands over the references
        data = SplitData(ray.get(tables["split"]), 16)
        return np.concatenate(data.arrays("depth_zbuffer")), len(data.table.column("depth_zbuffer").chunks)

    for split in ("train", "val"):
        got, chunks = ray.get(rows.remote({"split": shared[split]}))
        local = SplitData.open(root, split)
        np.testing.assert_array_equal(got, np.concatenate(local.arrays("depth_zbuffer")))
        assert chunks >= 1
