"""python -m raytaskaff.group: choose task groups from measured networks or from an affinity.

    python -m raytaskaff.group networks --results FILE.csv --budgets 1,1.5,2 [--hoa] [--time-limit S] [--json OUT.json]
    python -m raytaskaff.group affinity --scores FILE.csv [--scorer NAME] --max-groups K [--json OUT.json]

`networks`: FILE has header network,cost,task,val_loss,test_loss (one row per network and task it
solves; test_loss may be empty). For each budget, the set of networks within it that covers
every task with the lowest summed validation loss, scored on test (each task uses the chosen
network best for it on validation). With --hoa, every group of three or more tasks missing from
FILE is added with losses predicted from the pairwise networks (the higher-order approximation).
Exact up to 10 tasks; beyond, the best set found within --time-limit seconds (default 60, shared
by the budgets), with a proven lower bound on the optimum and the gap to it (0 when exact).

`affinity`: FILE is CSV target,partner,value as in `python -m raytaskaff.evaluate` (a sweep's
affinity.csv with --scorer: without it, a file of several scorers is refused with their names; its
ground_truth.csv, or a budgeted sweep's ground_truth_predicted.csv, whose predicted cells the
output counts; or a table with a seed column, read as the mean over seeds). At most K groups covering every task that
maximise TAG's objective: the mean over tasks of the best chosen group's mean affinity onto it.

Bad input is a one-line error and exit code 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from raytaskaff.atomic import check_output, write_text
from raytaskaff.errors import RaytaskaffError, one_line
from raytaskaff.evaluation.tables import TableError, read_table
from raytaskaff.grouping import select_groups
from raytaskaff.grouping.affinity import TAG_SINGLETON
from raytaskaff.grouping.files import read_networks
from raytaskaff.grouping.hoa import select_with_hoa
from raytaskaff.grouping.networks import select_for_budgets

#: At most this many budgets in one call.
MAX_BUDGETS = 1000
#: Seconds the network selection may search, over all budgets, unless --time-limit says otherwise.
DEFAULT_TIME_LIMIT = 60.0


def parse_budgets(text: str) -> list[float]:
    """'1,1.5,2' -> [1.0, 1.5, 2.0]: finite, positive, at most MAX_BUDGETS of them."""
    budgets = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise TableError(f"--budgets: {part.strip()!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise TableError(f"--budgets: {part.strip()!r} must be a positive finite number")
        budgets.append(value)
    if len(budgets) > MAX_BUDGETS:
        raise TableError(f"--budgets: {len(budgets)} budgets, at most {MAX_BUDGETS}")
    return budgets


def networks_command(results: str, budgets: list[float], hoa: bool = False, hoa_cost: float = 1.0,
                     time_limit: float | None = DEFAULT_TIME_LIMIT) -> dict:
    candidates = read_networks(results)
    if hoa:
        selections, predicted = select_with_hoa(candidates, budgets, hoa_cost, time_limit)
    else:
        selections, predicted = select_for_budgets(candidates, budgets, time_limit=time_limit), []
    names = {c.name for c in candidates}
    clash = next((p.name for p in predicted if p.name in names), None)
    if clash:
        raise TableError(f"{results}: a measured network is named {clash!r}, the name of a predicted group")
    predicted_names = {p.name for p in predicted}
    out = []
    for selection in selections:
        entry = selection.as_json()
        entry["predicted"] = [n for n in entry["networks"] if n in predicted_names]
        out.append(entry)
    return {"time_limit": time_limit, "budgets": out}


def affinity_command(scores: str, max_groups: int, scorer: str | None = None, singleton: float = TAG_SINGLETON) -> dict:
    table = read_table(scores, ground_truth=True, scorer=scorer, choose="choose one with --scorer NAME")
    if not table:
        raise TableError(f"{scores}: no affinity values")
    out = {"max_groups": max_groups, **select_groups(table, max_groups, singleton=singleton).as_json()}
    predicted = _predicted_cells(scores)
    if predicted:  # a budgeted sweep's ground_truth_predicted.csv: say that the groups rest on predictions
        out["predicted"] = {"cells": predicted, "of": len(table)}
    return out


def _predicted_cells(path: str) -> int:
    """How many rows of a table with a `predicted` column (a budgeted sweep's
    ground_truth_predicted.csv) are predicted, not measured; 0 without that column."""
    import csv
    import io

    from raytaskaff.evaluation.tables import read_text

    rows = csv.DictReader(io.StringIO(read_text(path), newline=""))
    if "predicted" not in [h.strip() for h in rows.fieldnames or []]:
        return 0
    return sum(str(row.get("predicted", "")).strip().lower() == "true" for row in rows)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _print_networks(result: dict) -> None:
    print("| budget | networks | cost | val total | test total | bound | gap |\n|---|---|---|---|---|---|---|")
    for b in result["budgets"]:
        names = ", ".join(n + (" (predicted)" if n in b["predicted"] else "") for n in b["networks"])
        if not names:
            names = "no set covers every task" if b["exact"] else f"none found in {result['time_limit']:g} s"
        gap = "-" if b["gap"] is None else f"{100 * b['gap']:.2f}%" + ("" if b["exact"] else " (not proven)")
        print(f"| {b['budget']:g} | {names} | {b['cost']:g} | {_fmt(b['val_total'])} | {_fmt(b['test_total'])} "
              f"| {_fmt(b['bound'])} | {gap} |")


def _print_groups(result: dict) -> None:
    print(f"{len(result['groups'])} group(s), objective {result['objective']:.4g}"
          f"{'' if result['exact'] else ' (heuristic search)'}"
          + (f", chosen on predicted affinities ({result['predicted']['cells']} of {result['predicted']['of']} predicted, not measured)"
             if result.get("predicted") else "") + ":")
    for group in result["groups"]:
        served = [t for t, g in result["serving"].items() if g == group]
        print(f"  {' + '.join(group)}   serves {', '.join(served)}")


def _write(path: str, data: dict) -> None:
    write_text(path, json.dumps(data, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raytaskaff.group", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    nets = commands.add_parser("networks", help="network selection under inference budgets (exact up to 10 tasks, anytime beyond)")
    nets.add_argument("--results", required=True, help="CSV network,cost,task,val_loss,test_loss")
    nets.add_argument("--budgets", required=True, help="comma-separated budgets, e.g. 1,1.5,2,2.5")
    nets.add_argument("--hoa", action="store_true", help="add larger groups predicted from the pairs (higher-order approximation)")
    nets.add_argument("--hoa-cost", type=float, default=1.0, help="inference cost of a predicted group (default 1)")
    nets.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="S",
                      help=f"seconds to search beyond 10 tasks, over all budgets (default {DEFAULT_TIME_LIMIT:g}); "
                           "then the best found, its bound and gap")
    aff = commands.add_parser("affinity", help="TAG groups from an affinity table")
    aff.add_argument("--scores", required=True, help="CSV target,partner,value")
    aff.add_argument("--scorer", help="pick this scorer's rows of a table with a scorer column")
    aff.add_argument("--max-groups", required=True, type=int, metavar="K")
    aff.add_argument("--singleton", type=float, default=TAG_SINGLETON, help="score of a task alone (TAG: -1e6)")
    for p in (nets, aff):
        p.add_argument("--json", help="write the result as JSON")
    args = parser.parse_args(argv)
    try:
        if args.json:
            check_output(args.json, "--json")
        if args.command == "networks":
            if not (math.isfinite(args.hoa_cost) and args.hoa_cost >= 0):
                raise TableError(f"--hoa-cost: must be a non-negative finite number, got {args.hoa_cost}")
            if not (math.isfinite(args.time_limit) and args.time_limit > 0):
                raise TableError(f"--time-limit: must be a positive number of seconds, got {args.time_limit}")
            result = networks_command(args.results, parse_budgets(args.budgets), args.hoa, args.hoa_cost, args.time_limit)
        else:
            if args.max_groups < 1:
                raise TableError(f"--max-groups: must be at least 1, got {args.max_groups}")
            result = affinity_command(args.scores, args.max_groups, args.scorer, args.singleton)
    except RaytaskaffError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    if args.json:
        try:
            _write(args.json, result)
        except OSError as e:  # checked above; a disk that fills up meanwhile
            print(f"error: {args.json}: cannot write ({e.strerror or e})", file=sys.stderr)
            return 2
    (_print_networks if args.command == "networks" else _print_groups)(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
