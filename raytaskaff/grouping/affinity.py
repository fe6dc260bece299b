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


def _heuristic(affinity: np.ndarray, max_groups: int, singleton: float, restarts: int = 20, seed: int = 0) -> list[int]:
    """Local search over partitions into at most `max_groups` groups, each serving its own members.

    Returns the groups as bitmasks. Each evaluation costs O(n^2), never 2^n.
    """
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
        while improved:  # first improvement: move one task, else swap two
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
    return [sum(1 << a for a in g) for g in _overlap(affinity, groups, singleton)]


def _overlap(affinity: np.ndarray, groups: list[set[int]], singleton: float) -> list[set[int]]:
    """Improve a partition by letting groups overlap: add a task to a group or drop one from a
    group (every task stays covered) while the objective rises; a task is served by its best group."""
    n = len(affinity)

    def value(gs: list[set[int]]) -> float:
        return sum(max(_score_in(affinity, sorted(g), a, singleton) for g in gs if a in g) for a in range(n))

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
