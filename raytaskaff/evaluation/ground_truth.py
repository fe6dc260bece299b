"""The ground truth: gain(t, p) = 100 (L_STL(t) - L_MTL{t,p}(t)) / L_STL(t) on the test split.

Per seed (the STL and pair runs of a seed share initial weights and data order, which is what
makes a seed's gains comparable), then the mean over seeds with its standard deviation and a 95%
t-interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def relative_gain(reference: float, other: float) -> float:
    """100 * (reference - other) / reference: the percentage by which `other` lowers a loss (the
    gain of the ground truth, and of label injection against the STL run)."""
    return 100.0 * (reference - other) / reference


def gains_per_seed(stl: dict[int, dict[str, float]], pairs: dict[int, dict[tuple[str, str], dict[str, float]]]) -> pd.DataFrame:
    """Columns seed, target, partner, gain: for every seed with both STL losses and a pair run.

    stl: {seed: {task: STL test loss}}; pairs: {seed: {(a, b): {task: test loss in the pair run}}}.
    """
    rows = []
    for seed, runs in pairs.items():
        for (a, b), losses in runs.items():
            for target, partner in ((a, b), (b, a)):
                if target in stl.get(seed, {}):
                    rows.append((seed, target, partner, relative_gain(stl[seed][target], losses[target])))
    return pd.DataFrame(rows, columns=["seed", "target", "partner", "gain"])


def ground_truth(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Columns target, partner, gain (mean over seeds), gain_std, gain_ci_low, gain_ci_high, seeds."""
    rows = []
    for (target, partner), group in per_seed.groupby(["target", "partner"], sort=False):
        values = group["gain"].to_numpy(dtype=float)
        n = len(values)
        mean = float(values.mean())
        std = float(values.std(ddof=1)) if n > 1 else float("nan")
        half = float(stats.t.ppf(0.975, n - 1) * std / np.sqrt(n)) if n > 1 else float("nan")
        rows.append((target, partner, mean, std, mean - half, mean + half, n))
    return pd.DataFrame(rows, columns=["target", "partner", "gain", "gain_std", "gain_ci_low", "gain_ci_high", "seeds"])
