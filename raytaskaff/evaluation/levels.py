"""The four levels on which a score S is judged against the ground truth G (DESIGN.md):

1. predictive power: Pearson, Spearman and Kendall (tau-b) of S and G over the ordered pairs
   where both are known, with percentile bootstrap intervals (pairs resampled with replacement);
2. partner ranking: per target, Kendall tau-b (and Spearman) of S[t, .] against G[t, .], the mean
   over targets;
3. best partner: per target, the partners with the highest S (all of them on ties; the realised
   gain is their mean known gain), the true best partners, hit (they share one; unknown when they
   do not and a chosen partner's gain is unknown) and regret (best gain minus realised gain). A
   target whose known gains are all equal (every partner is a true best one, a single known
   partner included) is undecidable: any choice would "hit", so it is neither a hit nor a miss and
   has no regret;
4. cost lives with the scorers (`scorers.base.cost_of`).

Each asymmetric score is also read the other way round (`orientation`: value(p, t) taken as the
affinity of target t with partner p): a scorer whose transpose agrees clearly better with the ground
truth has the opposite notion of which task helps which, and the evaluation says so.

Inputs are {(target, partner): value} dicts; a pair missing from either side is left out. Each
score's coverage (pairs and targets it scores, out of those the ground truth knows) and warnings
(partial coverage, a ground truth that cannot rank) say how far its numbers can be trusted.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats


def _corr(kind: str, x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "pearson":
            return float(stats.pearsonr(x, y).statistic)
        if kind == "spearman":
            return float(stats.spearmanr(x, y).statistic)
        return float(stats.kendalltau(x, y).statistic)  # tau-b


def correlations(x: np.ndarray, y: np.ndarray, bootstrap: int = 2000, seed: int = 0) -> dict:
    """Pearson, Spearman and Kendall of x and y, each with a 95% percentile bootstrap interval."""
    out = {}
    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, len(x), len(x)) for _ in range(bootstrap)] if len(x) > 1 else []
    for kind in ("pearson", "spearman", "kendall"):
        value = _corr(kind, x, y)
        boots = np.array([_corr(kind, x[i], y[i]) for i in samples])
        boots = boots[np.isfinite(boots)]
        low, high = (np.percentile(boots, [2.5, 97.5]) if len(boots) else (math.nan, math.nan))
        out[kind] = None if math.isnan(value) else value
        out[f"{kind}_ci"] = None if math.isnan(value) or not len(boots) else [float(low), float(high)]
    return out


def _finite(value: float | None):
    return None if value is None or not math.isfinite(value) else float(value)


def best_partners(score: dict, truth: dict, targets: list[str]) -> dict:
    """Per target: chosen (highest score, ties all), best (highest known gain), their gains, hit,
    and whether the target is undecidable (every known partner is a true best one)."""
    out = {}
    for target in targets:
        scored = {p: v for (t, p), v in score.items() if t == target and math.isfinite(v)}
        known = {p: v for (t, p), v in truth.items() if t == target and math.isfinite(v)}
        chosen = sorted(p for p, v in scored.items() if v == max(scored.values())) if scored else []
        best = sorted(p for p, v in known.items() if v == max(known.values())) if known else []
        realised = [known[p] for p in chosen if p in known]
        undecidable = bool(known) and len(best) == len(known)
        if not chosen or not best or undecidable:
            hit = None
        elif set(chosen) & set(best):
            hit = True
        else:  # a miss only if every chosen partner's gain is known (an unknown one could be the best)
            hit = False if len(realised) == len(chosen) else None
        out[target] = {
            "chosen": chosen, "best": best,
            "chosen_gain": float(np.mean(realised)) if realised else None,
            "best_gain": float(max(known.values())) if known else None,
            "hit": hit, "undecidable": undecidable,
        }
    return out


def partner_ranking(score: dict, truth: dict, targets: list[str]) -> dict:
    """Mean over targets of the per-target Kendall tau-b and Spearman (targets where defined)."""
    kendall, spearman = {}, {}
    for target in targets:
        partners = sorted(p for (t, p) in truth if t == target and (t, p) in score
                          and math.isfinite(truth[t, p]) and math.isfinite(score[t, p]))
        x = np.array([score[target, p] for p in partners])
        y = np.array([truth[target, p] for p in partners])
        kendall[target], spearman[target] = _corr("kendall", x, y), _corr("spearman", x, y)
    mean = lambda d: _finite(np.mean([v for v in d.values() if math.isfinite(v)])) if any(math.isfinite(v) for v in d.values()) else None  # noqa: E731
    return {"ranking_kendall": mean(kendall), "ranking_spearman": mean(spearman),
            "ranking_per_target": {t: {"kendall": _finite(kendall[t]), "spearman": _finite(spearman[t])} for t in targets}}


def truth_warnings(truth: dict) -> list[str]:
    """What keeps a ground truth from ranking: no known gain, every gain equal, targets whose
    partners all tie (undecidable) or whose best partners tie."""
    known = {k: v for k, v in truth.items() if math.isfinite(v)}
    if not known:
        return ["the ground truth has no known gain: nothing can be judged"]
    if len(set(known.values())) == 1:
        return [f"the ground truth is constant (every known gain is {next(iter(known.values())):g}): "
                "it cannot rank pairs or partners, so no correlation or best-partner hit can be judged"]
    out = []
    best = best_partners({}, known, sorted({t for t, _ in known}))
    undecidable = [t for t, b in best.items() if b["undecidable"]]
    tied = [f"{t} ({' = '.join(b['best'])})" for t, b in best.items() if len(b["best"]) > 1 and not b["undecidable"]]
    if undecidable:
        out.append(f"the ground truth cannot rank the partners of {len(undecidable)} target(s) (all tied or only one known): "
                   f"{', '.join(undecidable)} undecidable, counted neither as hit nor as miss")
    if tied:
        out.append(f"the ground truth's best partners tie for {len(tied)} target(s): {', '.join(tied)}")
    return out


def coverage(score: dict, truth: dict) -> dict:
    """Pairs and targets with a score, out of those with a known gain."""
    known = {k for k, v in truth.items() if math.isfinite(v)}
    scored = {k for k in known if k in score and math.isfinite(score[k])}
    return {"pairs": len(scored), "pairs_known": len(known),
            "targets": len({t for t, _ in scored}), "targets_known": len({t for t, _ in known})}


def coverage_warning(name: str, cover: dict) -> str | None:
    """A one-line warning when a score covers only part of the ground truth, else None."""
    if cover["pairs"] == cover["pairs_known"]:
        return None
    return (f"score {name} covers {cover['pairs']}/{cover['pairs_known']} pairs and {cover['targets']}/{cover['targets_known']} "
            "targets of the ground truth: its numbers speak for those only")


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman of a[i] and b[i] for every row i (NaN where a row is constant)."""
    ra, rb = stats.rankdata(a, axis=1), stats.rankdata(b, axis=1)
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    norm = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(axis=1) / norm


