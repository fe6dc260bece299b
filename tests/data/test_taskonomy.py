"""The Taskonomy converter, on fake Taskonomy trees written from synthetic views (never real files)."""

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from raytaskaff.data.domains import DEPTH_INVALID, DOMAINS, NORMAL_INVALID
from raytaskaff.data.resize import resize_raw
from raytaskaff.data.shards import Manifest, read_shard
from raytaskaff.data.synth import SynthConfig, synth_views
from raytaskaff.data.taskonomy import (
    SUMMARY_FILE, center_square, convert, decode_png, detect_layout, parse_tar_name, to_raw,
)
from raytaskaff.errors import DataError

DOMAINS_USED = ["segment_semantic", "depth_zbuffer", "normal", "edge_texture", "keypoints2d", "reshading",
                "principal_curvature"]
#: Synthetic buildings renamed to buildings of the paper split, plus one the split does not know.
BUILDINGS = {"hanson": "train", "corozal": "val", "ihlen": "test", "outsider": None}
SIZE = 32


@pytest.fixture(scope="module")
def views():
    """{(building, point, view): (fov, arrays)}: 16 views of 4 buildings at 32 px, with planted
    invalid depth (65535, normal 128) and 16-bit values above 32767 in every first view, and
    invalid depth under valid-looking normals in every second view."""
    config = SynthConfig(n=16, size=SIZE, points_per_building=2, views_per_point=2)
    names = dict(zip((config.building_name(i) for i in range(4)), BUILDINGS))
    out, seen = {}, set()
    for _, building, point, view, fov, arrays in synth_views(config):
        arrays = {name: arrays[name].copy() for name in ("rgb", *DOMAINS_USED)}
        if names[building] not in seen:
            seen.add(names[building])
            arrays["depth_zbuffer"][2:9, 3:11] = DEPTH_INVALID
            arrays["normal"][2:9, 3:11] = NORMAL_INVALID
            arrays["edge_texture"][20:24, 4:8] = 40000 + np.arange(16, dtype=np.uint16).reshape(4, 4, 1)
            arrays["keypoints2d"][0:3, 0:3] = 65000
        elif (point, view) == (0, 1):  # invalid in depth only: the converter must take the mask from depth
            arrays["depth_zbuffer"][16:20, 16:20] = DEPTH_INVALID
        out[(names[building], point, view)] = (fov, arrays)
    return out


def png(name, raw, grey=False):
    """PNG bytes as Taskonomy stores them: I;16 for uint16, RGB, L for class maps (and grey reshading)."""
    image = Image.fromarray(raw[..., 0] if raw.shape[-1] == 1 or grey else raw)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_tree(root, layout, views, seg="segmentsemantic", grey_reshading=False, folders=None, point_info=True):
    """Write `views` in `layout`; returns {(building, point, view, domain): path of its file}.

    seg: spelling of segment_semantic in file names. folders: domain -> old name used for its folder
    and file names (e.g. edge2d). point_info: write the camera json files."""
    folders = folders or {}
    root.mkdir(parents=True, exist_ok=True)
    paths, tars = {}, {}
    for (building, point, view), (fov, arrays) in views.items():
        files = {name: png(name, raw, grey_reshading and name == "reshading") for name, raw in arrays.items()}
        if point_info:
            files["point_info"] = json.dumps({"field_of_view_rads": fov, "view_id": view}).encode()
        for name, data in files.items():
            folder = folders.get(name, name)
            spelling = seg if name == "segment_semantic" else folder
            file = f"point_{point}_view_{view}_domain_{spelling}.{'json' if name == 'point_info' else 'png'}"
            if layout == "tar":
                tars.setdefault((building, folder), []).append((f"{folder}/{file}", data))
                continue
            path = root / {"omnitools": f"{folder}/taskonomy/{building}", "domain-first": f"{folder}/{building}",
                           "building-first": f"{building}/{folder}"}[layout] / file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            paths[(building, point, view, name)] = path
    for (building, folder), members in tars.items():
        with tarfile.open(root / f"{building}_{folder}.tar", "w") as tar:
            for member, data in members:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return paths


def read_rows(out):
    """{(building, point, view): (split, fov, {domain: (H, W, C) array})} of a dataset."""
    manifest = Manifest.load(out)
    rows = {}
    for info in manifest.shards:
        table = read_shard(out, info, manifest)
        arrays = {name: table.column(name).combine_chunks().flatten().to_numpy().reshape(-1, *manifest.shape(name))
                  for name in manifest.domains}
        for i, (b, p, v, s, f) in enumerate(zip(*(table.column(c).to_pylist() for c in
                                                  ("building", "point", "view", "split", "field_of_view_rads")))):
            rows[(b, p, v)] = (s, f, {name: a[i] for name, a in arrays.items()})
    return manifest, rows


