"""Network selection against brute-force enumeration, hand-made answers and the HOA predictions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bench.grouping import planted_pairs
from raytaskaff.grouping import (
    Network,
    hoa_candidates,
    predict_group_losses,
    select_networks,
)
from raytaskaff.grouping.networks import prune_dominated, select_for_budgets


def brute_force(candidates, budget, tasks):
    """(value, cost) of the best covering set within budget by enumerating every set."""
    best = (math.inf, math.inf)
    for r in range(1, len(candidates) + 1):
        for chosen in itertools.combinations(candidates, r):
            cost = sum(c.cost for c in chosen)
            if cost > budget + 1e-9:
                continue
            per_task = [min((c.val[t] for c in chosen if t in c.val), default=math.inf) for t in tasks]
            best = min(best, (sum(per_task), cost))
    return best


def random_candidates(rng, n_tasks, n_networks, costs=(0.5, 1.0, 1.5)):
    tasks = [f"t{i}" for i in range(n_tasks)]
    out = []
    for k in range(n_networks):
        members = rng.choice(tasks, size=rng.integers(1, n_tasks + 1), replace=False)
        out.append(Network(f"n{k}", float(rng.choice(costs)), {t: float(rng.uniform(0.5, 2)) for t in members},
                           {t: float(rng.uniform(0.5, 2)) for t in members}))
    return tasks, out


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force_on_random_candidates(seed):
    rng = np.random.default_rng(seed)
    tasks, candidates = random_candidates(rng, n_tasks=int(rng.integers(2, 6)), n_networks=int(rng.integers(3, 11)))
    budgets = [0.5, 1, 1.5, 2, 3, 4.5, 100]
    for budget, selection in zip(budgets, select_for_budgets(candidates, budgets, tuple(tasks))):
        value, cost = brute_force(candidates, budget, tasks)
        if math.isinf(value):
            assert selection.networks == () and selection.val_total is None
            continue
        assert selection.val_total == pytest.approx(value)
        assert selection.cost == pytest.approx(cost)
        chosen = [c for c in candidates if c.name in selection.networks]
        assert sum(c.cost for c in chosen) <= budget + 1e-9
        # every task served by the chosen network best for it on validation, and test scored there
        for t in tasks:
            best = min(c.val[t] for c in chosen if t in c.val)
            assert next(c for c in chosen if c.name == selection.serving[t]).val[t] == best
        expected_test = sum(next(c for c in chosen if c.name == selection.serving[t]).test[t] for t in tasks)
        assert selection.test_total == pytest.approx(expected_test)


def full_set(rng, tasks):
    """Standley's candidates: every task subset at cost 1, plus half-size single-task networks."""
    out = [Network(f"half {t}", 0.5, {t: float(rng.uniform(1.2, 2))}, {t: None}) for t in tasks]
    for k in range(1, len(tasks) + 1):
        for group in itertools.combinations(tasks, k):
            out.append(Network("+".join(group), 1.0, {t: float(rng.uniform(0.8, 1.6)) for t in group}, dict.fromkeys(group)))
    return out


def test_full_candidate_set_of_four_tasks_matches_brute_force():
    rng = np.random.default_rng(7)
    tasks = ["a", "b", "c", "d"]
    candidates = full_set(rng, tasks)  # 19 networks: brute force over sets of up to 4
    for budget in (1, 1.5, 2, 2.5, 3):
        pruned = prune_dominated(candidates, budget)
        value, _ = brute_force(pruned, budget, tasks)  # enumeration over the survivors is exact too
        selection = select_networks(candidates, budget)
        assert selection.val_total == pytest.approx(value)
        assert selection.test_total is None  # no test losses given


def test_hand_made_answers():
    nets = [
        Network("all", 1.0, {"a": 3.0, "b": 3.0, "c": 3.0}, {"a": 3.0, "b": 3.0, "c": 3.0}),
        Network("ab", 1.0, {"a": 1.0, "b": 1.0}, {"a": 1.5, "b": 1.5}),
        Network("c", 1.0, {"c": 1.0}, {"c": 2.0}),
        Network("half c", 0.5, {"c": 2.0}, {"c": 2.5}),
    ]
    one, one_half, two, huge = select_for_budgets(nets, [1, 1.5, 2, 1e6])
    assert one.networks == ("all",) and one.val_total == 9.0 and one.test_total == 9.0
    assert one_half.networks == ("ab", "half c") and one_half.val_total == 4.0 and one_half.test_total == 5.5
    assert two.networks == ("ab", "c") and two.val_total == 3.0 and two.test_total == 5.0
    assert huge.networks == ("ab", "c") and huge.cost == 2.0  # more budget buys nothing better: the cheaper set
    assert select_networks(nets, 0.5).networks == ()  # half c alone cannot cover a and b


def test_dominated_candidates_are_pruned():
    nets = [Network("ab", 1.0, {"a": 1.0, "b": 1.0}, {}), Network("a", 1.0, {"a": 2.0}, {}),
            Network("a cheap", 0.5, {"a": 2.0}, {}), Network("ab twin", 1.0, {"a": 1.0, "b": 1.0}, {})]
    assert [c.name for c in prune_dominated(nets)] == ["ab", "a cheap"]
    assert [c.name for c in prune_dominated(nets, budget=0.5)] == ["a cheap"]


