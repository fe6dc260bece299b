"""The synthetic generator: determinism, encodings, and relations that follow from one geometry."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.feature import hessian_matrix_det
from skimage.filters import sobel

from raytaskaff.data.domains import (
    DEPTH_INVALID, DOMAINS, NORMAL_INVALID, RESHADING_BACKGROUND, SEGMENT_BACKGROUND, SEGMENT_UNCERTAIN,
)
from raytaskaff.data.render import cast, shade
from raytaskaff.data.scene import ARCHETYPES, sample_building, sample_cameras
from raytaskaff.data.synth import SYNTH_DOMAINS, SynthConfig, encode_view, generate, synth_views
from raytaskaff.errors import DataError


def _views(config):
    return list(synth_views(config))


def _rays(hits):
    """(R, R, 3) camera-frame ray directions with z = 1 (pixel centres at +0.5)."""
    res = hits.depth.shape[0]
    f = (res / 2) / np.tan(hits.camera.fov / 2)
    c = (np.arange(res) + 0.5 - res / 2) / f
    return np.stack(np.broadcast_arrays(c[None, :], c[:, None], np.ones((res, res))), axis=-1)


@pytest.fixture(scope="module")
def native():
    """Views encoded at their cast resolution (no resizing), with their hits."""
    out = []
    for seed in range(4):
        building = sample_building(seed)
        for camera in sample_cameras(building, 2, 2, seed):
            hits = cast(building, camera, 96)
            out.append((building, hits, encode_view(hits, shade(building, hits, np.random.default_rng(0)))))
    return out


def test_every_domain_has_taskonomy_encoding(tiny_config):
    views = _views(tiny_config)
    assert len(views) == tiny_config.n
    assert len(SYNTH_DOMAINS) - 1 >= 10  # rgb plus at least ten label domains
    for *_, arrays in views[:5]:
        assert set(arrays) == set(SYNTH_DOMAINS)
        for name, a in arrays.items():
            spec = DOMAINS[name]
            assert a.dtype == spec.np_dtype and a.shape == (16, 16, spec.channels), name


def test_same_seed_same_views_other_seed_other_views(tiny_config):
    a, b = _views(tiny_config), _views(tiny_config)
    for (sa, ba, pa_, va, fa, xa), (sb, bb, pb, vb, fb, xb) in zip(a, b):
        assert (sa, ba, pa_, va, fa) == (sb, bb, pb, vb, fb)
        for name in SYNTH_DOMAINS:
            np.testing.assert_array_equal(xa[name], xb[name])
    other = _views(SynthConfig(n=8, size=16, seed=4, points_per_building=2, views_per_point=4))
    assert not np.array_equal(a[0][5]["rgb"], other[0][5]["rgb"])


def test_workers_give_identical_output(tiny_config):
    config = SynthConfig(n=12, size=16, seed=5, points_per_building=1, views_per_point=4)
    serial, parallel = _views(config), list(synth_views(config, workers=2))
    for x, y in zip(serial, parallel):
        assert x[:5] == y[:5]
        np.testing.assert_array_equal(x[5]["depth_zbuffer"], y[5]["depth_zbuffer"])


def test_splits_are_disjoint_by_building(tiny_config):
    seen = {}
    for split, building, *_ in _views(tiny_config):
        assert seen.setdefault(building, split) == split
    assert set(seen.values()) == {"train", "val", "test"}
    assert SynthConfig(n=1000, views_per_point=1, points_per_building=10).splits().count("train") == 80


def test_invalid_pixels_agree_across_domains(native):
    found = 0
    for _, hits, raw in native:
        invalid = raw["depth_zbuffer"][..., 0] == DEPTH_INVALID
        found += invalid.sum()
        np.testing.assert_array_equal(invalid, ~hits.valid)
        np.testing.assert_array_equal(invalid, raw["depth_euclidean"][..., 0] == DEPTH_INVALID)
        np.testing.assert_array_equal(invalid, np.all(raw["normal"] == NORMAL_INVALID, axis=-1))
        np.testing.assert_array_equal(invalid, raw["mask_valid"][..., 0] == 0)
        assert np.all(raw["reshading"][invalid] == RESHADING_BACKGROUND)
        assert np.all(raw["principal_curvature"][invalid] == 0)
    assert found > 0, "windows should leave pixels with no geometry"


def test_euclidean_depth_follows_zbuffer_and_camera(native):
    """depth_euclidean = depth_zbuffer * sqrt(1 + (u/f)^2 + (v/f)^2), pixel centres at +0.5."""
    for _, hits, raw in native:
        factor = np.linalg.norm(_rays(hits), axis=-1)
        valid = hits.valid
        z = raw["depth_zbuffer"][..., 0].astype(float)[valid]
        e = raw["depth_euclidean"][..., 0].astype(float)[valid]
        # both are rounded to 1/512 m: z's rounding error grows by the factor
        np.testing.assert_allclose(e, z * factor[valid], atol=0.5 * factor.max() + 0.5 + 1e-9)
        assert np.mean(np.abs(e / (z * factor[valid]) - 1)) < 5e-4


def test_normals_follow_from_back_projected_depth(native):
    """Cross-product normals of the back-projected depth agree with the stored camera-frame normals."""
    corr = []
    for _, hits, raw in native:
        pts = _rays(hits) * (raw["depth_zbuffer"][..., :1].astype(float) / 512)
        n = np.cross(pts[1:, :-1] - pts[:-1, :-1], pts[:-1, 1:] - pts[:-1, :-1])
        n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-12
        stored = raw["normal"][:-1, :-1].astype(float) / 255 * 2 - 1
        same = hits.surface[:-1, :-1]
        smooth = (same == hits.surface[1:, :-1]) & (same == hits.surface[:-1, 1:]) & hits.valid[:-1, :-1]
        corr.append([np.corrcoef(n[smooth][:, k], stored[smooth][:, k])[0, 1] for k in range(3)])
    assert np.mean(corr, axis=0).min() > 0.9
    for _, hits, raw in native:  # visible surfaces face the camera: n . ray <= 0 (up to 8-bit rounding)
        ray = _rays(hits)
        n = raw["normal"].astype(float) / 255 * 2 - 1
        assert np.all((n * ray).sum(-1)[hits.valid] < 0.01 * np.linalg.norm(ray, axis=-1)[hits.valid])


def test_reshading_follows_normals_and_distance(native):
    for _, hits, raw in native:
        ray = _rays(hits)
        ray /= np.linalg.norm(ray, axis=-1, keepdims=True)
        n = raw["normal"].astype(float) / 255 * 2 - 1
        d = raw["depth_euclidean"][..., 0].astype(float) / 512
        expected = np.clip(2.0 * 0.64 * 8 / (8 + d**2) * np.clip(-(n * ray).sum(-1), 0, None) * 255, 0, 255)
        valid = hits.valid
        assert np.abs(raw["reshading"][..., 0][valid] - expected[valid]).max() <= 3  # 8-bit normal rounding
        assert np.all(raw["reshading"][..., 0] == raw["reshading"][..., 2])


def test_semantic_classes_come_from_object_shapes(native):
    class_of = {}
    for name, kind, class_id, _ in ARCHETYPES:
        class_of.setdefault(kind, set()).add(class_id)
    seen = set()
    for building, hits, raw in native:
        sem = raw["segment_semantic"][..., 0]
        room = (hits.surface >= 0) & (hits.surface < 6) & (sem != SEGMENT_UNCERTAIN)
        assert np.all(sem[room] == SEGMENT_BACKGROUND)
        for index, obj in enumerate(building.objects):
            pixels = (hits.surface == 6 + index) & (sem != SEGMENT_UNCERTAIN)
            if pixels.any():
                assert set(np.unique(sem[pixels])) == {obj.class_id}
                assert obj.class_id in class_of[obj.kind]
                seen.add(obj.class_id)
        assert np.all(sem[sem == SEGMENT_UNCERTAIN] == 0)
    assert len(seen) >= 3


def test_texture_edges_and_keypoints_follow_the_taskonomy_recipe_at_512():
    """At 512 px the generator's edges and keypoints are exactly the reference recipe on its RGB."""
    building = sample_building(7)
    camera = sample_cameras(building, 1, 1, 0)[0]
    hits = cast(building, camera, 512)
    raw = encode_view(hits, shade(building, hits, np.random.default_rng(0)))
    rgb = raw["rgb"].astype(np.uint32)
    gray = ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16) / 255.0
    ones = np.ones_like(gray)
    blur = ndimage.gaussian_filter(gray, 3.0, mode="constant") / ndimage.gaussian_filter(ones, 3.0, mode="constant")
    edges = np.rint(np.clip(sobel(blur, mask=ones.astype(bool)), 0, 1) * 65535).astype(np.uint16)
    np.testing.assert_array_equal(raw["edge_texture"][..., 0], edges)
    kp = np.max([hessian_matrix_det(gray, sigma=s, approximate=True) for s in np.linspace(1, 30, 10)], axis=0)
    np.testing.assert_array_equal(raw["keypoints2d"][..., 0], np.rint(np.clip(kp, 0, 1) * 65535).astype(np.uint16))
    # Taskonomy-like statistics (reference section 4: edges mean ~900-1100, keypoints ~50-70)
    assert 100 < raw["edge_texture"].mean() < 3000
    assert 5 < raw["keypoints2d"].mean() < 300


