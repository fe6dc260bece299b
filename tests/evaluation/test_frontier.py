"""Calibrated scorers and the cost-accuracy frontier: the maps against scipy and brute force, the
held-out levels against `levels`, and the frontier on planted tables (a noisy monotone scorer, pure
noise)."""

import itertools
import math

import numpy as np
import pytest
from scipy import optimize, stats

from raytaskaff.evaluation.frontier import (fit_affine, fit_isotonic, fit_ridge, fit_spline, frontier, held_out_levels, k_grid, pav, ranks,
                                            ridge_loo)
from raytaskaff.evaluation.levels import best_partners, partner_ranking

TASKS = [f"t{i}" for i in range(8)]


def brute_isotonic(y):
    """The unweighted isotonic fit by its min-max formula: max over j <= i of min over l >= i of mean(y[j..l])."""
    n = len(y)
    return np.array([max(min(np.mean(y[j:l + 1]) for l in range(i, n)) for j in range(i + 1)) for i in range(n)])


@pytest.mark.parametrize("seed", range(5))
def test_pav_matches_brute_force_and_scipy(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=12).round(1)  # rounded: ties too
    w = rng.uniform(0.5, 3.0, size=12)
    np.testing.assert_allclose(pav(y), brute_isotonic(y), atol=1e-12)
    np.testing.assert_allclose(pav(y, w), optimize.isotonic_regression(y, weights=w).x, atol=1e-12)


def test_isotonic_picks_the_better_direction_and_interpolates():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    down = fit_isotonic(x, np.array([4.0, 3.0, 1.0, 0.0]))
    np.testing.assert_allclose(down(np.array([0.5, 2.5, -5.0, 9.0])), [3.5, 0.5, 4.0, 0.0])
    tied = fit_isotonic(np.array([1.0, 1.0, 2.0]), np.array([0.0, 2.0, 5.0]))  # tied x share their mean
    np.testing.assert_allclose(tied(np.array([1.0, 2.0])), [1.0, 5.0])
    np.testing.assert_allclose(fit_affine(x, 2 * x + 1)(np.array([10.0])), [21.0])
    np.testing.assert_allclose(fit_affine(np.ones(3), np.array([1.0, 2.0, 6.0]))(np.zeros(2)), [3.0, 3.0])


def test_ridge_leave_one_out_matches_refitting():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(15, 3))
    y = x @ [1.0, -2.0, 0.5] + rng.normal(size=15)
    z = x - x.mean(axis=0)
    penalties = (0.01, 1.0, 30.0)
    coef, errors = ridge_loo(z, y, penalties)
    for p, c, error in zip(penalties, coef, errors):
        def solve(rows):  # intercept unpenalised: the penalty as extra rows on the slopes only
            a = np.vstack([np.column_stack([np.ones(len(rows)), z[rows]]), np.column_stack([np.zeros(3), math.sqrt(p) * np.eye(3)])])
            return np.linalg.lstsq(a, np.r_[y[rows], np.zeros(3)], rcond=None)[0]
        np.testing.assert_allclose(c, solve(np.arange(15))[1:], atol=1e-9)
        loo = [y[i] - np.r_[1.0, z[i]] @ solve(np.delete(np.arange(15), i)) for i in range(15)]
        assert error == pytest.approx(np.mean(np.square(loo)), rel=1e-9)
    predict, chosen = fit_ridge(x, y, penalties)  # on standardised columns
    coef, errors = ridge_loo(z / x.std(axis=0), y, penalties)
    assert chosen == penalties[int(np.argmin(errors))]
    assert predict(x[:1])[0] == pytest.approx(y.mean() + z[0] / x.std(axis=0) @ coef[int(np.argmin(errors))])


def test_ranks_match_scipy():
    x = np.array([3.0, 1.0, 3.0, 2.0, 1.0, 3.0])
    np.testing.assert_allclose(ranks(x), stats.rankdata(x))


