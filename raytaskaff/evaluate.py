"""python -m raytaskaff.evaluate: judge affinity tables computed anywhere against a ground truth.

    python -m raytaskaff.evaluate --ground-truth GT.csv --score NAME=FILE [--score NAME=FILE ...]
                                  [--json OUT.json] [--markdown OUT.md] [--bootstrap N]

Every FILE is a CSV with header target,partner,value; in the ground truth `value` is the gain and
pairs may be missing (or empty): they are left out of correlations and best-partner gains. Task
names are free strings. Malformed input is a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from raytaskaff.errors import RaytaskaffError
from raytaskaff.evaluation.levels import evaluate_score
from raytaskaff.evaluation.tables import TableError, check_tasks, read_table

#: The keys of one scorer in --json (the command's documented schema).
SCHEMA_KEYS = ("pearson", "spearman", "kendall", "ranking_kendall", "hits", "targets", "regret", "best_partner")


def evaluate_files(ground_truth: str, scores: dict[str, str], bootstrap: int = 0) -> dict:
    """{"scorers": {name: {...}}} in the command's schema, plus intervals under "intervals"."""
    truth = read_table(ground_truth, ground_truth=True)
    if not truth:
        raise TableError(f"{ground_truth}: no known gain")
    out, intervals = {}, {}
    for name, path in scores.items():
        score = read_table(path)
        check_tasks(name, score, truth)
        full = evaluate_score(score, truth, bootstrap=bootstrap)
        out[name] = {k: full[k] for k in SCHEMA_KEYS}
        intervals[name] = {k: full[f"{k}_ci"] for k in ("pearson", "spearman", "kendall")}
    return {"scorers": out, "intervals": intervals}


def markdown(result: dict) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| scorer | Pearson | Spearman | Kendall | partner ranking | best partner hits | regret |", "|---|---|---|---|---|---|---|"]
    for name, e in result["scorers"].items():
        lines.append(f"| {name} | {fmt(e['pearson'])} | {fmt(e['spearman'])} | {fmt(e['kendall'])} | {fmt(e['ranking_kendall'])} "
                     f"| {e['hits']}/{e['targets']} | {fmt(e['regret'])} |")
    targets = sorted({t for e in result["scorers"].values() for t in e["best_partner"]})
    lines += ["", "| target | true best | " + " | ".join(result["scorers"]) + " |", "|---|---|" + "---|" * len(result["scorers"])]
    for t in targets:
        first = next(iter(result["scorers"].values()))["best_partner"].get(t, {})
        cells = []
        for e in result["scorers"].values():
            b = e["best_partner"].get(t, {})
            cells.append(f"{', '.join(b.get('chosen', [])) or '-'} ({fmt(b.get('chosen_gain'))})")
        lines.append(f"| {t} | {', '.join(first.get('best', [])) or '-'} ({fmt(first.get('best_gain'))}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _score_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name, path


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raytaskaff.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ground-truth", required=True, help="CSV target,partner,value (value = gain)")
    parser.add_argument("--score", action="append", type=_score_arg, required=True, metavar="NAME=FILE")
    parser.add_argument("--json", help="write the results as JSON")
    parser.add_argument("--markdown", help="write the report's tables as Markdown")
    parser.add_argument("--bootstrap", type=int, default=0, help="bootstrap samples for intervals (JSON 'intervals')")
    args = parser.parse_args(argv)
    names = [n for n, _ in args.score]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    try:
        if duplicate:
            raise TableError(f"score {duplicate!r} is given twice")
        result = evaluate_files(args.ground_truth, dict(args.score), max(0, args.bootstrap))
    except RaytaskaffError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        _write(args.json, json.dumps(result, indent=1))
    if args.markdown:
        _write(args.markdown, markdown(result))
    if not args.json and not args.markdown:
        print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
