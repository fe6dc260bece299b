"""Shards and manifest: round trip, statistics, atomic writes, and every kind of damage."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from raytaskaff.data.shards import MANIFEST, Manifest, ShardWriter, read_shard, schema
from raytaskaff.errors import DataError

DOMAINS = ["rgb", "depth_zbuffer", "segment_semantic"]


def _views(n, size=4, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        depth = rng.integers(300, 5000, size=(size, size, 1)).astype(np.uint16)
        depth[0, 0] = 65535
        yield ("train" if i % 3 else "val", f"b{i % 4}", i, 0, 1.0 + i, {
            "rgb": rng.integers(0, 256, size=(size, size, 3)).astype(np.uint8),
            "depth_zbuffer": depth,
            "segment_semantic": rng.integers(0, 18, size=(size, size, 1)).astype(np.uint8),
        })


def _write(out, n=10, format="arrow", rows_per_shard=3, **kwargs):
    views = list(_views(n))
    with ShardWriter(out, 4, DOMAINS, format=format, rows_per_shard=rows_per_shard, **kwargs) as w:
        for v in views:
            w.add(*v)
    return views, w.manifest


@pytest.mark.parametrize("format", ["arrow", "parquet"])
def test_round_trip_and_manifest(tmp_path, format):
    views, manifest = _write(tmp_path / "ds", format=format)
    loaded = Manifest.load(tmp_path / "ds")
    assert loaded == manifest
    assert loaded.splits["train"]["count"] == 6 and loaded.splits["val"]["count"] == 4
    assert loaded.splits["val"]["buildings"] == {"b0": 1, "b1": 1, "b2": 1, "b3": 1}  # views 0, 3, 6, 9
    assert [s.rows for s in loaded.shards_of("train")] == [3, 3]
    rows = {}
    for shard in loaded.shards:
        table = read_shard(tmp_path / "ds", shard, loaded)
        for r in range(table.num_rows):
            rows[table.column("point")[r].as_py()] = {d: np.asarray(table.column(d)[r].values) for d in DOMAINS}
    for split, building, point, view, fov, arrays in views:
        for d in DOMAINS:
            np.testing.assert_array_equal(rows[point][d], arrays[d].ravel())


def test_stats_are_train_means_over_valid_pixels(tmp_path):
    views, manifest = _write(tmp_path / "ds")
    depth = np.concatenate([v[5]["depth_zbuffer"].ravel() for v in views if v[0] == "train"])
    depth = depth[depth != 65535].astype(float)
    assert manifest.stats["depth_zbuffer"]["mean"][0] == pytest.approx(depth.mean(), rel=1e-6)
    assert manifest.stats["depth_zbuffer"]["std"][0] == pytest.approx(depth.std(), rel=1e-5)
    rgb = np.stack([v[5]["rgb"] for v in views if v[0] == "train"]).reshape(-1, 3).astype(float)
    np.testing.assert_allclose(manifest.stats["rgb"]["mean"], rgb.mean(0), rtol=1e-6)
    assert "segment_semantic" not in manifest.stats  # class ids have no mean


def test_interrupted_write_leaves_nothing(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError):
        with ShardWriter(out, 4, DOMAINS, rows_per_shard=2) as w:
            for v in list(_views(5)):
                w.add(*v)
            raise RuntimeError("killed")
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_existing_dataset_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "ds"
    _, first = _write(out, n=4)
    with pytest.raises(DataError, match="exists and is not empty"):
        ShardWriter(out, 4, DOMAINS)
    assert Manifest.load(out) == first
    _, second = _write(out, n=7, overwrite=True)
    assert Manifest.load(out) == second and sum(s.rows for s in second.shards) == 7
    assert sorted(os.listdir(tmp_path)) == ["ds"]


def test_add_rejects_bad_arrays(tmp_path):
    with ShardWriter(tmp_path / "ds", 4, DOMAINS) as w:
        _, building, point, view, fov, arrays = next(_views(1))
        with pytest.raises(DataError, match="depth_zbuffer: dtype int32"):
            w.add("train", building, point, view, fov, {**arrays, "depth_zbuffer": arrays["depth_zbuffer"].astype(np.int32)})
        with pytest.raises(DataError, match=r"rgb: shape \(4, 4, 1\)"):
            w.add("train", building, point, view, fov, {**arrays, "rgb": arrays["rgb"][..., :1]})
        with pytest.raises(DataError, match=r"segment_semantic: class id 18 out of range \(ids are 0..17\)"):
            w.add("train", building, point, view, fov, {**arrays, "segment_semantic": np.full_like(arrays["segment_semantic"], 18)})
        with pytest.raises(DataError, match=r"depth_zbuffer: shape \(4, 4, 2\)"):
            w.add("train", building, point, view, fov, {**arrays, "depth_zbuffer": np.repeat(arrays["depth_zbuffer"], 2, axis=2)})
        with pytest.raises(DataError, match="missing domains"):
            w.add("train", building, point, view, fov, {"rgb": arrays["rgb"]})
        with pytest.raises(DataError, match="unknown split"):
            w.add("dev", building, point, view, fov, arrays)
        with pytest.raises(DataError, match="unknown domain"):
            ShardWriter(tmp_path / "other", 4, ["rgb", "depht"])


@pytest.fixture
def dataset(tmp_path):
    _, manifest = _write(tmp_path / "ds")
    return tmp_path / "ds", manifest


def _one_line(e):
    assert "\n" not in str(e.value)
    return str(e.value)


def test_truncated_shard(dataset):
    root, manifest = dataset
    shard = manifest.shards[0]
    path = root / shard.file
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError) as e:
        read_shard(root, shard, manifest)
    assert shard.file in _one_line(e) and "truncated" in str(e.value)


def test_checksum_mismatch(dataset):
    root, manifest = dataset
    shard = manifest.shards[1]
    data = bytearray((root / shard.file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / shard.file).write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum mismatch") as e:
        read_shard(root, shard, manifest)
    assert shard.file in _one_line(e)


def test_missing_shard(dataset):
    root, manifest = dataset
    os.remove(root / manifest.shards[0].file)
    with pytest.raises(DataError, match="missing"):
        read_shard(root, manifest.shards[0], manifest)


def _replace_shard(root, manifest, index, table):
    """Write `table` over shard `index` and make the manifest agree on size and checksum."""
    from raytaskaff.data.shards import _sha256

    shard = manifest.shards[index]
    with ipc.new_file(root / shard.file, table.schema) as w:
        w.write_table(table)
    data = json.loads((root / MANIFEST).read_text())
    data["shards"][index].update(bytes=(root / shard.file).stat().st_size, sha256=_sha256(root / shard.file))
    (root / MANIFEST).write_text(json.dumps(data))
    return Manifest.load(root)


def test_missing_column_and_wrong_type(dataset):
    root, manifest = dataset
    table = read_shard(root, manifest.shards[0], manifest)
    changed = _replace_shard(root, manifest, 0, table.drop_columns(["segment_semantic"]))
    with pytest.raises(DataError, match="missing column 'segment_semantic'"):
        read_shard(root, changed.shards[0], changed)
    wrong = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(3 * 16, dtype=np.uint16)), 16)
    table = table.set_column(table.schema.get_field_index("segment_semantic"), "segment_semantic", wrong)
    changed = _replace_shard(root, changed, 0, table)
    with pytest.raises(DataError, match="column 'segment_semantic' is fixed_size_list<item: uint16>"):
        read_shard(root, changed.shards[0], changed)


@pytest.mark.parametrize("format", ["arrow", "parquet"])
def test_class_id_out_of_range(tmp_path, format):
    """A label the loss cannot take (class 200 of 18) is found when the shard is read, naming the view."""
    root = tmp_path / "ds"
    _, manifest = _write(root, format=format)
    table = read_shard(root, manifest.shards[1], manifest)
    labels = np.stack(table.column("segment_semantic").to_numpy(zero_copy_only=False)).copy()
    labels[2, 5] = 200
    column = pa.FixedSizeListArray.from_arrays(pa.array(labels.ravel()), 16)
    if format == "parquet":
        import pyarrow.parquet as pq

        from raytaskaff.data.shards import _sha256

        pq.write_table(table.set_column(table.schema.get_field_index("segment_semantic"), "segment_semantic", column),
                       root / manifest.shards[1].file)
        data = json.loads((root / MANIFEST).read_text())
        data["shards"][1].update(bytes=(root / manifest.shards[1].file).stat().st_size, sha256=_sha256(root / manifest.shards[1].file))
        (root / MANIFEST).write_text(json.dumps(data))
        changed = Manifest.load(root)
    else:
        changed = _replace_shard(root, manifest, 1, table.set_column(table.schema.get_field_index("segment_semantic"),
                                                                       "segment_semantic", column))
    building, point = table.column("building")[2].as_py(), table.column("point")[2].as_py()
    with pytest.raises(DataError, match=rf"segment_semantic of row 2 \(building {building}, point {point}, view 0\) "
                                        r"holds class id 200, out of range \(ids are 0..17\)") as e:
        read_shard(root, changed.shards[1], changed)
    _one_line(e)
    read_shard(root, changed.shards[1], changed, verify=False)  # the check belongs to verification


def test_rows_disagreeing_with_manifest(dataset):
    root, manifest = dataset
    table = read_shard(root, manifest.shards[0], manifest).slice(0, 2)
    changed = _replace_shard(root, manifest, 0, table)
    with pytest.raises(DataError, match="2 rows, manifest says 3"):
        read_shard(root, changed.shards[0], changed)


def test_not_an_arrow_file(dataset):
    root, manifest = dataset
    shard = manifest.shards[0]
    (root / shard.file).write_bytes(b"x" * shard.bytes)
    with pytest.raises(DataError, match="not a readable arrow file") as e:
        read_shard(root, shard, manifest, verify=False)
    _one_line(e)


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.update(size=8), "domain rgb is"),
    (lambda m: m["splits"]["train"].update(count=99), "split train counts 99"),
    (lambda m: m.pop("shards"), "malformed manifest"),
    (lambda m: m.update(format="zip"), "unknown format"),
    (lambda m: m.update(colour="blue"), "malformed manifest"),
    (lambda m: m["domains"].update(depht={"dtype": "uint8", "shape": [4, 4, 1]}), "unknown domain 'depht'"),
])
def test_manifest_that_does_not_match(dataset, edit, match):
    root, _ = dataset
    data = json.loads((root / MANIFEST).read_text())
    edit(data)
    (root / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(DataError, match=match) as e:
        Manifest.load(root)
    _one_line(e)


def test_manifest_not_json(dataset):
    root, _ = dataset
    (root / MANIFEST).write_text("{not json")
    with pytest.raises(DataError, match="malformed manifest"):
        Manifest.load(root)


def test_schema_has_one_fixed_size_column_per_domain():
    s = schema(8, ["rgb", "depth_zbuffer"])
    assert s.field("rgb").type == pa.list_(pa.uint8(), 8 * 8 * 3)
    assert s.field("depth_zbuffer").type == pa.list_(pa.uint16(), 64)
