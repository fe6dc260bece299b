"""The report's partner-dependence table: one row per table, the ground truth first, a scorer
whose values are mostly a property of its target flagged by the stated rule."""

import numpy as np

from raytaskaff.evaluation.partner import partner_dependence_all
from raytaskaff.report.render import _partner_section

TASKS = ["a", "b", "c", "d", "e"]


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _table(section: str) -> list[list[str]]:
    lines = [line for line in section.splitlines() if line.startswith("|") and not line.startswith("|---")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_every_table_has_its_row_with_the_summary_numbers(default_report):
    out, summary = default_report
    dependence = summary["partner_dependence"]
    assert set(dependence) == {"ground_truth", *summary["scorers"]}
    rows = _table(_section((out / "report" / "report.md").read_text(), "Partner dependence"))
    assert rows[0][:5] == ["table", "target share", "partner share", "pair only", "within / between spread"]
    assert [r[0] for r in rows[1:]] == ["ground_truth", *[n for n in dependence if n != "ground_truth"]]
    for row in rows[1:]:
        d = dependence[row[0]]
        assert row[1:5] == [f"{d['target_share']:.2f}", f"{d['partner_share']:.2f}", f"{d['interaction_share']:.2f}",
                            f"{d['spread_ratio']:.2f}"]


def test_a_scorer_that_only_sees_the_target_is_flagged():
    rng = np.random.default_rng(0)
    pairs = [(t, p) for t in TASKS for p in TASKS if t != p]
    truth = {k: float(rng.normal()) for k in pairs}
    rows = dict(zip(TASKS, rng.normal(size=5)))
    flat = {(t, p): float(rows[t] + 0.01 * rng.normal()) for t, p in pairs}
    section = _partner_section(partner_dependence_all({"flat": flat, "truthlike": dict(truth)}, truth))
    by_name = {r[0]: r for r in section.rows}
    assert by_name["flat"][-1] == "mostly a property of the target: it cannot rank partners"
    assert by_name["truthlike"][-1] == "" and by_name["ground_truth"][-1] == ""
    assert "Flagged: flat." in section.note and "0.7" in section.note
    assert _partner_section(None) is None
