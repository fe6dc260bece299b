"""Affinity on a budget: scorers calibrated on k trained pairs, and the cost-accuracy frontier.

The exhaustive ground truth trains every pair; a scorer costs a fraction of that and may be wrong.
Between the two: train k pairs, fit a map from a scorer's values to the gains on the 2k cells they
reveal ((a, b) and (b, a)), and predict the untrained cells. ETAP (Ayman et al., ICLR'26)
calibrates its score this way on 5-10 trained groups; this module measures what such calibration
buys, on the sweep's own ground truth, for every scorer and for all of them combined:

- `isotonic`: least-squares monotone map (pool-adjacent-violators), increasing or decreasing,
  whichever fits the trained cells better, interpolated linearly between the trained values;
- `affine`: least-squares line;
- `spline`: ETAP's form, a cubic B-spline map fitted by ridge (its penalty by leave-one-out), which
  may bend where the others cannot; ETAP's residual model over group features is not built;
- `combined`: ridge regression of the gains on every scorer's standardised values, its penalty
  chosen by exact leave-one-out error on the trained cells (`ridge_loo`).

`frontier` draws the k trained pairs at random (seeded, `draws` times for each k of a grid from 0
to all but two pairs), fits every predictor on the trained cells and judges it on the held-out
cells only (Spearman over cells; per target the Kendall tau-b of the partners' order, the best
partner hit and its regret, as `levels` defines them; the mean absolute error of predicted gains),
each as the mean over draws with a 95% percentile interval over draws. Cost, as a fraction of
the ground truth's: the scorers' own fractions (the combined predictor: all of theirs together,
each network counted once, as the caller measures it; else their sum, an upper bound) plus, for
k > 0, the STL runs' share and k/P of the pair runs'.
STL runs a scorer needs anyway are then counted twice: the costs are upper bounds.

Limits: the draws are random, not chosen where scorers are least certain; the held-out cells of a
draw are few at large k, so its intervals widen there; the split-half noise ceiling the headline
compares with is measured on all cells, not on each draw's held-out ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: Ridge penalties tried (on standardised scorer values), chosen by leave-one-out error.
PENALTIES = tuple(float(v) for v in np.logspace(-3, 4, 15))
#: The share of the noise ceiling the headline asks for.
TARGET_SHARE = 0.9
#: Draws of the k trained pairs at each k: at most this many, fewer as the cells grow (a draw of
#: 40 tasks' 1560 cells takes most of a second on one core).
MAX_DRAWS, CELL_DRAWS = 100, 20000
#: The maps that calibrate one scorer: monotone, linear, and ETAP's spline fitted by ridge.
MAPS = ("isotonic", "affine", "spline")
METRICS = ("spearman", "ranking_kendall", "hit_rate", "regret", "abs_error")


# --- the maps -----------------------------------------------------------------------------------

def pav(y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """The non-decreasing sequence closest to y (length n) in weighted least squares, by
    pool-adjacent-violators: O(n)."""
    y = np.asarray(y, dtype=float)
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=float)
    means, weights, sizes = [], [], []
    for value, weight in zip(y, w):
        means.append(value), weights.append(weight), sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:  # pool the last two blocks until in order
            m, wt, s = means.pop(), weights.pop(), sizes.pop()
            total = weights[-1] + wt
            means[-1] = (means[-1] * weights[-1] + m * wt) / total
            weights[-1], sizes[-1] = total, sizes[-1] + s
    return np.repeat(means, sizes)


def fit_isotonic(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The monotone least-squares map from x to y (n values each), increasing or decreasing as
    fits better; tied x share one value. Predicts by linear interpolation between the distinct
    trained x (constant beyond them)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    knots, where, counts = np.unique(x, return_inverse=True, return_counts=True)
    means = np.bincount(where, weights=y) / counts
    fits = [pav(means, counts), -pav(-means, counts)]
    errors = [float(np.sum((f[where] - y) ** 2)) for f in fits]
    fitted = fits[int(errors[1] < errors[0])]
    return lambda values: np.interp(np.asarray(values, dtype=float), knots, fitted)


def fit_affine(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The least-squares line from x to y; the mean of y when x is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.ptp(x) == 0:
        return lambda values: np.full(np.shape(values), y.mean())
    slope, intercept = np.polyfit(x, y, 1)
    return lambda values: intercept + slope * np.asarray(values, dtype=float)


def ridge_loo(z: np.ndarray, y: np.ndarray, penalties=PENALTIES) -> tuple[np.ndarray, np.ndarray]:
    """Ridge of y (n) on the columns of z (n x f, each centred) with an unpenalised intercept, for
    every penalty at once: the coefficients (penalties x f, the intercept being mean(y)) and the
    exact mean squared leave-one-out error of each penalty (residual_i / (1 - hat_ii), where the
    hat matrix is 1/n + z (z'z + penalty I)^-1 z' as the intercept's column is orthogonal to z)."""
    n = len(y)
    centred = y - y.mean()
    s, v = np.linalg.eigh(z.T @ z)
    q = z @ v  # n x f
    shrink = 1.0 / (np.maximum(s, 0.0)[None, :] + np.asarray(penalties, dtype=float)[:, None])  # penalties x f
    coef = (shrink * (q.T @ centred)[None, :]) @ v.T  # penalties x f
    fitted = coef @ z.T  # penalties x n
    hat = 1.0 / n + (q * q) @ shrink.T  # n x penalties
    with np.errstate(divide="ignore", invalid="ignore"):
        loo = (centred[None, :] - fitted) / (1.0 - hat.T)
    errors = np.where(np.all(np.isfinite(loo), axis=1), np.mean(loo ** 2, axis=1), np.inf)
    return coef, errors


def fit_ridge(x: np.ndarray, y: np.ndarray, penalties=PENALTIES) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """Ridge of y on the columns of x (n x f), each standardised on these n rows (a constant column
    contributes nothing), the penalty with the lowest leave-one-out error. Returns the predictor
    (of an m x f array) and the penalty chosen."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    mean, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 0, sd, np.inf)
    coef, errors = ridge_loo((x - mean) / sd, y, penalties)
    best = int(np.argmin(errors))
    return (lambda values: y.mean() + ((np.asarray(values, dtype=float) - mean) / sd) @ coef[best]), float(penalties[best])


def fit_spline(x: np.ndarray, y: np.ndarray, penalties=PENALTIES) -> Callable[[np.ndarray], np.ndarray]:
    """ETAP's calibration form: a cubic B-spline map of x to y (interior knots at the quantiles of
    x, one per four values up to three), its coefficients fitted by ridge with the penalty of lowest
    leave-one-out error (`fit_ridge`), so it may bend where isotonic and affine maps cannot (a
    scorer whose relation to the gains is not monotone). Constant beyond the trained x; the mean
    of y when x is constant."""
    from scipy.interpolate import BSpline

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    low, high = float(x.min()), float(x.max())
    if high == low:
        return lambda values: np.full(np.shape(values), y.mean())
    inner = np.quantile(x, np.linspace(0, 1, min(3, len(x) // 4) + 2)[1:-1])
    knots = np.r_[[low] * 4, np.unique(inner[(inner > low) & (inner < high)]), [high] * 4]
    basis = lambda values: BSpline.design_matrix(np.clip(np.asarray(values, dtype=float), low, high), knots, 3).toarray()  # noqa: E731
    predict = fit_ridge(basis(x), y, penalties)[0]
    return lambda values: predict(basis(values)) if np.size(values) else np.zeros(0)


# --- the levels on held-out cells, on matrices ----------------------------------------------------

def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their mean rank (scipy's rankdata 'average', without its overhead)."""
    order = np.argsort(x, kind="stable")
    values = x[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    ends = np.r_[starts[1:], len(x)]
    out = np.empty(len(x))
    out[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return out


def spearman_of(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of paired values (average ranks for ties); NaN below 2 values or when
    either side is constant."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def held_out_levels(predicted: np.ndarray, truth: np.ndarray, held: np.ndarray) -> dict:
    """The levels of a predicted table against the truth on the held-out cells (n x n matrices,
    [target][partner]; held: a boolean mask of cells with a known gain, not trained). As
    `levels.evaluate_score` defines them on the same cells: Spearman over cells; per target the
    Kendall tau-b of partners (mean over targets where defined); best-partner hit rate over
    decidable targets and mean regret; and the mean absolute error of the predicted gains."""
    if not held.any():
        return dict.fromkeys(METRICS, math.nan)
    x, y = predicted[held], truth[held]
    # Kendall tau-b per row: sums over partner pairs of sign products, ties dropped from the norms
    pair = held[:, :, None] & held[:, None, :]
    sx = np.sign(np.nan_to_num(predicted)[:, :, None] - np.nan_to_num(predicted)[:, None, :]) * pair
    sy = np.sign(np.nan_to_num(truth)[:, :, None] - np.nan_to_num(truth)[:, None, :]) * pair
    norm = np.sqrt((sx * sx).sum(axis=(1, 2)) * (sy * sy).sum(axis=(1, 2)))
    defined = norm > 0
    kendall = (sx * sy).sum(axis=(1, 2))[defined] / norm[defined]
    # best partners: ties all chosen, the realised gain their mean
    rows = held.any(axis=1)
    pm, tm = np.where(held, predicted, -np.inf), np.where(held, truth, -np.inf)
    chosen = held & (pm == pm.max(axis=1, keepdims=True))
    best = held & (tm == tm.max(axis=1, keepdims=True))
    decidable = rows & (best.sum(axis=1) < held.sum(axis=1))
    hits = (chosen & best).any(axis=1)[decidable]
    realised = np.where(chosen, truth, 0.0).sum(axis=1) / np.maximum(chosen.sum(axis=1), 1)
    regret = (tm.max(axis=1) - realised)[decidable]
    return {"spearman": spearman_of(x, y), "ranking_kendall": float(kendall.mean()) if len(kendall) else math.nan,
            "hit_rate": float(hits.mean()) if len(hits) else math.nan, "regret": float(regret.mean()) if len(regret) else math.nan,
            "abs_error": float(np.mean(np.abs(x - y))) if len(x) else math.nan}


# --- the frontier -----------------------------------------------------------------------------------

def as_matrices(truth: dict, tables: dict[str, dict]) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Tasks, the truth and each scorer as n x n [target][partner] matrices (NaN: unknown)."""
    tasks = sorted({t for pair in truth for t in pair})
    index = {t: i for i, t in enumerate(tasks)}

    def fill(table):
        m = np.full((len(tasks), len(tasks)), np.nan)
        for (t, p), v in table.items():
            if t in index and p in index and v is not None and math.isfinite(v):
                m[index[t], index[p]] = v
        return m

    return tasks, fill(truth), {name: fill(table) for name, table in tables.items()}


def default_draws(cells: int, bootstrap: int) -> int:
    """The draws a sweep makes: one per 20 bootstrap replicates it asks for (0: none, only the raw
    scorers' points), at most MAX_DRAWS, and at most CELL_DRAWS / cells (at least 5)."""
    return min(MAX_DRAWS, bootstrap // 20, max(5, CELL_DRAWS // max(cells, 1)))


def k_grid(pairs: int, points: int = 12) -> list[int]:
    """0, 1, 2, ... up to all but two pairs (so that some cells stay held out): every k up to
    `points` values, else `points` values spread evenly."""
    top = max(pairs - 2, 0)
    return sorted({int(round(v)) for v in np.linspace(0, top, min(points, top + 1))})


def _summary(values: list[float]) -> tuple[float | None, list[float] | None]:
    values = np.array([v for v in values if math.isfinite(v)])
    if not len(values):
        return None, None
    return float(values.mean()), [float(v) for v in np.percentile(values, [2.5, 97.5])]


def _point(k: int, cost: float | None, per_draw: dict[str, list[float]]) -> dict:
    point = {"k": k, "cost": cost, "draws": len(next(iter(per_draw.values()), []))}
    for metric, values in per_draw.items():
        point[metric], point[f"{metric}_ci"] = _summary(values)
    return point


def frontier(truth: dict, tables: dict[str, dict], costs: dict[str, float | None] | None = None, stl_share: float | None = None,
             ceiling: float | None = None, combined_cost: float | None = None, draws: int = 100, seed: int = 0,
             points: int = 12, maps: tuple[str, ...] = MAPS) -> dict:
    """The cost-accuracy frontier of every scorer, raw and calibrated, and of all combined.

    truth: {(target, partner): seed-mean gain}; tables: {scorer: {(target, partner): value}};
    costs: {scorer: fraction of the ground truth's cost} (None: unknown); stl_share: the STL runs'
    share of the ground truth's cost (None: their share of its networks); ceiling: the Spearman
    the ground truth reaches against itself (the headline's yardstick); combined_cost: every
    scorer's together (None: the sum of their fractions, an upper bound); maps: which of MAPS
    calibrate each scorer. Returns pairs, cells, ks,
    draws, stl_share, ceiling, predictors ({name: {kind, scorers, points: [{k, cost, draws, each
    of METRICS and its _ci}]}}), ground_truth and headline (the keys of evaluation.json's
    `frontier`)."""
    costs = costs or {}
    tasks, gains, values = as_matrices(truth, tables)
    n = len(tasks)
    known = np.isfinite(gains)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if known[i, j] or known[j, i]]
    share = stl_share if stl_share is not None else (n / (n + len(pairs)) if pairs else 0.0)
    truth_share = lambda k: 0.0 if k == 0 else share + (1.0 - share) * k / len(pairs)  # noqa: E731
    names = sorted(values)
    known_costs = [costs.get(name) for name in names]
    if combined_cost is None and names and all(c is not None for c in known_costs):
        combined_cost = sum(known_costs)
    plus = lambda base, k: None if base is None else base + truth_share(k)  # noqa: E731
    predictors: dict[str, dict] = {}
    for name in names:  # the raw scorers: one point each, on every known cell
        result = held_out_levels(values[name], gains, known & np.isfinite(values[name]))
        result["abs_error"] = math.nan  # a raw score is not in gain units
        predictors[name] = {"kind": "raw", "scorers": [name], "points": [_point(0, costs.get(name), {m: [v] for m, v in result.items()})]}
    ks = k_grid(len(pairs), points)
    rng = np.random.default_rng(seed)
    fitted = {f"{name} ({kind})": (kind, [name]) for name in names for kind in maps}
    if len(names) > 1:
        fitted["combined (ridge)"] = ("ridge", names)
    curves: dict[str, list[dict]] = {label: [] for label in fitted}
    for k in (k for k in ks if k > 0):
        per_draw = {label: {m: [] for m in METRICS} for label in fitted}
        for _ in range(draws):
            trained = np.zeros_like(known)
            for index in rng.choice(len(pairs), k, replace=False):
                i, j = pairs[index]
                trained[i, j] = trained[j, i] = True
            trained &= known
            held = known & ~trained
            if trained.sum() < 2 or held.sum() < 2:
                continue
            y = gains[trained]
            for label, (kind, used) in fitted.items():
                predicted = predict_cells(kind, used, values, trained, held, y)
                if predicted is None:
                    continue
                for metric, v in held_out_levels(predicted, gains, held).items():
                    per_draw[label][metric].append(v)
        for label, (kind, used) in fitted.items():
            cost = combined_cost if kind == "ridge" else costs.get(used[0])
            if per_draw[label]["spearman"]:
                curves[label].append(_point(k, plus(cost, k), per_draw[label]))
    for label, (kind, used) in fitted.items():
        predictors[label] = {"kind": kind, "scorers": used, "points": curves[label]}
    out = {"pairs": len(pairs), "cells": int(known.sum()), "ks": ks, "draws": draws, "seed": seed, "stl_share": share,
           "combined_cost": combined_cost, "ceiling": ceiling, "target_share": TARGET_SHARE, "predictors": predictors,
           "ground_truth": {"k": len(pairs), "cost": 1.0, "spearman": ceiling}}
    out["cheapest"] = cheapest(predictors, ceiling)
    out["headline"] = frontier_headline(out)
    return out


def predict_cells(kind: str, used: list[str], values: dict, trained: np.ndarray, held: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """The predicted gains of the held-out cells (an n x n matrix, NaN elsewhere) from the scorers
    `used`, fitted on the trained cells. A cell a scorer does not cover is predicted as the mean
    trained gain (that scorer says nothing there); None when no trained cell is covered."""
    out = np.full(values[used[0]].shape, np.nan)
    if kind == "ridge":
        x_train = np.column_stack([values[s][trained] for s in used])
        x_held = np.column_stack([values[s][held] for s in used])
        means = np.array([np.nanmean(c) if np.isfinite(c).any() else 0.0 for c in x_train.T])
        x_train = np.where(np.isfinite(x_train), x_train, means)  # an uncovered cell: the scorer's mean
        x_held = np.where(np.isfinite(x_held), x_held, means)
        if len(y) < 3:
            return None
        out[held] = fit_ridge(x_train, y)[0](x_held)
        return out
    x_train, x_held = values[used[0]][trained], values[used[0]][held]
    covered = np.isfinite(x_train)
    if covered.sum() < 2:
        return None
    fit = {"isotonic": fit_isotonic, "affine": fit_affine, "spline": fit_spline}[kind](x_train[covered], y[covered])
    out[held] = np.where(np.isfinite(x_held), fit(np.nan_to_num(x_held)), y.mean())
    return out


def cheapest(predictors: dict, ceiling: float | None, share: float = TARGET_SHARE) -> dict | None:
    """The point of lowest known cost whose mean held-out Spearman reaches `share` of the
    ceiling: {predictor, k, cost, spearman, spearman_ci, goal}; None without a positive ceiling or
    when no point reaches it."""
    if ceiling is None or ceiling <= 0:
        return None
    goal = share * ceiling
    found = [(p["cost"], name, p) for name, e in predictors.items() for p in e["points"]
             if p.get("spearman") is not None and p["spearman"] >= goal and p.get("cost") is not None]
    if not found:
        return None
    cost, name, p = min(found, key=lambda f: (f[0], f[2]["k"]))
    return {"predictor": name, "k": p["k"], "cost": cost, "spearman": p["spearman"], "spearman_ci": p["spearman_ci"], "goal": goal}


def _best_point(predictors: dict) -> tuple[str, dict] | None:
    found = [(p["spearman"], name, p) for name, e in predictors.items() for p in e["points"] if p.get("spearman") is not None]
    return (max(found, key=lambda f: f[0])[1:]) if found else None


def frontier_headline(result: dict) -> str:
    """One sentence: the cheapest way to reach TARGET_SHARE of the noise ceiling, or that none
    does short of training every pair (and the best a predictor reached)."""
    ceiling, share, pairs = result["ceiling"], result["target_share"], result["pairs"]
    found = result.get("cheapest")
    cost = lambda c: "unknown cost" if c is None else f"{c:.2f} of the ground truth's cost"  # noqa: E731
    if ceiling is None or ceiling <= 0:
        best = _best_point(result["predictors"])
        where = (f"; the highest held-out Spearman is {best[1]['spearman']:.2f} ({best[0]}, k = {best[1]['k']} of {pairs} pairs)"
                 if best else "")
        return ("the ground truth's noise ceiling is unknown or not positive, so no share of it can be asked of a "
                f"budgeted predictor{where}.")
    if found:
        if found["k"] == 0:  # a raw scorer: judged on every cell, no draws
            how, spread = "as it is, no pair trained", ""
        else:
            low, high = found["spearman_ci"]
            how, spread = f"calibrated on {found['k']} of {pairs} trained pairs", f", 95% of draws in [{low:.2f}, {high:.2f}]"
        return (f"the cheapest way to reach {share:.0%} of the noise ceiling (Spearman {found['goal']:.2f} of "
                f"{ceiling:.2f}) is {found['predictor']} {how}, at {cost(found['cost'])} "
                f"(Spearman {found['spearman']:.2f}{spread}).")
    best = _best_point(result["predictors"])
    tail = (f"; the highest is {best[0]} at {best[1]['spearman']:.2f} with {best[1]['k']} of {pairs} pairs trained, "
            f"{cost(best[1]['cost'])}" if best else "")
    return (f"no predictor reaches {share:.0%} of the noise ceiling (Spearman {share * ceiling:.2f} of {ceiling:.2f}) "
            f"short of training every pair{tail}.")
