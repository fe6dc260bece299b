"""The four levels on which a score S is judged against the ground truth G (DESIGN.md):

1. predictive power: Pearson, Spearman and Kendall (tau-b) of S and G over the ordered pairs
   where both are known, with percentile bootstrap intervals (pairs resampled with replacement);
2. partner ranking: per target, Kendall tau-b (and Spearman) of S[t, .] against G[t, .], the mean
   over targets;
3. best partner: per target, the partners with the highest S (all of them on ties; the realised
   gain is their mean known gain), the true best partners, hit (they share one; unknown when they
   do not and a chosen partner's gain is unknown) and regret (best gain minus realised gain);
4. cost lives with the scorers (`scorers.base.cost_of`).

Inputs are {(target, partner): value} dicts; a pair missing from either side is left out.
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
    """Per target: chosen (highest score, ties all), best (highest known gain), their gains, hit."""
    out = {}
    for target in targets:
        scored = {p: v for (t, p), v in score.items() if t == target and math.isfinite(v)}
        known = {p: v for (t, p), v in truth.items() if t == target and math.isfinite(v)}
        chosen = sorted(p for p, v in scored.items() if v == max(scored.values())) if scored else []
        best = sorted(p for p, v in known.items() if v == max(known.values())) if known else []
        realised = [known[p] for p in chosen if p in known]
        if not chosen or not best:
            hit = None
        elif set(chosen) & set(best):
            hit = True
        else:  # a miss only if every chosen partner's gain is known (an unknown one could be the best)
            hit = False if len(realised) == len(chosen) else None
        out[target] = {
            "chosen": chosen, "best": best,
            "chosen_gain": float(np.mean(realised)) if realised else None,
            "best_gain": float(max(known.values())) if known else None,
            "hit": hit,
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


def evaluate_score(score: dict, truth: dict, bootstrap: int = 2000, seed: int = 0) -> dict:
    """All levels of one score (the evaluate command's JSON for one scorer)."""
    pairs = sorted(k for k in score if k in truth and math.isfinite(score[k]) and math.isfinite(truth[k]))
    x = np.array([score[k] for k in pairs], dtype=float)
    y = np.array([truth[k] for k in pairs], dtype=float)
    targets = sorted({t for t, _ in truth} | {t for t, _ in score})
    best = best_partners(score, truth, targets)
    decided = [b for b in best.values() if b["hit"] is not None]
    regrets = [b["best_gain"] - b["chosen_gain"] for b in best.values() if b["best_gain"] is not None and b["chosen_gain"] is not None]
    return {
        **correlations(x, y, bootstrap, seed), "pairs": len(pairs),
        **partner_ranking(score, truth, targets),
        "hits": sum(b["hit"] for b in decided), "targets": len(decided),
        "regret": float(np.mean(regrets)) if regrets else None,
        "best_partner": best,
    }
