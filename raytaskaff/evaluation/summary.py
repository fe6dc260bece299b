"""Everything a sweep (or the evaluate command) says about its scorers, and the one sentence that
sums it up.

`evaluate_all` judges every scorer against the ground truth's seed mean (the four levels, with
coverage), measures the noise ceiling, compares every two scorers with the paired bootstrap,
measures each scorer's seed-to-seed stability, sets the reference study's best partners beside
this ground truth's, and collects the warnings that limit what the numbers can say. `headline`
turns the significance results and the ceiling into one sentence; nothing in it is fixed text
about particular scorers.
"""

from __future__ import annotations

import math

import pandas as pd

from raytaskaff.evaluation.compare import compare_scorers, seed_stability
from raytaskaff.evaluation.levels import coverage_warning, evaluate_score, orientation_warning, truth_warnings
from raytaskaff.evaluation.noise import noise_ceiling
from raytaskaff.evaluation.reference import reference_check

#: Below this Spearman of the ground truth with itself (the better of the single-seed and
#: split-half ceilings), its ranking is mostly noise and no scorer can be judged firmly.
LOW_CEILING = 0.5


def per_seed_frame(truth_per_seed: dict[int, dict]) -> pd.DataFrame:
    """Columns seed, target, partner, gain from {seed: {(target, partner): gain}}."""
    rows = [(seed, t, p, v) for seed, table in sorted(truth_per_seed.items()) for (t, p), v in sorted(table.items())]
    return pd.DataFrame(rows, columns=["seed", "target", "partner", "gain"])


def evaluate_all(truth_per_seed: dict[int, dict], tables: dict[str, dict], per_seed: dict[str, dict] | None = None,
                 bootstrap: int = 2000, tasks: list[str] | None = None, seed: int = 0) -> dict:
    """The evaluation of every scorer against a ground truth measured per seed.

    truth_per_seed: {seed: {(target, partner): gain}} (one key for a ground truth without seeds);
    tables: {scorer: {(target, partner): value}}; per_seed: {scorer: {seed: table}} for scorers
    computed per seed. Returns scorers, noise_ceiling, comparisons, stability, reference, warnings
    and headline (the keys of evaluation.json they fill).
    """
    per_seed = per_seed or {}
    frame = per_seed_frame(truth_per_seed)
    truth = {(r.target, r.partner): float(r.gain) for r in frame.groupby(["target", "partner"], as_index=False)["gain"].mean().itertuples()}
    warnings = truth_warnings(truth)
    scorers = {}
    for name, table in tables.items():
        result = evaluate_score(table, truth, bootstrap=bootstrap, seed=seed)
        own = [w for w in [coverage_warning(name, result["coverage"]), orientation_warning(name, result["orientation"])] if w]
        scorers[name] = {**result, "warnings": own}
        warnings += own
    ceiling = noise_ceiling(frame) if frame["seed"].nunique() >= 2 else None
    stability = {name: seed_stability(per_seed[name]) if name in per_seed else {"seeds": 0, "mean_spearman": None, "pairwise": []}
                 for name in tables}
    if len(truth_per_seed) >= 2:
        stability["ground_truth"] = seed_stability(truth_per_seed)
    comparisons = compare_scorers(truth_per_seed, tables, per_seed, replicates=bootstrap, seed=seed)
    tasks = tasks if tasks is not None else sorted({t for pair in truth for t in pair})
    out = {"scorers": scorers, "noise_ceiling": ceiling, "comparisons": comparisons, "stability": stability,
           "reference": reference_check(truth, tasks), "warnings": warnings}
    cannot_rank = ("the ground truth has no known gain" if not truth else
                   "the ground truth is constant" if len(set(truth.values())) == 1 else None)
    out["headline"] = headline(scorers, comparisons, ceiling, cannot_rank)
    return out


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _fmt(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"


def headline(scorers: dict, comparisons: list[dict], ceiling: dict | None, cannot_rank: str | None = None) -> str:
    """One sentence: which scorers are indistinguishable, which beat which (Spearman against the
    ground truth, paired bootstrap at 95%; then best-partner hits where they differ significantly),
    and whether the ground truth's noise ceiling lets the
    sweep judge at all. cannot_rank: why the ground truth ranks nothing, when it does not."""
    if cannot_rank:
        return f"{cannot_rank}: it ranks nothing, so no scorer can be judged."
    names = sorted((n for n, e in scorers.items() if e.get("spearman") is not None), key=lambda n: -scorers[n]["spearman"])
    beats = {n: [] for n in names}
    tested = False
    for c in comparisons:
        if c["a"] in beats and c["b"] in beats and c.get("spearman_significant") is not None:
            tested = True
            if c["spearman_significant"]:
                winner, loser = (c["a"], c["b"]) if c["spearman_diff"] > 0 else (c["b"], c["a"])
                beats[winner].append(loser)
    clauses = []
    if not names:
        clauses.append("no scorer has a Spearman correlation with the ground truth")
    elif len(names) == 1:
        clauses.append(f"{names[0]} is the only scorer with a Spearman correlation (no comparison)")
    elif not tested:
        clauses.append(f"without bootstrap replicates no difference between {_join(names)} can be called significant")
    elif not any(beats.values()):
        clauses.append(f"{_join(names)} are indistinguishable (no Spearman difference is significant at 95%)")
    else:
        beaten = {loser for losers in beats.values() for loser in losers}
        top = [n for n in names if n not in beaten]
        rest = [n for n in names if n in beaten]
        clauses.append(f"{_join(top)} are indistinguishable" if len(top) > 1 else f"no scorer beats {top[0]}")
        if all(set(rest) <= set(beats[t]) for t in top):
            who = top[0] if len(top) == 1 else "both" if len(top) == 2 else "all of them"
            clauses.append(f"{who} beat{'s' if len(top) == 1 else ''} {_join(sorted(rest, key=names.index))}")
        else:
            for t in top:
                if beats[t]:
                    clauses.append(f"{t} beats {_join(sorted(beats[t], key=names.index))}")
        others = [f"{n} beats {_join(sorted(beats[n], key=names.index))}" for n in rest if beats[n]]
        clauses += others
        clauses.append("other differences are within noise")
    hit_wins = [(c["a"], c["b"]) if c["hits_diff"] > 0 else (c["b"], c["a"]) for c in comparisons
                if c.get("hits_significant") and c.get("hits_diff")]
    if hit_wins:
        clauses.append("on best partners " + ", ".join(f"{w} beats {loser}" for w, loser in hit_wins))
    if ceiling is None:
        clauses.append("the ground truth has fewer than two seeds, so its own noise is unknown and no scorer can be put in proportion")
    else:
        one = (ceiling.get("single_seed") or {}).get("spearman")
        half = (ceiling.get("split_half") or {}).get("spearman")
        levels = [v for v in (one, half) if v is not None]
        where = f"Spearman {_fmt(one)} from one seed to another and {_fmt(half)} split-half"
        if not levels or max(levels) < LOW_CEILING:
            clauses.append(f"but the ground truth agrees with itself only at {where}, too low to judge any scorer firmly")
        else:
            clauses.append(f"the ground truth's noise ceiling is {where}")
            reached = [n for n in names if half is not None and scorers[n]["spearman"] >= half]
            if reached:
                clauses.append(f"{_join(reached)} reach{'es' if len(reached) == 1 else ''} the split-half ceiling")
    return "; ".join(clauses) + "."  # never capitalised: it may begin with a scorer's name
