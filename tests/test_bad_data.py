"""A sweep over damaged data stops before Ray starts: one line naming the problem, exit code 2,
nothing written."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from raytaskaff.data.shards import MANIFEST, Manifest, _sha256, read_shard


def _flip_a_byte(root, manifest):
    path = root / manifest.shards[0].file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return f"{path}: checksum mismatch"


def _truncate(root, manifest):
    path = root / manifest.shards[-1].file
    path.write_bytes(path.read_bytes()[:-10])
    return f"{path}: {manifest.shards[-1].bytes - 10} bytes, manifest says {manifest.shards[-1].bytes} (truncated or replaced)"


def _class_out_of_range(root, manifest):
    """A semantic label of 99 in an otherwise consistent shard (manifest size and checksum updated)."""
    shard = manifest.shards[0]
    path = root / shard.file
    table = read_shard(root, shard, manifest)
    labels = np.stack(table.column("segment_semantic").to_numpy(zero_copy_only=False)).copy()
    labels[1, 3] = 99
    column = pa.FixedSizeListArray.from_arrays(pa.array(labels.ravel()), labels.shape[1])
    table = table.set_column(table.schema.get_field_index("segment_semantic"), "segment_semantic", column)
    with ipc.new_file(tmp := path.with_name("replacement"), table.schema) as w:  # the table maps the old file
        w.write_table(table)
    tmp.replace(path)
    data = json.loads((root / MANIFEST).read_text())
    data["shards"][0].update(bytes=path.stat().st_size, sha256=_sha256(path))
    (root / MANIFEST).write_text(json.dumps(data))
    return f"{path}: segment_semantic of row 1"


def _manifest_miscounts(root, manifest):
    data = json.loads((root / MANIFEST).read_text())
    data["splits"]["val"]["count"] += 1
    (root / MANIFEST).write_text(json.dumps(data))
    return "split val counts"


def _no_dataset(root, manifest):
    shutil.rmtree(root)
    return str(root)


@pytest.mark.parametrize("damage", [_flip_a_byte, _truncate, _class_out_of_range, _manifest_miscounts, _no_dataset])
def test_damaged_data_stops_the_sweep_in_one_line(tiny_dataset, tmp_path, damage):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    expected = damage(root, Manifest.load(tiny_dataset))
    out = tmp_path / "out"
    config = tmp_path / "sweep.yaml"
    config.write_text(f"data: {{kind: shards, path: {root}}}\ntasks: [segment_semantic, normal]\nseeds: [0]\n"
                      f"scorers: {{td: {{}}}}\nout: {out}\n")
    result = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(config)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not out.exists()  # nothing written, not even the output directory
