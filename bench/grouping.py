"""Speed of the exact group selections as the task count grows.

    python -m bench.grouping [--repeat 3]

1. networks: exact selection over Standley's full candidate set (every task subset at cost 1 plus
   half-size single-task networks at 0.5: 2^n - 1 + n candidates) for every budget 1, 1.5, ..., n,
   against enumerating every set of candidates within the budget (only where that is feasible);
2. affinity: the exact TAG grouping for K = 2, 3 and n/2 groups, and the local-search heuristic.
Random losses and affinities; the answers do not depend on them, the times barely.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from functools import partial

import numpy as np

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.grouping", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)

    print("networks: exact selection for every budget 1, 1.5, ..., n")
    print(f"{'tasks':>5} {'candidates':>10} {'budgets':>7} {'exact s':>9} {'brute force s (budget 2)':>25} {'same answer':>11}")
    for n in (3, 4, 5, 6, 8, 10):
        tasks, candidates = full_candidates(n, rng)
        budgets = list(np.arange(1.0, n + 0.25, 0.5))
        seconds, selections = timed(partial(select_for_budgets, candidates, budgets), args.repeat)
        brute, same = "-", "-"
        if len(candidates) <= 40:  # sets of up to 4 candidates of 36: about 66k
            brute_seconds, value = timed(partial(enumerate_sets, candidates, tasks, 2.0), 1)
            brute, same = f"{brute_seconds:.3f}", str(abs(value - selections[2].val_total) < 1e-9)
        print(f"{n:>5} {len(candidates):>10} {len(budgets):>7} {seconds:>9.4f} {brute:>25} {same:>11}")

    print("\naffinity: TAG groups (exact up to 12 tasks)")
    print(f"{'tasks':>5} {'K':>3} {'exact s':>9} {'heuristic s':>12} {'heuristic / exact objective':>28}")
    for n in (5, 8, 10, 12):
        tasks = [f"task{i}" for i in range(n)]
        table = {(a, b): float(rng.normal()) for a in tasks for b in tasks if a != b}
        for k in sorted({2, 3, n // 2}):
            exact_s, exact = timed(partial(select_groups, table, k, exact=True), args.repeat)
            heur_s, heur = timed(partial(select_groups, table, k, exact=False), args.repeat)
            print(f"{n:>5} {k:>3} {exact_s:>9.3f} {heur_s:>12.3f} {heur.objective / exact.objective:>28.3f}")


if __name__ == "__main__":
    main()
