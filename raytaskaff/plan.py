"""From a sweep config to the runs it needs, each with a stable key derived from its content.

Kinds of run, per seed:
- "stl": one per task (the ground truth's baseline, and the networks of ias and rsa);
- "pair": one per unordered pair of tasks (the ground truth), instrumented when a scorer reads
  the pairwise networks' probes; under `ground_truth.pairs` only the pairs it trains
  (`SweepConfig.trained_pairs`, the same on every seed), each keeping the key it has in the
  full plan, so that a larger budget, or none, reuses them;
- "all": the all-task network, instrumented, when a scorer reads it;
- "li": one per ordered (target, partner) a scorer chooses (`Needs.li_choice`: every one by
  default, or li's list, k ranked partners or budget, see `SweepConfig.li_pairs`), on the seeds it
  reads them;
- "group": a network of three or more tasks, for validating groupings (on the grouping seeds):
  the all-task network when no scorer trains it, every such group when `exhaustive`, and later
  the groups the scorers choose (`group_runs`; before the scorers, `most_group_runs` bounds them).
Beyond the ground truth's STL and pair runs, what is trained is what the configured scorers
declare they read (`Scorer.requirements`, on their seeds): the planner names no scorer.

A run's key hashes what decides its result (tasks, injected labels, seed, data, model, training
and probe settings; the definitions of tasks the config declares, an input other than rgb, and the
numerics of a GPU run: device kind, precision and whether it trains stacked with the other
networks of its bundle, see `numerics` and `stacking`),
never the sweep name or output path: the same run in two sweeps has one key,
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
from raytaskaff.sections import SYNTH_SPLITS
from raytaskaff.settings import RunKind


@dataclass(frozen=True)
class Run:
    kind: RunKind
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


def data_identity(config: SweepConfig, content: str | None = None) -> dict:
    """What identifies the data a run sees: the generator's parameters (the rendered directory is
    checked against them), or for shards the manifest's content fingerprint (`Manifest.fingerprint`),
    never the path: moved or copied data keeps its runs, re-converted data retrains. A shuffle
    window other than 0 changes the data order, so it is part of the identity too."""
    d = config.data
    if d.kind == "synthetic":
        identity = {"kind": "synthetic", "n": d.n, "size": d.size, "seed": d.seed, "normalisation": d.normalisation}
        if d.splits != SYNTH_SPLITS:  # the default split keeps the keys it always had
            identity["splits"] = list(d.splits)
    else:
        if content is None:
            raise ValueError("the runs of a shard dataset are keyed by its content: pass its manifest's fingerprint")
        identity = {"kind": "shards", "content": content, "normalisation": d.normalisation}
    if d.shuffle_window:
        identity["shuffle_window"] = d.shuffle_window
    if d.input != "rgb":  # the default input keeps the keys it always had
        identity["input"] = d.input
    return identity


def numerics(config: SweepConfig) -> str:
    """Where and in what precision a sweep's runs compute: "cpu-fp32" without GPUs, else
    "cuda-bf16" (`training.amp`: bf16 autocast) or "cuda-fp32". The training loop decides the
    same way (a run gets CUDA exactly when `resources.gpus_per_run` > 0; autocast only on CUDA);
    what fraction of a GPU a run gets does not change its numerics."""
    if not config.resources.gpus_per_run:
        return "cpu-fp32"
    return "cuda-bf16" if config.training.amp else "cuda-fp32"


def stacking(config: SweepConfig, run: Run) -> str | None:
    """How a run of a GPU sweep is planned to train: "fused" (stacked with the other networks of
    its bundle, `training.fused`) or "separate" (its own module); None on CPUs, whose keys stay
    the ones stores already hold (there `fuse: auto` never stacks, and stacked CPU networks are
    separate ones up to the order of float reductions). On a GPU the two differ beyond that
    (grouped convolutions and bf16 rounding: test losses up to 8.8 % apart after 16 epochs), so
    they are two keys and a store never mixes them. "fused" exactly when the config stacks on
    CUDA (`resources.fuses`), a trial holds more than one network (`bundle_limit`) and the run
    carries no gradient probe (an instrumented network trains on its own, `training.bundle`)."""
    if numerics(config) == "cpu-fp32":
        return None
    r = config.resources
    return "fused" if r.fuses("cuda") and r.bundle_limit > 1 and not run.probes else "separate"


def _key(run: Run, config: SweepConfig, content: str | None) -> str:
    decided = {
        "kind": run.kind, "tasks": list(run.tasks), "inject": list(run.inject), "seed": run.seed,
        "data": data_identity(config, content), "model": dataclasses.asdict(config.model.build()),
        "training": dataclasses.asdict(config.training),
        "probes": config.probes.identity() if run.probes else None,
        "workers": config.resources.workers,
    }
    declared = {t.name: t for t in config.declared_tasks}
    used = [dataclasses.asdict(declared[n]) for n in (*run.tasks, *run.inject) if n in declared]
    if used:  # a declared task is its definition (Taskonomy presets keep the keys they always had)
        decided["declared_tasks"] = used
    if numerics(config) != "cpu-fp32":  # device and precision change the numbers (CPU runs keep their keys)
        decided["numerics"] = numerics(config)
        decided["stacking"] = stacking(config, run)
    text = json.dumps(decided, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def plan(config: SweepConfig, content: str | None = None, every_pair: bool = False) -> list[Run]:
    """Every run of the sweep, in a fixed order (seed by seed; STL, pairs, all-task, LI).

    content: the dataset's fingerprint (`Manifest.fingerprint`), needed for shard datasets;
    every_pair: plan every pair even under a budget (`ground_truth.pairs`), as the full sweep
    would (the grouping stage trains a pair it chooses under the pair run's own key)."""
    needs = list(config.scorer_needs().values())

    def wanted(kind: RunKind, seed: int) -> bool:
        return any(kind in n.run_kinds() and (n.seeds is None or seed in n.seeds) for n in needs)

    # LI pairs: the union of what each need reading LI runs chooses, per need once (a ranking
    # scorer computes once), in plan order; the default chooses every ordered pair.
    li_pairs = [(n, set(config.li_pairs(n))) for n in needs if RunKind.LI in n.run_kinds()]
    trained = None if every_pair or not config.budgeted else {frozenset(p) for p in config.trained_pairs()}
    runs = []
    for seed in config.seeds:
        runs += [Run(RunKind.STL, (t,), seed) for t in config.tasks]
        probed = wanted(RunKind.PAIR, seed)  # a scorer reading pairs reads their probes
        runs += [Run(RunKind.PAIR, pair, seed, probes=probed) for pair in combinations(config.tasks, 2)
                 if trained is None or frozenset(pair) in trained]
        if wanted(RunKind.ALL, seed):
            runs.append(Run(RunKind.ALL, tuple(config.tasks), seed, probes=True))
        if wanted(RunKind.LI, seed):
            chosen = set().union(*(pairs for n, pairs in li_pairs if n.seeds is None or seed in n.seeds))
            runs += [Run(RunKind.LI, (t,), seed, inject=(p,)) for t, p in permutations(config.tasks, 2) if (t, p) in chosen]
        if config.grouping.groups and seed in config.grouping_seeds:
            largest = [tuple(config.tasks)] if not wanted(RunKind.ALL, seed) else []
            if config.grouping.exhaustive:
                largest = [g for k in range(3, len(config.tasks)) for g in combinations(config.tasks, k)] + largest
            runs += [Run(RunKind.GROUP, g, seed) for g in largest]
    return [dataclasses.replace(r, key=_key(r, config, content)) for r in runs]


def group_runs(config: SweepConfig, groups, planned: list[Run], content: str | None = None) -> list[Run]:
    """The runs that train each group of tasks on the grouping seeds: a planned run of the same
    tasks where there is one (STL, pair, all-task or group), else a new "group" run."""
    order = {t: i for i, t in enumerate(config.tasks)}
    existing = {(r.tasks, r.seed): r for r in planned if r.kind != RunKind.LI}
    out = []
    for group in dict.fromkeys(tuple(sorted(g, key=order.__getitem__)) for g in groups):
        for seed in config.grouping_seeds:
            run = existing.get((group, seed)) or Run(RunKind.GROUP, group, seed)
            out.append(run if run.key else dataclasses.replace(run, key=_key(run, config, content)))
    return out


def grouping_sources(config: SweepConfig) -> tuple[str, ...]:
    """Whose groupings the grouping stage trains (`pipeline.validate_groupings`): every scorer
    the sweep runs, the ground truth's gains and the higher-order approximation ("hoa"). The
    "best" selection picks among networks already trained, so it adds no run."""
    return (*config.active_scorers, "ground_truth", "hoa") if config.grouping.groups else ()


def most_group_runs(config: SweepConfig, planned: list[Run], content: str | None = None) -> list[Run]:
    """The most runs the grouping stage can add to `planned`: as many as the sources can choose,
    of the largest groups they could choose, so that their count and their cost bound the real ones.

    Which groups the sources choose is known only after the scorers. What is known before: for K
    groups, a source chooses at most K (TAG's may overlap, each serving a task of its own), and
    for K = 1 the one network of every task; groups of one and two tasks, and of every task, are
    planned runs (STL, pair, all-task or group) on every grouping seed, and so, under
    `exhaustive`, is every other group; each remaining group of 3 to n - 1 tasks is one new run on
    each grouping seed (`group_runs`, which the grouping stage calls)."""
    n = len(config.tasks)
    if not config.grouping.groups or config.grouping.exhaustive or n < 4:
        return []
    most = len(grouping_sources(config)) * sum(min(k, n) for k in config.grouping.groups if k > 1)
    largest = (g for size in range(n - 1, 2, -1) for g in combinations(config.tasks, size))
    groups = [g for _, g in zip(range(most), largest)]
    known = {r.key for r in planned}
    return list({r.key: r for r in group_runs(config, groups, planned, content) if r.key not in known}.values())


def summary(runs: list[Run]) -> dict[str, int]:
    """Runs per kind."""
    return {str(kind): n for kind, n in Counter(r.kind for r in runs).items()}


@dataclass(frozen=True)
class Bundle:
    """Runs trained together in one trial: one seed and data order, and one input shape (all
    without injected labels, or all label-injection runs; the trainer stacks those with the same
    number of injected channels). Its key names its runs (`Run.key`, sorted)."""

    runs: tuple[Run, ...]

    @property
    def key(self) -> str:
        return hashlib.sha256("/".join(sorted(r.key for r in self.runs)).encode()).hexdigest()[:20]

    @property
    def label(self) -> str:
        if len(self.runs) == 1:
            return self.runs[0].label
        kinds = ", ".join(f"{n} {kind}" for kind, n in Counter(str(r.kind) for r in self.runs).items())
        return f"bundle of {len(self.runs)} seed {self.runs[0].seed} ({kinds})"


def bundles(runs: list[Run], limit: int | None = None, fits=None, slots: int | None = None) -> list[Bundle]:
    """The runs grouped into bundles, in plan order: per seed, the runs without injected labels
    (STL, pair, all-task, group) and the label-injection runs, each cut into bundles of at most
    `limit` runs (None: no limit; 1: one run per trial). Runs of one seed share initial weights
    and data order ("paired seeds"), which is what lets them read each batch once.

    fits: optional test of a candidate bundle (a list of runs) against its trial's memory
    (`training.memory_table.fitter`): a run that would not fit starts a new bundle (a run alone always
    forms one). slots: trials that run at once; while there are fewer bundles than slots, or one
    holds more than an even share of the runs over the slots, the largest bundle is cut in two
    (never fewer trials than devices when there are enough runs, and no trial far longer than
    the others: a bundle's networks share one device, so an idle device is lost time)."""
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault((r.seed, bool(r.inject)), []).append(r)
    out: list[list[Run]] = []
    for g in groups.values():
        current: list[Run] = []
        for r in g:
            if current and ((limit is not None and len(current) >= limit) or (fits is not None and not fits([*current, r]))):
                out.append(current)
                current = []
            current.append(r)
        if current:
            out.append(current)
    even = -(-len(runs) // slots) if slots else None  # networks per trial were they spread evenly
    while slots is not None and any(len(b) > 1 for b in out) and (len(out) < slots or max(map(len, out)) > even):
        largest = max(range(len(out)), key=lambda i: len(out[i]))
        b = out[largest]
        out[largest:largest + 1] = [b[:(len(b) + 1) // 2], b[(len(b) + 1) // 2:]]
    return [Bundle(tuple(b)) for b in out]
