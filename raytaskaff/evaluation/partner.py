"""How much of an affinity table depends on the partner at all.

A score meant to pick partners must vary across a target's partners. This module splits the
variance of a `[target][partner]` table over its off-diagonal cells by a one-way analysis of
variance on each side:

- target share: the between-target sum of squares (row means against the grand mean, weighted by
  the row's cells) over the total; the R² of the table explained by the target alone;
- partner share: the same with column means, the partner alone;
- additive share: the R² of the least-squares fit target + partner (main effects, no
  interaction); 1 - additive share is what only the (target, partner) cell explains;
- spread ratio: the mean within-target standard deviation (a row's values about its own mean)
  over the standard deviation of the row means (both population, ddof=0).

With the diagonal missing the two one-way shares are not orthogonal, so they need not sum to the
additive share: a pure row effect gives a partner share of 1/(n-1)² over n tasks, not 0; over
three tasks the additive fit leaves one degree of freedom, so the interaction share is nearly 0. Missing
cells (a partial table) are left out of every sum. Pure numpy; no models.

The ground truth's split is also measured on each seed's own table (`per_seed_dependence`): a
seed's noise is a (target, partner) effect, so one seed's target share is lower than the seed
mean's, and its spread over seeds says whether the truth's own partner dependence is stable.
"""

from __future__ import annotations

import math

import numpy as np

#: A scorer is "mostly a property of the target" when the target alone explains at least this
#: share of its table and more than it explains of the ground truth's.
TARGET_BOUND = 0.7


def _cells(table: dict) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(tasks, row index, column index, value) of the finite off-diagonal cells."""
    cells = [(t, p, float(v)) for (t, p), v in table.items() if t != p and v is not None and math.isfinite(float(v))]
    tasks = sorted({t for t, _, _ in cells} | {p for _, p, _ in cells})
    index = {t: i for i, t in enumerate(tasks)}
    rows = np.array([index[t] for t, _, _ in cells], dtype=int)
    cols = np.array([index[p] for _, p, _ in cells], dtype=int)
    return tasks, rows, cols, np.array([v for _, _, v in cells], dtype=float)


def _between(values: np.ndarray, groups: np.ndarray, n: int) -> float:
    """Sum over cells of (its group's mean - grand mean)²."""
    count = np.bincount(groups, minlength=n)
    total = np.bincount(groups, weights=values, minlength=n)
    means = np.divide(total, count, out=np.zeros(n), where=count > 0)
    return float(((means[groups] - values.mean()) ** 2).sum())


def _additive_fit(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Least-squares fitted values of value ~ mean + target + partner."""
    design = np.zeros((len(values), 1 + 2 * n))
    design[:, 0] = 1.0
    design[np.arange(len(values)), 1 + rows] = 1.0
    design[np.arange(len(values)), 1 + n + cols] = 1.0
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return design @ coef


def partner_dependence(table: dict) -> dict:
    """The partner dependence of one affinity table.

    table: {(target, partner): value}; the diagonal, None and NaN cells are left out. Returns
    cells (how many were used), target_share, partner_share, additive_share (each in [0, 1]),
    interaction_share (1 - additive_share) and spread_ratio (within-target over between-target
    standard deviation; None when the row means are all equal). Every value is None
    when fewer than three cells are known or the table is constant over them.
    """
    tasks, rows, cols, values = _cells(table)
    empty = {"cells": len(values), "target_share": None, "partner_share": None, "additive_share": None,
             "interaction_share": None, "spread_ratio": None}
    total = float(((values - values.mean()) ** 2).sum()) if len(values) else 0.0
    if len(values) < 3 or total <= 1e-12 * max(1.0, float(np.abs(values).max()) ** 2) * len(values):
        return empty
    n = len(tasks)
    fitted = _additive_fit(rows, cols, values, n)
    additive = min(1.0, max(0.0, 1.0 - float(((values - fitted) ** 2).sum()) / total))
    row_means = np.array([values[rows == i].mean() for i in range(n) if (rows == i).any()])
    within = float(np.mean([values[rows == i].std() for i in range(n) if (rows == i).any()]))
    between = float(row_means.std())
    ratio = within / between if between > 1e-12 * max(1.0, within) else None
    return {"cells": len(values), "target_share": _between(values, rows, n) / total,
            "partner_share": _between(values, cols, n) / total, "additive_share": additive,
            "interaction_share": 1.0 - additive, "spread_ratio": ratio}


def target_bound(scorer: dict, truth: dict | None) -> bool:
    """Whether a scorer's table is mostly a property of its target (it cannot rank partners): its
    target share is at least TARGET_BOUND and above the ground truth's (when that is known)."""
    share = scorer.get("target_share")
    if share is None or share < TARGET_BOUND:
        return False
    truth_share = (truth or {}).get("target_share")
    return truth_share is None or share > truth_share


#: The shares summarised over seeds by `per_seed_dependence`.
SEED_KEYS = ("target_share", "partner_share", "interaction_share", "spread_ratio")


def per_seed_dependence(per_seed: dict[int, dict]) -> dict:
    """The partner dependence of each seed's table and its spread over seeds.

    per_seed: {seed: {(target, partner): value}}. Returns seeds (how many), tables
    ({seed: partner_dependence}, seed keys as strings, for JSON) and, for each of SEED_KEYS,
    {mean, std (ddof=1; None below two seeds), min, max} over the seeds where it is known (None
    when none is)."""
    tables = {str(seed): partner_dependence(table) for seed, table in sorted(per_seed.items())}
    out: dict = {"seeds": len(tables), "tables": tables}
    for key in SEED_KEYS:
        values = np.array([t[key] for t in tables.values() if t[key] is not None], dtype=float)
        out[key] = None if not len(values) else {
            "mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else None,
            "min": float(values.min()), "max": float(values.max())}
    return out


def partner_dependence_all(tables: dict[str, dict], truth: dict, truth_per_seed: dict[int, dict] | None = None) -> dict:
    """{name: partner_dependence(table) + target_bound} for every scorer and the ground truth
    (under the key "ground_truth"), so that each scorer is read against the truth. With
    truth_per_seed ({seed: table}), the ground truth's entry also holds `per_seed`
    (`per_seed_dependence`)."""
    truth_row = partner_dependence(truth)
    out = {"ground_truth": {**truth_row, "target_bound": False}}
    if truth_per_seed is not None:
        out["ground_truth"]["per_seed"] = per_seed_dependence(truth_per_seed)
    for name, table in tables.items():
        row = partner_dependence(table)
        out[name] = {**row, "target_bound": target_bound(row, truth_row)}
    return out
