"""Self-describing datasets: declared fields, their checks, the Taskonomy preset of old manifests."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from raytaskaff.data.domains import DOMAINS
from raytaskaff.data.fields import Field, taskonomy_field
from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import MANIFEST, Manifest, ShardWriter
from raytaskaff.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import declared  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("declared") / "data"
    declared.write(out)
    return out


def test_a_declared_dataset_describes_itself(dataset):
    manifest = Manifest.load(dataset)
    assert manifest.declared and manifest.group == "person" and manifest.meta == {"image": "string"}
    assert manifest.field("attributes") == declared.FIELDS[1] and manifest.field("colour").classes == 3
    assert manifest.splits["train"]["count"] == 112 and sum(manifest.splits["test"]["groups"].values()) == 24
    # no person in two splits
    persons = {s: set(manifest.splits[s]["groups"]) for s in ("train", "val", "test")}
    assert not (persons["train"] & persons["val"] or persons["train"] & persons["test"] or persons["val"] & persons["test"])
    # statistics of value fields only (not of class ids or 0/1 labels)
    assert set(manifest.stats) == {"rgb", "brightness"}
    train = SplitData.open(dataset, "train")
    batch = next(train.batches(112))
    assert batch["attributes"].shape == (112, 3) and batch["colour"].shape == (112, 1) and batch["bright"].shape == (112, 16, 16, 1)
    assert manifest.stats["brightness"]["mean"][0] == pytest.approx(float(batch["brightness"].double().mean()), rel=1e-5)
    assert list(train.meta("image")[:2]) == ["000000.jpg", "000001.jpg"] and train.meta("person")[4] == "1"


def test_the_taskonomy_preset_reads_old_manifests(tiny_dataset):
    manifest = Manifest.load(tiny_dataset)
    assert not manifest.declared and manifest.group == "building"
    normal, depth, seg = (manifest.field(n) for n in ("normal", "depth_zbuffer", "segment_semantic"))
    assert (normal.kind, normal.mask, normal.invalid, normal.shape) == ("dense_vector", "depth_zbuffer", 128, (16, 16, 3))
    assert (depth.kind, depth.invalid, depth.normalisation) == ("dense_regression", 65535, "taskonomy")
    assert (seg.kind, seg.classes, seg.ignore) == ("class_map", 18, 0)
    assert manifest.field("rgb").kind == "image"
    assert "fields" not in json.loads((tiny_dataset / MANIFEST).read_text())  # written as before: same fingerprint


def test_fields_are_part_of_the_fingerprint(tmp_path):
    a = declared.write(tmp_path / "a")
    fields = list(declared.FIELDS)
    fields[3] = Field("brightness", "scalar", "float32", (1,), normalisation="none")
    rng = np.random.default_rng(0)
    with ShardWriter(tmp_path / "b", 16, fields=fields, group="person", meta={"image": "string"}, rows_per_shard=64) as w:
        for i in range(160):
            split = "train" if i < 112 else "val" if i < 136 else "test"
            w.add_sample(split, str(i // 4), declared.sample(rng), meta={"image": f"{i:06d}.jpg"})
    assert [s.sha256 for s in a.shards] == [s.sha256 for s in w.manifest.shards]  # the same rows
    assert a.fingerprint != w.manifest.fingerprint


@pytest.mark.parametrize("kwargs,message", [
    (dict(kind="picture", dtype="uint8", shape=(4, 4, 3)), "field f: kind 'picture' is not one of image"),
    (dict(kind="multi_label", dtype="uint8", shape=(4, 4, 3)), "a multi_label field has shape (K,)"),
    (dict(kind="class_map", dtype="uint8", shape=(4, 4, 1)), "needs classes >= 2"),
    (dict(kind="class_label", dtype="float32", shape=(1,), classes=3), "class ids need an integer dtype"),
    (dict(kind="class_label", dtype="uint8", shape=(1,), classes=3, ignore=3), "ignore 3 must be one of the class ids 0..2"),
    (dict(kind="multi_label", dtype="uint8", shape=(2,), names=("a",)), "1 names for 2 entries"),
    (dict(kind="scalar", dtype="float32", shape=(1,), normalisation="z"), "normalisation 'z' is not one of"),
    (dict(kind="scalar", dtype="float32", shape=(1,), normalisation={"offset": [0]}), "normalisation {offset: [...], scale: [...]}"),
    (dict(kind="dense_regression", dtype="uint16", shape=(4, 4, 1), normalisation="taskonomy"), "for Taskonomy's domains only"),
])
def test_bad_fields_are_one_line(kwargs, message):
    with pytest.raises(DataError) as e:
        Field("f", **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_writer_checks_every_sample(tmp_path):
    with pytest.raises(DataError, match=r"attributes: shape \(4,\), expected \(3,\)"):
        with ShardWriter(tmp_path / "x", 16, fields=declared.FIELDS, group="person", meta={"image": "string"}) as w:
            bad = declared.sample(np.random.default_rng(0))
            bad["attributes"] = np.zeros(4, np.uint8)
            w.add_sample("train", "p", bad, meta={"image": "a.jpg"})
    assert not (tmp_path / "x").exists()
    with pytest.raises(DataError, match="field rgb: shape \\[16, 16, 3\\], not 32 px"):
        ShardWriter(tmp_path / "y", 32, fields=declared.FIELDS, group="person")


def test_a_manifest_with_a_bad_field_is_refused(dataset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    data = json.loads((copy / MANIFEST).read_text())
    data["fields"]["colour"]["classes"] = 1
    (copy / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(DataError, match="field colour: a class_label field needs classes >= 2, got 1"):
        Manifest.load(copy)


def test_taskonomy_field_aliases():
    assert taskonomy_field("rgb2sfnorm", 8).name == "normal"


def test_taskonomy_fields_of_every_domain():
    """Kind, mask and ignored class of each domain's field, written out: depth and normals are
    masked by depth, semantics is the one class map and skips "uncertain", rgb is the image."""
    masked = ("dense_regression", "depth_zbuffer", None)
    expected = {"rgb": ("image", None, None), "depth_zbuffer": masked, "depth_euclidean": masked,
                "normal": ("dense_vector", "depth_zbuffer", None), "segment_semantic": ("class_map", None, 0),
                "reshading": ("dense_vector", None, None), "principal_curvature": ("dense_vector", None, None)}
    for name in DOMAINS:
        field = taskonomy_field(name, 4)
        assert (field.kind, field.mask, field.ignore) == expected.get(name, ("dense_regression", None, None)), name
        assert field.classes == (18 if name == "segment_semantic" else None), name


def test_streaming_reads_declared_fields_as_memory_mapping_does(dataset):
    from raytaskaff.data.stream import StreamingSplit

    mapped = SplitData.open(dataset, "train", window=1)
    streamed = StreamingSplit(f"file://{dataset}", "train", window=1)
    for a, b in zip(mapped.batches(16, shuffle=True, seed=3), streamed.batches(16, shuffle=True, seed=3)):
        assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    head = streamed.head(5)
    assert head.gather("attributes", np.arange(5)).shape == (5, 3) and list(head.meta("image")) == [f"{i:06d}.jpg" for i in range(5)]
