"""The higher-order approximation: losses of larger groups predicted from single and pairwise networks.

Standley et al., "Which Tasks Should Be Learned Together in Multi-task Learning?" (ICML 2020),
section 4.3: the loss of task a in a network trained on group G (three or more tasks) is predicted
as the mean of a's losses in the pairwise networks {a, b}, b in G \\ a. It needs the n(n-1)/2 pair
trainings only; the predicted candidates then go through the same network selection as measured
ones. Its limit: it assumes a task's partners act independently and additively.

There are 2^n - 1 - n - n(n-1)/2 predicted groups. Up to `EXPLICIT_MAX_TASKS` tasks
(`select_with_hoa`) they are all listed and the selection is exact. Beyond, they are never listed:
the search runs over the measured networks and a pool of O(n^2) predicted groups (each task with
its 2, 3, ... closest partners, and the groups of an average-linkage clustering of the pair
losses), whose chosen groups are then improved by adding or removing one task at a time and the
search rerun with them. Its lower bound covers every group, listed or not: a task's predicted loss
in a group of k is at least the mean of its k-1 lowest pairwise losses, which bounds every
group's reduced cost in the Lagrangian bound of `raytaskaff.grouping.networks`. Memory is linear
in the measured networks and the pool.
"""

from __future__ import annotations

import math
import time
from itertools import combinations

import numpy as np

from raytaskaff.grouping.affinity import GroupingError
from raytaskaff.grouping.networks import (
    EPS,
    ROOT_ITERATIONS,
    Network,
    Selection,
    _loss_matrix,
    lagrangian_bound,
    make_selection,
    prune_dominated,
    select_for_budgets,
    solve_budgets,
)

#: Up to this many tasks every predicted group is listed (at most 968 of them at 10 tasks).
EXPLICIT_MAX_TASKS = 10


def predict_group_losses(pairs: dict[frozenset, dict[str, float]], group: tuple[str, ...]) -> dict[str, float]:
    """{task: predicted loss} of the network trained on `group` (three or more tasks).

    pairs: {frozenset({a, b}): {a: loss, b: loss}} for every pair of the group.
    """
    out = {}
    for a in group:
        losses = []
        for b in group:
            if b != a:
                pair = pairs.get(frozenset((a, b)))
                if pair is None or a not in pair:
                    raise GroupingError(f"no pairwise network of {a!r} and {b!r} to predict {'+'.join(group)} from")
                losses.append(pair[a])
        out[a] = float(np.mean(losses))
    return out


def _full_size_pairs(measured: list[Network]) -> dict[frozenset, Network]:
    """The two-task networks by their tasks; of several with the same tasks, the costliest (the full-size one)."""
    pairs: dict[frozenset, Network] = {}
    for net in measured:
        if len(net.val) == 2:
            key = frozenset(net.val)
            if key not in pairs or net.cost > pairs[key].cost:
                pairs[key] = net
    return pairs


def hoa_candidates(measured: list[Network], cost: float = 1.0) -> list[Network]:
    """Predicted networks for every group of three or more tasks that `measured` does not hold.

    The pairwise losses come from the measured two-task networks (of several with the same tasks,
    the costliest: the full-size one); test losses are predicted when every pair's is known.
    Predicted networks are named by their tasks joined with '+', and cost `cost` each.
    """
    pairs_val = _full_size_pairs(measured)
    tasks = tuple(dict.fromkeys(t for net in measured for t in net.val))
    held = {frozenset(net.val) for net in measured}
    val = {k: net.val for k, net in pairs_val.items()}
    test = {k: net.test for k, net in pairs_val.items() if None not in net.test.values()}
    out = []
    for size in range(3, len(tasks) + 1):
        for group in combinations(tasks, size):
            if frozenset(group) in held:
                continue
            try:
                predicted_test = predict_group_losses(test, group)
            except GroupingError:  # some pair's test loss is unknown
                predicted_test = dict.fromkeys(group)
            out.append(Network("+".join(group), cost, predict_group_losses(val, group), predicted_test))
    return out


