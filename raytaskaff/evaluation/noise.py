"""The noise ceiling: how well the ground truth agrees with itself across seeds.

- single-seed ceiling: for every two seeds, one seed's gains scored as if they were a scorer
  against the other's; the mean over ordered seed pairs of each level. What a perfect scorer of
  one seed's truth could reach.
- split-half reliability of the seed mean: the seeds split into floor(n/2) and the rest (every
  split, or 50 random ones), the mean gains of one part against the other's, on the same levels;
  the mean over splits. Each part averages fewer seeds than the full mean, so this is a
  conservative estimate of the full mean's reliability.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from raytaskaff.evaluation.levels import evaluate_score


def _table(frame: pd.DataFrame) -> dict:
    return {(r.target, r.partner): float(r.gain) for r in frame.itertuples()}


def _mean(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None


def noise_ceiling(per_seed: pd.DataFrame, max_splits: int = 50, seed: int = 0) -> dict:
    seeds = sorted(per_seed["seed"].unique())
    tables = {s: _table(per_seed[per_seed["seed"] == s]) for s in seeds}
    single = [evaluate_score(tables[a], tables[b], bootstrap=0) for a, b in itertools.permutations(seeds, 2)]
    keys = ("pearson", "spearman", "kendall", "ranking_kendall", "regret")
    out = {"seeds": len(seeds), "single_seed": {k: _mean(e[k] for e in single) for k in keys}}
    if single:
        out["single_seed"]["hit_rate"] = _mean(e["hits"] / e["targets"] for e in single if e["targets"])
        targets = sorted({t for e in single for t in e["ranking_per_target"]})
        out["single_seed"]["ranking_per_target"] = {
            t: _mean(e["ranking_per_target"].get(t, {}).get("kendall") for e in single) for t in targets}
    splits = []
    if len(seeds) >= 2:
        half = len(seeds) // 2
        candidates = [c for c in itertools.combinations(seeds, half) if len(seeds) != 2 * half or seeds[0] in c]
        rng = np.random.default_rng(seed)
        if len(candidates) > max_splits:
            candidates = [candidates[i] for i in rng.choice(len(candidates), max_splits, replace=False)]
        for first in candidates:
            second = [s for s in seeds if s not in first]
            mean_of = lambda group: _table(per_seed[per_seed["seed"].isin(group)].groupby(["target", "partner"], as_index=False)["gain"].mean())  # noqa: E731
            splits.append(evaluate_score(mean_of(first), mean_of(second), bootstrap=0))
    out["split_half"] = {k: _mean(e[k] for e in splits) for k in keys} if splits else None
    if splits:
        out["split_half"]["splits"] = len(splits)
        out["split_half"]["seeds_per_half"] = len(seeds) // 2
    return out