def test_held_out_levels_match_the_levels_module():
    rng = np.random.default_rng(5)
    n = len(TASKS)
    truth = rng.integers(0, 4, size=(n, n)).astype(float)  # few values: ties in truth and prediction
    predicted = rng.integers(0, 4, size=(n, n)).astype(float)
    held = rng.random((n, n)) < 0.6
    np.fill_diagonal(held, False)
    got = held_out_levels(predicted, truth, held)
    cells = list(zip(*np.nonzero(held)))
    gains = {(TASKS[i], TASKS[j]): truth[i, j] for i, j in cells}
    score = {(TASKS[i], TASKS[j]): predicted[i, j] for i, j in cells}
    assert got["spearman"] == pytest.approx(stats.spearmanr([score[k] for k in gains], list(gains.values())).statistic)
    assert got["ranking_kendall"] == pytest.approx(partner_ranking(score, gains, TASKS)["ranking_kendall"])
    best = best_partners(score, gains, TASKS)
    decided = [b for b in best.values() if b["hit"] is not None]
    assert got["hit_rate"] == pytest.approx(sum(b["hit"] for b in decided) / len(decided))
    assert got["regret"] == pytest.approx(np.mean([b["best_gain"] - b["chosen_gain"] for b in best.values()
                                                   if b["chosen_gain"] is not None and not b["undecidable"]]))
    assert got["abs_error"] == pytest.approx(np.mean([abs(score[k] - v) for k, v in gains.items()]))


def planted(noise_of_scorer: float, seed: int = 0):
    """Truth over every ordered pair of TASKS; `mono`: a noisy monotone (exponential) function of it;
    `noise`: pure noise."""
    rng = np.random.default_rng(seed)
    truth = {k: float(rng.normal(scale=3.0)) for k in itertools.permutations(TASKS, 2)}
    mono = {k: math.exp(v / 3.0 + rng.normal(scale=noise_of_scorer)) for k, v in truth.items()}
    noise = {k: float(rng.normal()) for k in truth}
    return truth, mono, noise


def test_calibration_recovers_a_noisy_monotone_scorer():
    truth, mono, noise = planted(0.4)
    level = stats.spearmanr(list(mono.values()), list(truth.values())).statistic  # the planted level, about 0.9
    result = frontier(truth, {"mono": mono, "noise": noise}, {"mono": 0.1, "noise": 0.0}, stl_share=0.2, ceiling=0.95, draws=30)
    assert result["pairs"] == 28 and result["cells"] == 56
    for name in ("mono (isotonic)", "mono (affine)", "mono (spline)", "combined (ridge)"):
        late = [p for p in result["predictors"][name]["points"] if p["k"] >= 10]
        assert late and all(abs(p["spearman"] - level) < 0.1 for p in late), (name, level, late)
    # the affine map of an exponential misses gains that isotonic gets right
    iso, aff = (result["predictors"][f"mono ({k})"]["points"][-1]["abs_error"] for k in ("isotonic", "affine"))
    assert iso < aff
    # cost: the scorer's fraction, the STL runs' share and k/P of the pair runs'
    point = next(p for p in result["predictors"]["mono (isotonic)"]["points"] if p["k"] == 7)
    assert point["cost"] == pytest.approx(0.1 + 0.2 + 0.8 * 7 / 28)
    assert result["predictors"]["mono"]["points"][0]["cost"] == 0.1 and result["predictors"]["mono"]["points"][0]["k"] == 0
    assert result["cheapest"]["predictor"] in ("mono", "mono (isotonic)", "mono (affine)", "combined (ridge)")
    assert "cheapest way to reach 90% of the noise ceiling" in result["headline"]


def test_pure_noise_stays_at_the_random_baseline():
    truth, _, noise = planted(0.0, seed=1)
    result = frontier(truth, {"noise": noise}, {"noise": 0.01}, ceiling=0.9, draws=40)
    for name in ("noise (isotonic)", "noise (affine)", "noise (spline)"):
        points = result["predictors"][name]["points"]
        assert len(points) == len(result["ks"]) - 1  # every k > 0
        for p in points:
            low, high = p["spearman_ci"]
            assert low < 0 < high, (name, p)  # every interval says "no better than chance"
            if p["k"] <= result["pairs"] // 2:  # held-out cells are many: the mean itself sits near 0
                assert abs(p["spearman"]) < 0.15, (name, p)
    assert result["cheapest"] is None
    assert result["headline"].startswith("no predictor reaches 90% of the noise ceiling")


def test_k_grid():
    assert k_grid(10) == list(range(9))
    grid = k_grid(780)
    assert grid[0] == 0 and grid[-1] == 778 and len(grid) == 12


