"""Which way round: a planted asymmetric relation followed from the probes' matrices through the
scorer tables, affinity.csv and the evaluation.

The probes write matrix[target][source] (pinned against a brute-force lookahead in
tests/training/test_probes.py). Here the runs of two seeds carry probe matrices and pair losses
planted from one asymmetric table A: the gain of target t with partner p is A[t, p] (plus a little
seed noise), and so is the probes' entry [t][p]. gt and etap must then agree with the ground truth
at Spearman 1 as given, and their transposes must not; a scorer handed the transpose is named in a
warning.
"""

import itertools
import json

import numpy as np
import pytest
from scipy import stats

from raytaskaff.evaluate import main
from raytaskaff.evaluation import gains_per_seed, ground_truth
from raytaskaff.evaluation.levels import _spearman_rows, orientation, orientation_warning
from raytaskaff.evaluation.summary import evaluate_all
from raytaskaff.report import affinity_frame
from raytaskaff.scorers import Artifacts, SeedRuns, scorer
from raytaskaff.training.loop import RunResult, RunSpec

TASKS = ("depth", "edges", "normal", "keypoints")
ORDERED = list(itertools.permutations(TASKS, 2))
# every ordered pair its own rank: A[t, p] and A[p, t] are unrelated, so the transpose ranks badly
PLANTED = dict(zip(ORDERED, np.random.default_rng(7).permutation(len(ORDERED)).astype(float)))


def _result(tasks, losses, seed, probes=None):
    return RunResult(spec=RunSpec(tuple(tasks)), seed=seed, test_losses=losses, val_losses=losses, test_metrics={},
                     best_epoch=0, epochs=1, history=[], wall_seconds=1.0, cpu_seconds=1.0, device="cpu", parameters=1,
                     probes=probes or {}, probe_variant="corrected")


def _matrix(tasks, table):
    """A probe's matrix over `tasks` in its own convention: row = target, column = source."""
    return [[table[t, p] if t != p else 0.0 for p in tasks] for t in tasks]


def _seed(seed: int) -> SeedRuns:
    noise = np.random.default_rng(seed).normal(0, 0.05, len(ORDERED))
    table = {k: v + n for (k, v), n in zip(PLANTED.items(), noise)}
    runs = SeedRuns(seed, stl={t: _result((t,), {t: 1.0}, seed) for t in TASKS})
    for a, b in itertools.combinations(TASKS, 2):
        order = (b, a) if seed % 2 else (a, b)  # a pair run's own task order must not matter
        probes = {name: [_matrix(order, table)] for name in ("gt", "etap")}
        losses = {a: 1 - table[a, b] / 100, b: 1 - table[b, a] / 100}  # gain(t, p) = table[t, p]
        runs.pairs[a, b] = _result(order, losses, seed, probes)
    everything = tuple(reversed(TASKS)) if seed % 2 else TASKS
    runs.all_tasks = _result(everything, {t: 1.0 for t in TASKS}, seed,
                             {name: [_matrix(everything, table), _matrix(everything, table)] for name in ("gt", "etap")})
    return runs


@pytest.fixture(scope="module")
def swept():
    seeds = [_seed(0), _seed(1)]
    artifacts = Artifacts(TASKS, seeds)
    scores = {f"{name}-{source}": scorer(name).score(artifacts, source=source)
              for name in ("gt", "etap") for source in ("all", "pairs")}
    stl = {s.seed: {t: r.test_losses[t] for t, r in s.stl.items()} for s in seeds}
    pairs = {s.seed: {k: r.test_losses for k, r in s.pairs.items()} for s in seeds}
    return scores, gains_per_seed(stl, pairs)


