"""Scorer against scorer: the paired bootstrap against brute force, a planted case, seed stability
by hand, and the sentence generated from them."""

import itertools

import numpy as np
import pytest
from scipy import stats

from raytaskaff.evaluation import compare_scorers, evaluate_all, headline, seed_stability
from raytaskaff.evaluation.compare import Draws, draw, paired_difference, spearman_rows

TASKS = ("a", "b", "c")
PAIRS = list(itertools.permutations(TASKS, 2))


def _groups(pairs):
    targets = sorted({t for t, _ in pairs})
    return [np.array([i for i, (t, _) in enumerate(pairs) if t == target]) for target in targets]


def _hits_by_hand(score, truth, pairs):
    """Per target: 1 when a highest-scored partner is a highest-gain one, None when undecidable."""
    out = []
    for target in sorted({t for t, _ in pairs}):
        index = [i for i, (t, _) in enumerate(pairs) if t == target]
        gains = {i: truth[i] for i in index}
        if len(set(gains.values())) == 1:
            out.append(None)
            continue
        best = {i for i in index if truth[i] == max(gains.values())}
        chosen = {i for i in index if score[i] == max(score[j] for j in index)}
        out.append(1 if best & chosen else 0)
    return out


def test_spearman_rows_is_scipy_row_by_row():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (50, 7)).astype(float)  # many ties
    y = rng.normal(size=(50, 7))
    x[0] = 1.0  # a constant row: undefined
    got = spearman_rows(x, y)
    assert np.isnan(got[0])
    assert got[1:] == pytest.approx([stats.spearmanr(a, b).statistic for a, b in zip(x[1:], y[1:])])


def test_paired_bootstrap_equals_brute_force_on_every_resample():
    """Two seeds and three pairs: all 2^2 * 3^3 = 108 resamples, each recomputed with numpy and scipy."""
    truth = np.array([[1.0, 3.0, 2.0], [2.0, 2.5, 0.0]])  # (seeds, pairs)
    a = np.array([[0.1, 0.9, 0.3], [0.4, 0.2, 0.1]])  # per seed
    b = np.array([3.0, 1.0, 2.0])  # seed-free
    seed_draws = list(itertools.product(range(2), repeat=2))
    pair_draws = list(itertools.product(range(3), repeat=3))
    combos = list(itertools.product(seed_draws, pair_draws))
    draws = Draws(np.array([s for s, _ in combos]), np.array([p for _, p in combos]), np.zeros((len(combos), 1), dtype=int))
    groups = [np.arange(3)]  # one target with three partners
    got = paired_difference(truth, a, b, groups, draws)
    brute = []
    for seeds, pairs in combos:
        t, s_a = truth[list(seeds)].mean(axis=0)[list(pairs)], a[list(seeds)].mean(axis=0)[list(pairs)]
        s_b = b[list(pairs)]
        with np.errstate(invalid="ignore"):
            rho_a = stats.spearmanr(s_a, t).statistic if np.ptp(t) and np.ptp(s_a) else np.nan
            rho_b = stats.spearmanr(s_b, t).statistic if np.ptp(t) and np.ptp(s_b) else np.nan
        brute.append(rho_a - rho_b)
    brute = np.array(brute)
    finite = brute[np.isfinite(brute)]
    assert (got["replicates"], got["replicates_defined"]) == (108, len(finite))
    assert got["spearman_ci"] == pytest.approx(list(np.percentile(finite, [2.5, 97.5])))
    # the point estimate uses every seed and pair once
    mean_truth = truth.mean(axis=0)
    assert got["spearman_diff"] == pytest.approx(stats.spearmanr(a.mean(axis=0), mean_truth).statistic
                                                 - stats.spearmanr(b, mean_truth).statistic)
    assert got["spearman_significant"] == (got["spearman_ci"][0] > 0 or got["spearman_ci"][1] < 0)


