"""Reading affinity and ground-truth tables (CSV `target,partner,value`) with clear errors."""

from __future__ import annotations

import csv
import math
import os

from raytaskaff.errors import RaytaskaffError


class TableError(RaytaskaffError):
    """A table file is missing or malformed; the message names the file and the problem."""


def read_table(path: str | os.PathLike, ground_truth: bool = False) -> dict[tuple[str, str], float]:
    """{(target, partner): value} from a CSV with header target,partner,value (other columns ignored).

    ground_truth: an empty (or NaN) value leaves the pair out instead of being an error, and a
    sweep's ground_truth.csv (column `gain` instead of `value`) is read as it is.
    """
    try:
        handle = open(path, newline="")
    except FileNotFoundError:
        raise TableError(f"{path}: no such file") from None
    except OSError as e:
        raise TableError(f"{path}: cannot read ({e.strerror})") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if ground_truth and "value" not in header and "gain" in header:
            header = ["value" if h == "gain" else h for h in header]
        missing = [c for c in ("target", "partner", "value") if c not in header]
        if missing:
            raise TableError(f"{path}: missing column {missing[0]!r} (header: {','.join(header) or 'empty'})")
        reader.fieldnames = header
        table: dict[tuple[str, str], float] = {}
        seen: set[tuple[str, str]] = set()
        for line, row in enumerate(reader, start=2):
            target, partner, text = (row.get(k) for k in ("target", "partner", "value"))
            if target is None or partner is None or text is None:
                raise TableError(f"{path}:{line}: expected target,partner,value")
            target, partner, text = target.strip(), partner.strip(), text.strip()
            if not target or not partner:
                raise TableError(f"{path}:{line}: empty task name")
            if target == partner:
                raise TableError(f"{path}:{line}: target and partner are both {target!r}")
            if (target, partner) in seen:
                raise TableError(f"{path}:{line}: duplicate pair ({target}, {partner})")
            seen.add((target, partner))
            if ground_truth and text.lower() in ("", "nan"):
                continue  # an unknown gain: left out of every statistic
            try:
                value = float(text)
            except ValueError:
                raise TableError(f"{path}:{line}: value {text!r} is not a number") from None
            if not math.isfinite(value):
                raise TableError(f"{path}:{line}: value {text!r} is not a finite number")
            table[target, partner] = value
    return table


def check_tasks(name: str, score: dict, truth: dict) -> None:
    """A score may only name tasks the ground truth knows."""
    known = {t for pair in truth for t in pair}
    unknown = sorted({t for pair in score for t in pair} - known)
    if unknown:
        raise TableError(f"score {name}: task {unknown[0]!r} is not in the ground truth (its tasks: {', '.join(sorted(known))})")
