"""The ground truth on a budget: the gains of the pairs a sweep did not train, predicted.

A budgeted sweep (`ground_truth: {pairs: k}`) trains the STL networks and k of the P pairs per
seed, drawn at random (`SweepConfig.trained_pairs`). This module predicts the other cells of the
[target][partner] gain table from the scorers, with the predictors of `evaluation.frontier` (each
scorer calibrated by an isotonic, affine or spline map; all scorers combined by ridge):

1. choice: every predictor is fitted on the trained cells with the pairs held out fold by fold
   (`folds` folds of whole pairs, both cells of a pair in one fold), and the one whose held-out
   predictions reach the highest Spearman with the measured gains (ties: the lowest mean absolute
   error) predicts the untrained cells, fitted on every trained cell;
2. how good that is: the whole procedure (choice included) in an outer cross-validation over the
   trained pairs (nested: the choice sees only the outer fold's training pairs), so the estimate
   pays for the choice among many predictors. Its Spearman over the trained cells, with a 95%
   percentile interval from a bootstrap over the trained pairs, is the accuracy the report gives;
   since the trained pairs are a random draw of all pairs, it estimates the accuracy on the
   untrained ones;
3. intervals: each predicted gain +- the `coverage` quantile of the nested held-out absolute
   errors (split-conformal, with its finite-sample correction): about `coverage` of the untrained
   cells' true gains fall inside, when the trained pairs are a random draw of all pairs (they are).

Limits: one interval width for every cell (cells where the scorers are less certain are not
wider); the pairs are drawn at random, not where the scorers are least certain; a scorer must
score every pair (one of the pairwise networks cannot, and a budget refuses it in the config);
the estimate of step 2 has few cells at small k, and its interval says so.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from raytaskaff.evaluation.frontier import MAPS, held_out_levels, predict_cells, spearman_of

#: The held-out share of cells whose true gains the intervals of predicted gains are meant to hold.
COVERAGE = 0.9
#: Folds of whole pairs, for the choice of predictor and for the nested estimate of its accuracy.
FOLDS = 5
#: The seed of the folds and of the bootstrap over pairs.
SEED = 0
LEVELS = ("spearman", "ranking_kendall", "hit_rate", "regret", "abs_error")


def matrices(tasks: list[str], truth: dict, tables: dict[str, dict]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The measured gains and each scorer as n x n [target][partner] matrices over `tasks` (NaN:
    unknown: an untrained pair, or a cell a scorer left out)."""
    index = {t: i for i, t in enumerate(tasks)}

    def fill(table):
        m = np.full((len(tasks), len(tasks)), np.nan)
        for (t, p), v in table.items():
            if t in index and p in index and t != p and v is not None and math.isfinite(v):
                m[index[t], index[p]] = v
        return m

    return fill(truth), {name: fill(table) for name, table in tables.items()}


def candidates(names: list[str], maps: tuple[str, ...] = MAPS) -> dict[str, tuple[str, list[str]]]:
    """{label: (kind, scorers)}: every scorer under every map, and all of them combined by ridge,
    labelled as the frontier labels them."""
    out = {f"{name} ({kind})": (kind, [name]) for name in names for kind in maps}
    if len(names) > 1:
        out["combined (ridge)"] = ("ridge", list(names))
    return out


def _folds(pairs: list[tuple[int, int]], folds: int, rng: np.random.Generator) -> list[list[tuple[int, int]]]:
    order = rng.permutation(len(pairs))
    return [[pairs[i] for i in order[f::folds]] for f in range(min(folds, len(pairs)))]


def _mask(shape, pairs) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    for i, j in pairs:
        m[i, j] = m[j, i] = True
    return m


def _fit_predict(label_kind: tuple[str, list[str]], values: dict, gains: np.ndarray, train: np.ndarray, target: np.ndarray):
    """Predictions of the `target` cells (a matrix, NaN elsewhere) fitted on the `train` cells, or None."""
    kind, used = label_kind
    if train.sum() < 2 or not target.any():
        return None
    return predict_cells(kind, used, values, train, target, gains[train])


