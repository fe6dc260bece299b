"""A report like the default sweep's, built from planted numbers without training: five (or ten)
Taskonomy tasks, six seeds, the seven scorers under their own names, td's cost a table look-up,
and the ground truth's wall-clock summed over more runs than the training stage took."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from raytaskaff.evaluation import evaluate_all, ground_truth
from raytaskaff.report import write_outputs
from raytaskaff.scorers.base import Cost, Score

FIVE = ["segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal"]
TEN = FIVE + ["reshading", "principal_curvature", "edge_occlusion", "keypoints3d", "depth_euclidean"]
#: scorer: (noise around the truth, seeds it is computed on; 0: seed-free)
SCORERS = {"td": (6.0, 0), "ias": (4.0, 6), "rsa": (3.0, 6), "li": (3.5, 1), "gs": (3.0, 6), "gt": (7.0, 6), "etap": (7.0, 6)}
#: in CPU core-seconds: td a look-up, gs, gt and etap read the same all-task run
COSTS = {"td": 3.6e-05, "ias": 178.9, "rsa": 175.5, "li": 305.2, "gs": 185.6, "gt": 185.6, "etap": 185.6}
STAGES = {"data": 20.6, "ray start": 5.6, "training": 744.5, "scorers": 8.7, "evaluation": 9.5, "grouping": 37.6, "total": 826.5}
TRUTH_WALL = 974.5


def default_like(out, tasks: list[str] = FIVE, failed: bool = False, seeds: int = 6) -> dict:
    """Write OUT/results and OUT/report for planted gains of `tasks`; return the summary."""
    rng = np.random.default_rng(1)
    pairs = list(itertools.permutations(tasks, 2))
    base = {k: float(rng.normal(scale=3.0)) for k in pairs}
    truth = {s: {k: v + float(rng.normal(scale=1.0)) for k, v in base.items()} for s in range(seeds)}
    per_seed = pd.DataFrame([(s, t, p, g) for s, table in truth.items() for (t, p), g in table.items()],
                            columns=["seed", "target", "partner", "gain"])
    tables, seeded, scores = {}, {}, {}
    for name, (noise, computed_on) in SCORERS.items():
        by_seed = {s: {k: base[k] + float(rng.normal(scale=noise)) for k in pairs} for s in range(max(computed_on, 1))}
        tables[name] = {k: float(np.mean([t[k] for t in by_seed.values()])) for k in pairs}
        if computed_on:
            seeded[name] = by_seed
        table = pd.DataFrame([(t, p, v) for (t, p), v in tables[name].items()], columns=["target", "partner", "value"])
        rows = pd.DataFrame([(s, t, p, v) for s, tb in by_seed.items() for (t, p), v in tb.items()],
                            columns=["seed", "target", "partner", "value"]) if computed_on else None
        scores[name] = Score(name, table, Cost(), per_seed=rows)
    judged = evaluate_all(truth, tables, seeded, bootstrap=200, tasks=tasks)
    truth_cpu = 746.7
    costs = {name: {"wall_seconds": cpu * 1.2, "cpu_seconds": cpu, "gpu_seconds": 0.0, "marginal_cpu_seconds": cpu / 2,
                    "fraction_of_ground_truth": cpu / truth_cpu, "fraction_unit": "cpu_seconds"} for name, cpu in COSTS.items()}
    costs["ground_truth"] = {"wall_seconds": TRUTH_WALL, "cpu_seconds": truth_cpu, "gpu_seconds": 0.0,
                             "fraction_of_ground_truth": 1.0, "fraction_unit": "cpu_seconds"}
    runs = [("stl", t, "", s) for s in range(seeds) for t in tasks]
    runs += [("pair", f"{a}+{b}", "", s) for s in range(seeds) for a, b in itertools.combinations(tasks, 2)]
    runs += [("li", t, p, 0) for t, p in pairs] + [("all", "+".join(tasks), "", s) for s in range(seeds)]
    runs = pd.DataFrame([{"key": f"k{i}", "kind": k, "tasks": t, "inject": j, "seed": s, "status": "done", "error": None}
                         for i, (k, t, j, s) in enumerate(runs)])
    if failed:
        runs.loc[0, ["status", "error"]] = ["failed", "RuntimeError: loss is nan at epoch 0"]
    # every target learned but the last (its name then carries the mark in the tables)
    learning = {t: {"stl_loss": 0.25, "chance_loss": 0.75 if t != tasks[-1] else 0.25, "ratio": 0.33 if t != tasks[-1] else 1.0,
                    "learned": t != tasks[-1], "seeds": seeds} for t in tasks}
    half = len(tasks) // 2
    grouping_rows = [{"max_groups": None, "source": "stl", "groups": " | ".join(tasks), "networks": len(tasks), "test_total": 2.733,
                      "test_total_sd": None, "relative_gain": 0.0, "seeds": 1, "missing": "", "score_seconds": None},
                     {"max_groups": None, "source": "all", "groups": "+".join(tasks), "networks": 1, "test_total": 2.854,
                      "test_total_sd": None, "relative_gain": -0.05, "seeds": 1, "missing": "", "score_seconds": None}]
    grouping_rows += [{"max_groups": 2, "source": name, "groups": "+".join(tasks[:half]) + " | " + "+".join(tasks[half:]),
                       "networks": 2, "test_total": 2.75 + 0.01 * i, "test_total_sd": None, "relative_gain": -0.013 * i, "seeds": 1,
                       "missing": "", "score_seconds": COSTS.get(name)} for i, name in enumerate([*SCORERS, "ground_truth", "hoa", "best"])]
    summary = {"sweep": "default-like", "tasks": tasks, "seeds": list(range(seeds)), **judged, "scorer_errors": {},
               "learning": learning, "costs": costs, "grouping": {"rows": grouping_rows, "errors": {}, "seeds": [0]},
               "config": {"name": "default-like"}, "versions": {"raytaskaff": "test"}, "stages": dict(STAGES)}
    write_outputs(out, summary, scores, per_seed, ground_truth(per_seed), runs)
    return summary