def test_hoa_predicts_the_mean_of_pairwise_losses():
    pairs = {frozenset("ab"): {"a": 1.0, "b": 2.0}, frozenset("ac"): {"a": 3.0, "c": 4.0},
             frozenset("bc"): {"b": 6.0, "c": 8.0}}
    assert predict_group_losses(pairs, ("a", "b", "c")) == {"a": 2.0, "b": 4.0, "c": 6.0}
    measured = [Network("a", 1, {"a": 5.0}, {"a": 5.0}), Network("b", 1, {"b": 5.0}, {"b": 5.0}),
                Network("c", 1, {"c": 5.0}, {"c": 5.0})]
    measured += [Network("+".join(sorted(k)), 1, v, {**v, "a": None} if "a" in v else v) for k, v in pairs.items()]
    (abc,) = hoa_candidates(measured)
    assert abc.name == "a+b+c" and abc.val == {"a": 2.0, "b": 4.0, "c": 6.0} and abc.cost == 1.0
    assert abc.test == {"a": None, "b": None, "c": None}  # a's pairwise test losses are unknown
    assert hoa_candidates(measured + [abc]) == []  # a measured group is not predicted again


# The anytime branch and bound (used beyond DP_MAX_TASKS tasks), forced on small instances.

@pytest.mark.parametrize("seed", range(20))
def test_branch_and_bound_matches_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    tasks, candidates = random_candidates(rng, n_tasks=int(rng.integers(2, 7)), n_networks=int(rng.integers(3, 12)))
    budgets = [0.5, 1, 1.5, 2, 3, 4.5, 100]
    for budget, selection in zip(budgets, select_for_budgets(candidates, budgets, tuple(tasks), method="search")):
        value, cost = brute_force(candidates, budget, tasks)
        assert selection.exact
        if math.isinf(value):
            assert selection.networks == () and selection.val_total is None and selection.bound == math.inf
            continue
        assert selection.val_total == pytest.approx(value) and selection.cost == pytest.approx(cost)
        assert selection.bound == selection.val_total and selection.gap == 0.0


@pytest.mark.parametrize("n", [6, 7])
def test_branch_and_bound_matches_the_dynamic_program_on_full_candidate_sets(n):
    rng = np.random.default_rng(n)
    candidates = full_set(rng, [f"t{i}" for i in range(n)])
    budgets = [1, 1.5, 2, 3, 4.5, n]
    for dp, search in zip(select_for_budgets(candidates, budgets, method="dp"),
                          select_for_budgets(candidates, budgets, method="search")):
        assert search.exact and search.val_total == pytest.approx(dp.val_total) and search.cost == dp.cost


def test_a_search_cut_short_returns_a_valid_selection_and_a_proven_bound():
    rng = np.random.default_rng(3)
    tasks = [f"t{i}" for i in range(9)]
    candidates = full_set(rng, tasks)  # 520 candidates
    budgets = [2, 3, 4]
    exact = select_for_budgets(candidates, budgets, method="dp")
    for optimum, cut in zip(exact, select_for_budgets(candidates, budgets, method="search", time_limit=0.05)):
        assert cut.bound <= optimum.val_total + 1e-9 <= cut.val_total + 2e-9  # the bound holds, the answer is feasible
        assert cut.gap == pytest.approx(0.0 if cut.exact else (cut.val_total - cut.bound) / cut.val_total)
        assert cut.cost <= cut.budget and set(cut.serving) == set(tasks)
        assert all(t in next(c for c in candidates if c.name == cut.serving[t]).val for t in tasks)


def test_the_relaxed_hoa_columns_bound_every_group():
    from raytaskaff.grouping.hoa import relaxed_columns

    rng = np.random.default_rng(5)
    n = 7
    val = rng.uniform(0.5, 2.0, (n, n))
    np.fill_diagonal(val, np.nan)
    extra, _ = relaxed_columns(val, 1.0, copies=1)
    for _ in range(5):
        u = rng.uniform(0.5, 2.0, n)
        rc, costs, _ = extra(u)
        assert list(costs) == [1.0] * (n - 2)
        for k in range(3, n + 1):
            for group in itertools.combinations(range(n), k):
                loss = [np.nanmean(val[a, [b for b in group if b != a]]) for a in group]
                true_rc = sum(min(0.0, loss[i] - u[a]) for i, a in enumerate(group))
                assert true_rc >= rc[k - 3] - 1e-12


def test_hoa_without_listing_groups_is_bounded_by_the_exact_answer(monkeypatch):
    from raytaskaff.grouping import hoa

    measured = planted_pairs(8, np.random.default_rng(11))
    tasks = [f"task{i:02d}" for i in range(8)]
    budgets = [2.0, 3.0, 4.0]
    exact, _ = hoa.select_with_hoa(measured, budgets)  # 8 tasks: every group listed, exact
    monkeypatch.setattr(hoa, "EXPLICIT_MAX_TASKS", 0)
    implicit, predicted = hoa.select_with_hoa(measured, budgets, time_limit=20)
    assert len(predicted) < 2 ** 8 - 1 - 8 - 28  # a pool, not every group
    for e, i in zip(exact, implicit):
        assert e.exact and i.bound <= e.val_total + 1e-9 <= i.val_total + 2e-9
        assert i.val_total <= 1.02 * e.val_total  # the pool holds (nearly) the best groups of a planted structure
        assert set(i.serving) == set(tasks) and i.cost <= i.budget