def test_paired_bootstrap_hits_and_spearman_recomputed_by_hand_from_the_same_draws():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(3, len(PAIRS)))
    a = truth + rng.normal(scale=0.5, size=truth.shape)
    b = rng.normal(size=len(PAIRS))
    draws = draw(3, len(PAIRS), len(TASKS), 300, seed=11)
    got = paired_difference(truth, a, b, _groups(PAIRS), draws)
    rho, hits = [], []
    for seeds, pairs, targets in zip(draws.seeds, draws.pairs, draws.targets):
        t, s_a = truth[seeds].mean(axis=0), a[seeds].mean(axis=0)
        rho.append(stats.spearmanr(s_a[pairs], t[pairs]).statistic - stats.spearmanr(b[pairs], t[pairs]).statistic)
        per_target = [(x or 0) - (y or 0) for x, y in zip(_hits_by_hand(s_a, t, PAIRS), _hits_by_hand(b, t, PAIRS))]
        hits.append(sum(per_target[i] for i in targets))
    assert got["spearman_ci"] == pytest.approx(list(np.percentile(rho, [2.5, 97.5])))
    assert got["hits_ci"] == pytest.approx(list(np.percentile(hits, [2.5, 97.5])))
    mean_truth = truth.mean(axis=0)
    hand = _hits_by_hand(a.mean(axis=0), mean_truth, PAIRS), _hits_by_hand(b, mean_truth, PAIRS)
    assert (got["hits_a"], got["hits_b"]) == (sum(h or 0 for h in hand[0]), sum(h or 0 for h in hand[1]))
    assert got["hits_diff"] == got["hits_a"] - got["hits_b"] and got["targets"] == 3


def test_the_draws_come_from_one_seeded_generator():
    draws = draw(4, 6, 3, 5, seed=2)
    rng = np.random.default_rng(2)
    assert (draws.seeds == rng.integers(0, 4, (5, 4))).all()
    assert (draws.pairs == rng.integers(0, 6, (5, 6))).all()
    assert (draws.targets == rng.integers(0, 3, (5, 3))).all()


def _planted(seeds=4, tasks=5, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"task{i}" for i in range(tasks)]
    pairs = list(itertools.permutations(names, 2))
    base = rng.normal(size=len(pairs))
    truth = {s: {k: float(base[i] + rng.normal(scale=noise)) for i, k in enumerate(pairs)} for s in range(seeds)}
    copy = {s: {k: truth[s][k] + float(rng.normal(scale=noise)) for k in pairs} for s in range(seeds)}
    pure_noise = {k: float(rng.normal()) for k in pairs}
    mean = {k: float(np.mean([copy[s][k] for s in copy])) for k in pairs}
    return truth, {"copy": mean, "noise": pure_noise}, {"copy": copy}


def test_a_noisy_copy_of_the_truth_is_significantly_better_than_noise():
    truth, tables, per_seed = _planted()
    (c,) = compare_scorers(truth, tables, per_seed, replicates=2000)
    assert (c["a"], c["b"]) == ("copy", "noise")
    assert c["spearman_diff"] > 0.5 and c["spearman_ci"][0] > 0 and c["spearman_significant"] is True
    assert c["hits_diff"] > 0 and c["seeds"] == 4 and c["pairs"] == 20
    # the other way round: the same difference, negated
    (r,) = compare_scorers(truth, {"noise": tables["noise"], "copy": tables["copy"]}, per_seed, replicates=2000)
    assert r["spearman_diff"] == pytest.approx(-c["spearman_diff"]) and r["spearman_ci"][1] < 0
    # two copies of the same scorer differ by nothing
    (same,) = compare_scorers(truth, {"copy": tables["copy"], "twin": tables["copy"]}, {"copy": per_seed["copy"], "twin": per_seed["copy"]},
                              replicates=500)
    assert same["spearman_diff"] == 0 and same["spearman_ci"] == [0, 0] and same["spearman_significant"] is False


def test_without_replicates_the_difference_has_no_interval():
    truth, tables, per_seed = _planted()
    (c,) = compare_scorers(truth, tables, per_seed, replicates=0)
    assert c["spearman_diff"] > 0 and c["spearman_ci"] is None and c["spearman_significant"] is None


def test_seed_stability_by_hand():
    p = [("a", "b"), ("a", "c"), ("b", "a")]
    tables = {0: dict(zip(p, [1.0, 2.0, 3.0])), 1: dict(zip(p, [10.0, 20.0, 30.0])), 2: dict(zip(p, [1.0, 1.0, 2.0]))}
    out = seed_stability(tables)
    # ranks [1, 2, 3] against [1.5, 1.5, 3]: centred [-1, 0, 1] and [-.5, -.5, 1], so 1.5 / sqrt(2 * 1.5)
    tie = 1.5 / np.sqrt(2 * 1.5)
    assert [(q["seeds"], q["spearman"]) for q in out["pairwise"]] == [([0, 1], pytest.approx(1.0)), ([0, 2], pytest.approx(tie)),
                                                                     ([1, 2], pytest.approx(tie))]
    assert out["mean_spearman"] == pytest.approx((1 + 2 * tie) / 3) and out["seeds"] == 3
    assert seed_stability({0: tables[0]}) == {"seeds": 1, "mean_spearman": None, "pairwise": []}


