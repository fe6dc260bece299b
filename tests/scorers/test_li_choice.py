"""Label injection with a budget: which (target, partner) pairs get LI runs, planned and counted.

Each option against brute force over small task sets; invariants (no LI run outside the choice,
the budget respected and spread evenly, the same choice every time and on every seed); and keys:
a chosen run has the key it has in the full plan, and the default plans every ordered pair."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from raytaskaff.config import ConfigError, load_config
from raytaskaff.plan import plan, summary
from raytaskaff.scorers.li import LiChoice, li_choice
from raytaskaff.scorers.td import distances
from raytaskaff.sweep import main

ROOT = Path(__file__).resolve().parents[2]
TEN = load_config(ROOT / "sweeps" / "synthetic-10.yaml")
TAXONOMY = TEN.scorers["td"]


def config(tasks, li, seeds=(0, 1)):
    """synthetic-10 on `tasks`, scored by td (its taxonomy) and li with options `li`."""
    return dataclasses.replace(TEN, tasks=tuple(tasks), seeds=seeds, scorers={"td": TAXONOMY, "li": li},
                               grouping=dataclasses.replace(TEN.grouping, groups=()))


def li_pairs(runs, seed=None):
    return [(r.tasks[0], r.inject[0]) for r in runs if r.kind == "li" and (seed is None or r.seed == seed)]


def brute_top(partners, rank, order, k):
    """The one k-subset whose every member outranks every partner left out (ties: earlier task)."""
    above = lambda s, u: rank[s] > rank[u] or (rank[s] == rank[u] and order[s] < order[u])  # noqa: E731
    valid = [set(c) for c in itertools.combinations(partners, min(k, len(partners)))
             if all(above(s, u) for s in c for u in partners if u not in c)]
    assert len(valid) == 1
    return valid[0]


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_targets_pairs_and_the_default_against_brute_force(n):
    tasks = TEN.tasks[:n]
    everything = list(itertools.permutations(tasks, 2))
    full = plan(config(tasks, {}))
    assert li_pairs(full, 0) == everything and summary(full)["li"] == 2 * n * (n - 1)
    rng = np.random.default_rng(n)
    targets = [tasks[i] for i in sorted(rng.choice(n, size=max(1, n // 2), replace=False))]
    runs = plan(config(tasks, {"targets": targets}))
    assert li_pairs(runs, 0) == [(t, p) for t, p in everything if t in targets]
    assert summary(runs)["li"] == 2 * len(targets) * (n - 1)
    pairs = [list(everything[i]) for i in rng.choice(len(everything), size=min(3, len(everything)), replace=False)]
    runs = plan(config(tasks, {"pairs": pairs}))
    assert sorted(li_pairs(runs, 0)) == sorted(map(tuple, pairs)) and summary(runs)["li"] == 2 * len(pairs)


@pytest.mark.parametrize("n,k", [(3, 1), (5, 2), (6, 3), (10, 2), (10, 9), (4, 7)])
def test_k_partners_ranked_by_td_against_brute_force(n, k):
    tasks = TEN.tasks[:n]
    rank = {pair: -d for pair, d in distances(TAXONOMY["taxonomy"]).items()}
    order = {t: i for i, t in enumerate(tasks)}
    runs = plan(config(tasks, {"partners": k}))
    assert summary(runs)["li"] == 2 * n * min(k, n - 1)
    chosen = li_pairs(runs, 0)
    for target in tasks:
        partners = [p for p in tasks if p != target]
        expected = brute_top(partners, {p: rank[target, p] for p in partners}, order, k)
        assert {p for t, p in chosen if t == target} == expected


def test_k_partners_on_random_rankings_with_ties_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(40):
        n, k = int(rng.integers(2, 7)), int(rng.integers(1, 7))
        tasks = tuple(f"t{i}" for i in range(n))
        rank = {pair: float(rng.integers(0, 3)) for pair in itertools.permutations(tasks, 2)}  # many ties
        chosen = LiChoice(partners=k).choose(tasks, rank)
        for target in tasks:
            partners = [p for p in tasks if p != target]
            expected = brute_top(partners, {p: rank[target, p] for p in partners}, {t: i for i, t in enumerate(tasks)}, k)
            assert {p for t, p in chosen if t == target} == expected


@pytest.mark.parametrize("n,budget", [(2, 1), (3, 4), (5, 7), (6, 29), (6, 30), (6, 31), (10, 13)])
def test_a_budget_is_respected_spread_evenly_and_deterministic(n, budget):
    tasks = TEN.tasks[:n]
    runs = plan(config(tasks, {"budget": budget}))
    first, second = li_pairs(runs, 0), li_pairs(runs, 1)
    assert len(first) == min(budget, n * (n - 1)) and first == second  # the same pairs on every seed
    assert len(set(first)) == len(first) and set(first) <= set(itertools.permutations(tasks, 2))
    counts = Counter(t for t, _ in first)
    per_target = [counts.get(t, 0) for t in tasks]
    assert max(per_target) - min(per_target) <= 1  # every target has n - 1 candidates: evenly spread
    assert li_pairs(plan(config(tasks, {"budget": budget})), 0) == first  # deterministic
    assert first == sorted(first, key=lambda p: (tasks.index(p[0]), tasks.index(p[1])))  # plan order


def test_a_budget_over_unequal_candidates_spreads_over_what_is_left():
    tasks = tuple(f"t{i}" for i in range(5))
    candidates = [("t0", "t1")] + [("t1", p) for p in tasks if p != "t1"] + [("t2", p) for p in tasks if p != "t2"]
    chosen = LiChoice(pairs=tuple(candidates), budget=5).choose(tasks)
    counts = Counter(t for t, _ in chosen)
    assert len(chosen) == 5 and set(chosen) <= set(candidates)
    assert counts["t0"] == 1 and sorted([counts["t1"], counts["t2"]]) == [2, 2]  # t0 has one: the rest share


def test_partners_then_budget_cut_the_ranked_pairs():
    tasks = TEN.tasks[:6]
    ranked = set(li_pairs(plan(config(tasks, {"partners": 3})), 0))
    runs = plan(config(tasks, {"partners": 3, "budget": 8}))
    chosen = li_pairs(runs, 0)
    assert len(chosen) == 8 and set(chosen) <= ranked
    counts = Counter(t for t, _ in chosen)
    assert sorted(counts.get(t, 0) for t in tasks) == [1, 1, 1, 1, 2, 2]


def test_chosen_runs_keep_the_keys_of_the_full_plan_and_other_runs_are_untouched():
    tasks = TEN.tasks[:5]
    full = {(r.label, r.key) for r in plan(config(tasks, {}))}
    others = [(r.label, r.key) for r in plan(config(tasks, {})) if r.kind != "li"]
    for options in ({"partners": 2}, {"budget": 5}, {"targets": [tasks[1]]}, {"pairs": [[tasks[0], tasks[3]]]},
                    {"seeds": [1], "budget": 3}):
        runs = plan(config(tasks, options))
        assert {(r.label, r.key) for r in runs} <= full
        assert [(r.label, r.key) for r in runs if r.kind != "li"] == others


def test_li_seeds_and_a_budget_together():
    runs = plan(config(TEN.tasks[:4], {"seeds": [1], "budget": 5}))
    assert li_pairs(runs, 0) == [] and len(li_pairs(runs, 1)) == 5


def test_the_default_plans_todays_runs_with_todays_keys():
    """The pinned plans of tests/test_plan.py hold the default's keys; here, the choice that
    chooses everything plans what no choice plans, run for run."""
    tasks = TEN.tasks[:4]
    assert li_choice() is None
    everything = [(r.label, r.key) for r in plan(config(tasks, {}))]
    assert [(r.label, r.key) for r in plan(config(tasks, {"budget": 12}))] == everything
    assert [(r.label, r.key) for r in plan(config(tasks, {"partners": 3}))] == everything
    assert [(r.label, r.key) for r in plan(config(tasks, {"targets": list(tasks)}))] == everything


@pytest.mark.parametrize("li,message", [
    ({"pairs": [["normal"]]}, "scorers: li.pairs[0]: expected [target, partner], two different tasks, got ['normal']"),
    ({"pairs": [["normal", "normal"]]}, "li.pairs[0]: expected [target, partner], two different tasks"),
    ({"pairs": [["normal", "keypoints2d"], ["normal", "keypoints2d"]]}, "li.pairs: ['normal', 'keypoints2d'] is given twice"),
    ({"pairs": [["normal", "nope"]]}, "li.pairs[0]: 'nope' is not a task of the sweep"),
    ({"pairs": [["normal", "keypoints2d"]], "partners": 1}, "li.pairs: gives the pairs itself; drop li.partners"),
    ({"targets": ["normal", "nope"]}, "li.targets[1]: 'nope' is not a task of the sweep"),
    ({"targets": ["normal", "normal"]}, "li.targets: a task is given twice"),
    ({"targets": []}, "li.targets: empty, so li would have no run to score"),
    ({"pairs": []}, "li.pairs: empty"),
    ({"pairs": ["normal,keypoints2d"]}, "li.pairs[0]: expected a list of strings, got 'normal,keypoints2d'"),
    ({"budget": 0}, "li.budget: must be an integer >= 1, got 0"),
    ({"partners": 1.5}, "li.partners: expected an integer >= 1, got 1.5"),
    ({"rank_by": "td"}, "li.rank_by: ranks the partners that li.partners keeps, and li.partners is not given"),
    ({"partners": 2, "rank_by": "rsa"}, "li.rank_by: rsa reads trained networks (stl)"),
    ({"partners": 2, "rank_by": "li"}, "li.rank_by: li reads trained networks"),
    ({"partners": 2, "rank_by": "nope"}, "li.rank_by: unknown scorer 'nope'"),
    ({"budgets": 3}, "li: unknown option 'budgets'"),
])
def test_bad_options_name_the_key(li, message):
    with pytest.raises(ConfigError) as e:
        config(TEN.tasks[:5], li)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_scorer_of_the_users_file_does_not_rank(tmp_path):
    mine = tmp_path / "mine.py"
    mine.write_text("raise SystemExit('reading a config ran this file')\n")
    with pytest.raises(ConfigError, match="li.rank_by: mine lives in the user's file, which reading a config does not run"):
        dataclasses.replace(config(TEN.tasks[:3], {}), scorers={"mine": {"module": str(mine)}, "li": {"partners": 1, "rank_by": "mine"}})


def test_ranking_by_td_needs_a_taxonomy_of_the_tasks():
    with pytest.raises(ConfigError, match="li.rank_by: td cannot rank these tasks: no taxonomy given"):
        dataclasses.replace(config(TEN.tasks[:2], {}), tasks=TEN.tasks[4:8], scorers={"li": {"partners": 1}})


def test_the_dry_run_counts_the_chosen_runs(tmp_path, capsys):
    text = (ROOT / "sweeps" / "synthetic-10.yaml").read_text().replace("li: {seeds: [0]}", "li: {seeds: [0], partners: 2, budget: 15}")
    path = tmp_path / "budget.yaml"
    path.write_text(text)
    assert main(["--config", str(path), "--dry-run"]) == 0
    assert "runs by kind: stl 30, pair 135, all 3, li 15" in capsys.readouterr().out