def test_curvature_encodes_shapes(native):
    for building, hits, raw in native:
        k = raw["principal_curvature"].astype(int)
        for index, obj in enumerate(building.objects):
            pixels = (hits.surface == 6 + index) & (hits.curvature[..., 0] < 19)  # away from rounded edges
            if obj.kind == "sphere" and pixels.any():
                expected = round((0.03 / obj.dims[0] + 1) * 127)
                assert np.all(k[pixels][:, :2] == expected)
        flat = (hits.surface >= 0) & (hits.surface < 6) & (hits.curvature[..., 1] == 0)
        assert np.all(k[flat][:, :2] == 127) and np.all(k[..., 2] == 0)


@pytest.mark.parametrize("kwargs,match", [
    ({"n": 0}, "n must be"), ({"n": 5, "size": 4}, "size must"), ({"n": 5, "render_size": 8, "size": 16}, "render_size"),
    ({"n": 5, "split_fractions": (0.5, 0.6, 0.1)}, "split_fractions"),
])
def test_bad_configs_are_rejected(kwargs, match):
    with pytest.raises(DataError, match=match):
        SynthConfig(**kwargs)


def test_a_dataset_the_disk_cannot_hold_is_refused_before_rendering(tmp_path):
    with pytest.raises(DataError, match=r"ds: 1000000000 views of 512 px need .* GB, .* has .* GB free") as e:
        generate(tmp_path / "ds", SynthConfig(n=10**9, size=512))
    assert "\n" not in str(e.value) and list(tmp_path.iterdir()) == []
