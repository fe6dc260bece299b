"""Network selection under an inference budget: exact for few tasks, anytime branch and bound beyond.

Standley et al., "Which Tasks Should Be Learned Together in Multi-task Learning?" (ICML 2020),
`network_selection/main.cpp` of tstandley/taskgrouping. Each candidate network has an inference
cost and a loss for every task it solves. A solution is a set of candidates whose total cost is
within the budget and that covers every task; its value is the sum over tasks of the lowest
validation loss any chosen network reaches for that task. The search returns the solution of
lowest value. The chosen set is then scored on test: each task uses the chosen network that was
best for it on validation.

Unlike the reference, which charges a missing task a loss of 99, coverage is required here: a
budget too small to cover every task has no solution (`Selection.networks` is empty).

Search: candidates that cost more than the largest budget, or that another candidate dominates
(no more expensive, solving a superset of its tasks at no higher loss), are dropped first. Up to
`DP_MAX_TASKS` tasks a dynamic program over subsets of tasks (`_select_dp`) finds the optimum for
every budget at once (0.2 s for all 1033 subset networks of 10 tasks), but it costs O(3^n). Beyond,
a depth-first branch and bound over sets of candidates (`_branch_and_bound`) starts from a greedy
selection improved by swaps, and prunes with a Lagrangian bound (the assignment of each task
relaxed, as for the p-median problem; Beasley, EJOR 1993), which knows that a budget of k networks
cannot give every task its own best one. It is anytime: at its time limit it returns the best
selection found and a proven lower bound on the optimum (`Selection.bound`, `Selection.gap`);
when it finishes first the answer is exact. Ties in value go to the cheaper set.
Memory is linear in the candidates (a dense candidates x tasks loss matrix) plus the search path.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

#: Tolerance for budget and value comparisons (costs like 0.5 add up exactly, but sums of losses do not).
EPS = 1e-9
#: Up to this many tasks the dynamic program answers (O(3^n): 0.2 s at 10 tasks, 3x per task beyond).
DP_MAX_TASKS = 10
#: Subgradient steps for the bound at the root of the search, and at each node (warm-started).
ROOT_ITERATIONS, NODE_ITERATIONS = 300, 12


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

    val_total: sum over tasks of the best validation loss (None when no set fits the budget, or
    none was found in time); test_total: sum over tasks of the serving network's test loss (None
    when one is unknown). bound: a proven lower bound on the best val_total within the budget
    (inf when no set covers every task); gap: (val_total - bound) / |val_total|, 0 when exact;
    exact: the search finished, so val_total is the optimum (or no set exists).
    """

    budget: float
    networks: tuple[str, ...]
    cost: float
    val_total: float | None
    test_total: float | None
    serving: dict[str, str]
    bound: float | None = None
    gap: float | None = None
    exact: bool = True

    def as_json(self) -> dict:
        bound = None if self.bound is None or math.isinf(self.bound) else self.bound
        return {"budget": self.budget, "networks": list(self.networks), "cost": self.cost,
                "val_total": self.val_total, "test_total": self.test_total, "serving": self.serving,
                "bound": bound, "gap": self.gap, "exact": self.exact}


