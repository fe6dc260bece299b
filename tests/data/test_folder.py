"""The folder converter on a fake CelebA tree and on a CSV; the plug-in converter."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raytaskaff.data.folder import convert, load_image
from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fake_celeba  # noqa: E402


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    rows = fake_celeba.write(root)
    return root, rows


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "raytaskaff.data", *args], capture_output=True, text=True, cwd=cwd)


def test_celeba_files_convert(celeba, tmp_path):
    root, rows = celeba
    out = tmp_path / "celeba-16"
    done = _cli("folder", "--images", str(root), "--labels", str(root / "list_attr_celeba.txt"),
                "--split", str(root / "list_eval_partition.txt"), "--group", str(root / "identity_CelebA.txt"),
                "--size", "16", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "skipped samples (2):" in done.stdout and f"{fake_celeba.MISSING}: missing image" in done.stdout
    assert f"{fake_celeba.CORRUPT}: cannot decode" in done.stdout
    manifest = Manifest.load(out)
    attributes = manifest.field("attributes")
    assert attributes.kind == "multi_label" and attributes.names == tuple(fake_celeba.ATTRIBUTES) and manifest.group == "group"
    expected = {0: 0, 1: 0, 2: 0}
    for name, (_, split, _) in rows.items():
        expected[split] += name not in (fake_celeba.MISSING, fake_celeba.CORRUPT)
    assert [manifest.splits[s]["count"] for s in ("train", "val", "test")] == [expected[0], expected[1], expected[2]]
    # labels stay with their image: -1 -> 0, 1 -> 1, joined by file name past the skipped ones
    for split in ("train", "test"):
        data = SplitData.open(out, split)
        names, groups = data.meta("image"), data.meta("group")
        values = next(data.batches(len(data)))["attributes"].numpy()
        for name, group, row in zip(names, groups, values):
            attrs, _, identity = rows[name]
            assert (row == (attrs > 0)).all() and group == str(identity)
    rgb = SplitData.open(out, "train").gather("rgb", np.arange(1))
    assert rgb.shape == (1, 16, 16, 3) and rgb.dtype == np.uint8


def test_a_csv_with_a_group_column_and_a_drawn_split(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    lines = ["file,person,smiling,age,mood"]
    for i in range(30):
        Image.fromarray(np.full((8, 8, 3), i * 8, np.uint8)).save(images / f"{i}.png")
        lines.append(f"{i}.png,p{i // 5},{i % 2},{20.5 + i},{i % 3}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    summary = convert(images, tmp_path / "labels.csv", tmp_path / "out", 8, group="person")
    manifest = Manifest.load(tmp_path / "out")
    assert {n: manifest.field(n).kind for n in manifest.domains} == {"rgb": "image", "attributes": "multi_label",
                                                                     "age": "scalar", "mood": "class_label"}
    assert manifest.field("mood").classes == 3 and manifest.field("attributes").names == ("smiling",)
    assert sum(summary.per_split.values()) == 30 and summary.groups == 6 and summary.shared_groups == 0
    for split in ("train", "val", "test"):
        if manifest.splits[split]["count"]:
            data = SplitData.open(tmp_path / "out", split)
            batch = next(data.batches(len(data)))
            index = [int(Path(n).stem) for n in data.meta("image")]
            assert batch["age"][:, 0].tolist() == pytest.approx([20.5 + i for i in index])
            assert batch["mood"][:, 0].tolist() == [i % 3 for i in index]


@pytest.mark.parametrize("make,message", [
    (lambda root: ["--labels", str(root / "nope.txt")], "nope.txt: no such label file"),
    (lambda root: ["--group", "identity"], "--group identity: neither a column of"),
    (lambda root: ["--split", str(root / "bad_split.txt")], "unknown split 'holdout'"),
])
def test_bad_input_is_one_line_and_writes_nothing(celeba, tmp_path, make, message):
    root, _ = celeba
    (root / "bad_split.txt").write_text("000001.jpg holdout\n")
    args = {"--images": str(root), "--labels": str(root / "list_attr_celeba.txt"), "--size": "16", "--out": str(tmp_path / "out")}
    extra = make(root)
    args.update(dict(zip(extra[::2], extra[1::2])))
    done = _cli("folder", *[x for kv in args.items() for x in kv])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "out").exists()


def test_load_image_refuses_garbage(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot decode"):
        load_image(tmp_path / "x.jpg", 8)


PLUGIN = '''
import numpy as np
from raytaskaff.data.plugin import Skip

FIELDS = [{"name": "rgb", "kind": "image", "dtype": "uint8", "shape": [8, 8, 3]},
          {"name": "label", "kind": "class_label", "dtype": "uint8", "shape": [1], "classes": 4}]
GROUP = "scene"
META = {"frame": "int32"}


def samples():
    for i in range(24):
        split = "train" if i < 16 else "val" if i < 20 else "test"
        if i == 5:
            yield split, "s1", Skip("frame 5 is blank")
            continue
        shape = (8, 8, 3) if i != 9 else (4, 4, 3)  # one sample of the wrong size
        yield split, f"s{i // 4}", {"rgb": np.full(shape, i, np.uint8), "label": np.array([i % 4], np.uint8)}, {"frame": i}
'''


def test_the_plugin_converter(tmp_path):
    (tmp_path / "my_data.py").write_text(PLUGIN)
    done = _cli("plugin", "--module", str(tmp_path / "my_data.py"), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "skipped samples (2):" in done.stdout and "frame 5 is blank" in done.stdout and "rgb: shape (4, 4, 3)" in done.stdout
    manifest = Manifest.load(tmp_path / "out")
    assert manifest.group == "scene" and manifest.meta == {"frame": "int32"} and manifest.field("label").classes == 4
    data = SplitData.open(tmp_path / "out", "train")
    assert list(data.meta("frame")) == [i for i in range(16) if i not in (5, 9)]
    assert next(data.batches(14))["label"][:, 0].tolist() == [i % 4 for i in range(16) if i not in (5, 9)]


@pytest.mark.parametrize("text,message", [
    ("FIELDS = []\n", "defines no samples"),
    ("raise ImportError('no such package: pydicom')\n", "failed to import: ImportError: no such package: pydicom"),
    ("FIELDS = [{'name': 'x', 'kind': 'scalar', 'dtype': 'float32', 'shape': [1]}]\ndef samples():\n    yield from ()\n",
     "FIELDS declares no image field"),
    (PLUGIN.replace('"classes": 4', '"classes": 1'), "FIELDS[1]: field label: a class_label field needs classes >= 2"),
    (PLUGIN.replace("if i == 5:", "if i == 3:\n            raise RuntimeError('disk gone')\n        if i == 5:"),
     "samples() failed: RuntimeError: disk gone"),
])
def test_a_bad_plugin_is_one_line(tmp_path, text, message):
    (tmp_path / "my_data.py").write_text(text)
    done = _cli("plugin", "--module", str(tmp_path / "my_data.py"), "--out", str(tmp_path / "out"))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "out").exists()
