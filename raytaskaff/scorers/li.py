"""li: label injection ("It's a Match!", Azorin et al., arXiv 2301.02873).

value(t, p) = 100 * (L_STL(t) - L_LI(t <- p)) / L_STL(t), test losses, where LI(t <- p) is the
STL network of t that also receives p's ground-truth label as extra input channels, in training
and at test time. Positive: knowing p's label helps predict t. Per seed (the STL and LI runs of a
seed share their initial weights and data order), then the mean over seeds. Asymmetric.

Which pairs get an LI run (n(n-1) per seed by default: 1,560 at 40 tasks) is chosen by the
options (`LiChoice`): an explicit list of pairs or of targets, the k most promising partners of
each target by a scorer that needs no training (td), and a total budget per seed. A pair without
an LI run is missing from the table (unknown, never 0), and the evaluation reads the known pairs
only.

Limits: an oracle input is not a shared representation, so it measures how informative p's
label is about t, not whether learning p helps learning t; it needs one extra STL training per
ordered pair it scores, more than the pairs of the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

from raytaskaff.evaluation.ground_truth import relative_gain
from raytaskaff.scorers.base import Artifacts, Needs, Scorer, ScorerError, register

#: The seed of the random draw of a `budget` (the same pairs on every seed of the sweep, and in
#: every sweep of the same tasks and options).
BUDGET_SEED = 0


@dataclass(frozen=True)
class LiChoice:
    """Which (target, partner) pairs get a label-injection run, on every seed LI runs on.

    pairs: exactly these pairs; or targets: every partner of these targets (default: every task);
    then partners (k): each target's k partners ranked highest by the scorer `rank_by` (ties in
    the sweep's task order); then budget: at most this many runs in all, drawn at random (seed
    `BUDGET_SEED`) and spread evenly over the targets (their counts differ by at most one, where
    they have enough candidates). A budget at least the candidates' count keeps them all.
    """

    pairs: tuple[tuple[str, str], ...] | None = None
    targets: tuple[str, ...] | None = None
    partners: int | None = None
    rank_by: str = "td"
    budget: int | None = None

    def choose(self, tasks: tuple[str, ...], rank: dict[tuple[str, str], float] | None = None) -> list[tuple[str, str]]:
        """The chosen pairs, in plan order (target, then partner, in the order of `tasks`).

        rank: {(target, partner): value} of `rank_by` over `tasks`, needed when `partners` is set.
        ScorerError (one line) for a task that is not one of `tasks`."""
        known = set(tasks)
        if self.pairs is not None:
            for i, (t, p) in enumerate(self.pairs):
                for task in (t, p):
                    if task not in known:
                        raise ScorerError(f"li.pairs[{i}]: {task!r} is not a task of the sweep")
            wanted = set(self.pairs)
        else:
            for i, t in enumerate(self.targets or ()):
                if t not in known:
                    raise ScorerError(f"li.targets[{i}]: {t!r} is not a task of the sweep")
            targets = set(self.targets) if self.targets is not None else known
            wanted = {(t, p) for t, p in permutations(tasks, 2) if t in targets}
        candidates = [pair for pair in permutations(tasks, 2) if pair in wanted]
        if self.partners is not None:
            if rank is None:
                raise ScorerError(f"li.partners: ranking partners needs the table of {self.rank_by}")
            order = {t: i for i, t in enumerate(tasks)}
            by_target: dict[str, list[str]] = {}
            for t, p in candidates:
                by_target.setdefault(t, []).append(p)
            kept = {(t, p) for t, ps in by_target.items()
                    for p in sorted(ps, key=lambda p: (-rank[t, p], order[p]))[:self.partners]}
            candidates = [pair for pair in candidates if pair in kept]
        if self.budget is not None and self.budget < len(candidates):
            candidates = spread_budget(candidates, self.budget, BUDGET_SEED)
        return candidates


def spread_budget(candidates: list[tuple[str, str]], budget: int, seed: int) -> list[tuple[str, str]]:
    """`budget` of the (target, partner) `candidates`, at random and spread evenly over targets: the
    targets (in a random order) take turns, each taking its next partner (in a random order) while
    it has one, until the budget is spent. Returned in the candidates' order."""
    rng = np.random.default_rng(seed)
    by_target: dict[str, list[tuple[str, str]]] = {}
    for pair in candidates:
        by_target.setdefault(pair[0], []).append(pair)
    queues = [[pairs[i] for i in rng.permutation(len(pairs))] for pairs in by_target.values()]
    queues = [queues[i] for i in rng.permutation(len(queues))]
    taken: set[tuple[str, str]] = set()
    for turn in range(max(len(q) for q in queues)):
        for queue in queues:
            if turn < len(queue) and len(taken) < budget:
                taken.add(queue[turn])
    return [pair for pair in candidates if pair in taken]


