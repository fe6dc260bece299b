"""Convert "image files + a table of labels" into shards of declared fields, CelebA's files included.

    python -m raytaskaff.data folder --images DIR --labels FILE --split FILE --group COLUMN|FILE --size S --out DIR

Labels: a CSV (a header row; the image file name in the first column, or one named `image`,
`file` or `filename`) or CelebA's `list_attr_celeba.txt` (a count line, a line of attribute names,
then `<file> <value> ...` rows separated by spaces). Label columns become fields: columns whose
values are all two of -1/0/1 form one `multi_label` field `attributes` (-1 and 0 read as 0, 1 as
1; the column names are its entry names), other integer columns each a `class_label`, any other
numeric column a `scalar`. Every label must be a finite number: a row with an empty, NaN or
infinite label stops the conversion (leave the row out of the table to leave its image out). The
converter's own columns (`rgb`, `attributes`, `split`, `group`, `image`) cannot be label columns,
nor can two columns that make the same field name. A label that holds one value in every converted
sample is reported as a warning: it cannot be learned beyond chance. The group (what no two splits
share: CelebA's identity) is a column of the table or a file of `<file> <group>` lines
(`identity_CelebA.txt`); without one each image is its own group. The split is a file of
`<file> <split>` lines, split 0/1/2 or train/val/test (`list_eval_partition.txt`), or without one a
seeded draw of whole groups (80/10/10).

Every image is decoded to 8-bit RGB (`to_rgb` says how each Pillow mode is, exactly), cropped to its
centred square and resized (Pillow, bicubic) to S x S. A sample whose image is missing, cannot be
decoded, is not 8-bit (16-bit, 32-bit, float) or is larger than Pillow's guard against
decompression bombs, or which the split file does not list, is skipped and listed in the summary
(`conversion_summary.json` beside the shards); labels are joined by file name, so they never shift
from one sample to another.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from raytaskaff import __version__
from raytaskaff.data.fields import Field
from raytaskaff.data.shards import ShardWriter
from raytaskaff.errors import DataError

SUMMARY_FILE = "conversion_summary.json"
SPLIT_NAMES = {"0": "train", "1": "val", "2": "test", "train": "train", "val": "val", "valid": "val", "test": "test"}
NAME_COLUMNS = ("image", "file", "filename", "image_id")
#: The columns the converter writes itself (image, multi-label field, meta): no label column may take their names.
OWN_COLUMNS = ("rgb", "attributes", "split", "group", "image")


@dataclass(frozen=True)
class Summary:
    """What a conversion wrote and what it skipped: (file, reason) per skipped sample."""

    source: str
    out: str
    size: int
    fields: tuple[str, ...]
    per_split: dict
    groups: int
    skipped: tuple[tuple[str, str], ...]
    shared_groups: int = 0
    constant: tuple[str, ...] = ()  # "name = value" of each label entry that holds one value in every sample

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def format(self, limit: int = 10) -> str:
        total = sum(self.per_split.values())
        lines = [f"converted {total} samples of {self.groups} groups from {self.source} at {self.size}x{self.size} into {self.out}",
                 "  " + ", ".join(f"{s}: {self.per_split.get(s, 0)}" for s in ("train", "val", "test")),
                 "  fields: " + ", ".join(self.fields)]
        if self.shared_groups:
            lines.append(f"  warning: {self.shared_groups} groups have samples in more than one split (the split file says so)")
        if self.constant:
            lines.append(f"  warning: {len(self.constant)} labels hold one value in every sample, so they cannot be learned "
                         f"beyond chance: {', '.join(self.constant)}")
        if self.skipped:
            lines.append(f"  skipped samples ({len(self.skipped)}):")
            lines += [f"    {name}: {why}" for name, why in self.skipped[:limit]]
            if len(self.skipped) > limit:
                lines.append(f"    … and {len(self.skipped) - limit} more (see {SUMMARY_FILE})")
        return "\n".join(lines)


def reasons(skipped: list[tuple[str, str]], limit: int = 3) -> str:
    """The skipped samples' reasons on one line, with counts, most frequent first."""
    counts = Counter(why for _, why in skipped).most_common()
    text = "; ".join(f"{n} × {why}" for why, n in counts[:limit])
    return text + (f"; {len(counts) - limit} other reasons" if len(counts) > limit else "")


def constant_labels(fields: list[Field], rows: list[dict[str, np.ndarray]]) -> tuple[str, ...]:
    """"name = value" of every entry of a per-sample label field (class_label, multi_label, scalar)
    that holds the same value in all `rows` ({field: array of shape field.shape} per sample)."""
    out = []
    for spec in fields:
        if spec.dense or not rows:
            continue
        stacked = np.stack([row[spec.name] for row in rows]).reshape(len(rows), -1)  # (N, K)
        for k in np.flatnonzero((stacked == stacked[:1]).all(axis=0)):
            entry = spec.names[k] if spec.names else spec.name if stacked.shape[1] == 1 else f"{spec.name}[{k}]"
            out.append(f"{entry} = {stacked[0, k]:g}")
    return tuple(out)


