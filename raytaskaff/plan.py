"""From a sweep config to the runs it needs, each with a stable key derived from its content.

Kinds of run, per seed:
- "stl": one per task (the ground truth's baseline, and the networks of ias and rsa);
- "pair": one per unordered pair of tasks (the ground truth), instrumented when a gradient
  scorer reads pairs;
- "all": the all-task network, instrumented, when a gradient scorer reads it;
- "li": one per ordered (target, partner), for the seeds the li scorer names (default: all);
- "group": a network of three or more tasks, for validating groupings (on the grouping seeds):
  the all-task network when no gradient scorer trains it, every such group when `exhaustive`,
  and later the groups the scorers choose (`group_runs`).

A run's key hashes what decides its result (tasks, injected labels, seed, data, model, training
and probe settings), never the sweep name or output path: the same run in two sweeps has one key,
and a changed setting gives a new key instead of reusing a stale result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from itertools import combinations, permutations

from raytaskaff.config import SweepConfig

GRADIENT_SCORERS = ("gs", "gt", "etap")


@dataclass(frozen=True)
class Run:
    kind: str
    tasks: tuple[str, ...]
    seed: int
    inject: tuple[str, ...] = ()
    probes: bool = False
    key: str = ""

    @property
    def label(self) -> str:
        tasks = "+".join(self.tasks)
        if self.inject:
            tasks += "<-" + "+".join(self.inject)
        return f"{self.kind} {tasks} seed {self.seed}"


def data_identity(config: SweepConfig) -> dict:
    """What identifies the dataset: the generator's parameters, or the shard directory."""
    d = config.data
    if d.kind == "synthetic":
        return {"kind": "synthetic", "n": d.n, "size": d.size, "seed": d.seed, "normalisation": d.normalisation}
    return {"kind": "shards", "path": d.path, "normalisation": d.normalisation}


def _key(run: Run, config: SweepConfig) -> str:
    content = {
        "kind": run.kind, "tasks": list(run.tasks), "inject": list(run.inject), "seed": run.seed,
        "data": data_identity(config), "model": dataclasses.asdict(config.model.build()),
        "training": dataclasses.asdict(config.training),
        "probes": dataclasses.asdict(config.probes) if run.probes else None,
        "workers": config.resources.workers,
    }
    text = json.dumps(content, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def plan(config: SweepConfig) -> list[Run]:
    """Every run of the sweep, in a fixed order (seed by seed; STL, pairs, all-task, LI)."""
    sources = {config.scorers[n].get("source", "all") for n in GRADIENT_SCORERS if n in config.scorers}
    li_seeds = set(config.scorers["li"].get("seeds", config.seeds)) if "li" in config.scorers else set()
    runs = []
    for seed in config.seeds:
        runs += [Run("stl", (t,), seed) for t in config.tasks]
        runs += [Run("pair", pair, seed, probes="pairs" in sources) for pair in combinations(config.tasks, 2)]
        if "all" in sources:
            runs.append(Run("all", tuple(config.tasks), seed, probes=True))
        if seed in li_seeds:
            runs += [Run("li", (t,), seed, inject=(p,)) for t, p in permutations(config.tasks, 2)]
        if config.grouping.groups and seed in config.grouping_seeds:
            largest = [tuple(config.tasks)] if "all" not in sources else []
            if config.grouping.exhaustive:
                largest = [g for k in range(3, len(config.tasks)) for g in combinations(config.tasks, k)] + largest
            runs += [Run("group", g, seed) for g in largest]
    return [dataclasses.replace(r, key=_key(r, config)) for r in runs]


def group_runs(config: SweepConfig, groups, planned: list[Run]) -> list[Run]:
    """The runs that train each group of tasks on the grouping seeds: a planned run of the same
    tasks where there is one (STL, pair, all-task or group), else a new "group" run."""
    order = {t: i for i, t in enumerate(config.tasks)}
    existing = {(r.tasks, r.seed): r for r in planned if r.kind in ("stl", "pair", "all", "group")}
    out = []
    for group in dict.fromkeys(tuple(sorted(g, key=order.__getitem__)) for g in groups):
        for seed in config.grouping_seeds:
            run = existing.get((group, seed)) or Run("group", group, seed)
            out.append(run if run.key else dataclasses.replace(run, key=_key(run, config)))
    return out


#: Training samples per second of one CPU core, model "small" at 32 px, by the run's task count
#: (docs/benchmarks.md, bench.training); beyond two tasks about 2700 / tasks.
CPU_SAMPLES_PER_SECOND = {1: 1500.0, 2: 950.0}


def cpu_seconds(run: Run, config: SweepConfig, views: int, size: int) -> float:
    """Estimated CPU core-seconds of one run of the "small" model on `views` training views of
    `size` px (instrumented runs cost about 1.5x, pixels scale the cost)."""
    tasks = len(run.tasks)  # an injected label widens only the first convolution
    rate = CPU_SAMPLES_PER_SECOND.get(tasks, 2700.0 / tasks)
    return views * config.training.epochs / rate * (1.5 if run.probes else 1.0) * (size / 32) ** 2


def summary(runs: list[Run]) -> dict[str, int]:
    """Runs per kind."""
    return dict(Counter(r.kind for r in runs))