def pair_matrices(measured: list[Network]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(tasks, val, test): pairwise losses as [target][partner] arrays, shape (n, n), nan on the diagonal.

    Of several two-task networks with the same tasks, the costliest (the full-size one) counts; a
    test entry is nan unless both of the pair's test losses are known. Tasks in order of first
    appearance. A missing pair is a GroupingError naming it.
    """
    tasks = tuple(dict.fromkeys(t for net in measured for t in net.val))
    index = {t: i for i, t in enumerate(tasks)}
    pairs = _full_size_pairs(measured)
    n = len(tasks)
    val, test = np.full((n, n), np.nan), np.full((n, n), np.nan)
    for a, b in combinations(tasks, 2):
        net = pairs.get(frozenset((a, b)))
        if net is None:
            raise GroupingError(f"no pairwise network of {a!r} and {b!r} to predict larger groups from")
        known = None not in net.test.values()
        for x, y in ((a, b), (b, a)):
            val[index[x], index[y]] = net.val[x]
            if known:
                test[index[x], index[y]] = net.test[x]
    return tasks, val, test


def group_network(tasks: tuple[str, ...], val: np.ndarray, test: np.ndarray, group: tuple[int, ...], cost: float) -> Network:
    """The predicted network of `group` (indices into `tasks`, ascending), as `hoa_candidates` names and scores it."""
    rows = np.array(group)
    block = val[np.ix_(rows, rows)]
    predicted_val = np.nansum(block, axis=1) / (len(rows) - 1)
    test_block = test[np.ix_(rows, rows)]
    off = ~np.eye(len(rows), dtype=bool)
    if np.isnan(test_block[off]).any():
        predicted_test = dict.fromkeys(tasks[i] for i in group)
    else:
        predicted_test = {tasks[i]: float(v) for i, v in zip(group, np.nansum(test_block, axis=1) / (len(rows) - 1))}
    return Network("+".join(tasks[i] for i in group), cost, {tasks[i]: float(v) for i, v in zip(group, predicted_val)},
                   predicted_test)


def candidate_groups(val: np.ndarray) -> list[tuple[int, ...]]:
    """O(n^2) groups of three or more tasks likely to serve well, from pairwise losses val (n, n).

    Each task with its 2, 3, ..., n-1 closest partners, and every group an average-linkage
    clustering forms; closeness is the sum of both tasks' losses in the pair, each relative to
    the median of that task's pairwise losses (tasks' losses need not share a scale).
    """
    n = len(val)
    scale = np.nanmedian(val, axis=1, keepdims=True)
    relative = val / np.where(np.abs(scale) > EPS, np.abs(scale), 1.0)
    closeness = relative + relative.T
    np.fill_diagonal(closeness, np.inf)
    groups: set[tuple[int, ...]] = set()
    for a in range(n):
        partners = np.argsort(closeness[a], kind="stable")[: n - 1]
        for k in range(2, n):
            groups.add(tuple(sorted([a, *partners[:k].tolist()])))
    members = [[i] for i in range(n)]
    total = np.where(np.isfinite(closeness), closeness, 0.0)  # [p][q]: summed closeness between clusters
    alive = list(range(n))
    while len(alive) > 1:
        sizes = np.array([len(members[p]) for p in alive], dtype=float)
        mean = total[np.ix_(alive, alive)] / np.outer(sizes, sizes)
        np.fill_diagonal(mean, np.inf)
        i, j = np.unravel_index(int(np.argmin(mean)), mean.shape)
        p, q = alive[i], alive[j]
        members[p] = members[p] + members[q]
        total[p, :] += total[q, :]
        total[:, p] += total[:, q]
        alive.remove(q)
        if len(members[p]) >= 3:
            groups.add(tuple(sorted(members[p])))
    return sorted(groups, key=lambda g: (len(g), g))


def relaxed_columns(val: np.ndarray, cost: float, copies: int):
    """extra(u) for `lagrangian_bound`: for each group size k >= 3, a column whose reduced cost is
    at most any k-group's, `copies` times (a budget holds at most that many groups).

    A task's predicted loss in a k-group is at least lowest[a, k], the mean of its k-1 lowest
    pairwise losses, so a k-group's reduced cost is at least the sum of the k most negative
    min(0, lowest[a, k] - u_a).
    """
    n = len(val)
    ordered = np.sort(np.where(np.isnan(val), np.inf, val), axis=1)[:, : n - 1]
    lowest = np.cumsum(ordered, axis=1) / np.arange(1, n)  # [a, k-2]: mean of the k-1 lowest
    sizes = np.arange(3, n + 1)

    def extra(u: np.ndarray):
        rc, members = [], []
        for k in sizes:
            gain = np.minimum(lowest[:, k - 2] - u, 0.0)
            take = np.argpartition(gain, k - 1)[:k]
            rc.append(float(gain[take].sum()))
            row = np.zeros(n, dtype=bool)
            row[take] = gain[take] < 0
            members.append(row)
        rc, members = np.repeat(np.array(rc), copies), np.repeat(np.array(members).reshape(-1, n), copies, axis=0)
        return rc, np.full(len(rc), cost), members

    return extra, lowest


def _improve(val: np.ndarray, fixed: np.ndarray, groups: list[tuple[int, ...]], held: set[frozenset],
             deadline: float) -> list[tuple[int, ...]]:
    """`groups` (predicted, each a tuple of task indices) changed one task at a time while the
    selection's value falls; fixed: (tasks,) the best loss per task from the measured networks chosen."""
    n = len(val)
    zeroed = np.where(np.isnan(val), 0.0, val)
    masks = [np.isin(np.arange(n), g) for g in groups]

    def predicted(mask):
        k = mask.sum()
        return np.where(mask, zeroed @ mask / max(k - 1, 1), np.inf)

    def value(all_masks):
        best = fixed.copy()
        for mask in all_masks:
            best = np.minimum(best, predicted(mask))
        return float(np.where(np.isinf(best), 1e30, best).sum())

    current = value(masks)
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        for g in range(len(masks)):
            for x in range(n):
                trial = masks[g].copy()
                trial[x] = not trial[x]
                if trial.sum() < 3 or frozenset(np.flatnonzero(trial).tolist()) in held:
                    continue
                changed = masks[:g] + [trial] + masks[g + 1:]
                v = value(changed)
                if v < current - EPS * max(1.0, abs(current)):
                    masks, current, improved = changed, v, True
    return [tuple(np.flatnonzero(m).tolist()) for m in masks]


