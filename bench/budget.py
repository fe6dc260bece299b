"""How close a budgeted sweep's predicted gains come to the full ground truth.

    python -m bench.budget --truth OUT_FULL --budgets OUT_K1 [OUT_K2 ...] [--draws 20] [--json]

OUT_FULL: the output folder of a sweep that trained every pair (its results/ground_truth.csv and
affinity.csv); each OUT_K: the same sweep with `ground_truth: {pairs: k}` on the same store (so its
k pairs are the full sweep's stored runs, trained once). Per budget:
- what the budgeted sweep says of itself (evaluation.json's `budget`: the predictor it chose and
  its nested cross-validated Spearman on the trained pairs, with its interval);
- measured: the Spearman of its predicted gains against the full sweep's measured ones on the
  untrained cells, with a 95% interval from a bootstrap over the untrained pairs; the mean absolute
  error; the share of untrained cells whose measured gain falls in the predicted interval; the
  best-partner hits of the whole table (measured and predicted) against the full truth;
- over `--draws` other random draws of k pairs (the same procedure, `evaluation.budget.predict`, on
  the full sweep's tables): the mean Spearman on the untrained cells and 95% of draws, so that one
  lucky or unlucky draw is not the whole answer;
- the best raw scorer's Spearman on the same untrained cells (what no training of pairs gives).
The full sweep's own split-half noise ceiling is the yardstick.
"""

from __future__ import annotations

import argparse
import json
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from raytaskaff.evaluation.budget import predict


def _table(frame: pd.DataFrame, column: str) -> dict:
    return {(r.target, r.partner): float(getattr(r, column)) for r in frame.itertuples()}


def _bootstrap(pred: dict, truth: dict, pairs: list, draws: int = 2000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        pick = [pairs[i] for i in rng.integers(0, len(pairs), len(pairs))]
        cells = [c for a, b in pick for c in ((a, b), (b, a))]
        rho = spearmanr([pred[c] for c in cells], [truth[c] for c in cells])[0]
        if math.isfinite(rho):
            values.append(rho)
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


def _hits(full: dict, truth: dict, tasks: list[str]) -> str:
    hits = 0
    for t in tasks:
        partners = [p for p in tasks if p != t]
        chosen = max(partners, key=lambda p: full[t, p])
        hits += truth[t, chosen] == max(truth[t, p] for p in partners)
    return f"{hits}/{len(tasks)}"


def measure(truth_out: Path, budget_out: Path, draws: int) -> dict:
    truth = _table(pd.read_csv(truth_out / "results" / "ground_truth.csv"), "gain")
    summary = json.loads((budget_out / "results" / "evaluation.json").read_text())
    budget = summary["budget"]
    tasks = summary["tasks"]
    table = pd.read_csv(budget_out / "results" / "ground_truth_predicted.csv")
    predicted = table[table.predicted]
    pred = _table(predicted, "gain")
    cells = list(pred)
    untrained = sorted({tuple(sorted(c)) for c in cells})
    rho = spearmanr([pred[c] for c in cells], [truth[c] for c in cells])[0]
    inside = np.mean([r.low <= truth[r.target, r.partner] <= r.high for r in predicted.itertuples()])
    full = _table(table, "gain")
    # other draws of k pairs from the full sweep's tables: the same procedure, on the full truth
    affinity = pd.read_csv(truth_out / "results" / "affinity.csv")
    tables = {name: _table(g, "value") for name, g in affinity.groupby("scorer")}
    k, pairs = budget["trained"], list(combinations(tasks, 2))
    rng = np.random.default_rng(1)
    others = []
    for _ in range(draws):
        chosen = [pairs[i] for i in rng.permutation(len(pairs))[:k]]
        known = {c: truth[c] for p in chosen for c in (p, p[::-1])}
        result = predict(tasks, known, tables, bootstrap=0)
        rows = [r for r in result["table"] if r["predicted"]]
        others.append(spearmanr([r["gain"] for r in rows], [truth[r["target"], r["partner"]] for r in rows])[0])
    raw = {name: spearmanr([t[c] for c in cells], [truth[c] for c in cells])[0] for name, t in tables.items()}
    best_raw = max(raw, key=raw.get)
    acc = budget["accuracy"]
    return {"raw": best_raw, "raw_spearman": float(raw[best_raw]),"k": k, "pairs": budget["pairs"], "predictor": budget["predictor"]["label"],
            "says_spearman": acc["spearman"], "says_ci": acc["spearman_ci"],
            "spearman": float(rho), "spearman_ci": _bootstrap(pred, truth, untrained),
            "abs_error": float(np.mean([abs(pred[c] - truth[c]) for c in cells])),
            "half_width": budget["interval"]["half_width"], "inside": float(inside),
            "hits": _hits(full, truth, tasks), "draws_mean": float(np.mean(others)),
            "draws_ci": [float(v) for v in np.percentile(others, [2.5, 97.5])]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--budgets", type=Path, nargs="+", required=True)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    full = json.loads((args.truth / "results" / "evaluation.json").read_text())
    ceiling = ((full.get("noise_ceiling") or {}).get("split_half") or {}).get("spearman")
    truth = _table(pd.read_csv(args.truth / "results" / "ground_truth.csv"), "gain")
    rows = [measure(args.truth, out, args.draws) for out in args.budgets]
    if args.json:
        print(json.dumps({"ceiling": ceiling, "rows": rows}, indent=1))
        return
    f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"full ground truth: {len(truth) // 2} pairs, split-half noise ceiling (Spearman) {f(ceiling)}; "
          f"best-partner hits of the full truth against itself {_hits(truth, truth, full['tasks'])}")
    print("| k | predictor chosen | sweep's own estimate (nested CV) | Spearman vs truth, untrained cells | |error| | "
          "in interval | best-partner hits (whole table) | other draws of k: mean [95%] | best raw scorer, same cells |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ci, says = r["spearman_ci"], r["says_ci"]
        print(f"| {r['k']} of {r['pairs']} | {r['predictor']} | {f(r['says_spearman'])}"
              + (f" [{f(says[0])}, {f(says[1])}]" if says else "")
              + f" | {f(r['spearman'])} [{f(ci[0])}, {f(ci[1])}] | {f(r['abs_error'])} | {r['inside']:.0%} (± {f(r['half_width'])}) | "
              f"{r['hits']} | {f(r['draws_mean'])} [{f(r['draws_ci'][0])}, {f(r['draws_ci'][1])}] | {r['raw']} {f(r['raw_spearman'])} |")


if __name__ == "__main__":
    main()
