"""Realising groupings on test, and the HOA and best choices, on hand-made losses."""

from __future__ import annotations

import numpy as np
import pytest

from raytaskaff.grouping.validation import (
    affinity_choices,
    baseline_choices,
    best_choices,
    hoa_choices,
    mean_losses,
    realise,
)

TASKS = ("a", "b", "c")


def network(val: dict, test: dict | None = None):
    return (val, test or val)


# seed 0: pairs {a,b} help both; c is best alone; the all-task network is mediocre
LOSSES = {
    0: {("a",): network({"a": 1.0}), ("b",): network({"b": 2.0}), ("c",): network({"c": 4.0}),
        ("a", "b"): network({"a": 0.5, "b": 1.0}), ("a", "c"): network({"a": 2.0, "c": 5.0}),
        ("b", "c"): network({"b": 3.0, "c": 6.0}),
        ("a", "b", "c"): network({"a": 0.9, "b": 1.9, "c": 4.5}, {"a": 0.8, "b": 2.0, "c": 4.4})},
    1: {("a",): network({"a": 1.0}), ("b",): network({"b": 2.0}), ("c",): network({"c": 4.0}),
        ("a", "b"): network({"a": 0.7, "b": 1.4}), ("a", "c"): network({"a": 2.0, "c": 5.0}),
        ("b", "c"): network({"b": 3.0, "c": 6.0})},
}


def test_realise_uses_the_network_best_on_validation():
    # seed 0 only: {a,b} + {a,b,c}: a and b from {a,b} (val 0.5 < 0.9, 1.0 < 1.9), c from {a,b,c}
    r = realise((("a", "b"), ("a", "b", "c")), LOSSES, TASKS, (0,))
    assert r["test_total"] == pytest.approx(0.5 + 1.0 + 4.4)
    assert r["relative_gain"] == pytest.approx(((1 - 0.5) / 1 + (2 - 1) / 2 + (4 - 4.4) / 4) / 3)
    assert r["seeds"] == [0] and r["missing"] == [] and r["test_total_sd"] is None


def test_realise_averages_seeds_and_reports_missing_networks():
    r = realise((("a", "b"), ("c",)), LOSSES, TASKS, (0, 1))
    assert r["test_total"] == pytest.approx(((0.5 + 1.0 + 4.0) + (0.7 + 1.4 + 4.0)) / 2)
    assert r["test_total_sd"] == pytest.approx(abs(5.5 - 6.1) / 2 ** 0.5)
    partial = realise((("a", "b", "c"),), LOSSES, TASKS, (0, 1))
    assert partial["seeds"] == [0] and partial["missing"] == [("a", "b", "c")]
    stl = realise(baseline_choices(TASKS)[0].groups, LOSSES, TASKS, (0, 1))
    assert stl["relative_gain"] == 0.0 and stl["test_total"] == 7.0


def test_mean_losses_keeps_groups_trained_on_every_seed():
    mean = mean_losses(LOSSES, (0, 1))
    assert ("a", "b", "c") not in mean and mean[("a", "b")][0] == {"a": pytest.approx(0.6), "b": pytest.approx(1.2)}


def test_best_and_hoa_choices():
    mean = mean_losses(LOSSES, (0,))
    best1, best2 = best_choices(mean, TASKS, (1, 2))
    assert best1.groups == (("a", "b", "c"),)  # the only single network covering every task
    assert best2.groups == (("a", "b"), ("c",))  # val 0.5 + 1.0 + 4.0
    hoa1, hoa2 = hoa_choices(mean, TASKS, (1, 2))  # from the single and pairwise networks only
    assert hoa1.groups == (("a", "b", "c"),) and hoa1.source == "hoa"  # predicted: a (0.5+2)/2, b (1+3)/2, c (5+6)/2
    assert hoa2.groups == (("a", "b"), ("c",))


def test_affinity_choices_report_tables_that_cannot_be_grouped():
    good = {(x, y): 1.0 if {x, y} == {"a", "b"} else -1.0 for x in TASKS for y in TASKS if x != y}
    choices, errors = affinity_choices({"good": good, "partial": {("a", "b"): 1.0}}, TASKS, (2,))
    (choice,) = choices  # a and b together; c must join one of them (alone it would score -1e6), a tie
    assert choice.source == "good" and choice.groups[0] == ("a", "b") and choice.groups[1] in (("a", "c"), ("b", "c"))
    assert "partial" in errors and "no affinity" in errors["partial"]


def test_the_sweeps_hoa_choice_past_ten_tasks_answers_without_listing_every_group():
    """16 tasks hold 65,519 groups of three or more; the grouping stage searches a pool instead."""
    import itertools
    import tracemalloc

    from raytaskaff.grouping.validation import hoa_choices

    rng = np.random.default_rng(0)
    tasks = tuple(f"t{i}" for i in range(16))
    mean = {(t,): ({t: 1.0}, {t: 1.0}) for t in tasks}
    for a, b in itertools.combinations(tasks, 2):
        losses = {a: 1 + rng.normal(0, 0.1), b: 1 + rng.normal(0, 0.1)}
        mean[a, b] = (losses, dict(losses))
    tracemalloc.start()
    choices = hoa_choices(mean, tasks, (2, 4, 8))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200 * 2**20
    for choice, k in zip(choices, (2, 4, 8)):
        assert choice.source == "hoa" and len(choice.groups) <= k
        assert set().union(*choice.groups) == set(tasks)