def _lines(path: Path) -> list[list[str]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    return [line.split() for line in text.splitlines() if line.strip()]


def read_table(path: str | Path) -> tuple[list[str], dict[str, list[str]]]:
    """(column names, {file name: values}) of a label table: a CSV with a header, or CelebA's
    `list_attr_celeba.txt` layout (count, names, rows)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such label file")
    rows = _lines(path)
    if len(rows) >= 2 and len(rows[0]) == 1 and rows[0][0].isdigit() and "," not in rows[1][0]:
        names, body = rows[1], rows[2:]  # CelebA: "202599", then the names, then "<file> v1 v2 ..."
        table = {}
        for i, row in enumerate(body, start=3):
            if len(row) != len(names) + 1:
                raise DataError(f"{path}: line {i} has {len(row) - 1} values for {len(names)} columns")
            if row[0] in table:
                raise DataError(f"{path}: line {i}: {row[0]} is listed twice")
            table[row[0]] = row[1:]
        return list(names), table
    with path.open(newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{path}: empty label file") from None
        key = next((i for i, h in enumerate(header) if h.lower() in NAME_COLUMNS), 0)
        table = {}
        for i, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: line {i} has {len(row)} values for {len(header)} columns")
            name = row[key].strip()
            if name in table:
                raise DataError(f"{path}: line {i}: {name} is listed twice")
            table[name] = [v.strip() for j, v in enumerate(row) if j != key]
    return [h for j, h in enumerate(header) if j != key], table


def read_pairs(path: str | Path, what: str) -> dict[str, str]:
    """{file name: value} of a file of `<file> <value>` lines (spaces or a comma between)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what} file")
    out = {}
    for i, row in enumerate(_lines(path), start=1):
        row = row[0].split(",") if len(row) == 1 else row
        if len(row) != 2:
            raise DataError(f"{path}: line {i}: expected '<file> <{what}>', got {' '.join(row)!r}")
        out[row[0]] = row[1]
    return out


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def label_fields(columns: list[str], table: dict[str, list[str]], skip: set[str],
                 where: str = "labels") -> tuple[list[Field], dict]:
    """The fields the label columns make (see the module docstring) and, per file, their arrays.
    `where` (the label file) starts the one-line DataError of a bad column or value."""
    files = list(table)
    made: dict[str, str] = {}
    for c in (c for c in columns if c not in skip):
        name = re.sub(r"\W", "_", c)
        if name in OWN_COLUMNS:
            raise DataError(f"{where}: label column {c!r} takes the name of one of the converter's own columns "
                            f"({', '.join(OWN_COLUMNS)}); rename it")
        if name in made:
            raise DataError(f"{where}: label columns {made[name]!r} and {c!r} would both be field {name!r}; rename one")
        made[name] = c
    values = {c: [table[f][i] for f in files] for i, c in enumerate(columns) if c not in skip}
    numbers = {c: np.array([_number(v) for v in vs]) for c, vs in values.items()}
    for c, x in numbers.items():
        bad = ~np.isfinite(x)
        if bad.any():
            row = int(bad.argmax())
            raise DataError(f"{where}: {files[row]}, column {c!r}: {values[c][row]!r} is not a finite number "
                            "(a label cannot be missing: leave the row out)")
    binary = [c for c, x in numbers.items() if set(np.unique(x)) <= {-1.0, 1.0} or set(np.unique(x)) <= {0.0, 1.0}]
    fields, arrays = [], {f: {} for f in files}
    if binary:
        fields.append(Field("attributes", "multi_label", "uint8", (len(binary),), names=tuple(binary)))
        stacked = (np.stack([numbers[c] for c in binary], axis=1) > 0).astype(np.uint8)  # -1/0 -> 0, 1 -> 1
        for f, row in zip(files, stacked):
            arrays[f]["attributes"] = row
    for c, x in numbers.items():
        if c in binary:
            continue
        name = re.sub(r"\W", "_", c)
        if np.all(x == np.round(x)) and x.min() >= 0 and x.max() < 2**31:
            fields.append(Field(name, "class_label", "int64", (1,), classes=max(int(x.max()) + 1, 2)))
            column = x.astype(np.int64)
        else:
            fields.append(Field(name, "scalar", "float32", (1,)))
            column = x.astype(np.float32)
        for f, v in zip(files, column):
            arrays[f][name] = np.array([v], dtype=column.dtype)
    return fields, arrays


#: Pillow's modes of images wider than 8 bits per channel, which `to_rgb` refuses.
WIDE_MODES = {"I;16": "16-bit", "I;16L": "16-bit", "I;16B": "16-bit", "I;16N": "16-bit", "I": "32-bit integer",
              "F": "floating-point"}


