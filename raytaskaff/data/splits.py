"""Which Taskonomy buildings are train, validation and test.

A split is a mapping building -> "train" | "val" | "test". Two are built in (`paper`, `tiny`);
anything else comes from a file. Splitting by building keeps views of one scene out of two splits.
"""

from __future__ import annotations

import re
from pathlib import Path

from raytaskaff.errors import DataError

SPLITS = ("train", "val", "test")

#: The reference study's split (shared/DESIGN.md): 58 / 10 / 4 buildings.
PAPER_SPLIT: dict[str, tuple[str, ...]] = {
    "train": tuple("""
        adairsville airport albertville anaheim ancor andover annona arkansaw athens bautista bohemia
        bonesteel bonnie broseley browntown byers scioto nuevo goodfield donaldson hanson merom klickitat
        onaga leonardo marstons newfields pinesdale lakeville cosmos benevolence pomaria tolstoy shelbyville
        allensville wainscott beechwood coffeen stockman hiteman woodbine lindenwood forkland mifflinburg
        ranchester springerville swisshome westfield willow winooski hainesburg irvine pearce thrall
        tilghmanton uvalda sugarville silas
    """.split()),
    "val": tuple("corozal collierville markleeville darden chilhowie churchton cauthron cousins timberon wando"
                 .split()),
    "test": tuple("ihlen muleshoe noxapater mcdade".split()),
}

#: Taskonomy's official tiny split, 25 / 5 / 5 buildings, copied from EPFL-VILAB/omnidata
#: omnidata_tools/dataset/starter_dataset/component_datasets/taskonomy/train_val_test_tiny.csv.
#: `woodbine` is missing from omnitools downloads and `wiconisco`'s edge_texture tar holds corrupt
#: PNGs (taskonomy-format.md, section 14): conversions of this split report both.
TINY_SPLIT: dict[str, tuple[str, ...]] = {
    "train": tuple("""
        hanson merom klickitat onaga leonardo marstons newfields pinesdale lakeville cosmos benevolence
        pomaria tolstoy shelbyville allensville wainscott beechwood coffeen stockman hiteman woodbine
        lindenwood forkland mifflinburg ranchester
    """.split()),
    "val": ("wiconisco", "corozal", "collierville", "markleeville", "darden"),
    "test": ("ihlen", "muleshoe", "uvalda", "noxapater", "mcdade"),
}

NAMED_SPLITS = {"paper": PAPER_SPLIT, "tiny": TINY_SPLIT}

_FLAGS = {"1": True, "0": False, "1.0": True, "0.0": False, "true": True, "false": False}
_SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "test"}


def by_building(split: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Invert {split: buildings} into {building: split}."""
    return {building: name for name, buildings in split.items() for building in buildings}


def load_split(spec: str) -> dict[str, str]:
    """Building -> split for `paper`, `tiny`, or a split FILE.

    A file is either Omnidata's CSV (header `id,train,val,test`, one row per building with 0/1
    flags; a row with no flag set leaves the building out) or lines `building,split` (comma, tab
    or spaces; an optional `building,split` header; `#` comments). Any line ending is accepted:
    Omnidata's Taskonomy CSVs end lines with a bare carriage return. Raises DataError naming the
    file and line for anything malformed.
    """
    if spec in NAMED_SPLITS:
        return by_building(NAMED_SPLITS[spec])
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"unknown split {spec!r}: not one of {', '.join(NAMED_SPLITS)} nor an existing file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable split file ({e})") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise DataError(f"{path}: empty split file")
    header = [field.strip().lower() for field in lines[0][1].split(",")]
    parse = _pair
    if header == ["id", *SPLITS]:
        parse, lines = _flags, lines[1:]
    elif header == ["building", "split"]:
        lines = lines[1:]
    result: dict[str, str] = {}
    for n, line in lines:
        try:
            building, split = parse(line)
        except ValueError as e:
            raise DataError(f"{path}:{n}: {e}") from None
        if split is None:
            continue
        if result.get(building, split) != split:
            raise DataError(f"{path}:{n}: building {building!r} is already in split {result[building]!r}")
        result[building] = split
    if not result:
        raise DataError(f"{path}: no building is assigned to a split")
    return result


def _flags(line: str) -> tuple[str, str | None]:
    fields = [field.strip() for field in line.split(",")]
    if len(fields) != 4 or not fields[0]:
        raise ValueError(f"expected 'id,train,val,test', got {line!r}")
    try:
        flags = [_FLAGS[field.lower()] for field in fields[1:]]
    except KeyError:
        raise ValueError(f"flags must be 0 or 1, got {line!r}") from None
    if sum(flags) > 1:
        raise ValueError(f"building {fields[0]!r} is flagged for more than one split")
    return fields[0], next((name for name, flag in zip(SPLITS, flags) if flag), None)


def _pair(line: str) -> tuple[str, str]:
    fields = [field for field in re.split(r"[,\s]+", line) if field]
    if len(fields) != 2:
        raise ValueError(f"expected 'building,split', got {line!r}")
    split = _SPLIT_NAMES.get(fields[1].lower())
    if split is None:
        raise ValueError(f"unknown split {fields[1]!r} (known: {', '.join(SPLITS)})")
    return fields[0], split


def check_assignment(assignment: dict[str, str]) -> dict[str, str]:
    """Validate a building -> split mapping given directly (not from a file)."""
    if not assignment:
        raise DataError("the split assigns no building")
    for building, split in assignment.items():
        if split not in SPLITS:
            raise DataError(f"building {building!r}: unknown split {split!r} (known: {', '.join(SPLITS)})")
    return dict(assignment)
