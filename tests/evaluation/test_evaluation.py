"""Ground truth and the evaluation levels against scipy and hand-computed answers."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from raytaskaff.evaluation import evaluate_score, gains_per_seed, ground_truth, noise_ceiling
from raytaskaff.evaluation.levels import best_partners, correlations, partner_ranking

TASKS = ("a", "b", "c")


def test_gains_and_their_mean_over_seeds():
    stl = {0: {"a": 2.0, "b": 4.0}, 1: {"a": 1.0, "b": 2.0}}
    pairs = {0: {("a", "b"): {"a": 1.0, "b": 5.0}}, 1: {("a", "b"): {"a": 0.9, "b": 2.0}}}
    per_seed = gains_per_seed(stl, pairs)
    table = {(r.seed, r.target, r.partner): r.gain for r in per_seed.itertuples()}
    assert table == pytest.approx({(0, "a", "b"): 50.0, (0, "b", "a"): -25.0, (1, "a", "b"): 10.0, (1, "b", "a"): 0.0})
    truth = ground_truth(per_seed).set_index(["target", "partner"])
    row = truth.loc[("a", "b")]
    assert row.gain == pytest.approx(30.0) and row.gain_std == pytest.approx(np.std([50, 10], ddof=1)) and row.seeds == 2
    half = stats.t.ppf(0.975, 1) * np.std([50, 10], ddof=1) / np.sqrt(2)
    assert (row.gain_ci_low, row.gain_ci_high) == pytest.approx((30 - half, 30 + half))


def test_correlations_match_scipy_and_intervals_cover_them():
    rng = np.random.default_rng(0)
    x = rng.normal(size=20)
    y = x + rng.normal(scale=0.8, size=20)
    out = correlations(x, y, bootstrap=500)
    assert out["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic)
    assert out["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert out["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic)
    for kind in ("pearson", "spearman", "kendall"):
        low, high = out[f"{kind}_ci"]
        assert low <= out[kind] <= high and high - low > 0.05
    constant = correlations(x, np.ones(20), bootstrap=10)
    assert constant["pearson"] is None and constant["pearson_ci"] is None


def test_best_partner_with_ties_and_missing_gains():
    score = {("a", "b"): 1.0, ("a", "c"): 1.0, ("b", "a"): 0.5, ("b", "c"): 0.1, ("c", "a"): 0.0, ("c", "b"): 2.0}
    truth = {("a", "b"): 4.0, ("a", "c"): 2.0, ("b", "a"): -1.0, ("b", "c"): 3.0, ("c", "a"): 5.0}  # (c, b) unknown
    best = best_partners(score, truth, list(TASKS))
    assert best["a"] == {"chosen": ["b", "c"], "best": ["b"], "chosen_gain": 3.0, "best_gain": 4.0, "hit": True}
    assert best["b"] == {"chosen": ["a"], "best": ["c"], "chosen_gain": -1.0, "best_gain": 3.0, "hit": False}
    assert best["c"] == {"chosen": ["b"], "best": ["a"], "chosen_gain": None, "best_gain": 5.0, "hit": None}  # b's gain is unknown
    result = evaluate_score(score, truth, bootstrap=0)
    assert (result["hits"], result["targets"]) == (1, 2)
    assert result["regret"] == pytest.approx(((4 - 3) + (3 - -1)) / 2)  # c's choice has no known gain
    assert result["pairs"] == 5


def test_partner_ranking_is_the_mean_per_target_kendall_tau_b():
    rng = np.random.default_rng(1)
    tasks = ["a", "b", "c", "d", "e"]
    score = {(t, p): float(rng.normal()) for t, p in itertools.permutations(tasks, 2)}
    truth = {(t, p): float(rng.normal()) for t, p in itertools.permutations(tasks, 2)}
    expected = np.mean([stats.kendalltau([score[t, p] for p in tasks if p != t], [truth[t, p] for p in tasks if p != t]).statistic
                        for t in tasks])
    assert partner_ranking(score, truth, tasks)["ranking_kendall"] == pytest.approx(expected)


def test_noise_ceiling_by_brute_force():
    rng = np.random.default_rng(2)
    base = rng.normal(size=6)
    pairs = list(itertools.permutations(TASKS, 2))
    rows = [(seed, t, p, base[i] + rng.normal(scale=0.5)) for seed in range(3) for i, (t, p) in enumerate(pairs)]
    per_seed = pd.DataFrame(rows, columns=["seed", "target", "partner", "gain"])
    ceiling = noise_ceiling(per_seed)
    by_seed = {s: per_seed[per_seed.seed == s].gain.to_numpy() for s in range(3)}
    expected = np.mean([stats.spearmanr(by_seed[a], by_seed[b]).statistic for a, b in itertools.permutations(range(3), 2)])
    assert ceiling["single_seed"]["spearman"] == pytest.approx(expected)
    splits = [stats.spearmanr(by_seed[a], (by_seed[b] + by_seed[c]) / 2).statistic for a, b, c in ((0, 1, 2), (1, 0, 2), (2, 0, 1))]
    assert ceiling["split_half"]["spearman"] == pytest.approx(np.mean(splits))
    assert ceiling["split_half"]["splits"] == 3 and ceiling["seeds"] == 3
    assert math.isfinite(ceiling["single_seed"]["hit_rate"]) and ceiling["single_seed"]["regret"] >= 0
