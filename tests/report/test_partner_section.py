"""The report's partner-dependence table: one row per table, the ground truth first, a scorer
whose values are mostly a property of its target flagged by the stated rule."""

import numpy as np

from raytaskaff.evaluation.partner import partner_dependence_all
from raytaskaff.report.render import partner_section

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
    seeds = dependence["ground_truth"]["per_seed"]
    assert [r[0] for r in rows[1:]] == ["ground_truth", f"ground_truth, one seed ({seeds['seeds']} seeds: mean ± sd)",
                                        *[n for n in dependence if n != "ground_truth"]]
    assert rows[2][1] == f"{seeds['target_share']['mean']:.2f} ± {seeds['target_share']['std']:.2f}"
    for row in rows[1:2] + rows[3:]:
        d = dependence[row[0]]
        assert row[1:5] == [f"{d['target_share']:.2f}", f"{d['partner_share']:.2f}", f"{d['interaction_share']:.2f}",
                            f"{d['spread_ratio']:.2f}"]


def test_a_scorer_that_only_sees_the_target_is_flagged():
    rng = np.random.default_rng(0)
    pairs = [(t, p) for t in TASKS for p in TASKS if t != p]
    truth = {k: float(rng.normal()) for k in pairs}
    rows = dict(zip(TASKS, rng.normal(size=5)))
    flat = {(t, p): float(rows[t] + 0.01 * rng.normal()) for t, p in pairs}
    section = partner_section(partner_dependence_all({"flat": flat, "truthlike": dict(truth)}, truth))
    by_name = {r[0]: r for r in section.rows}
    assert by_name["flat"][-1] == "mostly a property of the target: it cannot rank partners"
    assert by_name["truthlike"][-1] == "" and by_name["ground_truth"][-1] == ""
    assert "Flagged: flat." in section.note and "0.7" in section.note
    assert partner_section(None) is None


def test_the_truth_per_seed_row_reads_its_spread():
    rng = np.random.default_rng(1)
    pairs = [(t, p) for t in TASKS for p in TASKS if t != p]
    seeds = {s: {k: float(rng.normal()) for k in pairs} for s in range(4)}
    truth = {k: float(np.mean([t[k] for t in seeds.values()])) for k in pairs}
    dependence = partner_dependence_all({"truthlike": truth}, truth, seeds)
    section = partner_section(dependence)
    assert [r[0] for r in section.rows] == ["ground_truth", "ground_truth, one seed (4 seeds: mean ± sd)", "truthlike"]
    spread = dependence["ground_truth"]["per_seed"]["target_share"]
    assert section.rows[1][1] == f"{spread['mean']:.2f} ± {spread['std']:.2f}"
    assert section.rows[1][-1] == f"target share {spread['min']:.2f} to {spread['max']:.2f} over seeds"
    assert "one seed's target share is lower" in section.note
    # one seed: no spread to show, no row
    one = partner_section(partner_dependence_all({"truthlike": truth}, truth, {0: truth}))
    assert [r[0] for r in one.rows] == ["ground_truth", "truthlike"]