def li_choice(pairs=None, targets=None, partners=None, rank_by: str | None = None, budget=None) -> LiChoice | None:
    """The choice the options make (None: every ordered pair), or ScorerError (one line) for options
    that contradict each other or a pair that is not [target, partner] of two tasks."""
    if pairs is not None and (targets is not None or partners is not None):
        raise ScorerError(f"li.pairs: gives the pairs itself; drop li.{'targets' if targets is not None else 'partners'}")
    if rank_by is not None and partners is None:
        raise ScorerError("li.rank_by: ranks the partners that li.partners keeps, and li.partners is not given")
    for key, value in (("pairs", pairs), ("targets", targets)):
        if value is not None and not len(value):
            raise ScorerError(f"li.{key}: empty, so li would have no run to score (leave li out of scorers instead)")
    chosen = None
    if pairs is not None:
        chosen = []
        for i, pair in enumerate(pairs):
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ScorerError(f"li.pairs[{i}]: expected [target, partner], two different tasks, got {list(pair)}")
            chosen.append((pair[0], pair[1]))
        if len(set(chosen)) != len(chosen):
            twice = next(p for p in chosen if chosen.count(p) > 1)
            raise ScorerError(f"li.pairs: {list(twice)} is given twice")
        chosen = tuple(chosen)
    if targets is not None and len(set(targets)) != len(targets):
        raise ScorerError(f"li.targets: a task is given twice in {list(targets)}")
    if chosen is None and targets is None and partners is None and budget is None:
        return None
    return LiChoice(chosen, None if targets is None else tuple(targets), partners, rank_by or "td", budget)


@register
class LabelInjection(Scorer):
    name = "li"
    needs = Needs(stl=True, li=True)
    partial = True  # pairs without an LI run are left out (unknown), not scored

    def requirements(self, seeds: list[int] | None = None, pairs: list[list[str]] | None = None,
                     targets: list[str] | None = None, partners: int | None = None, rank_by: str | None = None,
                     budget: int | None = None, **options) -> Needs:
        """STL and LI runs of `seeds` (default: every seed), LI runs for the pairs the options
        choose (`li_choice`; default every ordered pair, n(n-1) per seed)."""
        return Needs(stl=True, li=True, seeds=None if seeds is None else tuple(seeds),
                     li_choice=li_choice(pairs, targets, partners, rank_by, budget))

    def compute(self, artifacts: Artifacts, seeds: list[int] | None = None, pairs: list[list[str]] | None = None,
                targets: list[str] | None = None, partners: int | None = None, rank_by: str | None = None,
                budget: int | None = None) -> dict[tuple[str, str], float]:
        """The pairs with an LI run and the target's STL run on some seed (the options choosing the
        pairs are the planner's: what was trained is what is scored)."""
        per_seed = {}
        for runs in artifacts.seeds:
            if seeds is not None and runs.seed not in seeds:
                continue
            table = {}
            for (target, partner), li in runs.li.items():
                if target in runs.stl:
                    table[target, partner] = relative_gain(runs.stl[target].test_losses[target], li.test_losses[target])
            if table:
                per_seed[runs.seed] = table
        values = self.seed_mean(per_seed)
        self.details = {"pairs": len(values), "of": len(artifacts.ordered_pairs())}
        return values
