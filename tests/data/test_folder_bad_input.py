"""Bad input to the folder and plug-in converters: one line on stderr, exit code 2, nothing written;
images outside 8-bit RGB/L converted exactly or skipped with a reason; SIGTERM cleans up."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raytaskaff.data.fields import Field
from raytaskaff.data.folder import convert
from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import ShardWriter

TIMEOUT_S = 120  # every command here finishes in seconds; a hang fails instead of blocking the suite


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "raytaskaff.data", *args], capture_output=True, text=True, timeout=TIMEOUT_S,
                          check=False)


def _refused(done, out: Path, message: str) -> None:
    """Exit code 2, one `error:` line holding `message`, and nothing at or beside `out`."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert message in lines[0], lines[0]
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))


def _folder(tmp_path: Path, header: str, rows: list[str]) -> list[str]:
    """Six 8 x 8 images 0.png..5.png and labels.csv (`header`, then `rows` after each file name);
    the CLI arguments that convert them into tmp_path/out."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(len(rows)):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(images / f"{i}.png")
    (tmp_path / "labels.csv").write_text("\n".join([header] + [f"{i}.png,{row}" for i, row in enumerate(rows)]) + "\n")
    return ["folder", "--images", str(images), "--labels", str(tmp_path / "labels.csv"), "--size", "8", "--out", str(tmp_path / "out")]


@pytest.mark.parametrize("column", ["rgb", "split", "group", "image", "attributes"])
def test_a_label_column_named_like_a_column_of_the_converter_is_refused(tmp_path, column):
    args = _folder(tmp_path, f"file,{column},smiling", [f"{i % 3},{i % 2}" for i in range(6)])
    _refused(_cli(*args), tmp_path / "out", f"label column {column!r} takes the name of one of the converter's own columns")


def test_two_label_columns_that_make_one_field_are_refused(tmp_path):
    args = _folder(tmp_path, "file,mood now,mood_now", [f"{i % 3},{i % 3}" for i in range(6)])
    _refused(_cli(*args), tmp_path / "out", "label columns 'mood now' and 'mood_now' would both be field 'mood_now'")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "", "old"])
def test_a_label_that_is_not_a_finite_number_is_refused_with_its_row_and_column(tmp_path, value):
    ages = ["20.5", "31", "44", value, "18", "60"]
    args = _folder(tmp_path, "file,age,smiling", [f"{age},{i % 2}" for i, age in enumerate(ages)])
    _refused(_cli(*args), tmp_path / "out", f"labels.csv: 3.png, column 'age': {value!r} is not a finite number")


def test_a_constant_label_is_a_warning(tmp_path):
    args = _folder(tmp_path, "file,bald,smiling,mood", [f"0,{i % 2},2" for i in range(6)])
    done = _cli(*args)
    assert done.returncode == 0, done.stderr
    assert ("warning: 2 labels hold one value in every sample, so they cannot be learned beyond chance: bald = 0, mood = 2"
            in done.stdout.splitlines()[-1]), done.stdout
    summary = json.loads((tmp_path / "out" / "conversion_summary.json").read_text())
    assert summary["constant"] == ["bald = 0", "mood = 2"]


def test_a_folder_with_no_convertible_image_counts_its_reasons(tmp_path):
    args = _folder(tmp_path, "file,smiling", [str(i % 2) for i in range(6)])
    for i in range(4):
        (tmp_path / "images" / f"{i}.png").unlink()
    for i in (4, 5):
        Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(tmp_path / "images" / f"{i}.png")
    _refused(_cli(*args), tmp_path / "out", "no sample could be converted (6 skipped: 4 × missing image; "
                                            "2 × 16-bit image (mode I;16): only 8-bit images are converted)")


# --- image modes: 8-bit ones converted exactly (4 x 4 at --size 4: the resize is the identity) ---

def _mode_images(root: Path) -> dict[str, np.ndarray | str]:
    """Images of every mode, each with the (4, 4, 3) RGB it must become, or the reason it is skipped."""
    rng = np.random.default_rng(0)
    out: dict[str, np.ndarray | str] = {}
    rgb = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "rgb.png")
    out["rgb.png"] = rgb
    gray = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    Image.fromarray(gray).save(root / "l.png")
    out["l.png"] = np.repeat(gray[..., None], 3, axis=2)
    bits = np.indices((4, 4)).sum(0) % 2 == 1
    Image.fromarray(bits).save(root / "one.png")  # mode 1
    out["one.png"] = np.repeat(np.where(bits, 255, 0).astype(np.uint8)[..., None], 3, axis=2)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    index = rng.integers(0, 4, (4, 4), dtype=np.uint8)
    p = Image.new("P", (4, 4))
    p.putdata(index.reshape(-1).tolist())
    p.putpalette(palette.reshape(-1).tolist())
    p.save(root / "p.png")
    out["p.png"] = palette[index]
    p.save(root / "p_transparent.png", transparency=1)  # palette entry 1 is transparent: black
    out["p_transparent.png"] = np.where((index == 1)[..., None], 0, palette[index]).astype(np.uint8)
    colour, alpha = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), rng.integers(0, 256, (4, 4, 1), dtype=np.uint8)
    Image.fromarray(np.concatenate([colour, alpha], axis=2)).save(root / "rgba.png")  # (4, 4, 4) uint8: RGBA
    out["rgba.png"] = np.round(colour * (alpha / 255)).astype(np.uint8)  # composited over black
    Image.fromarray(np.stack([gray, alpha[..., 0]], axis=2)).save(root / "la.png")  # (4, 4, 2) uint8: LA
    out["la.png"] = np.repeat(np.round(gray * (alpha[..., 0] / 255)).astype(np.uint8)[..., None], 3, axis=2)
    cmyk = rng.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    Image.frombytes("CMYK", (4, 4), cmyk.tobytes()).save(root / "cmyk.tif")
    k = 255 - cmyk[..., 3:].astype(float)
    out["cmyk.tif"] = np.round((255 - cmyk[..., :3].astype(float)) * k / 255).astype(np.uint8)
    Image.fromarray(np.full((4, 4), 1000, np.uint16)).save(root / "i16.png")
    out["i16.png"] = "16-bit image (mode I;16): only 8-bit images are converted"
    Image.fromarray(np.full((4, 4), 70000, np.int32)).save(root / "i32.tif")
    out["i32.tif"] = "32-bit integer image (mode I): only 8-bit images are converted"
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(root / "f.tif")
    out["f.tif"] = "floating-point image (mode F): only 8-bit images are converted"
    return out


def test_image_modes_are_converted_exactly_or_skipped_with_a_reason(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    expected = _mode_images(images)
    (tmp_path / "labels.csv").write_text("file,smiling\n" + "".join(f"{n},{i % 2}\n" for i, n in enumerate(expected)))
    (tmp_path / "split.txt").write_text("".join(f"{n} train\n" for n in expected))
    done = _cli("folder", "--images", str(images), "--labels", str(tmp_path / "labels.csv"), "--split", str(tmp_path / "split.txt"),
                "--size", "4", "--out", str(tmp_path / "out"))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    summary = json.loads((tmp_path / "out" / "conversion_summary.json").read_text())
    assert {name: why for name, why in summary["skipped"]} == {n: v for n, v in expected.items() if isinstance(v, str)}
    data = SplitData.open(tmp_path / "out", "train")
    names = list(data.meta("image"))
    assert sorted(names) == sorted(n for n, v in expected.items() if not isinstance(v, str))
    rgb = data.gather("rgb", np.arange(len(names)))
    for name, pixels in zip(names, rgb):
        np.testing.assert_array_equal(pixels, expected[name], err_msg=name)


def test_an_image_past_the_decompression_bomb_guard_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # warns past 100 pixels, refuses past 200
    images = tmp_path / "images"
    images.mkdir()
    for name, side in (("small.png", 8), ("warned.png", 12), ("refused.png", 16)):
        Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(images / name)
    (tmp_path / "labels.csv").write_text("file,smiling\nsmall.png,0\nwarned.png,1\nrefused.png,1\n")
    summary = convert(images, tmp_path / "labels.csv", tmp_path / "out", 8)
    assert sum(summary.per_split.values()) == 1
    assert dict(summary.skipped) == {"warned.png": "too large (Image size (144 pixels) exceeds limit of 100 pixels)",
                                     "refused.png": "too large (Image size (256 pixels) exceeds limit of 200 pixels)"}


# --- the plug-in converter ---

PLUGIN = '''
import time
import numpy as np
from raytaskaff.data.plugin import Skip

FIELDS = [{"name": "rgb", "kind": "image", "dtype": "uint8", "shape": [8, 8, 3]},
          {"name": "label", "kind": "class_label", "dtype": "uint8", "shape": [1], "classes": 4},
          {"name": "age", "kind": "scalar", "dtype": "float32", "shape": [1]}]
GROUP = "scene"
META = {"frame": "int32"}
N, PAUSE = 24, 0


def samples():
    for i in range(N):
        time.sleep(PAUSE)
        split = "train" if i < 16 else "val" if i < 20 else "test"
        arrays = {"rgb": np.full((8, 8, 3), i % 256, np.uint8), "label": np.array([i % 4], np.uint8),
                  "age": np.array([20 + i], np.float32)}
        yield split, f"s{i // 4}", arrays, {"frame": i}
'''


def _plugin(tmp_path: Path, text: str, *extra: str):
    (tmp_path / "my_data.py").write_text(text)
    return _cli("plugin", "--module", str(tmp_path / "my_data.py"), "--out", str(tmp_path / "out"), *extra)


def test_the_plugin_template_converts(tmp_path):
    done = _plugin(tmp_path, PLUGIN)
    assert done.returncode == 0 and "warning" not in done.stdout, done.stdout + done.stderr
    done = _plugin(tmp_path, PLUGIN.replace("np.array([i % 4], np.uint8)", "np.array([2], np.uint8)"), "--overwrite")
    assert done.returncode == 0 and "cannot be learned beyond chance: label = 2" in done.stdout, done.stdout


@pytest.mark.parametrize("edit,message", [
    # the labels contradict their declaration
    (('np.array([20 + i], np.float32)', 'np.array([np.nan if i == 7 else 20 + i], np.float32)'),
     "sample 7 (group s1): field age holds nan, not a finite number"),
    (('np.array([20 + i], np.float32)', 'np.array([np.inf if i == 7 else 20 + i], np.float32)'),
     "sample 7 (group s1): field age holds inf, not a finite number"),
    (("np.array([i % 4], np.uint8)", "np.array([i % 5], np.uint8)"),
     "sample 4 (group s1): field label holds class id 4, out of range (FIELDS declares classes: 4, ids 0..3)"),
    # columns that collide
    (('GROUP = "scene"', 'GROUP = "frame"'), "META column 'frame' is also the GROUP column"),
    (('GROUP = "scene"', 'GROUP = "split"'), "GROUP 'split' is the converter's split column"),
    (('META = {"frame": "int32"}', 'META = {"split": "string"}'), "META column 'split' is also the converter's split column"),
    (('"name": "age"', '"name": "frame"'), "field 'frame' of FIELDS is also a META column"),
    (('"name": "age"', '"name": "split"'), "field 'split' of FIELDS is also the converter's split column"),
    (('"name": "age"', '"name": "scene"'), "field 'scene' of FIELDS is also the GROUP column"),
    (('"name": "age"', '"name": "label"'), "field 'label' of FIELDS is also another field of FIELDS"),
    # malformed declarations
    (("FIELDS = [", "FIELDS = 3\nNOT = ["), "FIELDS must be a list of field mappings, got int"),
    (('"shape": [1], "classes": 4', '"shape": "one", "classes": 4'), "FIELDS[1] (label): shape must be a list of integers, got 'one'"),
    (('"shape": [1], "classes": 4', '"shape": 1, "classes": 4'), "FIELDS[1] (label): shape must be a list of integers, got 1"),
    (('"shape": [8, 8, 3]', '"shape": [8.0, 8, 3]'), "FIELDS[0] (rgb): shape must be a list of integers, got [8.0, 8, 3]"),
    (('"classes": 4', '"classes": "four"'), "FIELDS[1]: field label: '<' not supported"),
    (('{"name": "age"', '{"name": 7'), "FIELDS[2] must be a mapping with a name"),
    (('META = {"frame": "int32"}', 'META = ["frame"]'), "META must be a mapping {column: Arrow type name}, got list"),
    (('META = {"frame": "int32"}', 'META = {"frame": "int33"}'), "META['frame']: 'int33' is not an Arrow type name"),
    (('META = {"frame": "int32"}', 'META = {"frame": 32}'), "META['frame']: 32 is not an Arrow type name"),
    (('GROUP = "scene"', 'GROUP = 5'), "GROUP must be a column name, got 5"),
])
def test_a_plugin_that_contradicts_itself_is_one_line(tmp_path, edit, message):
    assert PLUGIN.count(edit[0]) == 1
    _refused(_plugin(tmp_path, PLUGIN.replace(*edit)), tmp_path / "out", message)


def test_a_plugin_whose_every_sample_is_skipped_says_why(tmp_path):
    text = PLUGIN.replace('        yield split, f"s{i // 4}", arrays, {"frame": i}', '''\
        if i % 3 == 0:
            yield split, "s0", Skip("blank frame\\n(sensor off)")
        elif i % 3 == 1:
            yield split, "s0", {**arrays, "rgb": arrays["rgb"][:4, :4]}, {"frame": i}
        else:
            yield split, "s0", arrays, {"frame": "late"}''')
    _refused(_plugin(tmp_path, text), tmp_path / "out",
             "no sample was written (24 skipped: 8 × blank frame\\n(sensor off); 8 × rgb: shape (4, 4, 3), expected (8, 8, 3); "
             "8 × meta frame: 'late' is not of type int32)")


# --- interruptions: nothing half-written stays ---

def test_sigterm_mid_write_removes_the_staging_folder_and_keeps_the_old_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text('{"an": "older dataset"}')
    (tmp_path / "my_data.py").write_text(PLUGIN.replace("N, PAUSE = 24, 0", "N, PAUSE = 100_000, 0.001"))
    command = [sys.executable, "-m", "raytaskaff.data", "plugin", "--module", str(tmp_path / "my_data.py"), "--out", str(out),
               "--rows-per-shard", "8", "--overwrite"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob(".out.partial-*/*.arrow"))) < 3:  # mid-write: shards already staged
            assert process.poll() is None and time.monotonic() < deadline, "the conversion ended or staged no shard in 60 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM and stderr.strip().splitlines() == ["terminated: nothing was written"], stderr
    assert not list(tmp_path.glob(".out.*"))
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    assert (out / "manifest.json").read_text() == '{"an": "older dataset"}'


def test_an_interruption_while_the_last_shards_are_written_leaves_no_staging_folder(tmp_path, monkeypatch):
    fields = [Field("rgb", "image", "uint8", (8, 8, 3))]

    def interrupted(self, split):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), ShardWriter(tmp_path / "out", 8, fields=fields, group="scene") as writer:
        writer.add_sample("train", "s0", {"rgb": np.zeros((8, 8, 3), np.uint8)})
        monkeypatch.setattr(ShardWriter, "_flush", interrupted)  # close() flushes the pending rows
    assert list(tmp_path.iterdir()) == []
