"""python -m raytaskaff.evaluate: judge affinity tables computed anywhere against a ground truth.

    python -m raytaskaff.evaluate --ground-truth GT.csv --score NAME=FILE [--score NAME=FILE ...]
                                  [--json OUT.json] [--markdown OUT.md] [--bootstrap N]

Every FILE is a CSV with header target,partner,value; in the ground truth `value` is the gain and
pairs may be missing (or empty): they are left out of correlations and best-partner gains. Task
names are free strings. A file with a `scorer` column (a sweep's affinity.csv) gives NAME's rows.
A file with a `seed` column holds one table per seed (a sweep's gains_per_seed.csv,
affinity_per_seed.csv): the table is their mean, the noise ceiling and seed stability are
measured, and the bootstrap resamples seeds too. --bootstrap N > 0 adds intervals and the paired
comparison of every two scores ("comparisons"). Coverage (pairs and targets scored out of those
known) is given for every score; partial coverage and a ground truth that cannot rank (constant,
tied) are warned about on stderr and under "warnings". An asymmetric score is also read
transposed ("orientation": its Spearman as value(partner, target), and with --bootstrap whether
that agrees significantly better, which is warned about too). Partner dependence (how much of
each table the target alone explains; the ground truth's on each seed too) and the cost-accuracy
frontier (costs unknown) are computed as a sweep computes them. Malformed input is a one-line
error and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from raytaskaff.atomic import check_output, write_text
from raytaskaff.errors import RaytaskaffError, one_line
from raytaskaff.evaluation.summary import evaluate_all, evaluation_frontier
from raytaskaff.evaluation.tables import TableError, check_tasks, mean_table, read_tables
from raytaskaff.report.document import Block, Paragraph, Table, Warnings, fmt, to_markdown

#: The keys of one scorer in --json (the command's documented schema).
SCHEMA_KEYS = ("pearson", "spearman", "kendall", "ranking_kendall", "hits", "targets", "undecidable", "regret", "coverage",
               "orientation", "warnings", "best_partner")


def evaluate_files(ground_truth: str, scores: dict[str, str], bootstrap: int = 0) -> dict:
    """The command's JSON: headline, warnings, scorers {name: {...}}, intervals, comparisons,
    stability, noise_ceiling, reference, partner_dependence and frontier (the keys of a sweep's
    evaluation.json of those names, computed by the same functions; the frontier knows no costs)."""
    truth_tables = read_tables(ground_truth, ground_truth=True)
    truth = mean_table(truth_tables)
    if not truth:
        raise TableError(f"{ground_truth}: no known gain")
    seeded_truth = None not in truth_tables
    truth_per_seed = truth_tables if seeded_truth else {0: truth}
    tables, per_seed = {}, {}
    for name, path in scores.items():
        by_seed = read_tables(path, by_name=name)
        tables[name] = mean_table(by_seed)
        check_tasks(name, tables[name], truth)
        if None not in by_seed and seeded_truth:
            extra = sorted(set(by_seed) - set(truth_tables))
            if extra:
                raise TableError(f"score {name}: seed {extra[0]} is not a seed of the ground truth "
                                 f"(its seeds: {', '.join(map(str, sorted(truth_tables)))})")
            per_seed[name] = by_seed
    judged = evaluate_all(truth_per_seed, tables, per_seed, bootstrap=bootstrap)
    return {"headline": judged["headline"], "warnings": judged["warnings"],
            "scorers": {name: {k: e[k] for k in SCHEMA_KEYS} for name, e in judged["scorers"].items()},
            "intervals": {name: {k: e[f"{k}_ci"] for k in ("pearson", "spearman", "kendall")} for name, e in judged["scorers"].items()},
            "comparisons": judged["comparisons"], "stability": judged["stability"],
            "noise_ceiling": judged["noise_ceiling"], "reference": judged["reference"],
            "partner_dependence": judged["partner_dependence"],
            "frontier": evaluation_frontier(judged, truth, tables, bootstrap)}


def _scorers_table(result: dict) -> Table:
    """Every score on the four levels with its coverage; the noise ceiling's rows below them."""
    rows = [[name, fmt(e["pearson"], 3), fmt(e["spearman"], 3), fmt(e["kendall"], 3), fmt(e["ranking_kendall"], 3),
             f"{e['hits']}/{e['targets']}", str(e["undecidable"]), fmt(e["regret"], 3),
             f"{e['coverage']['pairs']}/{e['coverage']['pairs_known']}", f"{e['coverage']['targets']}/{e['coverage']['targets_known']}"]
            for name, e in result["scorers"].items()]
    ceiling = result.get("noise_ceiling")
    if not ceiling:
        rows.append(["noise ceiling", "not measured: the ground truth has one seed (give it a seed column)"])
    for label, key in (("noise ceiling (one seed)", "single_seed"), ("noise ceiling (split-half)", "split_half")) if ceiling else ():
        c = ceiling.get(key) or {}
        rows.append([label, *(fmt(c.get(k), 3) for k in ("pearson", "spearman", "kendall", "ranking_kendall")), "-", "-",
                     fmt(c.get("regret"), 3), "-", "-"])
    return Table(["scorer", "Pearson", "Spearman", "Kendall", "partner ranking", "best partner hits", "undecidable", "regret",
                  "pairs scored", "targets scored"], rows)


