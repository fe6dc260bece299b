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
from raytaskaff.evaluation.frontier import default_draws, frontier
from raytaskaff.evaluation.ground_truth import ground_truth
from raytaskaff.evaluation.levels import coverage_warning, evaluate_score, orientation_warning, truth_warnings
from raytaskaff.evaluation.noise import noise_ceiling
from raytaskaff.evaluation.partner import partner_dependence_all
from raytaskaff.evaluation.reference import reference_check
from raytaskaff.evaluation.tables import pair_table

#: Below this Spearman of the ground truth with itself (the better of the single-seed and
#: split-half ceilings), its ranking is mostly noise and no scorer can be judged firmly.
LOW_CEILING = 0.5


def per_seed_frame(truth_per_seed: dict[int, dict]) -> pd.DataFrame:
    """Columns seed, target, partner, gain from {seed: {(target, partner): gain}}."""
    rows = [(seed, t, p, v) for seed, table in sorted(truth_per_seed.items()) for (t, p), v in sorted(table.items())]
    return pd.DataFrame(rows, columns=["seed", "target", "partner", "gain"])


def evaluate_all(truth_per_seed: dict[int, dict], tables: dict[str, dict], per_seed: dict[str, dict] | None = None,
                 bootstrap: int = 2000, tasks: list[str] | None = None, seed: int = 0, truth: dict | None = None) -> dict:
    """The evaluation of every scorer against a ground truth measured per seed.

    truth_per_seed: {seed: {(target, partner): gain}} (one key for a ground truth without seeds);
    tables: {scorer: {(target, partner): value}}; per_seed: {scorer: {seed: table}} for scorers
    computed per seed; truth: {(target, partner): seed-mean gain} when the caller has the
    `ground_truth` table already (else computed from truth_per_seed by it). Returns scorers,
    noise_ceiling, comparisons, stability, reference, partner_dependence (every scorer's and the
    ground truth's, the truth's on each seed too, `partner.partner_dependence_all`), warnings and
    headline (the keys of evaluation.json they fill).
    """
    per_seed = per_seed or {}
    frame = per_seed_frame(truth_per_seed)
    if truth is None:
        truth = pair_table(ground_truth(frame), "gain")
    truth = {pair: float(gain) for pair, gain in sorted(truth.items())}
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
           "reference": reference_check(truth, tasks), "partner_dependence": partner_dependence_all(tables, truth, truth_per_seed),
           "warnings": warnings}
    cannot_rank = ("the ground truth has no known gain" if not truth else
                   "the ground truth is constant" if len(set(truth.values())) == 1 else None)
    out["headline"] = headline(scorers, comparisons, ceiling, cannot_rank)
    return out