def select_with_hoa(measured: list[Network], budgets: list[float], cost: float = 1.0,
                    time_limit: float | None = None) -> tuple[list[Selection], list[Network]]:
    """Network selection over `measured` and every group of three or more tasks it does not hold,
    predicted from its pairs: (a Selection per budget, the predicted networks considered).

    Up to EXPLICIT_MAX_TASKS tasks every group is listed (`hoa_candidates`) and the answer is exact;
    beyond, see the module's docstring: the answer is the best found within `time_limit` seconds
    (None: until the search over the pool is done), with a lower bound valid for every group.
    """
    start = time.perf_counter()
    tasks = tuple(dict.fromkeys(t for net in measured for t in net.val))
    if len(tasks) <= EXPLICIT_MAX_TASKS:
        predicted = hoa_candidates(measured, cost)
        return select_for_budgets(measured + predicted, budgets, time_limit=time_limit), predicted
    end = math.inf if time_limit is None else start + time_limit
    order, val, test = pair_matrices(measured)
    held = {frozenset(order.index(t) for t in net.val) for net in measured}
    columns = tuple(sorted(tasks))  # the tasks' order in a Selection, as select_for_budgets has it
    permute = [order.index(t) for t in columns]
    predicted = {g: group_network(order, val, test, g, cost) for g in candidate_groups(val) if frozenset(g) not in held}
    measured_losses = _loss_matrix(measured, columns)
    measured_costs = np.array([c.cost for c in measured], dtype=float)
    bounds: dict[float, float] = {}

    def implicit_bound(budget: float, value: float) -> float:
        if budget not in bounds:
            copies = int(math.floor(budget / cost + EPS)) if cost > 0 else 0
            extra, lowest = relaxed_columns(val[np.ix_(permute, permute)], cost, copies)
            fits = measured_costs <= budget + EPS
            per_task = np.minimum(measured_losses[fits].min(axis=0, initial=np.inf), lowest[:, 1])
            simple = float(per_task.sum())  # each task at the lowest loss anything offers it
            if cost > 0:
                lagrange, _ = lagrangian_bound(measured_losses[fits], measured_costs[fits], np.full(len(columns), np.inf),
                                               budget, per_task, value, ROOT_ITERATIONS, extra=extra)
                simple = max(simple, lagrange)
            bounds[budget] = simple
        return bounds[budget]

    mine = {c.name for c in measured}
    seeds: list[list[str] | None] = [None] * len(budgets)
    last = False
    while True:
        # the seeds' groups stay in the pool even when dominated, so each seed stays a covering set
        pool = prune_dominated(measured + list(predicted.values()), max(budgets, default=0.0))
        kept = {c.name for c in pool}
        wanted = {x for s in seeds if s is not None for x in s}
        pool += [c for c in [*measured, *predicted.values()] if c.name in wanted and c.name not in kept]
        losses = _loss_matrix(pool, columns)
        costs = np.array([c.cost for c in pool], dtype=float)
        row = {c.name: i for i, c in enumerate(pool)}
        left = None if math.isinf(end) else max(0.0, end - time.perf_counter())
        share = None if left is None else (0.0 if last else left / 2)
        results = solve_budgets(losses, costs, budgets, share, implicit_bound,
                                [None if s is None else [row[x] for x in s] for s in seeds])
        if last:
            break
        fresh = 0
        for i, (chosen, _, _) in enumerate(results):
            if chosen is None:
                continue
            seeds[i] = [pool[k].name for k in chosen]
            groups = [tuple(sorted(order.index(t) for t in pool[k].val)) for k in chosen if pool[k].name not in mine]
            kept_measured = [k for k in chosen if pool[k].name in mine]
            fixed = (_loss_matrix([pool[k] for k in kept_measured], order).min(axis=0) if kept_measured
                     else np.full(len(order), np.inf))
            better = _improve(val, fixed, groups, held, end)
            for g in better:
                if g not in predicted:
                    predicted[g] = group_network(order, val, test, g, cost)
                    fresh += 1
            seeds[i] = [pool[k].name for k in kept_measured] + [predicted[g].name for g in better]
        if not fresh:
            break
        # out of time: one last pass over the pool with the improved seeds, without searching
        last = not math.isinf(end) and time.perf_counter() >= end - 0.1 * time_limit
    return ([make_selection(pool, chosen, columns, budget, bound, finished)
             for budget, (chosen, bound, finished) in zip(budgets, results)], list(predicted.values()))