def to_rgb(img: Image.Image) -> Image.Image:
    """`img` as 8-bit RGB, exactly: L and 1-bit (0 -> 0, 1 -> 255) repeated over the three
    channels, a palette looked up, CMYK by Pillow's rule without a colour profile
    (R = (255 - C)(255 - K) / 255), and an alpha channel (RGBA, LA, PA, a palette's transparent
    entry) composited over black: each channel becomes round(c * a / 255), so a fully transparent
    pixel is black whatever colour it stores. DataError for 16-bit, 32-bit and floating-point images,
    which no 8-bit value holds exactly (no scaling is guessed), and for other modes (LAB, HSV)."""
    mode = img.mode
    if mode in WIDE_MODES:
        raise DataError(f"{WIDE_MODES[mode]} image (mode {mode}): only 8-bit images are converted")
    if mode in ("P", "PA", "RGBA", "RGBa", "LA") or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint32)
        return Image.fromarray(((rgba[..., :3] * rgba[..., 3:] + 127) // 255).astype(np.uint8))
    if mode in ("RGB", "RGBX", "L", "1", "CMYK", "YCbCr"):
        return img.convert("RGB")
    raise DataError(f"image mode {mode} is not read (8-bit L, RGB, palette, CMYK and 1-bit images are, with or without alpha)")


def load_image(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the image's centred square, resized; DataError if it cannot be decoded,
    is not 8-bit (see `to_rgb`) or has more pixels than Pillow's guard against decompression bombs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a skip, not a giant decode
            with Image.open(path) as img:
                img = to_rgb(img)
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        return np.asarray(img, dtype=np.uint8).copy()
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"too large ({str(e).split(',')[0]})") from None
    except UnidentifiedImageError:
        raise DataError("cannot decode (not an image file Pillow knows)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot decode ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'})") from None


def _draw_split(group: str, seed: int) -> str:
    """A seeded, stable 80/10/10 draw of a whole group."""
    u = int.from_bytes(hashlib.sha256(f"{seed}/{group}".encode()).digest()[:8], "little") / 2**64
    return "train" if u < 0.8 else "val" if u < 0.9 else "test"


def convert(images: str | Path, labels: str | Path, out: str | Path, size: int, split: str | Path | None = None,
            group: str | None = None, *, seed: int = 0, format: str = "arrow", rows_per_shard: int = 1024,
            overwrite: bool = False) -> Summary:
    """Write the samples of the `images` folder labelled by `labels` as a dataset at `out`."""
    images = Path(images)
    if not images.is_dir():
        raise DataError(f"{images}: no such image folder")
    if (images / "img_align_celeba").is_dir() and not any(images.glob("*.jpg")):
        images = images / "img_align_celeba"  # CelebA's root given for its image folder
    columns, table = read_table(labels)
    if not table:
        raise DataError(f"{labels}: no labelled images")
    groups: dict[str, str]
    skip: set[str] = set()
    if group is None:
        groups = {f: Path(f).stem for f in table}
    elif group in columns:
        groups = {f: row[columns.index(group)] for f, row in table.items()}
        skip = {group}
    elif Path(group).is_file():
        groups = read_pairs(group, "group")
    else:
        raise DataError(f"--group {group}: neither a column of {labels} (it has: {', '.join(columns)}) nor a file")
    splits = None
    if split is not None:
        raw = read_pairs(split, "split")
        unknown = sorted({v for v in raw.values() if v.lower() not in SPLIT_NAMES})
        if unknown:
            raise DataError(f"{split}: unknown split {unknown[0]!r} (known: 0, 1, 2, train, val, test)")
        splits = {f: SPLIT_NAMES[v.lower()] for f, v in raw.items()}
    fields, arrays = label_fields(columns, table, skip, where=str(labels))
    fields = [Field("rgb", "image", "uint8", (size, size, 3))] + fields
    skipped: list[tuple[str, str]] = []
    per_split = {"train": 0, "val": 0, "test": 0}
    seen: dict[str, set[str]] = {}
    written: list[str] = []
    producer = {"source": "folder", "labels": Path(labels).name, "size": size, "converter": __version__}
    with ShardWriter(out, size, fields=fields, group="group", meta={"image": "string"}, format=format,
                     rows_per_shard=rows_per_shard, producer=producer, overwrite=overwrite) as writer:
        for name in sorted(table):
            if name not in groups:
                skipped.append((name, "no group (not in the group file)"))
                continue
            where = splits.get(name) if splits is not None else _draw_split(groups[name], seed)
            if where is None:
                skipped.append((name, "not in the split file"))
                continue
            path = images / name
            if not path.is_file():
                skipped.append((name, "missing image"))
                continue
            try:
                rgb = load_image(path, size)
            except DataError as e:
                skipped.append((name, str(e)))
                continue
            writer.add_sample(where, groups[name], {"rgb": rgb, **arrays[name]}, meta={"image": name})
            per_split[where] += 1
            seen.setdefault(groups[name], set()).add(where)
            written.append(name)
        if not any(per_split.values()):
            raise DataError(f"{images}: no sample could be converted ({len(skipped)} skipped: {reasons(skipped)})")
        summary = Summary(str(images), str(out), size, tuple(f.name for f in fields), per_split, len(seen), tuple(skipped),
                          sum(len(s) > 1 for s in seen.values()), constant_labels(fields, [arrays[n] for n in written]))
        (writer.staging / SUMMARY_FILE).write_text(summary.to_json())  # committed with the shards
    return summary
