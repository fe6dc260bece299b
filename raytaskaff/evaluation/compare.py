"""Scorer against scorer: which differences are real, and how stable each scorer is over seeds.

Paired bootstrap. The ground truth and the STL- and MTL-based scorers are measured per seed, and
seed s of a scorer reads the very runs (initial weights, data order) that seed s of the ground
truth trains, so seeds are resampled jointly: one replicate

1. draws the seeds with replacement and averages the ground truth, and every per-seed scorer,
   over the drawn seeds (a seed-free scorer such as `td` keeps its one table);
2. draws the target-partner pairs with replacement and computes both scorers' Spearman against
   the averaged ground truth on the same draw, and their difference;
3. for best-partner hits, draws the targets with replacement instead, and sums the difference of
   the two scorers' hits over the drawn targets (a target the replicate's ground truth cannot
   decide counts for neither).

The 95% interval is the 2.5 and 97.5 percentiles of the replicates where both Spearman values are
defined (a draw of tied pairs has none); a difference is significant when the interval excludes 0. Both scorers are compared on the pairs both score and the ground
truth knows. With one seed only the pairs (or targets) are resampled.

Seed-to-seed stability: the Spearman correlation of a scorer's table of one seed with that of
another, for every two seeds, and their mean (for the ground truth this is the single-seed noise
ceiling's Spearman).

Shapes: a ground truth is (S, P), S seeds by P pairs; a scorer is (S, P) or (P,) (seed-free);
NaN where a seed lacks a pair. A draw is (B, S) seed indices with (B, P) pair indices and (B, T)
target indices.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: The interval's coverage.
LEVEL = 0.95


@dataclass(frozen=True)
class Draws:
    """Bootstrap draws with replacement: seeds (B, S), pairs (B, P) and targets (B, T), integer indices."""

    seeds: np.ndarray
    pairs: np.ndarray
    targets: np.ndarray


def draw(n_seeds: int, n_pairs: int, n_targets: int, replicates: int, seed: int = 0) -> Draws:
    """`replicates` draws from one seeded generator: seeds first, then pairs, then targets."""
    rng = np.random.default_rng(seed)
    return Draws(rng.integers(0, n_seeds, (replicates, n_seeds)), rng.integers(0, n_pairs, (replicates, n_pairs)),
                 rng.integers(0, n_targets, (replicates, n_targets)))


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of x with the same row of y, both (B, n) (average ranks on
    ties, as scipy's spearmanr). NaN where a row is constant or holds a NaN."""
    out = np.full(len(x), np.nan)
    finite = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    if not finite.any() or x.shape[1] < 2:
        return out
    rx = stats.rankdata(x[finite], axis=1)
    ry = stats.rankdata(y[finite], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denominator = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out[finite] = np.where(denominator > 0, (rx * ry).sum(axis=1) / denominator, np.nan)
    return out


def seed_means(table: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """(B, P): the mean of a (S, P) table over each row of drawn seeds (B, S), NaN-skipping; a
    seed-free (P,) table is repeated."""
    if table.ndim == 1:
        return np.broadcast_to(table, (len(seeds), len(table)))
    drawn = table[seeds]  # (B, S, P)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a pair no drawn seed knows: NaN
        return np.nanmean(drawn, axis=1)


def hits_rows(score: np.ndarray, truth: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """(B, T) of 1 (hit), 0 (miss) or NaN (undecidable): per row and target, whether the partners
    with the highest score include one with the highest gain. score and truth are (B, P);
    groups[t] indexes target t's pairs. Undecidable: all of the target's gains tie (or it has one
    partner), or a value is NaN."""
    out = np.full((len(score), len(groups)), np.nan)
    for t, index in enumerate(groups):
        s, g = score[:, index], truth[:, index]
        finite = np.isfinite(s).all(axis=1) & np.isfinite(g).all(axis=1)
        best = g == g.max(axis=1, keepdims=True)
        chosen = s == s.max(axis=1, keepdims=True)
        decidable = finite & ~best.all(axis=1)
        out[decidable, t] = (best & chosen).any(axis=1)[decidable]
    return out


def _interval(replicates: np.ndarray) -> list[float] | None:
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return None
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


def _significant(ci: list[float] | None) -> bool | None:
    return None if ci is None else bool(ci[0] > 0 or ci[1] < 0)


def _finite(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def paired_difference(truth: np.ndarray, a: np.ndarray, b: np.ndarray, groups: list[np.ndarray], draws: Draws | None) -> dict:
    """Spearman(a) - Spearman(b) and hits(a) - hits(b) against the ground truth's seed mean, with
    paired-bootstrap intervals over `draws` (None: no intervals).

    truth (S, P); a, b (S, P) or (P,); groups: the pair indices of each target (hits per target).
    """
    full = np.arange(truth.shape[0])[None, :]
    t0, a0, b0 = (seed_means(x, full) for x in (truth, a, b))
    rho_a, rho_b = spearman_rows(a0, t0)[0], spearman_rows(b0, t0)[0]
    hits_a, hits_b = hits_rows(a0, t0, groups)[0], hits_rows(b0, t0, groups)[0]
    out = {"spearman_a": _finite(rho_a), "spearman_b": _finite(rho_b), "spearman_diff": _finite(rho_a - rho_b),
           "spearman_ci": None, "spearman_significant": None,
           "hits_a": int(np.nansum(hits_a)), "hits_b": int(np.nansum(hits_b)),
           "hits_diff": int(np.nansum(hits_a) - np.nansum(hits_b)), "targets": int(np.isfinite(hits_a).sum()),
           "hits_ci": None, "hits_significant": None, "pairs": truth.shape[1], "seeds": truth.shape[0],
           "replicates": 0, "replicates_defined": 0}
    if draws is None or not len(draws.seeds):
        return out
    tb, ab, bb = (seed_means(x, draws.seeds) for x in (truth, a, b))
    gather = lambda m: np.take_along_axis(m, draws.pairs, axis=1)  # noqa: E731
    diffs = spearman_rows(gather(ab), gather(tb)) - spearman_rows(gather(bb), gather(tb))
    per_target = np.nan_to_num(hits_rows(ab, tb, groups) - hits_rows(bb, tb, groups))  # undecidable: 0
    hit_diffs = np.take_along_axis(per_target, draws.targets, axis=1).sum(axis=1)
    out["spearman_ci"] = _interval(diffs)
    out["spearman_significant"] = _significant(out["spearman_ci"])
    out["hits_ci"] = _interval(hit_diffs)
    out["hits_significant"] = _significant(out["hits_ci"])
    out["replicates"] = len(draws.seeds)
    out["replicates_defined"] = int(np.isfinite(diffs).sum())  # a draw of tied pairs has no Spearman
    return out


def _arrays(truth_per_seed: dict, tables: dict, per_seed: dict, pairs: list[tuple[str, str]]):
    seeds = sorted(truth_per_seed)
    as_rows = lambda by_seed: np.array([[by_seed.get(s, {}).get(k, np.nan) for k in pairs] for s in seeds], dtype=float)  # noqa: E731
    arrays = {name: as_rows(per_seed[name]) if name in per_seed else np.array([table.get(k, np.nan) for k in pairs], dtype=float)
              for name, table in tables.items()}
    return as_rows(truth_per_seed), arrays


def _known(array: np.ndarray) -> np.ndarray:
    """The pairs with a value in at least one seed."""
    return np.isfinite(array).any(axis=0) if array.ndim == 2 else np.isfinite(array)


def compare_scorers(truth_per_seed: dict[int, dict], tables: dict[str, dict], per_seed: dict[str, dict] | None = None,
                    replicates: int = 2000, seed: int = 0) -> list[dict]:
    """Every pair of scorers (in the given order), each a dict with a, b and `paired_difference`'s keys.

    truth_per_seed: {seed: {(target, partner): gain}}; tables: {name: {(target, partner): value}};
    per_seed: {name: {seed: table}} for the scorers computed per seed (seed s read the runs of the
    ground truth's seed s); the others are seed-free and keep their table in every replicate.
    replicates: bootstrap replicates (0: the differences without intervals).
    """
    pairs = sorted({k for table in truth_per_seed.values() for k in table})
    truth, arrays = _arrays(truth_per_seed, tables, per_seed or {}, pairs)
    out = []
    for name_a, name_b in itertools.combinations(tables, 2):
        keep = _known(truth) & _known(arrays[name_a]) & _known(arrays[name_b])
        kept = [p for p, k in zip(pairs, keep) if k]
        targets = sorted({t for t, _ in kept})
        groups = [np.array([i for i, (t, _) in enumerate(kept) if t == target]) for target in targets]
        sub = lambda x: x[..., keep]  # noqa: E731
        draws = draw(truth.shape[0], len(kept), len(targets), replicates, seed) if replicates and kept else None
        out.append({"a": name_a, "b": name_b,
                    **paired_difference(sub(truth), sub(arrays[name_a]), sub(arrays[name_b]), groups, draws)})
    return out


def seed_stability(per_seed: dict[int, dict]) -> dict:
    """Spearman of a scorer's table of one seed with another's (on the pairs both have), for every
    two seeds, and their mean; `seeds` the number of seed tables."""
    seeds = sorted(per_seed)
    pairwise = []
    for s, t in itertools.combinations(seeds, 2):
        keys = sorted(k for k in per_seed[s] if k in per_seed[t] and math.isfinite(per_seed[s][k]) and math.isfinite(per_seed[t][k]))
        x = np.array([[per_seed[s][k] for k in keys]], dtype=float)
        y = np.array([[per_seed[t][k] for k in keys]], dtype=float)
        pairwise.append({"seeds": [int(s), int(t)], "spearman": _finite(spearman_rows(x, y)[0]), "pairs": len(keys)})
    values = [p["spearman"] for p in pairwise if p["spearman"] is not None]
    return {"seeds": len(seeds), "mean_spearman": float(np.mean(values)) if values else None, "pairwise": pairwise}