def prune_dominated(candidates: list[Network], budget: float = math.inf) -> list[Network]:
    """The candidates that fit `budget` and that no other candidate dominates, in their order.

    B dominates A when B costs no more and, on every task of A, B solves it at no higher
    validation loss; of identical candidates the first is kept. Replacing A by B in any solution
    keeps it within budget and does not raise its value, so the optimum survives the pruning.
    Compared in blocks of rows, so memory stays O(candidates x tasks) for thousands of candidates.
    """
    fitting = [c for c in candidates if c.cost <= budget + EPS]
    if not fitting:
        return []
    tasks = sorted({t for c in fitting for t in c.val})
    losses = _loss_matrix(fitting, tuple(tasks))
    costs = np.array([c.cost for c in fitting])
    m = len(fitting)
    block = max(1, 4_000_000 // (m * len(tasks)))
    dominated = np.zeros(m, dtype=bool)
    later = np.arange(m)
    for lo in range(0, m, block):
        rows = slice(lo, min(m, lo + block))
        # no_worse[j, i]: candidate j costs no more than i and is at least as good on every task of i
        no_worse = (costs[rows, None] <= costs[None, :] + EPS) & np.all(losses[rows, None, :] <= losses[None, :, :], axis=2)
        # back[j, i]: candidate i is no worse than j
        back = (costs[None, :] <= costs[rows, None] + EPS) & np.all(losses[None, :, :] <= losses[rows, None, :], axis=2)
        identical = no_worse & back
        earlier_twin = identical & (later[rows, None] < later[None, :])
        dominated |= (no_worse & ~identical).any(axis=0) | earlier_twin.any(axis=0)
    return [c for c, d in zip(fitting, dominated) if not d]


def _loss_matrix(pool: list[Network], tasks: tuple[str, ...]) -> np.ndarray:
    """[candidate, task] validation losses, shape (len(pool), len(tasks)); inf where not held."""
    column = {t: i for i, t in enumerate(tasks)}
    losses = np.full((len(pool), len(tasks)), np.inf)
    for i, c in enumerate(pool):
        for t, v in c.val.items():
            if t in column:
                losses[i, column[t]] = v
    return losses


def _front(points: list[tuple]) -> list[tuple]:
    """The Pareto front of (cost, value, ...) tuples: ascending cost, strictly falling value."""
    front = []
    for p in sorted(points, key=lambda p: (p[0], p[1])):
        if not front or p[1] < front[-1][1] - EPS:
            front.append(p)
    return front


def select_for_budgets(candidates: list[Network], budgets: list[float], tasks: tuple[str, ...] | None = None,
                       time_limit: float | None = None, method: str = "auto") -> list[Selection]:
    """The best set of candidates within each budget that covers `tasks` (default: every task named).

    method "dp" is the exact dynamic program (`_select_dp`), "search" the anytime branch and bound
    (`_select_search`), "auto" the first up to DP_MAX_TASKS tasks and the second beyond.
    time_limit: seconds for the search over all budgets (None: until it is exact); the dynamic
    program does not stop early.
    """
    if method not in ("auto", "dp", "search"):
        raise ValueError(f"method must be 'auto', 'dp' or 'search', got {method!r}")
    start = time.perf_counter()
    tasks = tuple(tasks) if tasks is not None else tuple(sorted({t for c in candidates for t in c.val}))
    top = max(budgets, default=0.0)
    pool = [c for c in prune_dominated(candidates, top) if any(t in c.val for t in tasks)]
    if method == "dp" or (method == "auto" and len(tasks) <= DP_MAX_TASKS):
        return _select_dp(pool, budgets, tasks)
    left = None if time_limit is None else max(0.0, time_limit - (time.perf_counter() - start))
    return _select_search(pool, budgets, tasks, left)


def _select_dp(pool: list[Network], budgets: list[float], tasks: tuple[str, ...]) -> list[Selection]:
    """The exact best set within each budget, by a dynamic program over task subsets.

    A best set serves each task from one of its networks, so it is a partition of the tasks into
    parts, each served by a network holding it: a dynamic program over subsets S of tasks keeps the
    Pareto front of (cost, value) of covering S, F(S) = front over parts P holding the lowest task
    of S and networks N ⊇ P of (cost(N), sum_{a in P} loss(N, a)) + F(S \\ P). Two parts served by
    one network would pay for it twice; merging them is cheaper at the same value, so the front's
    optimum never does. Time O(3^n * front sizes); fronts stay small when costs take few values.
    """
    top = max(budgets, default=0.0)
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
            selections.append(Selection(budget, (), 0.0, None, None, {}, exact=True))
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
                                    None if any(v is None for v in test) else float(sum(test)), serving,
                                    bound=float(value), gap=0.0, exact=True))
    return selections


def select_networks(candidates: list[Network], budget: float, tasks: tuple[str, ...] | None = None,
                    time_limit: float | None = None) -> Selection:
    """The best set of candidates within `budget` that covers `tasks` (see `select_for_budgets`)."""
    return select_for_budgets(candidates, [budget], tasks, time_limit)[0]


