"""Reading candidate networks (CSV `network,cost,task,val_loss,test_loss`) with clear errors."""

from __future__ import annotations

import csv
import os

from raytaskaff.evaluation.tables import TableError, parse_number
from raytaskaff.grouping.networks import Network

NETWORK_COLUMNS = ("network", "cost", "task", "val_loss", "test_loss")


def read_networks(path: str | os.PathLike) -> list[Network]:
    """The candidates of a networks CSV, in the order they first appear.

    One row per network and task it solves; `cost` is the network's inference cost (>= 0, the
    same on each of its rows); `test_loss` may be empty (unknown).
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: Excel's byte-order mark
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise TableError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TableError(f"{path}: cannot read as CSV ({e})") from None
    if not rows:
        raise TableError(f"{path}: empty file (expected header {','.join(NETWORK_COLUMNS)})")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in NETWORK_COLUMNS if c not in header]
    if missing:
        raise TableError(f"{path}: missing column {missing[0]!r} (header: {','.join(header) or 'empty'})")
    col = {c: header.index(c) for c in NETWORK_COLUMNS}
    costs: dict[str, float] = {}
    val: dict[str, dict[str, float]] = {}
    test: dict[str, dict[str, float | None]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise TableError(f"{path}:{line}: expected {len(header)} fields, got {len(row)}")
        network, cost, task, val_text, test_text = (row[col[c]].strip() for c in NETWORK_COLUMNS)
        if not network or not task:
            raise TableError(f"{path}:{line}: empty {'network' if not network else 'task'} name")
        cost_value = parse_number(path, line, "cost", cost)
        if cost_value < 0:
            raise TableError(f"{path}:{line}: cost {cost!r} is negative")
        if costs.setdefault(network, cost_value) != cost_value:
            raise TableError(f"{path}:{line}: network {network!r} has cost {cost_value:g} here and {costs[network]:g} above")
        if task in val.setdefault(network, {}):
            raise TableError(f"{path}:{line}: network {network!r} lists task {task!r} twice")
        val[network][task] = parse_number(path, line, "val_loss", val_text)
        test.setdefault(network, {})[task] = parse_number(path, line, "test_loss", test_text, empty_ok=True)
    if not val:
        raise TableError(f"{path}: no networks (only a header)")
    return [Network(name, costs[name], val[name], test[name]) for name in val]
