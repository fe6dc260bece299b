"""Ground truth and the evaluation levels against scipy and hand-computed answers."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from raytaskaff.evaluation import evaluate_score, gains_per_seed, ground_truth, noise_ceiling
from raytaskaff.evaluation.levels import best_partners, correlations, coverage, coverage_warning, partner_ranking, truth_warnings
from raytaskaff.evaluation.reference import BEST_PARTNER, reference_check

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
    assert best["a"] == {"chosen": ["b", "c"], "best": ["b"], "chosen_gain": 3.0, "best_gain": 4.0, "hit": True, "undecidable": False}
    assert best["b"] == {"chosen": ["a"], "best": ["c"], "chosen_gain": -1.0, "best_gain": 3.0, "hit": False, "undecidable": False}
    # c has one known gain: nothing to rank, so undecidable, neither hit nor miss
    assert best["c"] == {"chosen": ["b"], "best": ["a"], "chosen_gain": None, "best_gain": 5.0, "hit": None, "undecidable": True}
    result = evaluate_score(score, truth, bootstrap=0)
    assert (result["hits"], result["targets"], result["undecidable"]) == (1, 2, 1)
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


def test_a_constant_ground_truth_decides_nothing():
    truth = {pair: 1.0 for pair in itertools.permutations(TASKS, 2)}
    score = {pair: float(i) for i, pair in enumerate(itertools.permutations(TASKS, 2))}
    result = evaluate_score(score, truth, bootstrap=0)
    assert (result["hits"], result["targets"], result["undecidable"]) == (0, 0, 3)
    assert result["regret"] is None and result["spearman"] is None
    assert all(b["undecidable"] and b["hit"] is None for b in result["best_partner"].values())
    (warning,) = truth_warnings(truth)
    assert "constant" in warning and "cannot rank" in warning


def test_tied_and_undecidable_targets_are_named():
    truth = {("a", "b"): 2.0, ("a", "c"): 2.0, ("b", "a"): 1.0, ("b", "c"): 1.0, ("c", "a"): 3.0, ("c", "b"): 0.0}
    (undecidable,) = truth_warnings(truth)
    assert "a, b undecidable" in undecidable
    truth3 = {**{(t, p): float(i) for i, (t, p) in enumerate(itertools.permutations("abcd", 2))}, ("a", "c"): 2.0, ("a", "d"): 2.0}
    assert truth_warnings(truth3) == ["the ground truth's best partners tie for 1 target(s): a (c = d)"]
    assert truth_warnings({}) == ["the ground truth has no known gain: nothing can be judged"]


def test_coverage_counts_pairs_and_targets_of_the_known_ground_truth():
    truth = {pair: float(i) for i, pair in enumerate(itertools.permutations(TASKS, 2))}
    score = {("a", "b"): 1.0}
    cover = coverage(score, truth)
    assert cover == {"pairs": 1, "pairs_known": 6, "targets": 1, "targets_known": 3}
    assert coverage_warning("mine", cover) == ("score mine covers 1/6 pairs and 1/3 targets of the ground truth: its numbers "
                                               "speak for those only")
    assert coverage_warning("mine", coverage(truth, truth)) is None
    # a lone scored partner of a target is still a choice, but hits count it: the warning says how little that means
    assert evaluate_score(score, truth, bootstrap=0)["coverage"] == cover


def test_the_reference_study_beside_a_ground_truth():
    five = ["segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal"]
    truth = {(t, p): 1.0 for t, p in itertools.permutations(five, 2)}
    truth["segment_semantic", "normal"] = 5.0  # agrees with the study
    truth["keypoints2d", "edge_texture"] = 5.0  # disagrees: the study has normal
    rows = {r["target"]: r for r in reference_check(truth, five)}
    assert list(rows) == five and BEST_PARTNER["normal"] == "edge_texture"
    assert rows["segment_semantic"]["agree"] is True and rows["segment_semantic"]["best"] == ["normal"]
    assert rows["keypoints2d"]["agree"] is False and rows["keypoints2d"]["gain_of_reference_partner"] == 1.0
    assert rows["normal"]["agree"] is None  # every partner ties: undecidable
    assert all(r["reference_gain"] is None for r in rows.values())  # not available: never guessed
    only = reference_check({("normal", "depth_zbuffer"): 1.0, ("depth_zbuffer", "normal"): 2.0}, ["normal", "depth_zbuffer"])
    assert [(r["target"], r["agree"]) for r in only] == [("depth_zbuffer", None), ("normal", None)]  # one partner: undecidable
    assert reference_check(truth, ["a", "b"]) == []
