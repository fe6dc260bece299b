"""What a grouping is really worth: groups chosen by each affinity, trained, scored on test.

For a number of groups K, each source proposes at most K groups:
- a scorer, or the ground truth's gains: the TAG objective on its affinity table (`select_groups`);
- "hoa": exact network selection at budget K over the single and pairwise networks and the
  larger groups predicted from them (Standley et al.'s higher-order approximation);
- "best": exact network selection at budget K over every network trained (on validation), which
  is the true optimum when every group was trained (`grouping.exhaustive`).
Baselines: "stl" (every task alone: n networks) and "all" (one network for every task).

A grouping is realised per seed like Standley et al. score a selection: each task uses the chosen
network that is best for it on validation, and the total is the sum over tasks of those networks'
test losses. `relative_gain` is the scale-free view: the mean over tasks of
(L_STL(a) - L(a)) / L_STL(a), positive when the grouping beats training every task alone.
Totals and gains are means over the seeds on which every chosen network has a result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raytaskaff.grouping.affinity import GroupingError, select_groups
from raytaskaff.grouping.hoa import select_with_hoa
from raytaskaff.grouping.networks import Network, select_networks

#: Seconds the grouping stage gives the higher-order approximation past 10 tasks (see `select_with_hoa`).
HOA_TIME_LIMIT_S = 60.0

#: {seed: {group (tasks in sweep order): (val losses, test losses)}}
Losses = dict[int, dict[tuple[str, ...], tuple[dict[str, float], dict[str, float]]]]


@dataclass(frozen=True)
class Choice:
    """The groups one source proposes at `max_groups` (tasks within a group in sweep order)."""

    source: str
    max_groups: int
    groups: tuple[tuple[str, ...], ...]


def affinity_choices(tables: dict[str, dict[tuple[str, str], float]], tasks: tuple[str, ...],
                     ks: tuple[int, ...]) -> tuple[list[Choice], dict[str, str]]:
    """TAG groupings of every table at every K; a table that cannot be grouped (a missing pair) is
    reported in the errors instead."""
    choices, errors = [], {}
    for name, table in tables.items():
        try:
            choices += [Choice(name, k, select_groups(table, k, tasks).groups) for k in ks]
        except GroupingError as e:
            errors[name] = str(e)
    return choices, errors


def mean_losses(losses: Losses, seeds: tuple[int, ...]) -> dict[tuple[str, ...], tuple[dict, dict]]:
    """Val and test losses per group averaged over `seeds`, for groups trained on all of them."""
    trained = set.intersection(*(set(losses.get(s, {})) for s in seeds)) if seeds else set()
    out = {}
    for g in sorted(trained, key=lambda g: (len(g), g)):
        val = {t: float(np.mean([losses[s][g][0][t] for s in seeds])) for t in g}
        test = {t: float(np.mean([losses[s][g][1][t] for s in seeds])) for t in g}
        out[g] = (val, test)
    return out


def _selection_choice(source: str, candidates: list[Network], names: dict[str, tuple[str, ...]], tasks, k: int) -> Choice:
    selection = select_networks(candidates, float(k), tasks)
    if not selection.networks:
        raise GroupingError(f"{source}: no {k} network(s) cover every task")
    groups = (tuple(t for t in tasks if t in names[n]) for n in selection.networks)
    return Choice(source, k, tuple(sorted(groups, key=lambda g: [tasks.index(t) for t in g])))


def hoa_choices(mean: dict[tuple[str, ...], tuple[dict, dict]], tasks: tuple[str, ...], ks: tuple[int, ...]) -> list[Choice]:
    """The higher-order approximation's selection at each budget K (every network costs 1): every
    group listed up to 10 tasks, a pool of likely groups beyond (`select_with_hoa`)."""
    measured = [Network("+".join(g), 1.0, val, test) for g, (val, test) in mean.items() if len(g) <= 2]
    selections, predicted = select_with_hoa(measured, [float(k) for k in ks], time_limit=HOA_TIME_LIMIT_S)
    names = {c.name: tuple(c.val) for c in measured + predicted}
    choices = []
    for k, selection in zip(ks, selections):
        if not selection.networks:
            raise GroupingError(f"hoa: no {k} network(s) cover every task")
        groups = (tuple(t for t in tasks if t in names[n]) for n in selection.networks)
        choices.append(Choice("hoa", k, tuple(sorted(groups, key=lambda g: [tasks.index(t) for t in g]))))
    return choices


def best_choices(mean: dict[tuple[str, ...], tuple[dict, dict]], tasks: tuple[str, ...], ks: tuple[int, ...]) -> list[Choice]:
    """Exact selection at each budget K over every trained network, on validation losses."""
    candidates = [Network("+".join(g), 1.0, val, test) for g, (val, test) in mean.items()]
    names = {c.name: g for c, g in zip(candidates, mean)}
    return [_selection_choice("best", candidates, names, tasks, k) for k in ks]


def realise(groups: tuple[tuple[str, ...], ...], losses: Losses, tasks: tuple[str, ...], seeds: tuple[int, ...]) -> dict:
    """The grouping's test total and relative gain over STL, per seed and as a mean (see module doc)."""
    per_seed = []
    for seed in seeds:
        trained = losses.get(seed, {})
        if any(g not in trained for g in groups) or any((t,) not in trained for t in tasks):
            continue
        total, gains = 0.0, []
        for t in tasks:
            serving = min((g for g in groups if t in g), key=lambda g: trained[g][0][t])
            loss, stl = trained[serving][1][t], trained[(t,)][1][t]
            total += loss
            gains.append((stl - loss) / stl)
        per_seed.append({"seed": seed, "test_total": total, "relative_gain": float(np.mean(gains))})
    missing = [g for g in groups if any(g not in losses.get(s, {}) for s in seeds)]
    if not per_seed:
        return {"test_total": None, "test_total_sd": None, "relative_gain": None, "seeds": [], "missing": missing}
    totals = [p["test_total"] for p in per_seed]
    return {"test_total": float(np.mean(totals)), "test_total_sd": float(np.std(totals, ddof=1)) if len(totals) > 1 else None,
            "relative_gain": float(np.mean([p["relative_gain"] for p in per_seed])), "seeds": [p["seed"] for p in per_seed],
            "missing": missing}


def baseline_choices(tasks: tuple[str, ...]) -> list[Choice]:
    """Every task alone, and one network for all."""
    return [Choice("stl", len(tasks), tuple((t,) for t in tasks)), Choice("all", 1, (tuple(tasks),))]
