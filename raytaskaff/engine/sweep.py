"""A whole sweep on Ray: the stages of `raytaskaff.pipeline` in order, around the two that need
Ray (training the runs as Tune trials, mapping the scorers' networks on actors).

Each stage's wall-clock time is recorded (`stages` in evaluation.json, the report and the
sweep's last lines).
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from pathlib import Path

import ray

from raytaskaff import __version__
from raytaskaff.config import SweepConfig
from raytaskaff.data.shards import Manifest
from raytaskaff.engine.cluster import capacity, connect, probe
from raytaskaff.engine.data import share_splits
from raytaskaff.engine.runs import Execution, train_runs
from raytaskaff.engine.scorers import ModelMappers
from raytaskaff.pipeline import (
    Results,
    Scored,
    SeedRuns,
    Stages,
    collect,
    group,
    judge,
    open_data,
    price,
    runs_table,
    score,
    summarise,
)
from raytaskaff.plan import Run, plan
from raytaskaff.plan import summary as runs_by_kind
from raytaskaff.names import longest_paths
from raytaskaff.preflight import check_data, check_path_lengths, check_resources, check_scorers, check_tracking
from raytaskaff.report import write_outputs
from raytaskaff.scorers import Artifacts
from raytaskaff.scorers.base import USER_SCORER_PREFIX
from raytaskaff.store import ResultStore, WriterLock, written_folders


def ship_by_value(s) -> None:
    """A scorer from the user's file (not importable on the workers) travels to its actors by value."""
    module = sys.modules.get(type(s).__module__)
    if module is not None and module.__name__.startswith(USER_SCORER_PREFIX):
        ray.cloudpickle.register_pickle_by_value(module)


class Training:
    """Trains runs as Tune trials into the store, adding up what happened over every call (the
    planned runs, then the grouping stage's)."""

    def __init__(self, config: SweepConfig, store: ResultStore, shared, stats: dict, say=print) -> None:
        self.config, self.store, self.shared, self.stats, self.say = config, store, shared, stats, say
        self.execution = Execution()

    def __call__(self, runs: list[Run]) -> None:
        more = train_runs(self.config, runs, self.store, self.shared, self.stats, str(Path(self.config.out) / "tune"), self.say)
        self.execution.trained += more.trained
        self.execution.skipped += more.skipped
        self.execution.failed.update(more.failed)

    def counts(self, planned: int) -> dict:
        e = self.execution
        return {"planned": planned, "trained": len(e.trained), "skipped": len(e.skipped), "failed": e.failed}


def run_sweep(config: SweepConfig, address: str | None = None, say=print) -> dict:
    """Run the whole sweep; returns the evaluation summary written to evaluation.json.

    The sweep is the one writer of its output folder and its local store (`store.WriterLock`)
    from its first write to its last: a second sweep on either is refused in one line naming the
    first, and a read-only or full one is refused, both before Ray starts."""
    stages = Stages()
    on_cluster = address is not None or "RAY_ADDRESS" in os.environ
    _check_services(config, address, on_cluster)
    rendered = config.data.kind == "shards" or (Path(config.data.path) / "manifest.json").exists()
    with contextlib.ExitStack() as held:
        data = _check_data(config, say) if rendered else None  # unfit data: refused before anything is written
        for folder, what in written_folders(config.out, config.storage):
            held.enter_context(WriterLock(folder, what, config.name))
        if data is None:  # rendering takes a while: the outputs are known writable first
            data = _check_data(config, say)
        stages.done("data")
        return _sweep(config, address, on_cluster, *data, stages, say)


def _sweep(config: SweepConfig, address: str | None, on_cluster: bool, root: str, manifest: Manifest, stages: Stages,
           say) -> dict:
    out = Path(config.out)
    content = manifest.fingerprint if config.data.kind == "shards" else None
    runs, store = _start(config, address, content, on_cluster, say)
    stages.done("ray start")
    shared = share_splits(root, config.data.resolved_reader(on_cluster), manifest, window=config.data.shuffle_window,
                          readahead=config.data.readahead)
    train = Training(config, store, shared, manifest.stats, say)
    train(runs)
    stages.done("training")

    results = Results(store, runs)
    seeds = collect(runs, results, config.seeds)
    scored = _score(config, seeds, shared, say)
    stages.done("scorers")
    judged = judge(config, seeds, scored, say)
    truth_cost = price(scored, seeds)
    stages.done("evaluation")
    grouping, extra = group(config, runs, results, scored, judged, truth_cost, train, say, content)
    if grouping is not None:
        stages.done("grouping")

    runs = runs + extra
    summary = summarise(config, scored, judged, truth_cost, grouping, train.counts(len(runs)), _versions(), stages.seconds)
    stages.close()
    write_outputs(out, summary, scored.scores, judged.per_seed, judged.truth,
                  runs_table(runs, results, train.execution.trained, train.execution.failed))
    return summary


def _check_services(config: SweepConfig, address: str | None, on_cluster: bool) -> None:
    """The users' scorers load, the paths the sweep writes fit the file system, and the cluster
    and the tracking server answer: else the sweep stops before anything is written."""
    check_scorers(config)
    check_path_lengths(longest_paths(config.out, config.storage, config.name))
    if on_cluster and not ray.is_initialized():
        probe(address or os.environ["RAY_ADDRESS"])
    check_tracking(config)


def _check_data(config: SweepConfig, say) -> tuple[str, Manifest]:
    """The dataset, open and checked (rendered first if synthetic and not there yet): damaged or
    unfit data stops the sweep before Ray starts."""
    root, manifest = open_data(config, say)
    check_data(config, manifest, root)
    return root, manifest


def _start(config: SweepConfig, address: str | None, content: str | None, on_cluster: bool, say) -> tuple[list[Run], ResultStore]:
    """The store ready (a read-only or full one, local or remote, stops the sweep before Ray
    starts), Ray joined (or started locally) and the runs planned. A run no node can hold would
    wait forever: it stops the sweep here."""
    uri = config.storage or str(Path(config.out) / "store")
    if "://" in uri:  # a local store is known writable already: its lock was written (`run_sweep`)
        store = ResultStore(uri)
        store.check_writable()
    connect(address, config.resources.num_cpus)
    for name, why in config.skipped_scorers().items():
        say(f"scorer {name} skipped: {why}")
    runs = plan(config, content)
    check_resources(config, capacity(), sorted(runs_by_kind(runs)))
    if "://" not in uri:
        store = ResultStore(uri)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ctrl-C stops the sweep (KeyboardInterrupt), not just Tune's loop: the store decides what is done,
    # so nothing is lost, and the command says how to resume
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    reader = config.data.resolved_reader(on_cluster)
    say(f"{len(runs)} runs planned, {sum(store.has(r.key) for r in runs)} already stored; trials read the data by {reader}")
    return runs, store


def _score(config: SweepConfig, seeds: list[SeedRuns], shared, say) -> Scored:
    """Every active scorer, the networks they read mapped on Ray actors."""
    r = config.resources
    with ModelMappers(shared, actors=r.scorer_actors, num_cpus=min(1.0, r.cpus_per_run), num_gpus=min(r.gpus_per_run, 1.0),
                      input=config.data.input, say=say) as mapper:
        return score(config, Artifacts(tuple(config.tasks), seeds, map_models=mapper), Path(config.out), say, before=ship_by_value)


def _versions() -> dict:
    import numpy
    import pyarrow
    import torch

    return {"raytaskaff": __version__, "ray": ray.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__, "python": platform.python_version(), "machine": platform.platform()}
