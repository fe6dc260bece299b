"""A partial affinity table (label injection on a budget): cells not run are missing, never 0.

The LI scorer's table holds only the pairs it ran (tests/scorers/test_td_li.py); every level of the evaluation, the comparison
between scorers and the coverage read the known cells only, checked against scipy on those cells."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from raytaskaff.evaluation import evaluate_all, evaluate_score


def partial_case(seed):
    rng = np.random.default_rng(seed)
    tasks = [f"t{i}" for i in range(6)]
    truth = {pair: float(rng.normal()) for pair in itertools.permutations(tasks, 2)}
    known = [pair for pair in truth if rng.random() < 0.55]
    score = {pair: float(truth[pair] + rng.normal(scale=0.7)) for pair in known}
    return tasks, truth, score


@pytest.mark.parametrize("seed", range(5))
def test_the_levels_read_the_known_cells_only_against_scipy(seed):
    tasks, truth, score = partial_case(seed)
    out = evaluate_score(score, truth, bootstrap=50)
    pairs = sorted(score)
    x, y = np.array([score[p] for p in pairs]), np.array([truth[p] for p in pairs])
    assert out["pairs"] == len(pairs)
    assert out["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic)
    assert out["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert out["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic)
    kendalls = {}
    for t in tasks:
        partners = sorted(p for (a, p) in score if a == t)
        if len(partners) >= 2:
            kendalls[t] = stats.kendalltau([score[t, p] for p in partners], [truth[t, p] for p in partners]).statistic
    for t in tasks:
        got = out["ranking_per_target"][t]["kendall"]
        assert (got is None) if t not in kendalls or math.isnan(kendalls[t]) else got == pytest.approx(kendalls[t])
    defined = [v for v in kendalls.values() if not math.isnan(v)]
    assert out["ranking_kendall"] == pytest.approx(np.mean(defined))
    hits, regrets, decided = 0, [], 0
    for t in tasks:
        scored = {p: v for (a, p), v in score.items() if a == t}
        gains = {p: v for (a, p), v in truth.items() if a == t}
        best = max(gains, key=gains.get)
        b = out["best_partner"][t]
        if not scored:  # no LI run for this target: no choice, neither hit nor miss
            assert b["chosen"] == [] and b["hit"] is None
            continue
        chosen = max(scored, key=scored.get)  # the highest known score: a missing cell is not 0
        assert b["chosen"] == [chosen] and b["hit"] == (chosen == best)
        hits += chosen == best
        decided += 1
        regrets.append(gains[best] - gains[chosen])
    assert (out["hits"], out["targets"]) == (hits, decided) and out["regret"] == pytest.approx(np.mean(regrets))
    assert out["coverage"] == {"pairs": len(pairs), "pairs_known": 30, "targets": len({t for t, _ in score}),
                               "targets_known": 6}


def test_a_missing_cell_is_not_a_zero():
    """Every known score of the target is negative and its true best partner was not run: read as 0,
    the missing cell would be chosen and hit; unknown, the best known one is chosen and misses."""
    truth = {("a", "b"): 1.0, ("a", "c"): 2.0, ("a", "d"): 5.0}
    score = {("a", "b"): -3.0, ("a", "c"): -1.0}
    b = evaluate_score(score, truth, bootstrap=0)["best_partner"]["a"]
    assert b["chosen"] == ["c"] and b["hit"] is False and b["best"] == ["d"]
    assert evaluate_score(score, truth, bootstrap=0)["regret"] == pytest.approx(3.0)


def test_all_scorers_evaluated_with_a_partial_one():
    tasks, truth, li = partial_case(7)
    rng = np.random.default_rng(1)
    td = {pair: float(rng.integers(0, 7)) for pair in truth}
    out = evaluate_all({0: truth}, {"li": li, "td": td}, bootstrap=50, tasks=tasks)
    assert f"score li covers {len(li)}/30 pairs" in " ".join(out["warnings"])
    assert not out["scorers"]["td"]["warnings"]
    (comparison,) = out["comparisons"]
    pairs = sorted(li)
    truth_values = [truth[p] for p in pairs]
    assert comparison["pairs"] == len(pairs)  # compared on the pairs both score
    assert comparison["spearman_a"] == pytest.approx(stats.spearmanr([li[p] for p in pairs], truth_values).statistic)
    assert comparison["spearman_b"] == pytest.approx(stats.spearmanr([td[p] for p in pairs], truth_values).statistic)
