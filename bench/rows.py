"""What every benchmark of bench/ measures into, and the one printer of its rows.

A benchmark is a generator of `Row`s: what was measured (`value`, with units), the ratio its aim
judges, and the aim ("<= 1.15", ">= 10", "== 1", optionally followed by a note). Rows without an aim
(aim "-") are context: a rate, a time. `python -m bench.<name>` prints its rows as a table, or as
JSON with --json for `python -m bench`, which prints the rows of every benchmark in one table.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import operator
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass

COMPARE = {"<=": operator.le, ">=": operator.ge, "==": lambda a, b: math.isclose(a, b, rel_tol=1e-9)}
AIM = re.compile(r"(<=|>=|==) *(\d+(?:\.\d+)?)")

RIGHT = ("value", "ratio")  # columns aligned right in plain text
COLUMNS = ("measure", "value", "ratio", "aim")


@dataclass(frozen=True)
class Row:
    """One line of a benchmark: `bench` (its module's name), `measure`, `value` and a `ratio`
    against `aim`; "-" for no aim."""

    bench: str
    measure: str
    value: str
    ratio: float | None = None
    aim: str = "-"

    def __post_init__(self) -> None:
        if self.aim != "-" and not AIM.match(self.aim):
            raise ValueError(f"aim of {self.measure!r} must look like '<= 1.15' or '-', got {self.aim!r}")

    def met(self) -> bool | None:
        """Whether the ratio meets the aim; None where there is no aim or no ratio."""
        match = AIM.match(self.aim)
        if match is None or self.ratio is None:
            return None
        return COMPARE[match[1]](self.ratio, float(match[2]))

    def cells(self) -> dict[str, str]:
        met = self.met()
        return {"bench": self.bench, "measure": self.measure, "value": self.value,
                "ratio": "" if self.ratio is None else f"{self.ratio:.2f}", "aim": self.aim,
                "met": "-" if met is None else "yes" if met else "NO"}


def print_table(rows: Iterable[Row], columns: tuple[str, ...] = COLUMNS, markdown: bool = False) -> None:
    """Print rows under a header: in columns as wide as their longest cell, or as a Markdown table."""
    table = [{c: c for c in columns}] + [row.cells() for row in rows]
    if markdown:
        for i, cells in enumerate(table):
            print("| " + " | ".join(cells[c].strip().replace("|", "\\|") for c in columns) + " |")
            if i == 0:
                print("|" + "---|" * len(columns))
        return
    widths = {c: max(len(cells[c]) for cells in table) for c in columns}
    for cells in table:
        print("  ".join(cells[c].rjust(widths[c]) if c in RIGHT else cells[c].ljust(widths[c]) for c in columns).rstrip())


def bench_parser(name: str, doc: str) -> argparse.ArgumentParser:
    """The command line of `python -m bench.<name>`, with its --json flag."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the rows as one line of JSON (notes go to stderr)")
    return parser


def report(rows: Iterable[Row], as_json: bool) -> None:
    """Print a benchmark's rows as a table, or as JSON on stdout's last line."""
    if not as_json:
        print_table(rows)
        return
    with contextlib.redirect_stdout(sys.stderr):  # notes printed while measuring stay out of the JSON
        rows = list(rows)
    print(json.dumps([dataclasses.asdict(r) for r in rows]))
