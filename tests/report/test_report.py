"""The report from a results directory alone: the headline, the ceiling beside every correlation,
scorer against scorer, seed stability and the reference study, generated from the numbers."""

import itertools
import json

import numpy as np
import pandas as pd

from raytaskaff.evaluation import evaluate_all, ground_truth
from raytaskaff.report import write_outputs
from raytaskaff.report.render import build_report
from raytaskaff.scorers.base import Cost, Score

FIVE = ["segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal"]


def _sweep(tmp_path):
    rng = np.random.default_rng(0)
    pairs = list(itertools.permutations(FIVE, 2))
    base = {k: float(rng.normal()) for k in pairs}
    base["segment_semantic", "normal"] = 5.0
    truth = {s: {k: v + float(rng.normal(scale=0.2)) for k, v in base.items()} for s in range(3)}
    copy = {s: {k: truth[s][k] + float(rng.normal(scale=0.2)) for k in pairs} for s in range(3)}
    noise = {k: float(rng.normal()) for k in pairs}
    per_seed = pd.DataFrame([(s, t, p, g) for s, table in truth.items() for (t, p), g in table.items()],
                            columns=["seed", "target", "partner", "gain"])
    mean_copy = {k: float(np.mean([copy[s][k] for s in copy])) for k in pairs}
    scores = {
        "copy": Score("copy", pd.DataFrame([(t, p, v) for (t, p), v in mean_copy.items()], columns=["target", "partner", "value"]),
                      Cost(), per_seed=pd.DataFrame([(s, t, p, v) for s, table in copy.items() for (t, p), v in table.items()],
                                                    columns=["seed", "target", "partner", "value"])),
        "noise": Score("noise", pd.DataFrame([(t, p, v) for (t, p), v in noise.items()], columns=["target", "partner", "value"]), Cost()),
    }
    judged = evaluate_all(truth, {"copy": mean_copy, "noise": noise}, {"copy": copy}, bootstrap=300, tasks=FIVE)
    summary = {"sweep": "planted", "tasks": FIVE, "seeds": [0, 1, 2], **judged, "scorer_errors": {},
               "costs": {"copy": {"wall_seconds": 1.0, "cpu_seconds": 1.0, "gpu_seconds": 0.0}, "noise": {"wall_seconds": 0.0, "cpu_seconds": 0.0},
                         "ground_truth": {"wall_seconds": 10.0, "cpu_seconds": 10.0}},
               "config": {}, "versions": {}, "stages": {}}
    runs = pd.DataFrame({"key": ["k"], "kind": ["stl"], "tasks": ["normal"], "inject": [""], "seed": [0], "status": ["done"], "error": [None]})
    write_outputs(tmp_path, summary, scores, per_seed, ground_truth(per_seed), runs)
    return summary


def test_report_holds_headline_ceiling_comparisons_stability_and_reference(tmp_path):
    summary = _sweep(tmp_path)
    md = (tmp_path / "report" / "report.md").read_text()
    html = (tmp_path / "report" / "index.html").read_text()
    assert summary["headline"].startswith("no scorer beats copy; copy beats noise;")
    assert f"**{summary['headline']}**" in md and summary["headline"].replace("'", "&#x27;") in html
    one = summary["noise_ceiling"]["single_seed"]["spearman"]
    assert "| noise ceiling: one seed vs another | " in md and f"{one:.2f}" in md
    assert "## Scorer against scorer" in md and "| copy | noise |" in md and "| significant |" in md
    assert "## Seed-to-seed stability" in md and "| noise | seed-free |" in md and "| ground_truth | 3 |" in md
    assert "## Against the reference study" in md
    assert "| segment_semantic | normal (" in md and "| normal | not available |" in md and "| agree |" in md
    per_seed = pd.read_csv(tmp_path / "results" / "affinity_per_seed.csv")
    assert list(per_seed.columns) == ["scorer", "seed", "target", "partner", "value"]
    assert set(per_seed.scorer) == {"copy"} and len(per_seed) == 3 * 20


def test_report_without_the_reference_tasks_leaves_that_section_out(tmp_path):
    summary = {**_sweep(tmp_path), "reference": []}
    (tmp_path / "results" / "evaluation.json").write_text(json.dumps(summary, default=str))
    build_report(tmp_path)
    assert "Against the reference study" not in (tmp_path / "report" / "report.md").read_text()


