"""Outputs of a sweep: long tables under OUT/results, and a report under OUT/report.

    results/affinity.csv        scorer,target,partner,value
    results/affinity_per_seed.csv  scorer,seed,target,partner,value: the per-seed tables of the
                                scorers computed per seed (affinity.csv holds their mean)
    results/ground_truth.csv    target,partner,gain,gain_std,gain_ci_low,gain_ci_high,seeds
    results/ground_truth_predicted.csv  target,partner,gain,low,high,predicted: under a budget
                                (`ground_truth: {pairs: k}`) every ordered pair, measured or
                                predicted (predicted true; low/high: its interval)
    results/gains_per_seed.csv  seed,target,partner,gain
    results/evaluation.json     the headline, the four levels and coverage per scorer, noise ceiling,
                                scorer-against-scorer comparisons, seed stability, the reference
                                study's best partners, warnings, costs, config, versions
    results/costs.csv           per scorer and for the ground truth: total and marginal cost
    results/runs.parquet        one row per run
    results/grouping.csv        groupings chosen by each scorer, trained and realised on test (when asked for)
    report/report.md, report/index.html (self-contained: figures are embedded)

The report is built from the results files alone, so `python -m raytaskaff.report OUT` rebuilds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from raytaskaff.atomic import atomic_path, write_text

#: costs.csv's columns: wall-clock, CPU core-seconds and GPU-seconds (total, then beyond the
#: ground truth's runs), and the fraction of the ground truth's cost in `fraction_unit`.
COST_COLUMNS = ["name", "wall_seconds", "cpu_seconds", "gpu_seconds", "marginal_wall_seconds", "marginal_cpu_seconds",
                "marginal_gpu_seconds", "fraction_of_ground_truth", "fraction_unit"]


def costs_table(summary: dict) -> pd.DataFrame:
    rows = []
    for name, cost in summary["costs"].items():
        row = {k: cost.get(k, cost.get(k.removeprefix("marginal_"))) for k in COST_COLUMNS[1:-2]}
        rows.append({"name": name, **row, "fraction_of_ground_truth": cost.get("fraction_of_ground_truth", 1.0 if name == "ground_truth" else None),
                     "fraction_unit": cost.get("fraction_unit")})
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def affinity_frame(scores: dict) -> pd.DataFrame:
    """affinity.csv: scorer, target, partner, value (the affinity of target t with partner p)."""
    columns = ["scorer", "target", "partner", "value"]
    if not scores:
        return pd.DataFrame(columns=columns)
    return pd.concat([s.table.assign(scorer=name)[columns] for name, s in scores.items()], ignore_index=True)


def closing_lines(stages: dict[str, float], report: str | os.PathLike) -> list[str]:
    """What a sweep prints when it ends: each stage's wall-clock seconds (as the report's Stages
    table has them, total last), then the report's path, names and numbers aligned."""
    width = max(len(name) + 1 for name in [*stages, "report"])
    digits = max((len(f"{float(v):.1f}") for v in stages.values()), default=0)
    lines = [f"{name + ':':<{width}}  {float(seconds):>{digits}.1f} s" for name, seconds in stages.items()]
    return lines + [f"{'report:':<{width}}  {report}"]


def write_outputs(out: str | os.PathLike, summary: dict, scores: dict, per_seed: pd.DataFrame, truth: pd.DataFrame,
                  runs: pd.DataFrame) -> None:
    results = Path(out) / "results"
    results.mkdir(parents=True, exist_ok=True)
    write_text(results / "affinity.csv", affinity_frame(scores).to_csv(index=False))
    seeded = [s.per_seed.assign(scorer=name) for name, s in scores.items() if s.per_seed is not None]
    columns = ["scorer", "seed", "target", "partner", "value"]
    per_seed_affinity = pd.concat(seeded, ignore_index=True)[columns] if seeded else pd.DataFrame(columns=columns)
    write_text(results / "affinity_per_seed.csv", per_seed_affinity.to_csv(index=False))
    write_text(results / "ground_truth.csv", truth.to_csv(index=False))
    write_text(results / "gains_per_seed.csv", per_seed.to_csv(index=False))
    if summary.get("budget"):
        columns = ["target", "partner", "gain", "low", "high", "predicted"]
        write_text(results / "ground_truth_predicted.csv", pd.DataFrame(summary["budget"]["table"], columns=columns).to_csv(index=False))
    else:
        (results / "ground_truth_predicted.csv").unlink(missing_ok=True)  # never a stale table from an earlier sweep
    write_text(results / "costs.csv", costs_table(summary).to_csv(index=False))
    write_text(results / "evaluation.json", json.dumps(summary, indent=1, default=str))
    if summary.get("grouping"):
        columns = ["max_groups", "source", "groups", "networks", "test_total", "test_total_sd", "relative_gain", "seeds",
                   "missing", "score_seconds"]
        write_text(results / "grouping.csv", pd.DataFrame(summary["grouping"]["rows"], columns=columns).to_csv(index=False))
    else:
        (results / "grouping.csv").unlink(missing_ok=True)  # never a stale table from an earlier sweep
    with atomic_path(results / "runs.parquet") as tmp:
        runs.to_parquet(tmp, index=False)
    from raytaskaff.report.render import build_report  # matplotlib: not for what imports the document model alone

    build_report(out)