def test_evaluate_all_on_the_planted_case():
    truth, tables, per_seed = _planted()
    out = evaluate_all(truth, tables, per_seed, bootstrap=500)
    assert out["headline"].startswith("no scorer beats copy; copy beats noise; other differences are within noise;")
    assert "noise ceiling is Spearman" in out["headline"]
    assert out["stability"]["copy"]["seeds"] == 4 and out["stability"]["noise"]["seeds"] == 0
    assert out["stability"]["ground_truth"]["mean_spearman"] == pytest.approx(out["noise_ceiling"]["single_seed"]["spearman"])
    assert out["scorers"]["copy"]["coverage"] == {"pairs": 20, "pairs_known": 20, "targets": 5, "targets_known": 5}
    assert out["warnings"] == [] and out["reference"] == []


def _comparison(a, b, diff, significant):
    return {"a": a, "b": b, "spearman_diff": diff, "spearman_significant": significant}


CEILING = {"single_seed": {"spearman": 0.8}, "split_half": {"spearman": 0.9}}


def test_headline_names_what_cannot_be_told_apart_and_what_is_beaten():
    scorers = {"li": {"spearman": 0.6}, "gs": {"spearman": 0.5}, "td": {"spearman": 0.1}}
    comparisons = [_comparison("li", "gs", 0.1, False), _comparison("li", "td", 0.5, True), _comparison("gs", "td", 0.4, True)]
    assert headline(scorers, comparisons, CEILING) == ("li and gs cannot be told apart at this number of seeds (widest gap li - gs = "
                                                       "0.10); both beat td; other differences are within noise; the ground truth's "
                                                       "noise ceiling is Spearman 0.80 from one seed to another and 0.90 split-half, "
                                                       "against li 0.60, gs 0.50 and td 0.10; the highest, li, is 0.30 below the "
                                                       "split-half ceiling.")
    partial = [_comparison("li", "gs", 0.1, False), _comparison("li", "td", 0.5, True), _comparison("gs", "td", 0.4, False)]
    assert headline(scorers, partial, CEILING).startswith("li and gs cannot be told apart at this number of seeds (widest gap li - "
                                                          "gs = 0.10); li beats td; other differences")
    chain = [_comparison("li", "gs", 0.1, True), _comparison("li", "td", 0.5, True), _comparison("gs", "td", 0.4, True)]
    assert headline(scorers, chain, CEILING).startswith("no scorer beats li; li beats gs and td; gs beats td;")
    none = [_comparison(a, b, 0.1, False) for a, b in itertools.combinations(scorers, 2)]
    assert headline(scorers, none, CEILING).startswith("li, gs and td cannot be told apart at this number of seeds (widest gap "
                                                       "li - td = 0.10); no Spearman difference is significant")


def test_headline_says_when_the_ceiling_is_too_low_or_missing():
    scorers = {"li": {"spearman": 0.95}, "td": {"spearman": 0.1}}
    comparisons = [_comparison("li", "td", 0.85, True)]
    low = {"single_seed": {"spearman": 0.2}, "split_half": {"spearman": 0.35}}
    assert headline(scorers, comparisons, low).endswith("but the ground truth agrees with itself only at Spearman 0.20 from one "
                                                        "seed to another and 0.35 split-half, too low to judge any scorer firmly.")
    assert headline(scorers, comparisons, CEILING).endswith("li reaches the split-half ceiling.")
    assert "fewer than two seeds" in headline(scorers, comparisons, None)
    assert headline(scorers, [], CEILING, "the ground truth is constant").startswith("the ground truth is constant: it ranks nothing")
    unbooted = [{"a": "li", "b": "td", "spearman_diff": 0.85, "spearman_significant": None}]
    assert headline(scorers, unbooted, CEILING).startswith("without bootstrap replicates no difference between li and td")


def test_headline_adds_significant_best_partner_differences():
    scorers = {"li": {"spearman": 0.6}, "td": {"spearman": 0.5}}
    comparisons = [{**_comparison("li", "td", 0.1, False), "hits_diff": -3, "hits_significant": True}]
    assert headline(scorers, comparisons, CEILING).startswith("li and td cannot be told apart at this number of seeds (widest gap "
                                                              "li - td = 0.10); no Spearman difference is significant at 95%; "
                                                              "on best partners td beats li;")