def cross_validated(found: dict, values: dict, gains: np.ndarray, pairs: list[tuple[int, int]], folds: int,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
    """{label: held-out predictions of every cell of `pairs`} (NaN where a fold could not fit),
    each fold of pairs predicted from the others."""
    known = _mask(gains.shape, pairs) & np.isfinite(gains)
    out = {label: np.full(gains.shape, np.nan) for label in found}
    for fold in _folds(pairs, folds, rng):
        held = _mask(gains.shape, fold) & known
        train = known & ~held
        for label, spec in found.items():
            predicted = _fit_predict(spec, values, gains, train, held)
            if predicted is not None:
                out[label][held] = predicted[held]
    return out


def choose(found: dict, values: dict, gains: np.ndarray, pairs: list[tuple[int, int]], folds: int,
           rng: np.random.Generator) -> tuple[str | None, dict[str, dict]]:
    """The predictor whose cross-validated predictions over `pairs` reach the highest Spearman with
    the gains (ties: the lowest mean absolute error; a predictor that could not predict every
    held-out cell is not chosen), and each one's {spearman, abs_error}. None when none could."""
    known = _mask(gains.shape, pairs) & np.isfinite(gains)
    scores = {}
    for label, predicted in cross_validated(found, values, gains, pairs, folds, rng).items():
        x, y = predicted[known], gains[known]
        if not len(x) or not np.isfinite(x).all():
            scores[label] = {"spearman": None, "abs_error": None}
            continue
        rho = spearman_of(x, y)
        scores[label] = {"spearman": None if math.isnan(rho) else rho, "abs_error": float(np.mean(np.abs(x - y)))}
    ranked = [(-(s["spearman"] if s["spearman"] is not None else -2.0), s["abs_error"], label)
              for label, s in scores.items() if s["abs_error"] is not None]
    return (min(ranked)[2] if ranked else None), scores


def _procedure(found, values, gains, train_pairs, target, folds, rng):
    """The budget's procedure on `train_pairs`: choose a predictor on them, fit it on every one of
    their cells, predict the `target` cells; the mean trained gain when no predictor can."""
    known = _mask(gains.shape, train_pairs) & np.isfinite(gains)
    label, scores = choose(found, values, gains, train_pairs, folds, rng)
    predicted = _fit_predict(found[label], values, gains, known, target) if label is not None else None
    if predicted is None:
        predicted = np.where(target, np.nanmean(gains[known]) if known.any() else 0.0, np.nan)
        label = "mean of the trained gains"
    return label, predicted, scores


def predict(tasks: list[str], truth: dict, tables: dict[str, dict], maps: tuple[str, ...] = MAPS, folds: int = FOLDS,
            coverage: float = COVERAGE, bootstrap: int = 1000, seed: int = SEED) -> dict:
    """The full [target][partner] gain table of a budgeted sweep: measured where a pair was
    trained, predicted elsewhere, with intervals and an honest estimate of the prediction's accuracy.

    tasks: every task of the sweep; truth: {(target, partner): seed-mean gain} of the trained
    pairs (percent, `ground_truth`); tables: {scorer: {(target, partner): value}} over every
    ordered pair. Returns evaluation.json's `budget`: pairs, trained (with trained_pairs),
    predictor (its label, kind and scorers), choice ({label: {spearman, abs_error}} cross-validated
    on the trained pairs), accuracy (the nested estimate: each of LEVELS over the trained cells,
    spearman_ci from `bootstrap` resamples of the trained pairs, cells), interval ({coverage,
    half_width} in gain points), table ([{target, partner, gain, low, high, predicted}] every
    ordered pair; low/high only on predicted cells) and headline."""
    gains, values = matrices(tasks, truth, tables)
    n = len(tasks)
    known = np.isfinite(gains)
    everything = list(combinations(range(n), 2))
    trained = [(i, j) for i, j in everything if known[i, j] or known[j, i]]
    untrained = [(i, j) for i, j in everything if not (known[i, j] or known[j, i])]
    found = candidates(sorted(values), maps)
    rng = np.random.default_rng(seed)
    # the accuracy of the whole procedure, by an outer cross-validation over the trained pairs
    nested = np.full(gains.shape, np.nan)
    for fold in _folds(trained, folds, rng):
        held = _mask(gains.shape, fold) & known
        rest = [p for p in trained if p not in set(fold)]
        if rest:
            nested[held] = _procedure(found, values, gains, rest, held, folds, rng)[1][held]
    scored = known & np.isfinite(nested)
    levels = held_out_levels(nested, gains, scored)
    low_high = _bootstrap_spearman(nested, gains, [p for p in trained if scored[p] or scored[p[::-1]]], bootstrap, rng)
    errors = np.abs(nested[scored] - gains[scored])
    half_width = _conformal(errors, coverage)
    # the table: measured cells as they are, the untrained ones predicted by the choice on every trained pair
    target = _mask(gains.shape, untrained)
    label, predicted, choice = _procedure(found, values, gains, trained, target, folds, rng) if untrained else (None, gains, {})
    table = []
    for i, t in enumerate(tasks):
        for j, p in enumerate(tasks):
            if i == j:
                continue
            if target[i, j]:
                g = float(predicted[i, j])
                table.append({"target": t, "partner": p, "gain": g, "predicted": True,
                              "low": None if half_width is None else g - half_width, "high": None if half_width is None else g + half_width})
            elif known[i, j]:
                table.append({"target": t, "partner": p, "gain": float(gains[i, j]), "predicted": False, "low": None, "high": None})
    spec = found.get(label or "", (None, []))
    out = {"pairs": len(everything), "trained": len(trained), "trained_pairs": [[tasks[i], tasks[j]] for i, j in trained],
           "predictor": {"label": label, "kind": spec[0], "scorers": spec[1]}, "choice": choice,
           "accuracy": {**{k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in levels.items()},
                        "spearman_ci": low_high, "cells": int(scored.sum()), "folds": min(folds, len(trained))},
           "interval": {"coverage": coverage, "half_width": half_width}, "table": table}
    out["headline"] = budget_headline(out)
    return out


def _bootstrap_spearman(predicted: np.ndarray, gains: np.ndarray, pairs: list[tuple[int, int]], draws: int,
                        rng: np.random.Generator) -> list[float] | None:
    """95% percentile interval of the Spearman of predicted against measured cells, resampling
    whole pairs (both cells of a pair together): None with fewer than 3 pairs or no draw defined."""
    if len(pairs) < 3 or draws <= 0:
        return None
    cells = [[(i, j), (j, i)] for i, j in pairs]
    x = np.array([[predicted[c] for c in pair] for pair in cells])
    y = np.array([[gains[c] for c in pair] for pair in cells])
    values = []
    for _ in range(draws):
        pick = rng.integers(0, len(pairs), len(pairs))
        a, b = x[pick].ravel(), y[pick].ravel()
        ok = np.isfinite(a) & np.isfinite(b)
        rho = spearman_of(a[ok], b[ok])
        if not math.isnan(rho):
            values.append(rho)
    if not values:
        return None
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


def _conformal(errors: np.ndarray, coverage: float) -> float | None:
    """The half-width that holds `coverage` of future absolute errors drawn like `errors`: their
    ceil((m + 1) coverage)-th smallest of m (split conformal); None when m is too small for that."""
    m = len(errors)
    rank = math.ceil((m + 1) * coverage)
    if m == 0 or rank > m:
        return None
    return float(np.sort(errors)[rank - 1])


def budget_headline(result: dict) -> str:
    """One sentence: how many pairs were trained, what predicted the rest and how well."""
    acc, label = result["accuracy"], result["predictor"]["label"]
    if result["trained"] == result["pairs"]:
        return f"every one of the {result['pairs']} pairs was trained: nothing is predicted."
    rho, ci = acc.get("spearman"), acc.get("spearman_ci")
    how = "its accuracy is unknown (too few trained pairs to hold any out)" if rho is None else (
        f"on pairs held out of the trained ones (nested cross-validation), its predictions reach Spearman {rho:.2f} with the measured gains"
        + (f" (95% interval [{ci[0]:.2f}, {ci[1]:.2f}])" if ci else ""))
    width = result["interval"]["half_width"]
    band = f"; each predicted gain carries +- {width:.2f} points for {result['interval']['coverage']:.0%} coverage" if width is not None else ""
    return (f"{result['pairs'] - result['trained']} of {result['pairs']} pairs are predicted, not measured: "
            f"{result['trained']} trained pairs calibrated {label}; {how}{band}.")