def _section(md: str, title: str) -> str:
    """The Markdown of one section, up to the next heading."""
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _table(section: str) -> list[list[str]]:
    """The rows of the one Markdown table in a section, header first, cells stripped."""
    lines = [line for line in section.splitlines() if line.startswith("|") and not line.startswith("|---")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_best_partners_are_a_row_per_target_and_a_column_per_scorer(default_report):
    out, summary = default_report
    md = (out / "report" / "report.md").read_text()
    rows = _table(_section(md, "Best partner per target"))
    tasks, scorers = summary["tasks"], summary["scorers"]
    assert rows[0] == ["target", "ground truth: true best partner", *(f"{n} ({e['hits']}/{e['targets']})" for n, e in scorers.items())]
    assert [r[0] for r in rows[1:]] == [*tasks[:-1], f"{tasks[-1]} (did not learn)"]  # the planted one that did not
    assert all(len(r) == 2 + len(scorers) for r in rows)
    truth = pd.read_csv(out / "results" / "ground_truth.csv")
    best = truth.loc[truth.groupby("target").gain.idxmax()].set_index("target")
    assert [r[1] for r in rows[1:]] == [f"{best.partner[t]} ({best.gain[t]:.1f})" for t in tasks]
    for column, (name, e) in enumerate(scorers.items(), start=2):
        for row, target in zip(rows[1:], tasks):
            chosen = e["best_partner"][target]
            assert row[column] == f"{', '.join(chosen['chosen'])} ({chosen['chosen_gain']:.1f}, {'hit' if chosen['hit'] else 'miss'})"
        assert sum(row[column].endswith(", hit)") for row in rows[1:]) == e["hits"]


def test_stability_is_one_line_per_table_with_its_lowest_and_highest_two_seeds(default_report):
    out, summary = default_report
    rows = _table(_section((out / "report" / "report.md").read_text(), "Seed-to-seed stability"))
    assert rows[0] == ["table", "seeds", "mean Spearman between seeds", "lowest", "highest"]
    assert [r[0] for r in rows[1:]] == list(summary["stability"])  # one line each, not one per two seeds
    by_name = {r[0]: r for r in rows[1:]}
    for name, st in summary["stability"].items():
        if len(st["pairwise"]) < 2:
            assert by_name[name][2:] == ["-", "-", "-"]
            continue
        low = min(st["pairwise"], key=lambda p: p["spearman"])
        high = max(st["pairwise"], key=lambda p: p["spearman"])
        assert len(st["pairwise"]) == 15  # six seeds: what the old table listed one per line
        assert by_name[name][1:] == [str(st["seeds"]), f"{st['mean_spearman']:.2f}",
                                     f"{low['spearman']:.2f} (seeds {low['seeds'][0]}, {low['seeds'][1]})",
                                     f"{high['spearman']:.2f} (seeds {high['seeds'][0]}, {high['seeds'][1]})"]
    assert by_name["td"][1:] == ["seed-free", "-", "-", "-"]
    html = (out / "report" / "index.html").read_text()
    assert "0-1: " not in html and "1-2: " not in html


def test_failed_or_missing_says_none_in_a_sentence_and_lists_what_failed(default_report, tmp_path):
    out, _ = default_report
    section = _section((out / "report" / "report.md").read_text(), "Failed or missing")
    assert section.strip() == f"None: all {len(pd.read_parquet(out / 'results' / 'runs.parquet'))} planned runs are done and every scorer ran."
    assert "<h2>Failed or missing</h2><p class='note'>None: all " in (out / "report" / "index.html").read_text()

    from planted_report import default_like

    default_like(tmp_path, failed=True)
    rows = _table(_section((tmp_path / "report" / "report.md").read_text(), "Failed or missing"))
    assert rows == [["kind", "tasks", "injected", "seed", "error"], ["stl", "segment_semantic", "-", "0", "RuntimeError: loss is nan at epoch 0"]]


def test_the_cost_table_says_its_wall_clock_is_summed_over_runs(default_report):
    from planted_report import STAGES, TRUTH_WALL

    out, _ = default_report
    section = _section((out / "report" / "report.md").read_text(), "Cost")
    rows = _table(section)
    assert rows[0][:2] == ["", "wall s, summed over runs"]
    assert {r[0]: r[1] for r in rows[1:]}["ground_truth"] == f"{TRUTH_WALL:.1f}"
    runs = pd.read_parquet(out / "results" / "runs.parquet")
    trained = int(runs.kind.isin(["stl", "pair"]).sum())
    assert trained == 6 * (5 + 10)
    assert TRUTH_WALL > STAGES["training"]  # the case the note explains
    assert (f"The ground truth's {TRUTH_WALL:.1f} s is the sum over its {trained} STL and pair runs; the training stage, which "
            f"trained them beside the other runs, took {STAGES['training']:.1f} s.") in section


def test_the_headline_beside_the_noise_ceiling_is_in_both_reports(default_report):
    out, summary = default_report
    md = (out / "report" / "report.md").read_text()
    assert f"**{summary['headline']}**" in md
    one = summary["noise_ceiling"]["single_seed"]["spearman"]
    half = summary["noise_ceiling"]["split_half"]["spearman"]
    assert f"noise ceiling is Spearman {one:.2f} from one seed to another and {half:.2f} split-half, against " in summary["headline"]
    for name, e in summary["scorers"].items():
        assert f"{name} {e['spearman']:.2f}" in summary["headline"]
    assert "indistinguishable" not in md


def test_the_config_section_says_how_the_networks_were_trained(tmp_path):
    """Counts by mode and device, with the reasons; results stored before the mode was recorded
    (no such columns in runs.parquet) count as unrecorded."""
    from raytaskaff.report.render import training_text

    h100 = "cuda:0 NVIDIA H100 80GB HBM3"
    runs = pd.DataFrame({"status": ["done"] * 5 + ["failed"], "training": ["fused", "fused", "separate", "fell back", "fused", None],
                         "device": [h100, h100, h100, "cuda:1 NVIDIA H100 80GB HBM3", h100, None],
                         "training_reason": [None, None, "its gradient probes need backward passes of their own",
                                             "stacked first step failed on cuda:1 NVIDIA H100 80GB HBM3: boom", None, None]})
    assert training_text(runs) == (
        f"Networks trained (5): 3 fused on {h100}, 1 separate on {h100}, 1 fell back on cuda:1 NVIDIA H100 80GB HBM3. "
        "Why: 1 separate: its gradient probes need backward passes of their own; "
        "1 fell back: stacked first step failed on cuda:1 NVIDIA H100 80GB HBM3: boom.")
    assert training_text(runs[["status"]]) == "Networks trained (5): 5 of unrecorded mode."
    _sweep(tmp_path)  # its one run holds no mode: the report still renders, and says so under Config
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Config\n\nNetworks trained (1): 1 of unrecorded mode.\n" in md


def test_per_target_tables_of_40_tasks_have_a_row_per_target_and_short_partner_orders(forty_report):
    out, summary, _ = forty_report
    md = (out / "report" / "report.md").read_text()
    truth = pd.read_csv(out / "results" / "ground_truth.csv")
    rows = _table(_section(md, "Partner ranking per target"))
    assert len(rows) == 1 + 40 and all(len(r) == len(rows[0]) == 2 + len(summary["scorers"]) + 1 for r in rows)
    for row, target in zip(rows[1:], summary["tasks"]):
        order = truth[truth.target == target].sort_values("gain", ascending=False).partner.tolist()
        assert row[1] == " > ".join(order[:5]) + f" > … 33 more … > {order[-1]}"
    assert "the true order shows the first 5 and the last" in _section(md, "Partner ranking per target")
    best = _table(_section(md, "Best partner per target"))
    assert len(best) == 1 + 40 and len(best[0]) == 2 + len(summary["scorers"])


def test_up_to_nine_partners_the_true_order_is_whole(default_report):
    out, summary = default_report
    section = _section((out / "report" / "report.md").read_text(), "Partner ranking per target")
    truth = pd.read_csv(out / "results" / "ground_truth.csv")
    for row, target in zip(_table(section)[1:], summary["tasks"]):
        assert row[1] == " > ".join(truth[truth.target == target].sort_values("gain", ascending=False).partner)
    assert "the first 5" not in section
