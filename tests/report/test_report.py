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