def in_split(views):
    return {k: v for k, v in views.items() if BUILDINGS[k[0]]}


def test_pillow_writes_uint16_as_i16():
    image = Image.fromarray(np.array([[0, 40000], [65535, 1]], dtype=np.uint16))
    assert image.mode == "I;16"
    decoded = decode_png(png("depth_zbuffer", np.array([[[0], [40000]], [[65535], [1]]], dtype=np.uint16)),
                         "depth_zbuffer")
    assert decoded.dtype == np.uint16 and decoded[:, :, 0].tolist() == [[0, 40000], [65535, 1]]


@pytest.mark.parametrize("layout, seg, grey, folders", [
    ("tar", "segment_semantic", False, {}),
    ("omnitools", "segmentsemantic", True, {}),
    ("domain-first", "segment_semantic", False, {"keypoints2d": "keypoint2d"}),
    ("building-first", "segmentsemantic", False, {"edge_texture": "edge2d", "depth_zbuffer": "depth"}),
])
def test_each_layout_round_trips_raw_values(tmp_path, views, layout, seg, grey, folders):
    root = tmp_path / "taskonomy"
    write_tree(root, layout, views, seg=seg, grey_reshading=grey, folders=folders)
    assert detect_layout(root) == layout
    summary = convert(root, tmp_path / "out", split="paper", size=SIZE, domains=DOMAINS_USED, progress=False)
    assert summary.layout == layout
    assert summary.per_split == {"train": 4, "val": 4, "test": 4}
    assert summary.ignored_buildings == ("outsider",)
    assert summary.bad_files == () and summary.skipped_views == ()
    manifest, rows = read_rows(tmp_path / "out")
    assert set(rows) == set(in_split(views))
    for key, (split, fov, arrays) in rows.items():
        assert split == BUILDINGS[key[0]]
        assert fov == pytest.approx(views[key][0], rel=1e-6)
        for name in ("rgb", *DOMAINS_USED):
            np.testing.assert_array_equal(arrays[name], views[key][1][name], err_msg=f"{key} {name}")
    first = rows[("hanson", 0, 0)][2]
    assert (first["depth_zbuffer"][2:9, 3:11] == DEPTH_INVALID).all()
    assert (first["normal"][2:9, 3:11] == NORMAL_INVALID).all()
    assert first["edge_texture"][20:24, 4:8, 0].ravel().tolist() == list(range(40000, 40016))
    assert (first["keypoints2d"][0:3, 0:3] == 65000).all()


def test_downsizing_equals_resize_raw_of_the_originals(tmp_path, views):
    root = tmp_path / "taskonomy"
    write_tree(root, "domain-first", views)
    convert(root, tmp_path / "out", split="paper", size=16, domains=DOMAINS_USED, progress=False)
    manifest, rows = read_rows(tmp_path / "out")
    assert manifest.size == 16 and len(rows) == 12
    for key, (_, _, arrays) in rows.items():
        original = views[key][1]
        invalid = original["depth_zbuffer"][..., 0] == DEPTH_INVALID
        for name in ("rgb", *DOMAINS_USED):
            mask = invalid if DOMAINS[name].resize in ("depth", "normal") else None
            np.testing.assert_array_equal(arrays[name], resize_raw(name, original[name], 16, mask))
        assert set(np.unique(arrays["segment_semantic"])) <= set(np.unique(original["segment_semantic"]))
    first, second = rows[("hanson", 0, 0)][2], rows[("hanson", 0, 1)][2]
    assert (first["depth_zbuffer"][1:4, 2:5] == DEPTH_INVALID).all()  # 2 px blocks inside rows 2-8, cols 3-10
    assert (first["normal"][1:4, 2:5] == NORMAL_INVALID).all()
    assert (second["normal"][8:10, 8:10] == NORMAL_INVALID).all()  # from the depth, not the normal file
    assert not (views[("hanson", 0, 1)][1]["normal"][16:20, 16:20] == NORMAL_INVALID).all()


