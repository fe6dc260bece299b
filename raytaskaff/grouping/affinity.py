"""Task groups from an affinity: the TAG objective, exact up to 12 tasks.

TAG objective (Fifty et al., "Efficiently Identifying Task Groupings for Multi-Task Learning",
NeurIPS 2021; `tag/network_selection/TAG_network_selection.ipynb`): choose at most K groups
covering every task (groups may overlap). In group G, task a scores the mean affinity onto it from
the other members, `score_G(a) = mean_{b in G \\ a} affinity[a][b]`; a task alone scores
`singleton` (TAG: -1e6, so a task is left alone only when nothing else is possible). Each task is
served by its best chosen group; the objective is the mean over tasks of that score, maximised.

Exact search (up to `EXACT_TASKS` tasks): a solution assigns every task to the chosen group that
serves it, so it is a partition of the tasks into at most K parts, part P served by some G ⊇ P.
With f(P) = max over G ⊇ P of sum_{a in P} score_G(a) (all 3^n pairs P ⊆ G, vectorised per G), the
best value is a dynamic program over subsets: best_k(S) = max over parts P ∋ min(S) of
f(P) + best_{k-1}(S \\ P). Cost O(K 3^n): under a second for 12 tasks.

Beyond that, a documented heuristic: local search over partitions into at most K groups (each
group serving its own members), from several seeded starts, moving and swapping single tasks while
the objective rises; then the best partition's groups may overlap, adding or dropping one task of
one group at a time while the objective rises. It carries no guarantee: on random affinities of 8
to 12 tasks it reaches 0.87-1.0 of the exact objective (`python -m bench.grouping`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from raytaskaff.errors import RaytaskaffError

#: The exact search's limit on the task count (3^n grows fast: 12 tasks is 531441 pairs).
EXACT_TASKS = 12
#: TAG's score for a task alone in its group.
TAG_SINGLETON = -1e6


class GroupingError(RaytaskaffError):
    """The grouping input is unusable (a missing pair, an impossible group count)."""


@dataclass(frozen=True)
class Grouping:
    """Chosen groups (each a tuple of tasks in the input's order), the group serving each task,
    each task's score in it, and the objective (mean over tasks of those scores)."""

    groups: tuple[tuple[str, ...], ...]
    serving: dict[str, tuple[str, ...]]
    scores: dict[str, float]
    objective: float
    exact: bool

    def as_json(self) -> dict:
        return {"groups": [list(g) for g in self.groups], "serving": {t: list(g) for t, g in self.serving.items()},
                "scores": self.scores, "objective": self.objective, "exact": self.exact}


def affinity_matrix(table: dict[tuple[str, str], float], tasks: tuple[str, ...] | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """(tasks, A) with A[i, j] = affinity onto target i from partner j (diagonal 0) from {(target, partner): value}."""
    if tasks is None:
        tasks = tuple(sorted({t for pair in table for t in pair}))
    missing = [(a, b) for a in tasks for b in tasks if a != b and (a, b) not in table]
    if missing:
        raise GroupingError(f"no affinity for target {missing[0][0]!r}, partner {missing[0][1]!r} "
                            f"({len(missing)} ordered pair(s) missing of {len(tasks) * (len(tasks) - 1)})")
    a = np.zeros((len(tasks), len(tasks)))
    for i, t in enumerate(tasks):
        for j, p in enumerate(tasks):
            if i != j:
                a[i, j] = table[t, p]
    return tasks, a


def member_scores(affinity: np.ndarray, singleton: float = TAG_SINGLETON) -> np.ndarray:
    """S[G, a]: task a's TAG score in group G (bitmask over tasks; bit i is task i), NaN for a not in G.

    Shape (2^n, n): mean over the other members b of affinity[a, b], or `singleton` when G = {a}.
    """
    n = len(affinity)
    masks = np.arange(1 << n)
    member = ((masks[:, None] >> np.arange(n)) & 1).astype(bool)  # (2^n, n)
    sums = member.astype(float) @ np.where(np.eye(n, dtype=bool), 0.0, affinity).T  # [G, a] = sum_b in G affinity[a, b]
    others = member.sum(axis=1, keepdims=True) - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(others > 0, sums / np.maximum(others, 1), singleton)
    return np.where(member, scores, np.nan)


def _part_values(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f[P] = max over G ⊇ P of sum_{a in P} scores[G, a], and the G reaching it (P = 0: 0)."""
    size, n = scores.shape
    masks = np.arange(size)
    member = ((masks[:, None] >> np.arange(n)) & 1).astype(float)
    best = np.full(size, -np.inf)
    best[0] = 0.0
    served_by = np.zeros(size, dtype=np.int64)
    for g in range(1, size):
        parts = masks[(masks & ~g) == 0][1:]  # nonempty submasks of g
        values = member[parts] @ np.nan_to_num(scores[g], nan=0.0)
        better = values > best[parts]
        best[parts[better]] = values[better]
        served_by[parts[better]] = g
    return best, served_by


def _exact(scores: np.ndarray, max_groups: int) -> list[tuple[int, int]]:
    """The optimal [(part, serving group)] over partitions into at most `max_groups` parts."""
    size = len(scores)
    full = size - 1
    masks = np.arange(size)
    f, served_by = _part_values(scores)
    best = f.copy()  # one part: the whole set
    first = [masks.copy()]  # first[k][S]: the part containing S's lowest task in the best k+1-part solution
    for _ in range(1, max_groups):
        previous, best = best, best.copy()
        choice = first[-1].copy()
        for part in range(1, size):
            low = part & -part
            free = full & ~part & ~((low << 1) - 1)  # tasks above the part's lowest: the part keeps the lowest task
            rest = masks[(masks & ~free) == 0][1:]
            if len(rest) == 0:
                continue
            values = f[part] + previous[rest]
            union = part | rest
            better = values > best[union]
            best[union[better]] = values[better]
            choice[union[better]] = part
        first.append(choice)
    chosen, remaining = [], full
    for k in range(max_groups - 1, -1, -1):
        if remaining == 0:
            break
        part = int(first[k][remaining])
        chosen.append((part, int(served_by[part])))
        remaining &= ~part
    return chosen


def _score_in(affinity: np.ndarray, members: list[int], a: int, singleton: float) -> float:
    """Task a's TAG score in the group of task indices `members` (which holds a)."""
    others = [b for b in members if b != a]
    return float(affinity[a, others].mean()) if others else singleton


def _row_scores(affinity: np.ndarray, members: list[int], singleton: float) -> list[float]:
    """[`_score_in`(affinity, members, a) for a in members], bit for bit, in one numpy call: each
    row of the members' block without its diagonal is summed as `mean` sums a row (the same
    contiguous reduction), then divided by the count."""
    m = len(members)
    if m == 1:
        return [float(singleton)]
    block = affinity[np.ix_(members, members)]
    others = block[~np.eye(m, dtype=bool)].reshape(m, m - 1)
    return (np.add.reduce(others, axis=1) / (m - 1)).tolist()


def _partition_value(affinity: np.ndarray, label: list[int], singleton: float) -> float:
    """The objective (times n) of the partition `label` (task -> group), each group serving its
    own members, summed group by group in the order of `set(label)`, each group's scores in task
    order: the reference every faster evaluation is checked against, so that the search takes the
    same steps whatever evaluates the trials."""
    total = 0.0
    for k in set(label):
        total += sum(_row_scores(affinity, [a for a, g in enumerate(label) if g == k], singleton))
    return total


def _group_values(totals: np.ndarray, sizes: np.ndarray, singleton: float) -> np.ndarray:
    """A group's contribution to the objective (times n) from W (the sum of affinity[a, b] over its
    ordered pairs of members) and its size m: W / (m - 1), `singleton` for m = 1, 0 when empty
    (each member's score is its row sum over the m - 1 others, divided by m - 1)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        values = totals / (sizes - 1)
    return np.where(sizes >= 2, values, np.where(sizes == 1, singleton, 0.0))


def _trial_values(affinity: np.ndarray, label: np.ndarray, max_groups: int, singleton: float):
    """Every trial of one local-search step, in the order the search tries them, with its
    objective (times n) computed in closed form, O(n^2 + n K) for all of them together.

    Trials: moving task a to group k != label[a] (a, then k, ascending), then swapping the groups
    of tasks a < b in different groups (row-major). Returns (moves (M, 2) of [a, k], swaps (W, 2)
    of [a, b], values (M + W,), singletons (M + W,): each trial's count of one-task groups).
    With B = A + A^T (zero diagonal) and S[a, k] = sum of B[a, b] over b in group k, a group's W
    is half the sum of S over its members; moving a out of k takes S[a, k] from W_k, moving it into
    k adds S[a, k]; a swap also takes B[a, b] from each side (a and b were counted as partners).
    """
    n = len(affinity)
    both = affinity + affinity.T
    np.fill_diagonal(both, 0.0)
    onehot = np.zeros((n, max_groups))
    onehot[np.arange(n), label] = 1.0
    s = both @ onehot  # (n, K)
    sizes = onehot.sum(axis=0)
    totals = (s * onehot).sum(axis=0) / 2
    base = _group_values(totals, sizes, singleton)
    current = base.sum()
    ones = int((sizes == 1).sum())

    a, k = np.nonzero(np.arange(max_groups)[None, :] != label[:, None])  # row-major: a, then k
    k0 = label[a]
    out_size, in_size = sizes[k0] - 1, sizes[k] + 1
    move = (current - base[k0] - base[k] + _group_values(totals[k0] - s[a, k0], out_size, singleton)
            + _group_values(totals[k] + s[a, k], in_size, singleton))
    move_ones = ones - (sizes[k0] == 1) - (sizes[k] == 1) + (out_size == 1) + (in_size == 1)

    first, second = np.triu_indices(n, 1)  # row-major: a, then b > a
    differ = label[first] != label[second]
    first, second = first[differ], second[differ]
    k1, k2 = label[first], label[second]
    pair = both[first, second]
    swap = (current - base[k1] - base[k2]
            + _group_values(totals[k1] - s[first, k1] + s[second, k1] - pair, sizes[k1], singleton)
            + _group_values(totals[k2] - s[second, k2] + s[first, k2] - pair, sizes[k2], singleton))
    swap_ones = np.full(len(first), ones)
    return (np.stack([a, k], axis=1), np.stack([first, second], axis=1),
            np.concatenate([move, swap]), np.concatenate([move_ones, swap_ones]))


def _heuristic(affinity: np.ndarray, max_groups: int, singleton: float, restarts: int = 20, seed: int = 0) -> list[int]:
    """Local search over partitions into at most `max_groups` groups, each serving its own members.

    Returns the groups as bitmasks. From each seeded start, a step takes the first trial (moves of
    one task, then swaps of two, see `_trial_values`) whose objective beats the current one by
    more than 1e-12, until none does. Every trial's objective is computed at once in closed form;
    where that value and the group-by-group sum of `_partition_value` could round to different
    sides of the threshold (within a bound on their rounding errors), and for the trial taken, the
    reference sum decides: the search takes exactly the steps a trial-by-trial evaluation takes.
    """
    n = len(affinity)
    rng = random.Random(seed)
    # Rounding of either evaluation: sums of n scores, each a mean of at most n affinities, and
    # the one-task groups' `singleton` terms; a generous multiple of n * eps * their magnitude.
    spread = 1024 * n * np.finfo(float).eps
    magnitude = 2 * n * float(np.abs(affinity[np.isfinite(affinity)]).max(initial=0.0))

    best_label, best_value = None, -np.inf
    for _ in range(restarts):
        label = [rng.randrange(max_groups) for _ in range(n)]
        current = _partition_value(affinity, label, singleton)
        while True:
            moves, swaps, values, ones = _trial_values(affinity, np.array(label), max_groups, singleton)
            current_ones = sum(1 for k in set(label) if label.count(k) == 1)
            threshold = current + 1e-12
            tolerance = spread * (magnitude + abs(singleton) * (ones + current_ones) + abs(current))
            clear = np.flatnonzero(values > threshold + tolerance)
            last = clear[0] if len(clear) else len(values)
            close = np.flatnonzero(np.abs(values[:last] - threshold) <= tolerance[:last])
            taken = None
            # In trial order: the close ones, then the first clear one, then (only if the bound
            # failed it) every later trial, each decided by the reference sum.
            for i in [*close, *range(last, len(values))]:
                trial = label.copy()
                if i < len(moves):
                    a, k = moves[i]
                    trial[a] = int(k)
                else:
                    a, b = swaps[i - len(moves)]
                    trial[a], trial[b] = label[b], label[a]
                value = _partition_value(affinity, trial, singleton)
                if value > threshold:
                    taken = trial, value
                    break
            if taken is None:
                break
            label, current = taken
        if current > best_value:
            best_label, best_value = label, current
    groups = [{a for a in range(n) if best_label[a] == k} for k in sorted(set(best_label))]
    return [sum(1 << a for a in g) for g in _overlap(affinity, groups, singleton)]


def _overlap(affinity: np.ndarray, groups: list[set[int]], singleton: float) -> list[set[int]]:
    """Improve a partition by letting groups overlap: add a task to a group or drop one from a
    group (every task stays covered) while the objective rises; a task is served by its best group."""
    n = len(affinity)
    scored: dict[tuple[int, ...], dict[int, float]] = {}  # a trial changes one group: the others are known

    def scores_in(g: set[int]) -> dict[int, float]:
        members = tuple(sorted(g))
        if members not in scored:
            scored[members] = dict(zip(members, _row_scores(affinity, list(members), singleton)))
        return scored[members]

    def value(gs: list[set[int]]) -> float:
        by_group = [scores_in(g) for g in gs]
        return sum(max(s[a] for s in by_group if a in s) for a in range(n))

    current, improved = value(groups), True
    while improved:
        improved = False
        for k, a in ((k, a) for k in range(len(groups)) for a in range(n)):
            trial = [set(g) for g in groups]
            trial[k] ^= {a}
            if not trial[k] or any(not any(b in g for g in trial) for b in range(n)):
                continue
            if (v := value(trial)) > current + 1e-12:
                groups, current, improved = trial, v, True
                break
    return groups


def select_groups(table: dict[tuple[str, str], float], max_groups: int, tasks: tuple[str, ...] | None = None,
                  singleton: float = TAG_SINGLETON, exact: bool | None = None) -> Grouping:
    """The TAG grouping: at most `max_groups` groups covering every task, maximising the mean score.

    table: {(target, partner): affinity}, higher meaning the partner helps the target more.
    exact: None chooses the exact search up to EXACT_TASKS tasks and the heuristic beyond.
    """
    tasks, affinity = affinity_matrix(table, tasks)
    n = len(tasks)
    if isinstance(max_groups, bool) or not isinstance(max_groups, int) or max_groups < 1:
        raise GroupingError(f"max groups must be a positive integer, got {max_groups!r}")
    max_groups = min(max_groups, n)
    exact = n <= EXACT_TASKS if exact is None else exact
    if exact:
        chosen = [group for _, group in _exact(member_scores(affinity, singleton), max_groups)]
    else:
        chosen = _heuristic(affinity, max_groups, singleton)
    groups = sorted({tuple(i for i in range(n) if (g >> i) & 1) for g in chosen})
    # Serve each task by its best chosen group: the partition names one that reaches the optimum,
    # and another chosen group may do as well (or, after the heuristic, better).
    serving, task_scores = {}, {}
    for i, t in enumerate(tasks):
        score, group = max(((_score_in(affinity, list(g), i, singleton), g) for g in groups if i in g), key=lambda o: o[0])
        serving[t], task_scores[t] = tuple(tasks[j] for j in group), score
    return Grouping(tuple(tuple(tasks[j] for j in g) for g in groups), serving, task_scores,
                    float(np.mean(list(task_scores.values()))), exact)
