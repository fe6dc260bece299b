"""Reading splits: zero-copy views, batches, and the load-time transform."""

import numpy as np
import pytest
import torch

from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.data.transforms import channels, normalise, rgb_input
from raytaskaff.errors import DataError


def test_arrays_are_zero_copy_views_of_the_memory_map(tiny_dataset):
    data = SplitData.open(tiny_dataset, "train")
    chunks = data.arrays("depth_zbuffer")
    assert len(chunks) > 1 and sum(len(c) for c in chunks) == len(data)
    column = data.table.column("depth_zbuffer")
    for array, chunk in zip(chunks, column.chunks):
        assert array.ctypes.data == chunk.flatten().buffers()[1].address  # the Arrow buffer itself
        assert not array.flags.owndata and not array.flags.writeable
        assert array.shape[1:] == (16, 16, 1)


def test_batches_cover_each_row_once_in_a_seeded_order(tiny_dataset):
    data = SplitData.open(tiny_dataset, "train", domains=["rgb", "depth_zbuffer"])
    points = [(b, p, v) for b, p, v in zip(data.meta("building"), data.meta("point"), data.meta("view"))]
    everything = np.concatenate(data.arrays("rgb"))

    def order(seed):
        seen = []
        for batch in data.batches(5, shuffle=True, seed=seed):
            assert batch["rgb"].dtype == torch.uint8 and batch["depth_zbuffer"].dtype == torch.uint16
            for image in batch["rgb"].numpy():
                seen.append(int(np.flatnonzero((everything == image).all(axis=(1, 2, 3)))[0]))
        return seen

    first = order(0)
    assert sorted(first) == list(range(len(points)))
    assert order(0) == first and order(1) != first
    sizes = [len(b["rgb"]) for b in data.batches(7, drop_last=True)]
    assert sizes == [7] * (len(data) // 7)


def test_gather_across_chunks_matches_concatenation(tiny_dataset):
    data = SplitData.open(tiny_dataset, "train")
    rows = np.array([len(data) - 1, 0, 9, 3, 8, 15])
    np.testing.assert_array_equal(data.gather("normal", rows), np.concatenate(data.arrays("normal"))[rows])


def test_open_rejects_unknown_split_and_domain(tiny_dataset):
    with pytest.raises(DataError, match="no split 'dev'"):
        SplitData.open(tiny_dataset, "dev")
    with pytest.raises(DataError, match="no domain 'keypoints3d'"):
        SplitData.open(tiny_dataset, "train", domains=["keypoints3d"])


def test_manifest_describes_the_synthetic_dataset(tiny_dataset, tiny_config):
    manifest = Manifest.load(tiny_dataset)
    assert manifest.producer["source"] == "synthetic" and manifest.producer["params"]["seed"] == tiny_config.seed
    assert sum(s["count"] for s in manifest.splits.values()) == tiny_config.n
    buildings = [set(s["buildings"]) for s in manifest.splits.values()]
    assert not (buildings[0] & buildings[1]) and not (buildings[0] & buildings[2]) and not (buildings[1] & buildings[2])


def _raw(values, dtype, channels=1):
    return torch.from_numpy(np.array(values, dtype=dtype).reshape(1, 1, -1, channels))


def test_depth_target_and_mask_use_the_reference_constants():
    raw = _raw([1500, 2500, 8191, 8192, 65535], np.uint16)
    target = normalise("depth_zbuffer", raw)
    np.testing.assert_allclose(target.value.flatten().numpy(), [0.0, 1.0, 6.691, 6.692, 64.035], rtol=1e-6)
    assert target.mask.flatten().tolist() == [True, True, True, False, False]  # 65535 never wraps to -1
    assert target.value.shape == (1, 1, 1, 5) and target.mask.shape == (1, 1, 1, 5)


def test_normals_are_masked_by_depth_when_given():
    raw = _raw([[0, 128, 255], [128, 128, 128]], np.uint8, 3)
    target = normalise("normal", raw)
    np.testing.assert_allclose(target.value[0, :, 0, 0].numpy(), [-1.0, 1 / 255, 1.0], atol=1e-6)
    assert target.mask.flatten().tolist() == [True, False]
    target = normalise("normal", raw, depth_raw=_raw([100, 100], np.uint16))
    assert target.mask.flatten().tolist() == [True, True]


def test_other_domains():
    edges = normalise("edge_texture", _raw([718, 1788], np.uint16)).value.flatten()
    np.testing.assert_allclose(edges.numpy(), [0.0, 1.0])
    keypoints = normalise("keypoints2d", _raw([150], np.uint16)).value.flatten()
    np.testing.assert_allclose(keypoints.numpy(), [1.0])
    occlusion = normalise("edge_occlusion", _raw([56.0248 + 239.1265], np.uint16)).value.flatten()
    np.testing.assert_allclose(occlusion.numpy(), [(295 - 56.0248) / 239.1265], rtol=1e-6)
    shade = normalise("reshading", _raw([[10, 20, 30]], np.uint8, 3)).value
    assert shade.shape == (1, 1, 1, 1)
    np.testing.assert_allclose(shade.flatten().numpy(), [(20 / 255 - 0.4962) / 0.2846], rtol=1e-5)
    curvature = normalise("principal_curvature", _raw([[127, 140, 0]], np.uint8, 3)).value.flatten()
    np.testing.assert_allclose(curvature.numpy(), [(127 / 255 - 0.5175) / 0.1373, (140 / 255 - 0.4987) / 0.0359], rtol=1e-5)
    segments = normalise("segment_semantic", _raw([0, 17, 3], np.uint8))
    assert segments.value.dtype == torch.int64 and segments.value.flatten().tolist() == [0, 17, 3]
    assert segments.mask is None
    np.testing.assert_allclose(rgb_input(_raw([[0, 51, 255]], np.uint8, 3)).flatten().numpy(), [0, 0.2, 1])
    assert [channels(n) for n in ("segment_semantic", "normal", "reshading", "principal_curvature")] == [18, 3, 1, 2]


def test_manifest_statistics_standardise_scalar_domains():
    stats = {"keypoints2d": {"mean": [10.0], "std": [5.0]}, "principal_curvature": {"mean": [127.0, 120.0, 0.0], "std": [20.0, 10.0, 0.0]},
             "normal": {"mean": [1.0, 1.0, 1.0], "std": [9.0, 9.0, 9.0]}}
    keypoints = normalise("keypoints2d", _raw([10, 20], np.uint16), stats=stats).value.flatten()
    np.testing.assert_allclose(keypoints.numpy(), [0.0, 2.0], atol=1e-6)
    curvature = normalise("principal_curvature", _raw([[147, 110, 0]], np.uint8, 3), stats=stats).value.flatten()
    np.testing.assert_allclose(curvature.numpy(), [1.0, -1.0], atol=1e-5)
    normal = normalise("normal", _raw([[255, 0, 128]], np.uint8, 3), stats=stats).value.flatten()
    np.testing.assert_allclose(normal.numpy(), [1.0, -1.0, 1 / 255], atol=1e-6)  # geometry is never standardised
    depth = normalise("depth_zbuffer", _raw([2500], np.uint16), stats=stats).value.flatten()
    np.testing.assert_allclose(depth.numpy(), [1.0])  # no stats for it: the reference constants


def test_batch_buffers_are_used_again_only_once_nothing_holds_them():
    import gc

    from raytaskaff.data.reader import empty_batch

    first = empty_batch((4, 8, 8, 3), np.uint8, pin=False)
    address = first.data_ptr()
    row = first[1]  # a view outlives the batch tensor: its bytes must stay its own
    row.fill_(7)
    del first
    gc.collect()
    second = empty_batch((4, 8, 8, 3), np.uint8, pin=False)
    assert second.data_ptr() != address
    second.fill_(1)
    assert int(row.sum()) == 7 * 8 * 8 * 3
    del row, second
    gc.collect()
    held = [empty_batch((4, 8, 8, 3), np.uint8, pin=False) for _ in range(3)]
    assert address in {t.data_ptr() for t in held}  # dropped for good: handed out again instead of fresh pages
    wider = empty_batch((2, 3), np.uint16, pin=False)
    assert wider.dtype == torch.uint16 and wider.shape == (2, 3)
