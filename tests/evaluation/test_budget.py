"""The budgeted ground truth's predictions (`evaluation.budget`) on planted tables."""

from __future__ import annotations

import math
from itertools import combinations, permutations

import numpy as np
import pytest
from scipy.stats import spearmanr

from raytaskaff.evaluation.budget import _conformal, predict

TASKS = [f"t{i}" for i in range(10)]


def _planted(seed: int = 0, noise: float = 0.1):
    """A planted gain table over 10 tasks, a scorer that is a noisy monotone (non-linear) function
    of it, and a scorer of pure noise."""
    rng = np.random.default_rng(seed)
    truth = {pair: float(rng.normal(0, 5)) for pair in permutations(TASKS, 2)}
    monotone = {pair: math.exp(g / 4) + rng.normal(0, noise) for pair, g in truth.items()}
    noise_table = {pair: float(rng.normal()) for pair in truth}
    return truth, monotone, noise_table


def _trained(k: int, seed: int = 1):
    pairs = list(combinations(TASKS, 2))
    chosen = [pairs[i] for i in np.random.default_rng(seed).permutation(len(pairs))[:k]]
    return chosen


def _only(truth, pairs):
    return {(a, b): truth[a, b] for p in pairs for a, b in (p, p[::-1])}


def test_a_noisy_monotone_scorer_predicts_the_untrained_pairs_in_order():
    truth, monotone, noise = _planted()
    trained = _trained(20)
    result = predict(TASKS, _only(truth, trained), {"good": monotone, "noise": noise}, bootstrap=300)
    assert (result["pairs"], result["trained"]) == (45, 20)
    assert result["predictor"]["label"] in ("good (isotonic)", "good (spline)", "combined (ridge)")
    table = {(r["target"], r["partner"]): r for r in result["table"]}
    assert len(table) == 90
    measured = {cell for p in trained for cell in (p, p[::-1])}
    assert all(table[c]["predicted"] is (c not in measured) for c in table)
    assert all(table[c]["gain"] == truth[c] and table[c]["low"] is None for c in measured)  # measured cells as they are
    untrained = [c for c in table if c not in measured]
    rho = spearmanr([table[c]["gain"] for c in untrained], [truth[c] for c in untrained])[0]
    assert rho > 0.9  # the planted order, recovered on pairs never trained
    # the nested estimate, from the trained pairs alone, agrees and its interval is clear of zero
    acc = result["accuracy"]
    assert acc["spearman"] > 0.85 and acc["spearman_ci"][0] > 0.6 and acc["cells"] == 40
    # the intervals hold about 90% of the untrained cells' true gains
    inside = np.mean([table[c]["low"] <= truth[c] <= table[c]["high"] for c in untrained])
    assert inside >= 0.8
    assert "25 of 45 pairs are predicted, not measured" in result["headline"]


def test_pure_noise_stays_at_the_random_baseline_and_says_so():
    rng = np.random.default_rng(3)
    truth = {pair: float(rng.normal(0, 5)) for pair in permutations(TASKS, 2)}
    tables = {name: {pair: float(rng.normal()) for pair in truth} for name in ("a", "b")}
    trained = _trained(20)
    result = predict(TASKS, _only(truth, trained), tables, bootstrap=300)
    low, high = result["accuracy"]["spearman_ci"]
    assert low < 0 < high  # the interval includes the random baseline
    table = {(r["target"], r["partner"]): r for r in result["table"] if r["predicted"]}
    rho = spearmanr([r["gain"] for r in table.values()], [truth[c] for c in table])[0]
    assert abs(rho) < 0.35 and low - 0.2 < rho < high + 0.2
    # with no signal, the intervals are about as wide as the gains' own spread
    assert result["interval"]["half_width"] > 5


def test_every_pair_trained_predicts_nothing():
    truth, monotone, noise = _planted()
    result = predict(TASKS, truth, {"good": monotone}, bootstrap=0)
    assert result["trained"] == 45 and not any(r["predicted"] for r in result["table"])
    assert result["headline"] == "every one of the 45 pairs was trained: nothing is predicted."


def test_too_few_pairs_fall_back_to_the_mean_and_say_the_accuracy_is_unknown():
    truth, monotone, _ = _planted()
    result = predict(TASKS, _only(truth, _trained(1)), {"good": monotone}, bootstrap=100)
    predicted = [r["gain"] for r in result["table"] if r["predicted"]]
    assert result["predictor"]["label"] == "mean of the trained gains" and len(predicted) == 88
    pair = _trained(1)[0]
    assert predicted[0] == pytest.approx((truth[pair] + truth[pair[::-1]]) / 2)
    assert result["accuracy"]["spearman"] is None and "unknown" in result["headline"]


@pytest.mark.parametrize("m", [1, 5, 9, 10, 19, 40])
def test_the_conformal_half_width_is_the_corrected_order_statistic(m):
    errors = np.random.default_rng(m).random(m)
    width = _conformal(errors, 0.9)
    rank = math.ceil((m + 1) * 0.9)
    if rank > m:
        assert width is None
    else:  # brute force: the smallest error w with at least `rank` errors <= w
        assert width == min(w for w in errors if np.sum(errors <= w) >= rank)