def make_selection(pool: list[Network], chosen: list[int] | None, tasks: tuple[str, ...], budget: float,
                   bound: float, exact: bool) -> Selection:
    """The Selection of `pool[chosen]` (None: none found), each task served by its best chosen network.

    A chosen network that serves no task is dropped: same value, lower cost.
    """
    if chosen is None:
        return Selection(budget, (), 0.0, None, None, {}, bound=bound, gap=None, exact=exact)
    chosen = sorted(set(chosen))
    serving = {t: min((k for k in chosen if t in pool[k].val), key=lambda k: pool[k].val[t]) for t in tasks}
    used = sorted(set(serving.values()))
    value = float(sum(pool[serving[t]].val[t] for t in tasks))
    test = [pool[serving[t]].test.get(t) for t in tasks]
    bound = min(bound, value)
    gap = 0.0 if exact else (value - bound) / max(abs(value), EPS)
    return Selection(budget, tuple(pool[k].name for k in used), float(sum(pool[k].cost for k in used)), value,
                     None if any(v is None for v in test) else float(sum(test)),
                     {t: pool[serving[t]].name for t in tasks}, bound=value if exact else bound, gap=gap, exact=exact)


def _select_search(pool: list[Network], budgets: list[float], tasks: tuple[str, ...],
                   time_limit: float | None) -> list[Selection]:
    """Each budget by `solve_budgets` on the loss matrix of `pool`, the time shared between budgets."""
    losses = _loss_matrix(pool, tasks)
    costs = np.array([c.cost for c in pool], dtype=float)
    results = solve_budgets(losses, costs, budgets, time_limit)
    return [make_selection(pool, chosen, tasks, budget, bound, finished)
            for budget, (chosen, bound, finished) in zip(budgets, results)]


def solve_budgets(losses: np.ndarray, costs: np.ndarray, budgets: list[float], time_limit: float | None,
                  extra_bound=None, seeds: list[list[int] | None] | None = None) -> list[tuple[list[int] | None, float, bool]]:
    """(chosen rows or None, proven lower bound, finished) for each budget.

    losses: (candidates, tasks), inf where a candidate does not hold a task; costs: (candidates,).
    Budgets are searched in ascending order, each starting from the best of a greedy selection, its
    improvement by swaps and the previous budget's answer; each gets an equal share of the time
    left; seeds[i], when given, is one more start for budgets[i]. extra_bound(budget, value) ->
    float: a lower bound valid beyond these candidates (see `raytaskaff.grouping.hoa`); the bound
    reported is then the lower of the two, and the answer is exact only when it meets the value.
    """
    start = time.perf_counter()
    end = math.inf if time_limit is None else start + time_limit
    results: dict[int, tuple] = {}
    previous: list[int] | None = None
    order = sorted(range(len(budgets)), key=lambda i: budgets[i])
    for done, i in enumerate(order):
        now = time.perf_counter()
        deadline = math.inf if math.isinf(end) else now + max(0.0, end - now) / (len(order) - done)
        budget = budgets[i]
        starts = [previous] if previous is not None else []
        if seeds is not None and seeds[i] is not None:
            starts.append(seeds[i])
        starts += [local_search(losses, costs, budget, s, deadline) for s in greedy_starts(losses, costs, budget)]
        chosen, bound, finished = _branch_and_bound(losses, costs, budget, deadline, starts)
        if extra_bound is not None:
            value = math.inf if chosen is None else float(losses[chosen].min(axis=0).sum())
            implicit = extra_bound(budget, value)
            bound = min(bound, implicit)
            finished = finished and implicit >= value - EPS * max(1.0, abs(value))
        results[i] = (chosen, bound, finished)
        if chosen is not None:
            previous = chosen
    return [results[i] for i in range(len(budgets))]


def _penalised(best: np.ndarray, penalty: float) -> np.ndarray:
    """Sum over the last axis of `best`, an uncovered task (inf) counting `penalty`."""
    return np.where(np.isinf(best), penalty, best).sum(axis=-1)