def test_corrupt_and_missing_files_skip_only_their_views(tmp_path, views):
    root = tmp_path / "taskonomy"
    paths = write_tree(root, "omnitools", views)
    corrupt, missing, no_rgb = ("hanson", 0, 1), ("corozal", 1, 0), ("ihlen", 1, 1)
    data = paths[(*corrupt, "normal")].read_bytes()
    paths[(*corrupt, "normal")].write_bytes(data[:len(data) // 2])
    paths[(*missing, "depth_zbuffer")].unlink()
    paths[(*no_rgb, "rgb")].unlink()
    summary = convert(root, tmp_path / "out", split="paper", size=SIZE, domains=DOMAINS_USED, progress=False)
    assert {s[:3] for s in summary.skipped_views} == {corrupt, missing, no_rgb}
    bad = dict(summary.bad_files)
    assert set(bad) == {str(paths[(*corrupt, "normal")]), str(paths[(*missing, "depth_zbuffer")]),
                        str(paths[(*no_rgb, "rgb")])}
    assert "corrupt" in bad[str(paths[(*corrupt, "normal")])] or "truncated" in bad[str(paths[(*corrupt, "normal")])]
    assert bad[str(paths[(*missing, "depth_zbuffer")])] == "missing"
    assert summary.problems_per_domain == {"depth_zbuffer": 1, "normal": 1, "rgb": 1}
    _, rows = read_rows(tmp_path / "out")
    assert set(rows) == set(in_split(views)) - {corrupt, missing, no_rgb}
    for key, (_, _, arrays) in rows.items():  # every label is its own view's
        for name in ("rgb", *DOMAINS_USED):
            np.testing.assert_array_equal(arrays[name], views[key][1][name])
    text = summary.format()
    assert "skipped views (3):" in text and "hanson point 0 view 1: normal: corrupt image" in text


def test_corrupt_tar_member_is_reported_with_its_archive(tmp_path, views):
    root = tmp_path / "taskonomy"
    write_tree(root, "tar", {k: v for k, v in views.items() if k[0] == "hanson"})
    archive = root / "hanson_edge_texture.tar"
    with tarfile.open(archive) as tar:
        member = tar.getmember("edge_texture/point_1_view_0_domain_edge_texture.png")
    raw = bytearray(archive.read_bytes())
    raw[member.offset_data + 8: member.offset_data + member.size] = bytes(member.size - 8)  # PNG signature only
    archive.write_bytes(bytes(raw))
    summary = convert(root, tmp_path / "out", split="paper", size=SIZE, domains=DOMAINS_USED, progress=False)
    assert [s[:3] for s in summary.skipped_views] == [("hanson", 1, 0)]
    assert [path for path, _ in summary.bad_files] == [f"{archive}:{member.name}"]
    assert summary.per_building == {"hanson": 3}


def test_workers_give_the_same_dataset(tmp_path, views):
    root = tmp_path / "taskonomy"
    write_tree(root, "domain-first", views)
    one = convert(root, tmp_path / "one", split="paper", size=16, domains=DOMAINS_USED, progress=False)
    two = convert(root, tmp_path / "two", split="paper", size=16, domains=DOMAINS_USED, progress=False, workers=2)
    assert one.per_building == two.per_building
    assert [s.sha256 for s in Manifest.load(tmp_path / "one").shards] == \
        [s.sha256 for s in Manifest.load(tmp_path / "two").shards]


def test_split_assignment_and_manifest_counts(tmp_path, views):
    root = tmp_path / "taskonomy"
    write_tree(root, "building-first", views, point_info=False)
    split = {"hanson": "test", "outsider": "train", "ihlen": "train"}
    summary = convert(root, tmp_path / "out", split=split, size=SIZE, domains=["depth", "segmentsemantic"],
                      progress=False, format="parquet", rows_per_shard=3)
    assert summary.domains == ("rgb", "depth_zbuffer", "segment_semantic")
    assert summary.ignored_buildings == ("corozal",)
    assert summary.per_split == {"train": 8, "val": 0, "test": 4}
    manifest, rows = read_rows(tmp_path / "out")
    assert {s: manifest.splits[s]["count"] for s in manifest.splits} == summary.per_split
    assert {b: n for s in manifest.splits.values() for b, n in s["buildings"].items()} == summary.per_building
    assert manifest.splits["train"]["buildings"] == {"ihlen": 4, "outsider": 4}
    assert all(split == {"hanson": "test"}.get(key[0], "train") for key, (split, _, _) in rows.items())
    assert all(np.isnan(fov) for _, fov, _ in rows.values())  # no point_info files
    saved = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert saved["per_building"] == summary.per_building and saved["views"] == 12
    assert manifest.producer["source"] == "taskonomy"


def test_bad_inputs_fail_with_one_line(tmp_path, views):
    empty = tmp_path / "empty"
    empty.mkdir()
    root = tmp_path / "taskonomy"
    write_tree(root, "domain-first", {k: v for k, v in views.items() if k[0] == "outsider"})
    cases = [
        (dict(root=tmp_path / "nowhere"), "no such directory"),
        (dict(root=empty), "no Taskonomy files"),
        (dict(root=root, domains=["depth_zbuffer", "colour"]), "unknown domain 'colour'"),
        (dict(root=root), "no domain-first-layout views"),
        (dict(root=root, split={"outsider": "training"}), "unknown split 'training'"),
        (dict(root=root, split=str(tmp_path / "missing.csv")), "unknown split"),
    ]
    for kwargs, message in cases:
        kwargs = {"split": "paper", "domains": ["depth_zbuffer"], **kwargs}
        with pytest.raises(DataError, match=message) as error:
            convert(out=tmp_path / "out", size=SIZE, progress=False, **kwargs)
        assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_every_view_bad_is_an_error_and_writes_nothing(tmp_path, views):
    root = tmp_path / "taskonomy"
    paths = write_tree(root, "domain-first", {k: v for k, v in views.items() if k[0] == "hanson"})
    for (_, _, _, name), path in paths.items():
        if name == "rgb":
            path.write_bytes(b"not a png")
    with pytest.raises(DataError, match="all 4 views were skipped"):
        convert(root, tmp_path / "out", split="paper", size=SIZE, domains=["normal"], progress=False)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_decoding_checks_modes_and_ranges():
    wide = np.array([[0, 40000], [65535, 7]], dtype=np.int32)
    assert to_raw(Image.fromarray(wide), "depth_zbuffer")[..., 0].tolist() == wide.tolist()  # old Pillow: mode I
    with pytest.raises(DataError, match="do not fit 16 bits"):
        to_raw(Image.fromarray(np.array([[70000]], dtype=np.int32)), "depth_zbuffer")
    with pytest.raises(DataError, match="mode RGB, expected I;16"):
        to_raw(Image.new("RGB", (4, 4)), "depth_zbuffer")
    with pytest.raises(DataError, match="mode L, expected RGB"):
        to_raw(Image.new("L", (4, 4)), "normal")
    with pytest.raises(DataError, match="mode RGB, expected L"):
        to_raw(Image.new("RGB", (4, 4)), "segment_semantic")
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4)
    reshading = to_raw(Image.fromarray(grey), "reshading")
    assert reshading.shape == (4, 4, 3) and (reshading == grey[..., None]).all()
    with pytest.raises(DataError, match="not an image"):
        decode_png(b"\x89PNG garbage", "rgb")


def test_center_square_and_tar_names():
    raw = np.arange(6 * 10).reshape(6, 10, 1)
    np.testing.assert_array_equal(center_square(raw), raw[:, 2:8])
    np.testing.assert_array_equal(center_square(raw.transpose(1, 0, 2)), raw.transpose(1, 0, 2)[2:8])
    assert parse_tar_name("hanson_depth_zbuffer.tar") == ("hanson", "depth_zbuffer")
    assert parse_tar_name("hanson_segmentsemantic.tar") == ("hanson", "segment_semantic")
    assert parse_tar_name("edge_texture__taskonomy__wiconisco.tar") == ("wiconisco", "edge_texture")
    assert parse_tar_name("hanson_point_info.tar") == ("hanson", "point_info")
    assert parse_tar_name("notes.tar") is None and parse_tar_name("hanson_rgb.zip") is None


def test_non_square_images_are_center_cropped(tmp_path, views):
    wide = {}
    for key, (fov, arrays) in views.items():
        if key[0] == "hanson":  # 32 x 40: 4 columns of padding each side, cropped away again
            padded = {name: np.pad(raw, ((0, 0), (4, 4), (0, 0)), mode="edge") for name, raw in arrays.items()}
            wide[key] = (fov, padded)
    write_tree(tmp_path / "taskonomy", "domain-first", wide)
    summary = convert(tmp_path / "taskonomy", tmp_path / "out", split="paper", size=SIZE, domains=DOMAINS_USED,
                      progress=False)
    assert summary.per_building == {"hanson": 4}
    _, rows = read_rows(tmp_path / "out")
    for key, (_, _, arrays) in rows.items():
        for name in ("rgb", *DOMAINS_USED):
            np.testing.assert_array_equal(arrays[name], views[key][1][name])
