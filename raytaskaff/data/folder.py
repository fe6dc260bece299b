"""Convert "image files + a table of labels" into shards of declared fields, CelebA's files included.

    python -m raytaskaff.data folder --images DIR --labels FILE --split FILE --group COLUMN|FILE --size S --out DIR

Labels: a CSV (a header row; the image file name in the first column, or one named `image`,
`file` or `filename`) or CelebA's `list_attr_celeba.txt` (a count line, a line of attribute names,
then `<file> <value> ...` rows separated by spaces). Label columns become fields: columns whose
values are all two of -1/0/1 form one `multi_label` field `attributes` (-1 and 0 read as 0, 1 as
1; the column names are its entry names), other integer columns each a `class_label`, any other
numeric column a `scalar`. The group (what no two splits share: CelebA's identity) is a column of
the table or a file of `<file> <group>` lines (`identity_CelebA.txt`); without one each image is its
own group. The split is a file of `<file> <split>` lines, split 0/1/2 or train/val/test
(`list_eval_partition.txt`), or without one a seeded draw of whole groups (80/10/10).

Every image is decoded to RGB, cropped to its centred square and resized (Pillow, bicubic) to
S x S. A sample whose image is missing or cannot be decoded, or which the split file does not
list, is skipped and listed in the summary (`conversion_summary.json` beside the shards); labels
are joined by file name, so they never shift from one sample to another.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def format(self, limit: int = 10) -> str:
        total = sum(self.per_split.values())
        lines = [f"converted {total} samples of {self.groups} groups from {self.source} at {self.size}x{self.size} into {self.out}",
                 "  " + ", ".join(f"{s}: {self.per_split.get(s, 0)}" for s in ("train", "val", "test")),
                 "  fields: " + ", ".join(self.fields)]
        if self.shared_groups:
            lines.append(f"  warning: {self.shared_groups} groups have samples in more than one split (the split file says so)")
        if self.skipped:
            lines.append(f"  skipped samples ({len(self.skipped)}):")
            lines += [f"    {name}: {why}" for name, why in self.skipped[:limit]]
            if len(self.skipped) > limit:
                lines.append(f"    … and {len(self.skipped) - limit} more (see {SUMMARY_FILE})")
        return "\n".join(lines)


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


def label_fields(columns: list[str], table: dict[str, list[str]], skip: set[str]) -> tuple[list[Field], dict]:
    """The fields the label columns make (see the module docstring) and, per file, their arrays."""
    files = list(table)
    values = {c: [table[f][i] for f in files] for i, c in enumerate(columns) if c not in skip}
    numbers = {c: np.array([_number(v) for v in vs]) for c, vs in values.items()}
    bad = [c for c, x in numbers.items() if np.isnan(x).any()]
    if bad:
        raise DataError(f"label column {bad[0]!r} holds a value that is not a number "
                        f"({values[bad[0]][int(np.isnan(numbers[bad[0]]).argmax())]!r})")
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


def load_image(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the image's centred square, resized; DataError if it cannot be decoded."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
            return np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
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
    fields, arrays = label_fields(columns, table, skip)
    fields = [Field("rgb", "image", "uint8", (size, size, 3))] + fields
    skipped: list[tuple[str, str]] = []
    per_split = {"train": 0, "val": 0, "test": 0}
    seen: dict[str, set[str]] = {}
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
        if not any(per_split.values()):
            raise DataError(f"{images}: no sample could be converted ({len(skipped)} skipped, e.g. {skipped[0][0]}: {skipped[0][1]})")
        summary = Summary(str(images), str(out), size, tuple(f.name for f in fields), per_split, len(seen), tuple(skipped),
                          sum(len(s) > 1 for s in seen.values()))
        (writer.staging / SUMMARY_FILE).write_text(summary.to_json())  # committed with the shards
    return summary