def _penalty(losses: np.ndarray) -> float:
    finite = losses[np.isfinite(losses)]
    return 10.0 * (float(np.abs(finite).max()) + 1.0) * max(1, losses.shape[1]) if finite.size else 1.0


def greedy_starts(losses: np.ndarray, costs: np.ndarray, budget: float) -> list[list[int]]:
    """Two greedy selections within `budget`: by loss removed per unit cost, and by loss removed.

    Each adds, while one fits and helps, the candidate that lowers the summed best loss most (an
    uncovered task costing a large penalty, so covering comes first).
    """
    penalty = _penalty(losses)
    out = []
    for per_cost in (True, False):
        best, chosen, spent = np.full(losses.shape[1], np.inf), [], 0.0
        current = penalty * losses.shape[1]
        while True:
            fits = costs <= budget - spent + EPS
            fits[chosen] = False
            rows = np.flatnonzero(fits)
            if not len(rows):
                break
            values = _penalised(np.minimum(losses[rows], best), penalty)
            gain = current - values
            score = gain / np.maximum(costs[rows], 1e-6) if per_cost else gain
            k = int(np.argmax(score))
            if gain[k] <= EPS:
                break
            chosen.append(int(rows[k]))
            spent += costs[rows[k]]
            best = np.minimum(best, losses[rows[k]])
            current = values[k]
        out.append(chosen)
    return out


def local_search(losses: np.ndarray, costs: np.ndarray, budget: float, chosen: list[int], deadline: float) -> list[int]:
    """`chosen` improved by the best of: add a candidate, drop one, or swap one for another, until none helps.

    Moves are ranked by (penalised value, cost); each full round is vectorised over candidates.
    """
    penalty = _penalty(losses)
    chosen = list(chosen)
    m = losses.shape[0]

    def score(rows):
        best = losses[rows].min(axis=0) if rows else np.full(losses.shape[1], np.inf)
        return float(_penalised(best, penalty)), float(costs[rows].sum())

    current = score(chosen)
    while time.perf_counter() < deadline:
        spent = current[1]
        move, found = None, current
        free = np.ones(m, dtype=bool)
        free[chosen] = False
        rows = losses[chosen]
        for pos in [None, *range(len(chosen))]:  # None: add without dropping
            if pos is None:
                rest = rows
                room = budget - spent
            else:
                rest = np.delete(rows, pos, axis=0)
                room = budget - spent + costs[chosen[pos]]
            best = rest.min(axis=0) if len(rest) else np.full(losses.shape[1], np.inf)
            base_cost = spent - (0.0 if pos is None else costs[chosen[pos]])
            if pos is not None:  # plain drop
                drop = (float(_penalised(best, penalty)), base_cost)
                if drop[0] < found[0] - EPS or (drop[0] <= found[0] + EPS and drop[1] < found[1] - EPS):
                    move, found = (pos, None), drop
            cand = np.flatnonzero(free & (costs <= room + EPS))
            if not len(cand):
                continue
            values = _penalised(np.minimum(losses[cand], best), penalty)
            totals = base_cost + costs[cand]
            k = int(np.lexsort((totals, values))[0])
            if values[k] < found[0] - EPS or (values[k] <= found[0] + EPS and totals[k] < found[1] - EPS):
                move, found = (pos, int(cand[k])), (float(values[k]), float(totals[k]))
        if move is None:
            break
        pos, add = move
        if pos is not None:
            chosen.pop(pos)
        if add is not None:
            chosen.append(add)
        current = score(chosen)
    return chosen


def _grain(costs: np.ndarray) -> float:
    """The unit every positive cost is a whole multiple of (its smallest), or 0 when there is none."""
    positive = costs[costs > EPS]
    if not len(positive):
        return 0.0
    unit = float(positive.min())
    ratio = positive / unit
    return unit if np.all(np.abs(ratio - np.round(ratio)) < 1e-6) else 0.0