def test_the_planted_relation_arrives_the_right_way_round(swept, tmp_path):
    scores, per_seed = swept
    truth = ground_truth(per_seed)
    assert {(r.target, r.partner): r.gain for r in truth.itertuples()} == pytest.approx(PLANTED, abs=0.2)
    affinity = affinity_frame(scores)
    for name in scores:
        rows = affinity[affinity.scorer == name]
        assert {(r.target, r.partner): r.value for r in rows.itertuples()} == pytest.approx(PLANTED, abs=0.2)

    judged = evaluate_all({int(s): {(r.target, r.partner): r.gain for r in g.itertuples()} for s, g in per_seed.groupby("seed")},
                          {name: {(r.target, r.partner): r.value for r in s.table.itertuples()} for name, s in scores.items()},
                          bootstrap=200)
    for name, e in judged["scorers"].items():
        assert e["spearman"] == pytest.approx(1.0) and e["hits"] == len(TASKS), name
        assert e["orientation"]["transposed_spearman"] < 0.9 and e["orientation"]["transposed_better"] is False
    assert not [w for w in judged["warnings"] if "other way round" in w]

    # the same through the files a sweep writes and the evaluate command; a transposed table is named
    affinity.to_csv(tmp_path / "affinity.csv", index=False)
    per_seed.rename(columns={"gain": "value"}).to_csv(tmp_path / "gains.csv", index=False)
    flipped = affinity[affinity.scorer == "gt-all"].rename(columns={"target": "partner", "partner": "target"})
    flipped.drop(columns="scorer").to_csv(tmp_path / "flipped.csv", index=False)
    assert main(["--ground-truth", str(tmp_path / "gains.csv"), "--score", f"gt-all={tmp_path / 'affinity.csv'}",
                 "--score", f"etap-all={tmp_path / 'affinity.csv'}", "--score", f"flipped={tmp_path / 'flipped.csv'}",
                 "--bootstrap", "300", "--json", str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["scorers"]["gt-all"]["spearman"] == pytest.approx(1.0) == out["scorers"]["etap-all"]["spearman"]
    turned = out["scorers"]["flipped"]
    assert turned["orientation"]["transposed_spearman"] == pytest.approx(1.0) and turned["orientation"]["transposed_better"]
    assert [w for w in out["warnings"] if "other way round" in w] == [turned["warnings"][0]]
    assert turned["warnings"][0].startswith("flipped agrees with the ground truth better read the other way round")


def test_orientation_against_brute_force():
    rng = np.random.default_rng(3)
    score = {k: float(v) for k, v in zip(ORDERED, rng.normal(size=len(ORDERED)))}
    truth = {(t, p): 0.3 * score[p, t] + float(rng.normal()) for t, p in ORDERED}
    found = orientation(score, truth, bootstrap=400, seed=1)
    x = [score[k] for k in ORDERED]
    y = [truth[k] for k in ORDERED]
    flipped = [score[p, t] for t, p in ORDERED]
    assert found["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert found["transposed_spearman"] == pytest.approx(stats.spearmanr(flipped, y).statistic)
    low, high = found["difference_ci"]
    assert low < found["transposed_spearman"] - found["spearman"] < high
    assert found["transposed_better"] == (low > 0)
    # a symmetric score reads the same both ways; too few pairs or no replicates decide nothing
    symmetric = {(t, p): score[min(t, p), max(t, p)] for t, p in ORDERED}
    assert orientation(symmetric, truth) is None
    assert orientation({("a", "b"): 1.0, ("b", "a"): 2.0}, {("a", "b"): 1.0, ("b", "a"): 0.0}) is None
    bare = orientation(score, truth, bootstrap=0)
    assert bare["difference_ci"] is None and bare["transposed_better"] is None and orientation_warning("s", bare) is None


def test_rowwise_spearman_matches_scipy_with_ties_and_constant_rows():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (30, 9)).astype(float)
    b = rng.normal(size=(30, 9))
    a[0] = 2.0
    got = _spearman_rows(a, b)
    assert np.isnan(got[0])
    np.testing.assert_allclose(got[1:], [stats.spearmanr(x, y).statistic for x, y in zip(a[1:], b[1:])], atol=1e-12)


def test_the_report_says_which_way_round(tmp_path):
    from raytaskaff.report.render import _orientation_section

    found = {"spearman": -0.26, "transposed_spearman": 0.36, "difference_ci": [0.2, 0.9], "transposed_better": True}
    _, _, rows, note = _orientation_section({"gt": {"orientation": found}, "td": {"orientation": None}})
    assert rows == [["gt", "-0.26", "0.36", "0.62 [0.20, 0.90]", "transposed agrees better"]]
    assert "value(target, partner)" in note
    assert _orientation_section({"td": {"orientation": None}}) is None