def evaluation_frontier(evaluation: dict, truth: dict, tables: dict[str, dict], bootstrap: int,
                        costs: dict[str, float | None] | None = None, stl_share: float | None = None,
                        combined_cost: float | None = None) -> dict:
    """evaluation.json's `frontier` (`frontier.frontier`), for a sweep and the evaluate command
    alike: judged against the split-half noise ceiling of `evaluate_all`'s result (one seed's
    where there is no split half), with `default_draws` draws for `bootstrap` replicates. costs,
    stl_share and combined_cost as `frontier` takes them (None: unknown)."""
    ceiling = evaluation.get("noise_ceiling") or {}
    half, one = (ceiling.get("split_half") or {}).get("spearman"), (ceiling.get("single_seed") or {}).get("spearman")
    return frontier(truth, tables, costs, stl_share, half if half is not None else one, combined_cost=combined_cost,
                    draws=default_draws(sum(math.isfinite(v) for v in truth.values()), bootstrap))


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _fmt(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"


def _gap(comparisons: list[dict], high: str, low: str) -> tuple[float | None, list | None]:
    """The Spearman difference high - low and its bootstrap interval, from whichever order the
    comparison was made in."""
    for c in comparisons:
        if {c["a"], c["b"]} == {high, low}:
            sign = 1.0 if c["a"] == high else -1.0
            diff, ci = c.get("spearman_diff"), c.get("spearman_ci")
            return (None if diff is None else sign * diff), (None if ci is None else sorted(sign * v for v in ci))
    return None, None


def _apart(group: list[str], comparisons: list[dict]) -> str:
    """'X and Y cannot be told apart at N seeds (...)': the group's widest gap with its interval,
    so that an interval wide enough to hold it is not read as equal quality."""
    seeds = max((c.get("seeds") or 0 for c in comparisons if c["a"] in group and c["b"] in group), default=0)
    at = f"at {seeds} seed{'s' if seeds != 1 else ''}" if seeds else "at this number of seeds"
    diff, ci = _gap(comparisons, group[0], group[-1])
    if diff is None:
        return f"{_join(group)} cannot be told apart {at}"
    widest = f"{group[0]} - {group[-1]} = {_fmt(diff)}" + (f", 95% interval [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
    return f"{_join(group)} cannot be told apart {at} (widest gap {widest})"


def _values(names: list[str], scorers: dict) -> str:
    return _join([f"{n} {_fmt(scorers[n]['spearman'])}" for n in names])


def headline(scorers: dict, comparisons: list[dict], ceiling: dict | None, cannot_rank: str | None = None) -> str:
    """One sentence: which scorers cannot be told apart, which beat which (Spearman against the
    ground truth, paired bootstrap at 95%; then best-partner hits where they differ significantly),
    every scorer's Spearman beside the ground truth's noise ceiling, how far the highest is below it,
    and whether the ceiling lets the sweep judge at all. cannot_rank: why the ground truth ranks
    nothing, when it does not.

    "Cannot be told apart" is a statement about the seeds and pairs measured, not equal quality:
    the clause gives the group's widest gap with its interval."""
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
        clauses.append(_apart(names, comparisons) + "; no Spearman difference is significant at 95%")
    else:
        beaten = {loser for losers in beats.values() for loser in losers}
        top = [n for n in names if n not in beaten]
        rest = [n for n in names if n in beaten]
        clauses.append(_apart(top, comparisons) if len(top) > 1 else f"no scorer beats {top[0]}")
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
    values = f"Spearman with the ground truth {_values(names, scorers)}" if names else ""
    if ceiling is None:
        clauses += [values] if values else []
        clauses.append("the ground truth has fewer than two seeds, so its own noise is unknown and no scorer can be put in proportion")
    else:
        one = (ceiling.get("single_seed") or {}).get("spearman")
        half = (ceiling.get("split_half") or {}).get("spearman")
        levels = [v for v in (one, half) if v is not None]
        where = f"Spearman {_fmt(one)} from one seed to another" + (f" and {_fmt(half)} split-half" if half is not None else "")
        if not levels or max(levels) < LOW_CEILING:
            clauses.append((f"{values}, " if values else "")
                           + f"but the ground truth agrees with itself only at {where}, too low to judge any scorer firmly")
        else:
            clauses.append(f"the ground truth's noise ceiling is {where}" + (f", against {_values(names, scorers)}" if names else ""))
            # the split-half ceiling (seed means against seed means) is the one a scorer judged
            # against the seed mean can reach; the single-seed one where there is no split half
            ceiling_value, which = (half, "split-half") if half is not None else (one, "single-seed")
            reached = [n for n in names if ceiling_value is not None and scorers[n]["spearman"] >= ceiling_value]
            if reached:
                clauses.append(f"{_join(reached)} reach{'es' if len(reached) == 1 else ''} the {which} ceiling")
            elif names and ceiling_value is not None:
                top = names[0]  # the highest, which need not be told apart from the next ones
                gap = round(ceiling_value, 2) - round(scorers[top]["spearman"], 2)  # as the two printed values read
                clauses.append(f"the highest, {top}, is {_fmt(gap)} below the {which} ceiling")
    return "; ".join(clauses) + "."  # never capitalised: it may begin with a scorer's name