def _fractional_knapsack(rc: np.ndarray, cost: np.ndarray, capacity: float) -> tuple[float, np.ndarray]:
    """min sum rc*x over 0 <= x <= 1 with sum cost*x <= capacity: (value, x). rc <= 0 are worth taking."""
    x = np.zeros(len(rc))
    negative = rc < 0
    x[negative & (cost <= EPS)] = 1.0
    paid = np.flatnonzero(negative & (cost > EPS))
    if len(paid) and capacity > EPS:
        paid = paid[np.argsort(rc[paid] / cost[paid], kind="stable")]
        filled = np.cumsum(cost[paid])
        whole = int(np.searchsorted(filled, capacity + EPS, side="right"))
        x[paid[:whole]] = 1.0
        if whole < len(paid):
            left = capacity - (filled[whole - 1] if whole else 0.0)
            x[paid[whole]] = max(0.0, left) / cost[paid[whole]]
    return float(rc @ x), x


def lagrangian_bound(losses: np.ndarray, costs: np.ndarray, best: np.ndarray, capacity: float, u: np.ndarray,
                     target: float, iterations: int, extra=None) -> tuple[float, np.ndarray]:
    """A lower bound on the value of `best` improved by candidates of cost <= `capacity` in all, and its multipliers.

    losses: (candidates, tasks) of the candidates still allowed; best: (tasks,) the chosen set's
    best loss per task (inf: not covered yet, and then it must be). For any multipliers u with
    u <= best, value >= sum(u) + min over sets T within capacity of sum_{N in T} rc(N), with
    rc(N) = sum_t min(0, loss(N, t) - u_t); the inner minimum is bounded below by a fractional
    knapsack. Subgradient steps (Polyak's, towards `target`, the incumbent's value) raise it;
    the first step, u = the best loss any candidate offers, is Standley's per-task bound.
    Returns inf when the uncovered tasks cannot all be covered.

    extra(u) -> (rc, costs, members): columns standing for candidates not in `losses` (rc a lower
    bound on theirs, members (columns, tasks) bool: where they lower the bound), as the
    higher-order approximation's groups are (`raytaskaff.grouping.hoa`).
    """
    uncovered = np.isinf(best)
    if uncovered.any() and extra is None:
        held = np.isfinite(losses[:, uncovered])
        if not len(losses) or not held.any(axis=0).all():
            return math.inf, u
        most, _ = _fractional_knapsack(-held.sum(axis=1).astype(float), costs, capacity)
        if -most < uncovered.sum() - 1e-6:
            return math.inf, u
    if not len(losses):
        return float(best.sum()), u
    u = np.minimum(u, best)
    u = np.where(np.isfinite(u), u, losses.min(axis=0))
    top, top_u, theta, stall = -math.inf, u, 1.0, 0
    for _ in range(iterations):
        gain = np.minimum(losses - u, 0.0)
        rc, cost, members = gain.sum(axis=1), costs, gain < 0
        if extra is not None:
            more_rc, more_cost, more_members = extra(u)
            rc, cost = np.concatenate([rc, more_rc]), np.concatenate([cost, more_cost])
            members = np.concatenate([members, more_members])
        value, x = _fractional_knapsack(rc, cost, capacity)
        bound = float(u.sum()) + value
        if bound > top + EPS * max(1.0, abs(top) if math.isfinite(top) else 1.0):
            top, top_u, stall = bound, u, 0
        else:
            stall += 1
            if stall >= 3:
                theta, stall = theta / 2, 0
        if top >= target - EPS * max(1.0, abs(target)) or theta < 1e-4:
            break
        g = 1.0 - x @ members
        g = np.where((u >= best - EPS) & (g > 0), 0.0, g)  # at u = best the bound may not rise further
        norm = float(g @ g)
        if norm < 1e-12:
            break
        goal = target if math.isfinite(target) else top + 0.05 * abs(top) + 1e-3
        u = np.minimum(u + theta * max(goal - bound, 1e-6 * (abs(bound) + 1.0)) / norm * g, best)
    return top, top_u


@dataclass
class _Frame:
    """A node of the search: the chosen rows, their cost and best loss per task; children from `next` on."""

    chosen: list[int]
    cost: float
    best: np.ndarray
    next: int
    u: np.ndarray = field(repr=False)


