"""A budgeted sweep's driver stages without Ray: planted runs of the pairs the budget trains, the
probe scorers of an all-task run, then judge, the grouping stage on the predicted table, and the
outputs (evaluation.json's `budget`, ground_truth_predicted.csv, the report's predicted section)."""

from __future__ import annotations

import itertools
import json
import types

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from raytaskaff.config import SweepConfig, from_dict
from raytaskaff.pipeline import group, judge, price, runs_table, score, summarise
from raytaskaff.plan import plan
from raytaskaff.report import write_outputs
from raytaskaff.scorers import Artifacts, SeedRuns
from raytaskaff.settings import RunKind
from raytaskaff.training.loop import RunResult, RunSpec

TASKS = ("segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal", "reshading")
ORDERED = list(itertools.permutations(TASKS, 2))
PLANTED = dict(zip(ORDERED, np.random.default_rng(5).normal(0, 5, len(ORDERED))))


def _config(tmp_path, **more) -> SweepConfig:
    return from_dict(SweepConfig, {"name": "budget", "tasks": list(TASKS), "seeds": [0, 1], "scorers": {"gt": {}, "etap": {}},
                                   "ground_truth": {"pairs": 6}, "out": str(tmp_path / "out"), "bootstrap": 200, **more})


def _result(tasks, losses, seed, probes=None):
    return RunResult(spec=RunSpec(tuple(tasks)), seed=seed, test_losses=losses, val_losses=losses, test_metrics={},
                     best_epoch=0, epochs=1, history=[], wall_seconds=1.0, cpu_seconds=1.0, device="cpu", parameters=1,
                     probes=probes or {}, probe_variant="corrected")


def _seeds(config: SweepConfig) -> tuple[list[SeedRuns], dict]:
    """Two seeds of planted runs: the trained pairs' losses give gain(t, p) = PLANTED[t, p] (+ a
    little seed noise); the all-task run's gt is a noisy monotone map of it, etap pure noise.
    Also {run key: result} of the planned runs."""
    by_key, out = {}, []
    planned = {(r.kind, r.tasks, r.seed): r.key for r in plan(config)}
    for seed in config.seeds:
        rng = np.random.default_rng(seed)
        runs = SeedRuns(seed, stl={t: _result((t,), {t: 1.0}, seed) for t in TASKS})
        for a, b in config.trained_pairs():
            ga, gb = PLANTED[a, b] + rng.normal(0, 0.2), PLANTED[b, a] + rng.normal(0, 0.2)
            runs.pairs[a, b] = _result((a, b), {a: 1 - ga / 100, b: 1 - gb / 100}, seed)
        gt = [[0.0 if t == p else float(np.tanh(PLANTED[t, p] / 5) + rng.normal(0, 0.02)) for p in TASKS] for t in TASKS]
        etap = [[0.0 if t == p else float(rng.normal()) for p in TASKS] for t in TASKS]
        runs.all_tasks = _result(TASKS, {t: 1.0 for t in TASKS}, seed, {"gt": [gt], "etap": [etap]})
        for t, r in runs.stl.items():
            by_key[planned[RunKind.STL, (t,), seed]] = r
        for pair, r in runs.pairs.items():
            by_key[planned[RunKind.PAIR, pair, seed]] = r
        out.append(runs)
    return out, by_key


@pytest.fixture()
def stages(tmp_path):
    config = _config(tmp_path, grouping={"groups": [2], "seeds": [0]})
    seeds, by_key = _seeds(config)
    scored = score(config, Artifacts(TASKS, seeds), tmp_path, say=lambda *_: None)
    said = []
    judged = judge(config, seeds, scored, say=said.append)
    return config, seeds, by_key, scored, judged, said


