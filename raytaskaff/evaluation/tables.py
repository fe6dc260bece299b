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


def read_text(path: str | os.PathLike) -> str:
    """A CSV file's text (UTF-8, a leading byte-order mark as Excel writes it dropped), or a
    TableError saying why it cannot be read."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise TableError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TableError(f"{path}: is a directory, not a CSV file") from None
    except OSError as e:
        raise TableError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise TableError(f"{path}: not a text (UTF-8) file") from None
    if "\0" in text:
        raise TableError(f"{path}: not a CSV file (it holds NUL bytes)")
    return text


def read_tables(path: str | os.PathLike, ground_truth: bool = False, scorer: str | None = None, by_name: str | None = None,
                choose: str = "choose one of them") -> dict[int | None, dict[tuple[str, str], float]]:
    """{seed: {(target, partner): value}} from a CSV with header target,partner,value (other
    columns ignored); the one key is None when the file has no `seed` column.

    ground_truth: an empty (or NaN) value leaves the pair out instead of being an error, and a
    sweep's ground_truth.csv or gains_per_seed.csv (column `gain` instead of `value`) is read as it is.
    scorer: read only the rows of that scorer from a table with a `scorer` column (a sweep's
    affinity.csv). Without it, a table holding several scorers is refused with their names and
    `choose` (how the caller picks one).
    by_name: the scorer to read when the table has a `scorer` column (evaluate's NAME=FILE); a
    table without one is read whole.
    """
    text = read_text(path)
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
    if by_name is not None and scorer is None and "scorer" in header:
        scorer = by_name
    rows = list(enumerate(reader, start=2))
    if "scorer" in header:
        names = sorted({(row.get("scorer") or "").strip() for _, row in rows})
        if scorer is None and len(names) > 1:
            raise TableError(f"{path}: holds the tables of {len(names)} scorers ({', '.join(names)}): {choose}")
        if scorer is not None and scorer not in names:
            raise TableError(f"{path}: no rows of scorer {scorer!r} (it holds {', '.join(names) or 'none'})")
    by_seed = "seed" in header
    tables: dict[int | None, dict[tuple[str, str], float]] = {}
    seen: set[tuple] = set()
    for line, row in rows:
        if scorer is not None and (row.get("scorer") or "").strip() != scorer:
            continue
        target, partner, text = (row.get(k) for k in ("target", "partner", "value"))
        if target is None or partner is None or text is None:
            raise TableError(f"{path}:{line}: expected target,partner,value")
        target, partner, text = target.strip(), partner.strip(), text.strip()
        seed = parse_seed(path, line, row.get("seed")) if by_seed else None
        if not target or not partner:
            raise TableError(f"{path}:{line}: empty task name")
        if target == partner:
            raise TableError(f"{path}:{line}: target and partner are both {target!r}")
        if (seed, target, partner) in seen:
            raise TableError(f"{path}:{line}: duplicate pair ({target}, {partner})" + (f" of seed {seed}" if by_seed else ""))
        seen.add((seed, target, partner))
        table = tables.setdefault(seed, {})
        if ground_truth and text.lower() in ("", "nan"):
            continue  # an unknown gain: left out of every statistic
        table[target, partner] = parse_number(path, line, "value", text)
    return tables or {None: {}}


def parse_seed(path, line: int, text: str | None) -> int:
    """An integer seed from one CSV cell, or a TableError naming file, line and text."""
    try:
        return int((text or "").strip())
    except ValueError:
        raise TableError(f"{path}:{line}: seed {(text or '').strip()!r} is not an integer") from None


def pair_table(frame, column: str) -> dict[tuple[str, str], float]:
    """{(target, partner): value} of a long table (a DataFrame with target, partner and `column`)."""
    return {(r.target, r.partner): getattr(r, column) for r in frame.itertuples()}


def seed_tables(frame, column: str) -> dict[int, dict[tuple[str, str], float]]:
    """{seed: {(target, partner): value}} of a long table with a seed column."""
    return {int(seed): pair_table(rows, column) for seed, rows in frame.groupby("seed")}


def mean_table(tables: dict) -> dict[tuple[str, str], float]:
    """The mean over seeds of {seed: table}, each pair over the seeds that know it."""
    keys = set().union(*tables.values()) if tables else set()
    return {k: sum(t[k] for t in tables.values() if k in t) / sum(k in t for t in tables.values()) for k in sorted(keys)}


def read_table(path: str | os.PathLike, ground_truth: bool = False, scorer: str | None = None, **options) -> dict[tuple[str, str], float]:
    """{(target, partner): value} as `read_tables` reads it (same options); a table with a seed
    column gives the mean over its seeds."""
    return mean_table(read_tables(path, ground_truth, scorer, **options))


def check_tasks(name: str, score: dict, truth: dict) -> None:
    """A score may only name tasks the ground truth knows."""
    known = {t for pair in truth for t in pair}
    unknown = sorted({t for pair in score for t in pair} - known)
    if unknown:
        raise TableError(f"score {name}: task {unknown[0]!r} is not in the ground truth (its tasks: {', '.join(sorted(known))})")