def _best_partner_table(scorers: dict) -> Table:
    """A row per target: its true best partner(s), then each score's choice, with their gains."""
    def chosen(names: list[str], gain) -> str:
        return f"{', '.join(names) or '-'} ({fmt(gain, 3)})"

    first = next(iter(scorers.values()))["best_partner"]
    rows = []
    for t in sorted({t for e in scorers.values() for t in e["best_partner"]}):
        truth = first.get(t, {})
        best = chosen(truth.get("best", []), truth.get("best_gain")) + (" undecidable" if truth.get("undecidable") else "")
        rows.append([t, best] + [chosen(b.get("chosen", []), b.get("chosen_gain")) for b in (e["best_partner"].get(t, {}) for e in scorers.values())])
    return Table(["target", "true best", *scorers], rows)


def _comparisons_table(comparisons: list[dict]) -> Table:
    def ci(c: dict, k: str) -> str:
        return "-" if c[k] is None else f"[{c[k][0]:.3f}, {c[k][1]:.3f}]"

    return Table(["a", "b", "Spearman a - b", "95% CI", "significant", "hits a - b", "95% CI", "significant"],
                 [[c["a"], c["b"], fmt(c["spearman_diff"], 3), ci(c, "spearman_ci"), fmt(c["spearman_significant"], 3),
                   str(c["hits_diff"]), ci(c, "hits_ci"), fmt(c["hits_significant"], 3)] for c in comparisons])


def document(result: dict) -> list[Block]:
    """The command's Markdown as a document: the headline, the warnings and its tables."""
    blocks = [Paragraph(result["headline"]), Warnings(result["warnings"]), _scorers_table(result), _best_partner_table(result["scorers"])]
    if result["comparisons"]:
        blocks.append(_comparisons_table(result["comparisons"]))
    seeded = {name: st for name, st in result["stability"].items() if st["seeds"] >= 2}
    if seeded:
        blocks.append(Table(["table", "seeds", "mean Spearman between seeds"],
                            [[name, str(st["seeds"]), fmt(st["mean_spearman"], 3)] for name, st in seeded.items()]))
    from raytaskaff.report.render import partner_section  # the report's own section (imports matplotlib)

    section = partner_section(result["partner_dependence"])
    return blocks + ([section] if section else [])


def markdown(result: dict) -> str:
    return to_markdown(document(result))


def _score_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name, path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raytaskaff.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ground-truth", required=True, help="CSV target,partner,value (value = gain)")
    parser.add_argument("--score", action="append", type=_score_arg, required=True, metavar="NAME=FILE")
    parser.add_argument("--json", help="write the results as JSON")
    parser.add_argument("--markdown", help="write the report's tables as Markdown")
    parser.add_argument("--bootstrap", type=int, default=0,
                        help="bootstrap replicates for intervals and the paired comparisons of scores (0: none)")
    args = parser.parse_args(argv)
    names = [n for n, _ in args.score]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    try:
        if duplicate:
            raise TableError(f"score {duplicate!r} is given twice")
        for option, target in (("--json", args.json), ("--markdown", args.markdown)):
            if target:
                check_output(target, option)
        result = evaluate_files(args.ground_truth, dict(args.score), max(0, args.bootstrap))
    except RaytaskaffError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    for warning in result["warnings"]:
        print(f"warning: {one_line(warning)}", file=sys.stderr)
    for target, text in ((args.json, lambda: json.dumps(result, indent=1)), (args.markdown, lambda: markdown(result))):
        if target:
            try:
                write_text(target, text())
            except OSError as e:  # checked above; a disk that fills up meanwhile
                print(f"error: {target}: cannot write ({e.strerror or e})", file=sys.stderr)
                return 2
    if not args.json and not args.markdown:
        print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
