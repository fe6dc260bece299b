import numpy as np
import pytest

from raytaskaff.data.domains import DEPTH_INVALID, NORMAL_INVALID
from raytaskaff.data.resize import box_average, nearest, resize_raw


def brute_box(x: np.ndarray, size: int) -> np.ndarray:
    """Upsample by `size` (repeat), then average blocks of the input size: exact area averaging."""
    h, w, _ = x.shape
    up = np.repeat(np.repeat(x, size, axis=0), size, axis=1)
    return up.reshape(size, h, size, w, -1).mean(axis=(1, 3))


@pytest.mark.parametrize("shape,size", [((8, 8, 1), 4), ((9, 9, 3), 4), ((10, 10, 2), 3), ((7, 7, 1), 7)])
def test_box_average_matches_brute_force(shape, size):
    x = np.random.default_rng(0).uniform(0, 100, size=shape)
    np.testing.assert_allclose(box_average(x, size), brute_box(x, size), rtol=1e-12)


def test_box_average_preserves_mean():
    x = np.random.default_rng(1).uniform(size=(12, 12, 3))
    np.testing.assert_allclose(box_average(x, 5).mean(axis=(0, 1)), x.mean(axis=(0, 1)), rtol=1e-12)


def test_nearest_keeps_the_label_set_and_samples_centres():
    labels = np.random.default_rng(2).integers(0, 18, size=(16, 16, 1)).astype(np.uint8)
    small = nearest(labels, 4)
    assert set(np.unique(small)) <= set(np.unique(labels))
    np.testing.assert_array_equal(small[:, :, 0], labels[2::4, 2::4, 0])
    out = resize_raw("segment_semantic", labels, 4)
    np.testing.assert_array_equal(out, small)


def test_area_domains_round_to_their_dtype():
    edges = np.full((4, 4, 1), 1000, dtype=np.uint16)
    edges[0, 0] = 1003
    out = resize_raw("edge_texture", edges, 2)
    assert out.dtype == np.uint16
    assert out[0, 0, 0] == 1001  # (1003 + 3 * 1000) / 4 = 1000.75 rounds to 1001
    assert out[1, 1, 0] == 1000


def test_depth_averages_valid_pixels_and_marks_touched_blocks_invalid():
    depth = np.array([[1000, 1002, 2000, 2000], [1004, 1006, 2000, DEPTH_INVALID],
                      [10, 20, 30, 40], [50, 60, 70, 80]], dtype=np.uint16)[..., None]
    out = resize_raw("depth_zbuffer", depth, 2)[..., 0]
    assert out[0, 0] == 1003
    assert out[0, 1] == DEPTH_INVALID  # one invalid source pixel invalidates the block
    assert out[1, 0] == 35 and out[1, 1] == 55


def test_normals_are_renormalised_and_invalid_where_depth_is():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(8, 8, 3))
    v[..., 2] = -np.abs(v[..., 2]) - 0.5
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    raw = np.rint((v + 1) / 2 * 255).astype(np.uint8)
    invalid = np.zeros((8, 8), dtype=bool)
    invalid[0, 0] = True
    out = resize_raw("normal", raw, 4, invalid)
    assert np.all(out[0, 0] == NORMAL_INVALID)
    decoded = out[1:, 1:].astype(float) / 255 * 2 - 1
    np.testing.assert_allclose(np.linalg.norm(decoded, axis=-1), 1.0, atol=0.02)
    mean = v[2:4, 2:4].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(decoded[0, 0], mean / np.linalg.norm(mean), atol=0.01)


def test_same_size_is_identity():
    x = np.random.default_rng(4).integers(0, 65535, size=(8, 8, 1)).astype(np.uint16)
    assert resize_raw("keypoints2d", x, 8) is x
