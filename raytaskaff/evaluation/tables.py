"""Reading affinity and ground-truth tables (CSV `target,partner,value`) with clear errors."""

from __future__ import annotations

import csv
import io
import math
import os

from raytaskaff.errors import RaytaskaffError


class TableError(RaytaskaffError):
    """A table file is missing or malformed; the message names the file and the problem."""


def parse_number(path, line: int, column: str, text: str, empty_ok: bool = False) -> float | None:
    """A finite float from one CSV cell, or a TableError naming file, line, column and text."""
    if empty_ok and text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise TableError(f"{path}:{line}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise TableError(f"{path}:{line}: {column} {text!r} is not a finite number")
    return value


def read_table(path: str | os.PathLike, ground_truth: bool = False, scorer: str | None = None) -> dict[tuple[str, str], float]:
    """{(target, partner): value} from a CSV with header target,partner,value (other columns ignored).

    ground_truth: an empty (or NaN) value leaves the pair out instead of being an error, and a
    sweep's ground_truth.csv (column `gain` instead of `value`) is read as it is.
    scorer: read only the rows of that scorer from a table with a `scorer` column (a sweep's affinity.csv).
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise TableError(f"{path}: no such file") from None
    except OSError as e:
        raise TableError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise TableError(f"{path}: not a text (UTF-8) file") from None
    if "\0" in text:
        raise TableError(f"{path}: not a CSV file (it holds NUL bytes)")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if ground_truth and "value" not in header and "gain" in header:
        header = ["value" if h == "gain" else h for h in header]
    missing = [c for c in ("target", "partner", "value") if c not in header]
    if missing:
        raise TableError(f"{path}: missing column {missing[0]!r} (header: {','.join(header) or 'empty'})")
    if scorer is not None and "scorer" not in header:
        raise TableError(f"{path}: no 'scorer' column to pick {scorer!r} from")
    reader.fieldnames = header
    table: dict[tuple[str, str], float] = {}
    seen: set[tuple[str, str]] = set()
    for line, row in enumerate(reader, start=2):
        if scorer is not None and (row.get("scorer") or "").strip() != scorer:
            continue
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
        table[target, partner] = parse_number(path, line, "value", text)
    if scorer is not None and not seen:
        raise TableError(f"{path}: no rows of scorer {scorer!r}")
    return table


def check_tasks(name: str, score: dict, truth: dict) -> None:
    """A score may only name tasks the ground truth knows."""
    known = {t for pair in truth for t in pair}
    unknown = sorted({t for pair in score for t in pair} - known)
    if unknown:
        raise TableError(f"score {name}: task {unknown[0]!r} is not in the ground truth (its tasks: {', '.join(sorted(known))})")
