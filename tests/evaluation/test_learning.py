"""Targets whose single-task networks did not beat chance: flagged, never hidden (`evaluation.learning`),
and in the report's headline, tables and evaluation.json."""

import json
import math
import sys
from pathlib import Path

import pytest

from raytaskaff.evaluation.learning import LEARNED_BELOW, learning, learning_clause, learning_warnings
from raytaskaff.report.render import build_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
from test_report import _sweep  # noqa: E402

LN2 = math.log(2)


def test_means_over_the_seeds_that_have_both_and_the_threshold():
    stl = {0: {"top": 0.10, "coin": 0.70, "old": 0.3}, 1: {"top": 0.20, "coin": 0.68}}
    chance = {0: {"top": LN2, "coin": LN2}, 1: {"top": LN2, "coin": LN2}}
    checked = learning(stl, chance, ["top", "coin", "old", "absent"])
    assert checked["top"] == {"stl_loss": pytest.approx(0.15), "chance_loss": pytest.approx(LN2),
                              "ratio": pytest.approx(0.15 / LN2), "learned": True, "seeds": 2}
    assert checked["coin"]["learned"] is False and checked["coin"]["ratio"] == pytest.approx(0.69 / LN2)
    assert checked["old"]["learned"] is None and checked["absent"]["seeds"] == 0  # no chance level recorded
    at = learning({0: {"t": LEARNED_BELOW}}, {0: {"t": 1.0}}, ["t"])["t"]
    assert at["learned"] is False  # not below: equal is not a clear win


def test_warnings_and_the_headline_clause_name_the_targets():
    checked = learning({0: {"a": 0.1, "b": 0.7, "c": 0.69}}, {0: {"a": LN2, "b": LN2, "c": LN2}}, ["a", "b", "c"])
    [first, second] = learning_warnings(checked)
    assert first.startswith("b: its single-task networks did not beat chance (test loss 0.7 against 0.6931") and "\n" not in first
    assert second.startswith("c: ") and "the gains with c as target measure noise" in second
    assert learning_clause(checked).startswith("2 of 3 targets did not learn (b and c: ")
    assert learning_clause(learning({0: {"a": 0.1}}, {0: {"a": 1.0}}, ["a"])) == ""


def test_the_report_flags_them_in_its_tables(tmp_path):
    summary = _sweep(tmp_path)
    checked = learning({0: {t: (0.9 if t == "normal" else 0.2) for t in summary["tasks"]}},
                       {0: {t: 0.9 for t in summary["tasks"]}}, summary["tasks"])
    summary = {**summary, "learning": checked, "headline": learning_clause(checked) + summary["headline"]}
    (tmp_path / "results" / "evaluation.json").write_text(json.dumps(summary, default=str))
    build_report(tmp_path)
    md = (tmp_path / "report" / "report.md").read_text()
    assert "**1 of 5 targets did not learn (normal: " in md
    assert "## Did the single-task networks learn?" in md and "| normal | 0.9000 | 0.9000 | 1.00 | did not learn |" in md
    assert "| keypoints2d | 0.2000 | 0.9000 | 0.22 | learned |" in md
    assert "| normal (did not learn) | " in md.split("## Best partner per target")[1]
    assert "| normal (did not learn) | " in md.split("## Partner ranking per target")[1]


def test_the_terminal_prints_at_most_five_warnings_and_counts_the_rest(tmp_path):
    from raytaskaff.pipeline import terminal_warnings

    report = tmp_path / "report" / "report.md"
    few = [f"t{i}: did not learn" for i in range(5)]
    assert terminal_warnings(few, report) == [f"warning: {w}" for w in few]
    many = [f"t{i}: did not learn" for i in range(40)]
    lines = terminal_warnings(many, report)
    assert lines[:4] == [f"warning: {w}" for w in many[:4]]
    assert lines[4:] == [f"warning: 36 more warnings, all of them under Warnings in {report}"]


def test_the_headline_names_few_targets_at_forty():
    tasks = [f"t{i:02d}" for i in range(40)]
    all_but_one = learning({0: {t: 1.0 for t in tasks} | {"t07": 0.1}}, {0: {t: 1.0 for t in tasks}}, tasks)
    assert learning_clause(all_but_one).startswith("39 of 40 targets did not learn (all but t07: ")
    half = learning({0: {t: 1.0 if i % 2 else 0.1 for i, t in enumerate(tasks)}}, {0: {t: 1.0 for t in tasks}}, tasks)
    assert learning_clause(half).startswith("20 of 40 targets did not learn (t01, t03, t05 and 17 more: ")