def orientation(score: dict, truth: dict, bootstrap: int = 2000, seed: int = 0) -> dict | None:
    """The score read as given and transposed (value(p, t) as the affinity of target t with
    partner p) against the ground truth, over the pairs known both ways round.

    Returns spearman, transposed_spearman, difference_ci (95% percentile bootstrap over pairs of
    transposed minus as given; None without replicates) and transposed_better (the interval lies
    above 0; None without replicates), or None for a symmetric score or fewer than three pairs."""
    pairs = sorted(k for k in truth if math.isfinite(truth[k]) and k in score and (k[1], k[0]) in score
                   and math.isfinite(score[k]) and math.isfinite(score[k[1], k[0]]))
    x = np.array([score[k] for k in pairs], dtype=float)
    flipped = np.array([score[k[1], k[0]] for k in pairs], dtype=float)
    y = np.array([truth[k] for k in pairs], dtype=float)
    if len(pairs) < 3 or np.array_equal(x, flipped):
        return None
    direct, transposed = _corr("spearman", x, y), _corr("spearman", flipped, y)
    rows = np.random.default_rng(seed).integers(0, len(x), (bootstrap, len(x)))
    diffs = _spearman_rows(flipped[rows], y[rows]) - _spearman_rows(x[rows], y[rows])
    diffs = diffs[np.isfinite(diffs)]
    ci = [float(v) for v in np.percentile(diffs, [2.5, 97.5])] if len(diffs) else None
    return {"spearman": _finite(direct), "transposed_spearman": _finite(transposed), "difference_ci": ci,
            "transposed_better": None if ci is None else bool(ci[0] > 0)}


def orientation_warning(name: str, found: dict | None) -> str | None:
    """A one-line warning when a score agrees with the ground truth clearly better transposed."""
    if not found or not found["transposed_better"]:
        return None
    low, high = found["difference_ci"]
    return (f"{name} agrees with the ground truth better read the other way round: Spearman "
            f"{found['transposed_spearman']:.2f} with value(partner, target) against {found['spearman']:.2f} as "
            f"value(target, partner) (difference 95% CI [{low:.2f}, {high:.2f}]); its notion of which task helps which "
            "runs against the measured gains (a finding about the scorer: the orientation from probe to table is tested)")


def evaluate_score(score: dict, truth: dict, bootstrap: int = 2000, seed: int = 0) -> dict:
    """All levels of one score (the evaluate command's JSON for one scorer), with its coverage."""
    pairs = sorted(k for k in score if k in truth and math.isfinite(score[k]) and math.isfinite(truth[k]))
    x = np.array([score[k] for k in pairs], dtype=float)
    y = np.array([truth[k] for k in pairs], dtype=float)
    targets = sorted({t for t, _ in truth} | {t for t, _ in score})
    best = best_partners(score, truth, targets)
    decided = [b for b in best.values() if b["hit"] is not None]
    regrets = [b["best_gain"] - b["chosen_gain"] for b in best.values()
               if b["best_gain"] is not None and b["chosen_gain"] is not None and not b["undecidable"]]
    return {
        **correlations(x, y, bootstrap, seed), "pairs": len(pairs),
        **partner_ranking(score, truth, targets),
        "hits": sum(b["hit"] for b in decided), "targets": len(decided),
        "undecidable": sum(b["undecidable"] for b in best.values()),
        "regret": float(np.mean(regrets)) if regrets else None,
        "coverage": coverage(score, truth),
        "orientation": orientation(score, truth, bootstrap, seed),
        "best_partner": best,
    }