def test_the_untrained_pairs_are_predicted_marked_and_written(stages, tmp_path):
    config, seeds, _, scored, judged, said = stages
    budget = judged.predicted
    assert (budget["pairs"], budget["trained"], budget["planned_pairs"]) == (15, 6, 6)
    trained = {frozenset(p) for p in config.trained_pairs()}
    assert {frozenset(p) for p in budget["trained_pairs"]} == trained
    predicted = [r for r in budget["table"] if r["predicted"]]
    assert len(budget["table"]) == 30 and len(predicted) == 18
    assert all(frozenset((r["target"], r["partner"])) not in trained for r in predicted)
    assert budget["predictor"]["scorers"] in (["gt"], ["etap", "gt"])  # not etap alone: it is noise
    rho = spearmanr([r["gain"] for r in predicted], [PLANTED[r["target"], r["partner"]] for r in predicted])[0]
    assert rho > 0.85
    assert said[0].startswith("warning: ground truth on a budget: 9 of 15 pairs are predicted, not measured")
    assert judged.evaluation["warnings"][0].startswith("ground truth on a budget: 9 of 15 pairs")
    # the scorers are judged on the measured pairs only
    assert set(map(tuple, judged.truth[["target", "partner"]].values)) == {c for p in config.trained_pairs() for c in (p, p[::-1])}

    truth_cost = price(scored, seeds)
    summary = summarise(config, scored, judged, truth_cost, None, {}, {}, {"total": 1.0})
    assert summary["budget"] is budget
    runs = runs_table(plan(config), types.SimpleNamespace(records={}), set(), {})
    out = tmp_path / "out"
    write_outputs(out, json.loads(json.dumps(summary, default=str)), scored.scores, judged.per_seed, judged.truth, runs)
    csv = pd.read_csv(out / "results" / "ground_truth_predicted.csv")
    assert len(csv) == 30 and int(csv.predicted.sum()) == 18 and csv[~csv.predicted].low.isna().all()
    assert json.loads((out / "results" / "evaluation.json").read_text())["budget"]["trained"] == 6
    report = (out / "report" / "report.md").read_text()
    assert "Ground truth on a budget: predicted gains" in report and "PREDICTED, not measured: 9 of 15 pairs" in report
    assert "(predicted)" in report


def test_the_grouping_stage_groups_on_the_predicted_table(stages):
    config, seeds, by_key, scored, judged, _ = stages
    trained_now = []

    class Stored:
        records: dict = {}
        store = types.SimpleNamespace(has=lambda key: False)

        def refresh(self, runs):
            trained_now.extend(runs)

        def find(self, key):
            return by_key.get(key)

    grouping, extra = group(config, plan(config), Stored(), scored, judged, {"cpu_seconds": 1.0}, train=lambda runs: None,
                            say=lambda *_: None)
    assert grouping["predicted"] == {"trained": 6, "pairs": 15}
    assert "ground_truth" not in grouping["errors"]  # the measured table alone misses pairs: it could not group
    assert grouping["errors"]["hoa"] == "hoa: needs every pair's network, and ground_truth.pairs trains 6 of 15"
    chosen = {r["groups"] for r in grouping["rows"] if r["source"] == "ground_truth"}
    assert len(chosen) == 1
    # a pair the budget did not train is trained under the key the full plan gives it
    full = {r.key: r for r in plan(config, every_pair=True)}
    pairs = [r for r in extra if len(r.tasks) == 2]
    assert all(r.kind == RunKind.PAIR and full[r.key] == r for r in pairs)
    assert trained_now == extra


def test_the_group_command_says_when_it_groups_on_predicted_affinities(tmp_path, capsys):
    from raytaskaff.group import main

    rows = [{"target": t, "partner": p, "gain": PLANTED[t, p], "low": None, "high": None, "predicted": i % 3 == 0}
            for i, (t, p) in enumerate(ORDERED)]
    path = tmp_path / "ground_truth_predicted.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    main(["affinity", "--scores", str(path), "--max-groups", "2"])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(", chosen on predicted affinities (10 of 30 predicted, not measured):")
    pd.DataFrame(rows).drop(columns=["low", "high", "predicted"]).to_csv(path, index=False)  # a measured table: nothing said
    main(["affinity", "--scores", str(path), "--max-groups", "2"])
    assert "predicted" not in capsys.readouterr().out