def _branch_and_bound(losses: np.ndarray, costs: np.ndarray, budget: float, deadline: float,
                      starts: list[list[int]]) -> tuple[list[int] | None, float, bool]:
    """The best covering set of rows within `budget`: (rows or None, proven lower bound, finished).

    Depth-first over sets in increasing order of candidates ranked by their reduced cost at the
    root's multipliers; a node's later children share one bound (their candidates are a suffix),
    so a pruned bound drops them all. A candidate that lowers no task's loss is never added (it
    would cost more for the same value). On reaching `deadline` the bound is the lowest over the
    open nodes on the path, so it is proven; `starts` seed the incumbent.
    """
    m, n = losses.shape
    grain = _grain(costs)

    def room(capacity: float) -> float:
        return math.floor((capacity + EPS) / grain) * grain if grain else capacity

    incumbent, inc_value, inc_cost = None, math.inf, math.inf
    for rows in starts:
        if rows is None or costs[rows].sum() > budget + EPS:
            continue
        best = losses[rows].min(axis=0) if rows else np.full(n, np.inf)
        if np.all(np.isfinite(best)):
            value, cost = float(best.sum()), float(costs[rows].sum())
            if value < inc_value - EPS or (value <= inc_value + EPS and cost < inc_cost - EPS):
                incumbent, inc_value, inc_cost = list(rows), value, cost
    fits = costs <= budget + EPS
    root_best = np.full(n, np.inf)
    root, u_root = lagrangian_bound(losses[fits], costs[fits], root_best, room(budget),
                                    np.full(n, np.inf), inc_value, ROOT_ITERATIONS)
    if math.isinf(root) or root >= inc_value - EPS * max(1.0, abs(inc_value)):
        return incumbent, min(root, inc_value), True
    ranked = np.lexsort((costs, np.minimum(losses - u_root, 0.0).sum(axis=1)))
    L, C = losses[ranked], costs[ranked]

    def node_bound(frame: _Frame, first: int, iterations: int) -> float:
        allowed = first + np.flatnonzero(C[first:] <= budget - frame.cost + EPS)
        lb, frame.u = lagrangian_bound(L[allowed], C[allowed], frame.best, room(budget - frame.cost),
                                       frame.u, inc_value, iterations)
        return lb

    def pruned(lb: float, cost: float) -> bool:
        tol = EPS * max(1.0, abs(inc_value)) if math.isfinite(inc_value) else 0.0
        return lb > inc_value + tol or (lb >= inc_value - tol and cost >= inc_cost - EPS)

    stack = [_Frame([], 0.0, root_best, 0, u_root)]
    finished, steps = True, 0
    while stack:
        steps += 1
        if steps % 8 == 0 and time.perf_counter() > deadline:
            finished = False
            break
        frame = stack[-1]
        ahead = slice(frame.next, m)
        usable = np.flatnonzero((C[ahead] <= budget - frame.cost + EPS) & (L[ahead] < frame.best - EPS).any(axis=1))
        if not len(usable):
            stack.pop()
            continue
        j = frame.next + int(usable[0])
        frame.next = j
        if pruned(node_bound(frame, j, NODE_ITERATIONS), frame.cost):
            stack.pop()
            continue
        frame.next = j + 1
        child = _Frame(frame.chosen + [j], frame.cost + float(C[j]), np.minimum(frame.best, L[j]), j + 1, frame.u.copy())
        if np.all(np.isfinite(child.best)):
            value = float(child.best.sum())
            if value < inc_value - EPS * max(1.0, abs(value)) or (value <= inc_value + EPS * max(1.0, abs(value))
                                                                  and child.cost < inc_cost - EPS):
                incumbent, inc_value, inc_cost = [int(ranked[k]) for k in child.chosen], value, child.cost
        stack.append(child)
    if finished:
        return incumbent, inc_value, True
    open_bound = min((node_bound(f, f.next, NODE_ITERATIONS) for f in stack), default=math.inf)
    return incumbent, min(inc_value, max(root, open_bound)), False
