"""Speed of the exact group selections as the task count grows.

    python -m bench.grouping [--repeat 3] [--json]

1. networks: exact selection over Standley's full candidate set (every task subset at cost 1 plus
   half-size single-task networks at 0.5: 2^n - 1 + n candidates) for every budget 1, 1.5, ..., n,
   against enumerating every set of candidates within budget 2 (only where that is feasible: up to
   5 tasks), whose lowest total loss the exact selection must match (aim: == 1);
2. affinity: the exact TAG grouping for K = 2, 3 and n/2 groups, and the local-search heuristic
   (ratio: the heuristic's objective over the exact one; values: objectives, then seconds).
Random losses and affinities; the answers do not depend on them, the times barely. Times are the
best of `--repeat` calls.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from functools import partial

import numpy as np

from bench.rows import Row, bench_parser, report
from raytaskaff.grouping import Network, select_groups
from raytaskaff.grouping.networks import select_for_budgets


def full_candidates(n: int, rng) -> tuple[list[str], list[Network]]:
    tasks = [f"task{i}" for i in range(n)]
    out = [Network(f"half {t}", 0.5, {t: float(rng.uniform(1.2, 2))}, {t: None}) for t in tasks]
    for k in range(1, n + 1):
        for group in itertools.combinations(tasks, k):
            out.append(Network("+".join(group), 1.0, {t: float(rng.uniform(0.8, 1.6)) for t in group}, dict.fromkeys(group)))
    return tasks, out


def enumerate_sets(candidates: list[Network], tasks: list[str], budget: float) -> float:
    """The reference answer by brute force: every set of candidates within the budget."""
    best = math.inf
    most = int(budget / min(c.cost for c in candidates))
    for r in range(1, most + 1):
        for chosen in itertools.combinations(candidates, r):
            if sum(c.cost for c in chosen) <= budget + 1e-9:
                best = min(best, sum(min((c.val[t] for c in chosen if t in c.val), default=math.inf) for t in tasks))
    return best


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def rows(repeat: int = 3) -> Iterator[Row]:
    rng = np.random.default_rng(0)
    for n in (3, 4, 5, 6, 8, 10):
        tasks, candidates = full_candidates(n, rng)
        budgets = list(np.arange(1.0, n + 0.25, 0.5))
        seconds, selections = timed(partial(select_for_budgets, candidates, budgets), repeat)
        yield Row("grouping", f"networks, {n} tasks: exact, {len(budgets)} budgets", f"{seconds:.4f} s")
        if len(candidates) <= 40:  # sets of up to 4 candidates of 36: about 66k
            brute_seconds, brute = timed(partial(enumerate_sets, candidates, tasks, 2.0), 1)
            exact = selections[2].val_total
            yield Row("grouping", f"networks, {n} tasks: exact / brute, budget 2",
                      f"{exact:.3f} vs {brute:.3f} ({brute_seconds:.3f} s)", exact / brute, "== 1")

    for n in (5, 8, 10, 12):
        tasks = [f"task{i}" for i in range(n)]
        table = {(a, b): float(rng.normal()) for a in tasks for b in tasks if a != b}
        for k in sorted({2, 3, n // 2}):
            exact_s, exact = timed(partial(select_groups, table, k, exact=True), repeat)
            heur_s, heur = timed(partial(select_groups, table, k, exact=False), repeat)
            yield Row("grouping", f"affinity, {n} tasks, K={k}: heuristic / exact",
                      f"{heur.objective:.3f} vs {exact.objective:.3f} ({heur_s:.3f} s vs {exact_s:.3f} s)",
                      heur.objective / exact.objective)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("grouping", __doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    report(rows(args.repeat), args.json)


if __name__ == "__main__":
    main()
