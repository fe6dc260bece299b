"""Speed of the exact group selections as the task count grows.

    python -m bench.grouping [--repeat 3] [--time-limit 10] [--reference-tasks 10] [--json]

1. networks: exact selection over Standley's full candidate set (every task subset at cost 1 plus
   half-size single-task networks at 0.5: 2^n - 1 + n candidates) for every budget 1, 1.5, ..., n,
   against enumerating every set of candidates within budget 2 (only where that is feasible: up to
   5 tasks), whose lowest total loss the exact selection must match (aim: == 1);
2. affinity: the exact TAG grouping for K = 2, 3 and n/2 groups, and the local-search heuristic
   (ratio: the heuristic's objective over the exact one; values: objectives, then seconds).
3. at scale: network selection over the single- and two-task networks of 10, 20 and 40 tasks
   (n(n+1)/2 networks; budgets n/2, 3n/4 and n), and with --hoa (every larger group predicted
   from the pairs; budgets n/8, n/4 and n/2), with planted affinities: tasks in groups of 4 whose
   pairs help each other (loss x (1 - U(0.05, 0.2))) and hurt across groups (x (1 + U(0, 0.15))),
   seed 0. Each case runs in a fresh process, under `--time-limit` seconds over its budgets:
   seconds of the selection, its process's peak resident memory (Python and numpy included),
   the peak the selection itself allocates (tracemalloc, on a second call), and the largest gap
   between an answer and its proven bound (0: exact).
4. affinity at scale: the TAG grouping (local search) of 10, 20 and 40 tasks for K = 2, 3, 4, a
   sweep's default group counts, on planted affinities (groups of 4 that help each other, hurt
   across), seconds per K and for all three (what one scorer costs the grouping stage); for the
   task counts in `--reference-tasks`, also the search as it was before its trials were computed
   in closed form (`reference_heuristic`: every trial summed task by task), timed side by side in
   this process, and whether both return the same groups (aim: == 1).
Random losses and affinities; the answers do not depend on them, the times barely. Times are the
best of `--repeat` calls.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from functools import partial

import numpy as np

from bench.rows import Row, bench_parser, report
from raytaskaff.grouping import Network, select_groups
from raytaskaff.grouping.affinity import TAG_SINGLETON, _heuristic, _score_in, affinity_matrix
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


def planted_pairs(n: int, rng) -> list[Network]:
    """Single- and two-task networks (cost 1) of n tasks in planted groups of 4 (see the docstring)."""
    tasks = [f"task{i:02d}" for i in range(n)]
    label = rng.permutation(n) % max(1, n // 4)
    base = rng.uniform(0.8, 1.2, n)
    out = [Network(t, 1.0, {t: float(base[i])}, {t: float(base[i])}) for i, t in enumerate(tasks)]
    for i, j in itertools.combinations(range(n), 2):
        val = {tasks[a]: float(base[a] * (1 - (rng.uniform(0.05, 0.2) if label[a] == label[b] else -rng.uniform(0, 0.15))))
               for a, b in ((i, j), (j, i))}
        out.append(Network(f"{tasks[i]}+{tasks[j]}", 1.0, val, val))
    return out


def scale_case(kind: str, n: int, time_limit: float) -> dict:
    """One case of part 3 in this process: seconds, peak RSS (MiB), largest gap, networks, budgets."""
    from raytaskaff.grouping.hoa import select_with_hoa

    measured = planted_pairs(n, np.random.default_rng(0))
    if kind == "hoa":
        budgets = [float(max(1, n // 8)), float(n // 4), float(n // 2)]
        select = partial(select_with_hoa, measured, budgets, 1.0, time_limit)
    else:
        budgets = [float(n // 2), float(3 * n // 4), float(n)]
        select = partial(select_for_budgets, measured, budgets, time_limit=time_limit)
    start = time.perf_counter()
    selections = select()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    tracemalloc.start()  # a second, traced call: what the selection itself allocates at its peak
    select()
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    selections = selections[0] if kind == "hoa" else selections
    gaps = [s.gap for s in selections if s.gap is not None]
    return {"seconds": seconds, "peak_mib": peak, "traced_mib": traced, "gap": max(gaps, default=None),
            "networks": len(measured), "budgets": budgets, "exact": all(s.exact for s in selections)}


def scale_rows(time_limit: float) -> Iterator[Row]:
    for kind in ("networks", "hoa"):
        for n in (10, 20, 40):
            code = f"import json; from bench.grouping import scale_case; print(json.dumps(scale_case({kind!r}, {n}, {time_limit!r})))"
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            gap = "-" if r["gap"] is None else f"{100 * r['gap']:.2f}%"
            yield Row("grouping", f"networks{' --hoa' if kind == 'hoa' else ''}, {n} tasks ({r['networks']} networks), "
                                  f"budgets {','.join(f'{b:g}' for b in r['budgets'])}",
                      f"{r['seconds']:.2f} s, RSS {r['peak_mib']:.0f} MiB (selection {r['traced_mib']:.1f} MiB), "
                      f"gap {gap}{'' if r['exact'] else ' (not proven)'}",
                      r["seconds"] / time_limit, f"<= {1.2:g}")


def planted_affinity(n: int, rng) -> dict[tuple[str, str], float]:
    """{(target, partner): affinity} of n tasks in planted groups of 4: U(0.2, 1) within a group,
    U(-1, 0.3) across (seed it for a fixed table)."""
    tasks = [f"task{i:02d}" for i in range(n)]
    label = rng.permutation(n) % max(1, n // 4)
    return {(a, b): float(rng.uniform(0.2, 1.0) if label[i] == label[j] else rng.uniform(-1.0, 0.3))
            for i, a in enumerate(tasks) for j, b in enumerate(tasks) if i != j}


def reference_heuristic(affinity: np.ndarray, max_groups: int, singleton: float, restarts: int = 20, seed: int = 0) -> list[int]:
    """The local search of `raytaskaff.grouping.affinity._heuristic` as it was first written: every
    trial built and summed task by task, first improvement taken. Kept as the reference the faster
    search must match step for step (tests/grouping/test_affinity.py) and as the "before" timing."""
    n = len(affinity)
    rng = random.Random(seed)

    def value(label: list[int]) -> float:
        total = 0.0
        for k in set(label):
            members = [a for a in range(n) if label[a] == k]
            total += sum(_score_in(affinity, members, a, singleton) for a in members)
        return total

    best_label, best_value = None, -np.inf
    for _ in range(restarts):
        label = [rng.randrange(max_groups) for _ in range(n)]
        current = value(label)
        improved = True
        while improved:
            improved = False
            trials = [label[:a] + [k] + label[a + 1:] for a in range(n) for k in range(max_groups) if k != label[a]]
            for a in range(n):
                for b in range(a + 1, n):
                    if label[a] != label[b]:
                        swap = label.copy()
                        swap[a], swap[b] = label[b], label[a]
                        trials.append(swap)
            for trial in trials:
                if (v := value(trial)) > current + 1e-12:
                    label, current, improved = trial, v, True
                    break
        if current > best_value:
            best_label, best_value = label, current
    groups = [{a for a in range(n) if best_label[a] == k} for k in sorted(set(best_label))]

    def overlap_value(gs: list[set[int]]) -> float:
        return sum(max(_score_in(affinity, sorted(g), a, singleton) for g in gs if a in g) for a in range(n))

    current, improved = overlap_value(groups), True
    while improved:
        improved = False
        for k, a in ((k, a) for k in range(len(groups)) for a in range(n)):
            trial = [set(g) for g in groups]
            trial[k] ^= {a}
            if not trial[k] or any(not any(b in g for g in trial) for b in range(n)):
                continue
            if (v := overlap_value(trial)) > current + 1e-12:
                groups, current, improved = trial, v, True
                break
    return [sum(1 << a for a in g) for g in groups]


def affinity_scale_rows(reference_tasks: tuple[int, ...]) -> Iterator[Row]:
    for n in (10, 20, 40):
        table = planted_affinity(n, np.random.default_rng(0))
        _, affinity = affinity_matrix(table)
        seconds, before, same = [], [], True
        for k in (2, 3, 4):
            start = time.perf_counter()
            select_groups(table, k, exact=False)
            seconds.append(time.perf_counter() - start)
            if n in reference_tasks:
                new = _heuristic(affinity, k, TAG_SINGLETON)
                start = time.perf_counter()
                old = reference_heuristic(affinity, k, TAG_SINGLETON)
                before.append(time.perf_counter() - start)
                same &= old == new
        per_k = ", ".join(f"{s:.2f}" for s in seconds)
        yield Row("grouping", f"affinity, {n} tasks, K=2,3,4 (one scorer)", f"{sum(seconds):.2f} s ({per_k} s)",
                  sum(seconds) / 10, "<= 1 (10 s per scorer)")
        if before:
            yield Row("grouping", f"affinity, {n} tasks, K=2,3,4: same groups as the reference search",
                      f"{sum(seconds):.2f} s vs {sum(before):.2f} s before ({', '.join(f'{s:.2f}' for s in before)} s)",
                      float(same), "== 1")


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("grouping", __doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds for each case of part 3 (default 10)")
    parser.add_argument("--reference-tasks", default="10",
                        help="task counts of part 4 that also time the reference search (10,20,40: about 2 minutes more)")
    args = parser.parse_args(argv)
    reference = tuple(int(n) for n in args.reference_tasks.split(",") if n.strip())
    report(itertools.chain(rows(args.repeat), scale_rows(args.time_limit), affinity_scale_rows(reference)), args.json)


if __name__ == "__main__":
    main()
