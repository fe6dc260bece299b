"""The budgeted ground truth in the config and the planner (`ground_truth: {pairs: k}`): no Ray."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from raytaskaff.config import ConfigError, SweepConfig, from_dict, load_config
from raytaskaff.plan import plan
from raytaskaff.settings import RunKind

ROOT = Path(__file__).resolve().parents[1]


def _ten(pairs=None, **changes) -> SweepConfig:
    data = yaml.safe_load((ROOT / "sweeps" / "synthetic-10.yaml").read_text())
    if pairs is not None:
        data["ground_truth"] = {"pairs": pairs}
    data.update(changes)
    return from_dict(SweepConfig, data)


def _digest(runs) -> str:
    return hashlib.sha256(repr([(r.label, r.key) for r in runs]).encode()).hexdigest()[:16]


def test_a_config_without_the_key_plans_exactly_todays_runs():
    full = plan(_ten())
    assert _digest(full) == "6c62eff42b61d2f3"  # tests/test_plan.py pins the same digest of synthetic-10
    assert not _ten().budgeted and _ten().budget_pairs == 45
    for every in (45, 1.0):  # a budget of every pair is no budget
        assert _digest(plan(_ten(every))) == "6c62eff42b61d2f3"


def test_a_budget_plans_the_same_k_pairs_on_every_seed_under_their_own_keys():
    config = _ten(10)
    full, budgeted = plan(_ten()), plan(config)
    assert config.budgeted and config.budget_pairs == 10
    chosen = {frozenset(p) for p in config.trained_pairs()}
    assert len(chosen) == 10
    for seed in config.seeds:
        pairs = [r for r in budgeted if r.kind == RunKind.PAIR and r.seed == seed]
        assert {frozenset(r.tasks) for r in pairs} == chosen  # the same pairs on every seed: seeds stay paired
    # every run kept is the full plan's run, key and all; only the untrained pairs are gone
    by_key = {r.key: r for r in full}
    assert all(by_key[r.key] == r for r in budgeted)
    dropped = [r for r in full if r.key not in {b.key for b in budgeted}]
    assert len(dropped) == 3 * 35 and all(r.kind == RunKind.PAIR and frozenset(r.tasks) not in chosen for r in dropped)
    # a fraction rounds up: 0.25 of 45 pairs is 12
    assert _ten(0.25).budget_pairs == 12
    # plan(every_pair=True) is the full plan whatever the budget (the grouping stage's pair runs)
    assert _digest(plan(config, every_pair=True)) == _digest(full)


def test_a_larger_budget_is_a_superset_so_raising_k_reuses_the_stored_pairs():
    keys = [{r.key for r in plan(_ten(k))} for k in (3, 10, 20, 44)]
    assert all(a < b for a, b in zip(keys, keys[1:]))
    assert keys[-1] < {r.key for r in plan(_ten())}
    order = _ten(10).pair_order()
    assert _ten(20).trained_pairs() == order[:20] and len(set(map(frozenset, order))) == 45
    # the order of tasks in the config does not change which pairs a budget trains
    data = yaml.safe_load((ROOT / "sweeps" / "synthetic-10.yaml").read_text())
    shuffled = _ten(10, tasks=list(reversed(data["tasks"])))
    assert {frozenset(p) for p in shuffled.trained_pairs()} == {frozenset(p) for p in _ten(10).trained_pairs()}


@pytest.mark.parametrize("pairs, message", [
    (2, "ground_truth.pairs: at least 3 pairs to calibrate the scorers on, got 2"),
    (46, "ground_truth.pairs: at most 45 (the pairs of 10 tasks), got 46"),
    (0, "ground_truth.pairs: must be an integer >= 1, got 0"),
    (0.01, "ground_truth.pairs: at least 3 pairs to calibrate the scorers on, 0.01 of 45 pairs is 1"),
    (1.5, "ground_truth.pairs: must be a finite number > 0 and <= 1, got 1.5"),
    ("ten", "ground_truth.pairs: expected a number, got 'ten'"),
])
def test_bad_budgets_are_one_line_errors(pairs, message):
    with pytest.raises(ConfigError) as e:
        _ten(pairs)
    assert str(e.value) == message


def test_a_scorer_of_the_pairwise_networks_is_refused_under_a_budget(tmp_path):
    data = yaml.safe_load((ROOT / "sweeps" / "synthetic-10.yaml").read_text())
    data["scorers"]["gs"] = {"source": "pairs"}
    data["ground_truth"] = {"pairs": 20}
    path = tmp_path / "ten.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == (f"{path}: scorers.gs: reads the pairwise networks (source: pairs), of which ground_truth.pairs "
                            "trains 20 of 45: it would score no untrained pair (use source: all)")
    data["ground_truth"] = {"pairs": 45}  # every pair: nothing is missing
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).budget_pairs == 45
    with pytest.raises(ConfigError, match=r"^ground_truth\.typo: unknown key \(known: pairs\)$"):
        _ten(ground_truth={"typo": 3})


def test_the_dry_run_says_how_many_pairs_are_trained_and_how_many_predicted():
    from raytaskaff.plan import summary
    from raytaskaff.sweep import describe

    config = _ten(10, grouping={"groups": []})
    lines = describe(config).splitlines()
    assert "ground truth on a budget: 10 of 45 pairs trained on each seed, the other 35 predicted from the scorers " \
           "(ground_truth.pairs)" in lines
    assert f"pair {10 * len(config.seeds)}" in next(x for x in lines if x.startswith("runs by kind"))
    assert summary(plan(config))["pair"] == 10 * len(config.seeds)
    assert not any(x.startswith("ground truth on a budget") for x in describe(_ten(grouping={"groups": []})).splitlines())
