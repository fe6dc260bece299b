"""Exact network selection under an inference budget (branch and bound).

Standley et al., "Which Tasks Should Be Learned Together in Multi-task Learning?" (ICML 2020),
`network_selection/main.cpp` of tstandley/taskgrouping. Each candidate network has an inference
cost and a loss for every task it solves. A solution is a set of candidates whose total cost is
within the budget and that covers every task; its value is the sum over tasks of the lowest
validation loss any chosen network reaches for that task. The search returns the solution of
lowest value, exactly. The chosen set is then scored on test: each task uses the chosen network
that was best for it on validation.

Unlike the reference, which charges a missing task a loss of 99, coverage is required here: a
budget too small to cover every task has no solution (`Selection.networks` is empty).

Search: the reference's depth-first branch and bound visits sets of networks; here candidates that
cost more than the largest budget, or that another candidate dominates (no more expensive, solving
a superset of its tasks at no higher loss), are dropped first, and a dynamic program over subsets
of tasks (see `select_for_budgets`) finds the optimum for every budget at once. Same answer, and
it stays fast for every subset network of 10 tasks (1033 candidates). Ties in value go to the
cheaper set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Tolerance for budget and value comparisons (costs like 0.5 add up exactly, but sums of losses do not).
EPS = 1e-9


@dataclass(frozen=True)
class Network:
    """A candidate: its name, inference cost (>= 0), and per-task losses (test may be unknown: None)."""

    name: str
    cost: float
    val: dict[str, float]
    test: dict[str, float | None]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.val)


@dataclass(frozen=True)
class Selection:
    """The chosen networks for one budget; `serving[task]` is the chosen network used for it.

    val_total: sum over tasks of the best validation loss (None when no set fits the budget);
    test_total: sum over tasks of the serving network's test loss (None when one is unknown).
    """

    budget: float
    networks: tuple[str, ...]
    cost: float
    val_total: float | None
    test_total: float | None
    serving: dict[str, str]

    def as_json(self) -> dict:
        return {"budget": self.budget, "networks": list(self.networks), "cost": self.cost,
                "val_total": self.val_total, "test_total": self.test_total, "serving": self.serving}


def prune_dominated(candidates: list[Network], budget: float = math.inf) -> list[Network]:
    """The candidates that fit `budget` and that no other candidate dominates, in their order.

    B dominates A when B costs no more and, on every task of A, B solves it at no higher
    validation loss; of identical candidates the first is kept. Replacing A by B in any solution
    keeps it within budget and does not raise its value, so the optimum survives the pruning.
    """
    fitting = [c for c in candidates if c.cost <= budget + EPS]
    if not fitting:
        return []
    tasks = sorted({t for c in fitting for t in c.val})
    column = {t: i for i, t in enumerate(tasks)}
    losses = np.full((len(fitting), len(tasks)), np.inf)
    for i, c in enumerate(fitting):
        for t, v in c.val.items():
            losses[i, column[t]] = v
    costs = np.array([c.cost for c in fitting])
    # no_worse[j, i]: candidate j costs no more than i and is at least as good on every task of i
    no_worse = (costs[:, None] <= costs[None, :] + EPS) & np.all(losses[:, None, :] <= losses[None, :, :], axis=2)
    identical = no_worse & no_worse.T
    strictly = no_worse & ~identical
    dominated = strictly.any(axis=0) | np.triu(identical, k=1).any(axis=0)  # [j, i] with j < i: an earlier twin
    return [c for c, d in zip(fitting, dominated) if not d]


def _front(points: list[tuple]) -> list[tuple]:
    """The Pareto front of (cost, value, ...) tuples: ascending cost, strictly falling value."""
    front = []
    for p in sorted(points, key=lambda p: (p[0], p[1])):
        if not front or p[1] < front[-1][1] - EPS:
            front.append(p)
    return front


def select_for_budgets(candidates: list[Network], budgets: list[float], tasks: tuple[str, ...] | None = None) -> list[Selection]:
    """The exact best set of candidates within each budget that covers `tasks` (default: every task named).

    A best set serves each task from one of its networks, so it is a partition of the tasks into
    parts, each served by a network holding it: a dynamic program over subsets S of tasks keeps the
    Pareto front of (cost, value) of covering S, F(S) = front over parts P holding the lowest task
    of S and networks N ⊇ P of (cost(N), sum_{a in P} loss(N, a)) + F(S \\ P). Two parts served by
    one network would pay for it twice; merging them is cheaper at the same value, so the front's
    optimum never does. Time O(3^n * front sizes); fronts stay small when costs take few values.
    """
    tasks = tuple(tasks) if tasks is not None else tuple(sorted({t for c in candidates for t in c.val}))
    top = max(budgets, default=0.0)
    pool = [c for c in prune_dominated(candidates, top) if any(t in c.val for t in tasks)]
    n, index = len(tasks), {t: i for i, t in enumerate(tasks)}
    size = 1 << n
    # options[P]: Pareto front of (cost, value, network) over networks that hold part P
    options: list[list[tuple]] = [[] for _ in range(size)]
    for k, net in enumerate(pool):
        held = [(index[t], v) for t, v in net.val.items() if t in index]
        mask = sum(1 << i for i, _ in held)
        loss = dict(held)
        part = mask
        while part:
            options[part].append((net.cost, sum(loss[i] for i in range(n) if (part >> i) & 1), k))
            part = (part - 1) & mask
    options = [_front(o) for o in options]
    # front[S]: Pareto front of (cost, value, part, network, index into front[S without part])
    front: list[list[tuple]] = [[] for _ in range(size)]
    front[0] = [(0.0, 0.0, 0, -1, -1)]
    for subset in range(1, size):
        low = subset & -subset
        points = []
        rest_mask = subset & ~low
        rest = rest_mask
        while True:  # every part = low + a submask of the rest
            part = low | (rest_mask & ~rest)
            remaining = subset & ~part
            for cost, value, k in options[part]:
                for j, (c, v, *_) in enumerate(front[remaining]):
                    if cost + c <= top + EPS:
                        points.append((cost + c, value + v, part, k, j))
            if rest == 0:
                break
            rest = (rest - 1) & rest_mask
        front[subset] = _front(points)
    selections = []
    for budget in budgets:
        fits = [(v, c, j) for j, (c, v, *_) in enumerate(front[size - 1]) if c <= budget + EPS]
        if not fits:
            selections.append(Selection(budget, (), 0.0, None, None, {}))
            continue
        value, cost, j = min(fits, key=lambda f: (f[0], f[1]))
        serving, subset = {}, size - 1
        while subset:
            _, _, part, k, j = front[subset][j]
            for i in range(n):
                if (part >> i) & 1:
                    serving[tasks[i]] = pool[k].name
            subset &= ~part
        chosen = sorted({pool.index(c) for c in pool if c.name in serving.values()})
        by_name = {c.name: c for c in pool}
        # Each task uses the chosen network best for it on validation (the parts already are, up to ties).
        for t in tasks:
            serving[t] = min((pool[k] for k in chosen if t in pool[k].val), key=lambda c: c.val[t]).name
        test = [by_name[serving[t]].test.get(t) for t in tasks]
        selections.append(Selection(budget, tuple(pool[k].name for k in chosen), float(sum(pool[k].cost for k in chosen)),
                                    float(sum(by_name[serving[t]].val[t] for t in tasks)),
                                    None if any(v is None for v in test) else float(sum(test)), serving))
    return selections


def select_networks(candidates: list[Network], budget: float, tasks: tuple[str, ...] | None = None) -> Selection:
    """The exact best set of candidates within `budget` that covers `tasks` (see `select_for_budgets`)."""
    return select_for_budgets(candidates, [budget], tasks)[0]