def test_the_sweep_puts_the_frontier_in_its_evaluation():
    """pipeline.budget: the scorers' fractions as priced, the STL share as judged, the split-half ceiling."""
    from types import SimpleNamespace

    import pandas as pd

    from raytaskaff.pipeline import Judged, Scored, budget
    from raytaskaff.scorers.base import Cost, Score

    truth, mono, _ = planted(0.2)
    frame = pd.DataFrame([(t, p, g) for (t, p), g in truth.items()], columns=["target", "partner", "gain"])
    scored = Scored(scores={"mono": Score("mono", pd.DataFrame([(t, p, v) for (t, p), v in mono.items()],
                                                               columns=["target", "partner", "value"]), Cost())},
                    costs={"mono": {"fraction_of_ground_truth": 0.05}})
    ceiling = {"single_seed": {"spearman": 0.6}, "split_half": {"spearman": 0.8}}
    judged = Judged(frame, frame, {"noise_ceiling": ceiling}, {}, stl_share=0.25)
    result = budget(SimpleNamespace(bootstrap=200), scored, judged)
    assert result["draws"] == 10 and result["ceiling"] == 0.8 and result["stl_share"] == 0.25
    assert result["predictors"]["mono"]["points"][0]["cost"] == 0.05
    point = result["predictors"]["mono (affine)"]["points"][1]
    assert point["cost"] == pytest.approx(0.05 + 0.25 + 0.75 * point["k"] / 28)
    assert budget(SimpleNamespace(bootstrap=0), scored, judged)["predictors"]["mono (affine)"]["points"] == []


def test_a_reversed_scorer_is_useless_raw_and_good_calibrated():
    truth, mono, _ = planted(0.2, seed=2)
    reversed_ = {k: -v for k, v in mono.items()}  # higher means less gain: the raw ranking runs backwards
    result = frontier(truth, {"rev": reversed_}, {"rev": 0.05}, stl_share=0.2, ceiling=0.9, draws=20)
    assert result["predictors"]["rev"]["points"][0]["spearman"] < -0.8
    found = result["cheapest"]
    assert found["predictor"] in ("rev (isotonic)", "rev (affine)") and found["k"] >= 1
    first = min(p["k"] for p in result["predictors"][found["predictor"]]["points"] if p["spearman"] >= 0.81)
    assert found["k"] == first and found["cost"] == pytest.approx(0.05 + 0.2 + 0.8 * first / 28)
    assert result["headline"].startswith(f"the cheapest way to reach 90% of the noise ceiling (Spearman 0.81 of 0.90) is "
                                         f"{found['predictor']} calibrated on {first} of 28 trained pairs")


def test_the_spline_map_bends_where_monotone_maps_cannot():
    """A scorer that peaks at the middle gains (|truth| planted): no monotone or linear map ranks
    the held-out cells, the spline does."""
    rng = np.random.default_rng(4)
    truth = {k: float(rng.normal(scale=3.0)) for k in itertools.permutations(TASKS, 2)}
    folded = {k: -abs(v) + float(rng.normal(scale=0.2)) for k, v in truth.items()}  # gain = -|...|: not monotone in the truth
    gains = {k: -abs(v) for k, v in truth.items()}
    signed = {k: v for k, v in truth.items()}
    result = frontier(gains, {"signed": signed, "folded": folded}, draws=15, maps=("isotonic", "affine", "spline"))
    late = lambda name: result["predictors"][name]["points"][-3]["spearman"]  # noqa: E731
    assert late("signed (spline)") > 0.8 and late("signed (isotonic)") < 0.5 and late("signed (affine)") < 0.5
    assert late("folded (isotonic)") > 0.8  # a monotone scorer needs no bend


def test_spline_map_reproduces_a_cubic_and_is_flat_beyond_the_data():
    x = np.linspace(-2, 2, 40)
    fit = fit_spline(x, x ** 3 - x)
    np.testing.assert_allclose(fit(np.array([-1.5, 0.3, 1.0])), [-1.875, -0.273, 0.0], atol=0.05)
    np.testing.assert_allclose(fit(np.array([5.0])), fit(np.array([2.0])))
    np.testing.assert_allclose(fit_spline(np.ones(4), np.arange(4.0))(np.zeros(2)), [1.5, 1.5])
