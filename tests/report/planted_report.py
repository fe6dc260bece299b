"""A report like the default sweep's, built from planted numbers without training: five (or ten)
Taskonomy tasks, six seeds, the seven scorers under their own names, td's cost a table look-up,
and the ground truth's wall-clock summed over more runs than the training stage took.

`forty_like` plants a celeba-40-like report: 40 attributes in four clusters (tasks of a cluster
help each other), listed shuffled; 15 coin-flip targets that did not learn, each with a warning,
whose gains are wide noise with -170 % outliers."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from raytaskaff.evaluation import evaluate_all, ground_truth
from raytaskaff.evaluation.frontier import frontier
from raytaskaff.evaluation.learning import learning_warnings
from raytaskaff.evaluation.tables import pair_table
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
#: sweeps/celeba-40.yaml's tasks
FORTY = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
         "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee",
         "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
         "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
         "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young"]


def forty_like(out, seeds: int = 3, bootstrap: int = 20) -> tuple[dict, dict[str, int]]:
    """Write OUT/results and OUT/report for 40 tasks with planted clusters; return the summary and
    each task's cluster (0-3; 4 for a coin flip). A target in cluster c gains about 4 % from a
    partner in c and loses about 2 % from one in another; the 15 coin flips (every second task of
    the first 30) lose about 1 % as partners and gain noise of sd 6 % as targets, four of their
    pairs -170 %."""
    rng = np.random.default_rng(40)
    flips = FORTY[:30:2]
    learned = [t for t in FORTY if t not in flips]
    cluster = {t: int(c) for t, c in zip(learned, rng.permutation(np.arange(len(learned)) % 4))} | {t: 4 for t in flips}
    base = {}
    for t, p in itertools.permutations(FORTY, 2):
        planted = 6.0 * rng.normal() if t in flips else -1.0 if p in flips else 4.0 if cluster[t] == cluster[p] else -2.0
        base[t, p] = planted + float(rng.normal(scale=0.7))
    for t, p in [(flips[0], FORTY[1]), (flips[3], FORTY[5]), (flips[7], FORTY[2]), (flips[11], FORTY[4])]:
        base[t, p] = -170.0 + float(rng.normal(scale=5.0))
    summary = default_like(out, FORTY, seeds=seeds, base=base, unlearned=set(flips), bootstrap=bootstrap)
    return summary, cluster


def default_like(out, tasks: list[str] = FIVE, failed: bool = False, seeds: int = 6, base: dict | None = None,
                 unlearned: set[str] | None = None, bootstrap: int = 200) -> dict:
    """Write OUT/results and OUT/report for planted gains of `tasks`; return the summary. base:
    the planted gain of each (target, partner) (else drawn); unlearned: the targets that did not
    learn (else the last one), each with its warning first in the summary's warnings."""
    rng = np.random.default_rng(1)
    pairs = list(itertools.permutations(tasks, 2))
    if base is None:
        base = {k: float(rng.normal(scale=3.0)) for k in pairs}
    truth = {s: {k: v + float(rng.normal(scale=1.0)) for k, v in base.items()} for s in range(seeds)}
    per_seed = pd.DataFrame([(s, t, p, g) for s, table in truth.items() for (t, p), g in table.items()],
                            columns=["seed", "target", "partner", "gain"])
    tables, seeded, scores = {}, {}, {}
    for name, (noise, computed_on) in SCORERS.items():
        by_seed = {s: {k: base[k] + float(rng.normal(scale=noise)) for k in pairs} for s in range(max(min(computed_on, seeds), 1))}
        tables[name] = {k: float(np.mean([t[k] for t in by_seed.values()])) for k in pairs}
        if computed_on:
            seeded[name] = by_seed
        table = pd.DataFrame([(t, p, v) for (t, p), v in tables[name].items()], columns=["target", "partner", "value"])
        rows = pd.DataFrame([(s, t, p, v) for s, tb in by_seed.items() for (t, p), v in tb.items()],
                            columns=["seed", "target", "partner", "value"]) if computed_on else None
        scores[name] = Score(name, table, Cost(), per_seed=rows)
    judged = evaluate_all(truth, tables, seeded, bootstrap=bootstrap, tasks=tasks)
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
    unlearned = {tasks[-1]} if unlearned is None else unlearned
    learning = {t: {"stl_loss": 0.25, "chance_loss": 0.75 if t not in unlearned else 0.25,
                    "ratio": 0.33 if t not in unlearned else 1.0, "learned": t not in unlearned, "seeds": seeds} for t in tasks}
    judged["warnings"] = learning_warnings(learning) + judged["warnings"]  # as the sweep's pipeline puts them
    half = len(tasks) // 2
    grouping_rows = [{"max_groups": None, "source": "stl", "groups": " | ".join(tasks), "networks": len(tasks), "test_total": 2.733,
                      "test_total_sd": None, "relative_gain": 0.0, "seeds": 1, "missing": "", "score_seconds": None},
                     {"max_groups": None, "source": "all", "groups": "+".join(tasks), "networks": 1, "test_total": 2.854,
                      "test_total_sd": None, "relative_gain": -0.05, "seeds": 1, "missing": "", "score_seconds": None}]
    grouping_rows += [{"max_groups": 2, "source": name, "groups": "+".join(tasks[:half]) + " | " + "+".join(tasks[half:]),
                       "networks": 2, "test_total": 2.75 + 0.01 * i, "test_total_sd": None, "relative_gain": -0.013 * i, "seeds": 1,
                       "missing": "", "score_seconds": COSTS.get(name)} for i, name in enumerate([*SCORERS, "ground_truth", "hoa", "best"])]
    ceiling = (judged["noise_ceiling"].get("split_half") or {}).get("spearman")
    judged["frontier"] = frontier(pair_table(ground_truth(per_seed), "gain"), tables,
                                  {name: c["fraction_of_ground_truth"] for name, c in costs.items() if name in tables},
                                  ceiling=ceiling, draws=10 if len(tasks) <= 10 else 1)
    summary = {"sweep": "default-like", "tasks": tasks, "seeds": list(range(seeds)), **judged, "scorer_errors": {},
               "learning": learning, "costs": costs, "grouping": {"rows": grouping_rows, "errors": {}, "seeds": [0]},
               "config": {"name": "default-like"}, "versions": {"raytaskaff": "test"}, "stages": dict(STAGES)}
    write_outputs(out, summary, scores, per_seed, ground_truth(per_seed), runs)
    return summary
