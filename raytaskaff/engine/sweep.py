"""A whole sweep on Ray: data, runs, scorers, ground truth, evaluation, outputs.

Data flows one way: config -> plan -> runs on Ray -> store -> scorers -> evaluation -> outputs.
Each stage's wall-clock time is recorded (`stages` in evaluation.json and the report).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import pandas as pd
import ray

from raytaskaff import __version__
from raytaskaff.config import SweepConfig, to_dict
from raytaskaff.data.shards import Manifest
from raytaskaff.data.verify import verify_once
from raytaskaff.engine.cluster import capacity, connect, probe
from raytaskaff.engine.data import share_splits
from raytaskaff.engine.runs import Execution, train_runs
from raytaskaff.engine.scorers import ModelMappers
from raytaskaff.evaluation import evaluate_all, gains_per_seed, ground_truth
from raytaskaff.evaluation.learning import learning, learning_clause, learning_warnings
from raytaskaff.grouping import GroupingError
from raytaskaff.grouping.validation import (
    affinity_choices,
    baseline_choices,
    best_choices,
    hoa_choices,
    mean_losses,
    realise,
)
from raytaskaff.plan import Run, group_runs, plan
from raytaskaff.plan import summary as runs_by_kind
from raytaskaff.preflight import check_data, check_resources, check_tracking
from raytaskaff.report import write_outputs
from raytaskaff.scorers import Artifacts, SeedRuns, cost_of
from raytaskaff.scorers.base import USER_SCORER_PREFIX, ScorerError, cost_dict, fraction_unit, run_cost
from raytaskaff.settings import RunKind
from raytaskaff.store import ResultStore, StoreError


def prepare_data(config: SweepConfig, say=print) -> tuple[str, Manifest]:
    """The dataset's path or URI and its manifest, rendered first when the config asks for synthetic
    data not yet there."""
    root = config.data.path
    if config.data.kind == "synthetic" and not (Path(root) / "manifest.json").exists():
        from raytaskaff.data.synth import SynthConfig, generate

        say(f"rendering {config.data.n} synthetic views of {config.data.size} px into {root} ...")
        generate(root, SynthConfig(n=config.data.n, size=config.data.size, seed=config.data.seed,
                                   split_fractions=config.data.splits), workers=config.data.workers)
    manifest = Manifest.load(root)
    if config.data.kind == "synthetic":
        params = manifest.producer.get("params", {})
        wanted = {"n": config.data.n, "size": config.data.size, "seed": config.data.seed, "split_fractions": list(config.data.splits)}
        if any(params.get(k) != v for k, v in wanted.items()):
            from raytaskaff.errors import DataError

            raise DataError(f"{root}: holds synthetic data {({k: params.get(k) for k in wanted})}, the config asks for {wanted}")
    return root, manifest


def open_data(config: SweepConfig, say=print) -> tuple[str, Manifest]:
    """The dataset (rendered first if it is synthetic and absent) and its manifest, every shard
    checked against the manifest (size, checksum, columns, class ids) once: shards unchanged since
    an earlier check of the same dataset are trusted (`data.verify`)."""
    root, manifest = prepare_data(config, say)
    verification = verify_once(root, manifest)
    if verification.checked and verification.trusted:
        say(f"checked {verification.checked} changed shards of {root} ({verification.trusted} unchanged since their last check)")
    return root, manifest


def collect(runs: list[Run], store: ResultStore, seeds: tuple[int, ...]) -> list[SeedRuns]:
    """Stored results, grouped by seed the way scorers read them."""
    by_seed = {s: SeedRuns(s) for s in seeds}
    for run in runs:
        result = store.find(run.key)
        if result is None:
            continue
        seed = by_seed[run.seed]
        if run.kind == RunKind.STL:
            seed.stl[run.tasks[0]] = result
        elif run.kind == RunKind.LI:
            seed.li[run.tasks[0], run.inject[0]] = result
        elif run.kind == RunKind.PAIR:
            seed.pairs[run.tasks] = result
        elif run.kind == RunKind.ALL:
            seed.all_tasks = result
    return list(by_seed.values())


def network_losses(runs: list[Run], store: ResultStore, seeds: tuple[int, ...]) -> dict:
    """{seed: {tasks: (val losses, test losses)}} of every stored network without injected labels."""
    out: dict = {s: {} for s in seeds}
    for run in runs:
        if run.seed in out and not run.inject and (result := store.find(run.key)) is not None:
            out[run.seed][run.tasks] = (result.val_losses, result.test_losses)
    return out


def validate_groupings(config: SweepConfig, runs: list[Run], store: ResultStore, tables: dict, costs: dict, train, say=print,
                       content: str | None = None):
    """Choose groups from every affinity table (and HOA), train those not yet trained, and realise
    each grouping on test next to STL, all-in-one and the best selection. Returns (rows, errors,
    the group runs); `train(runs)` trains runs on Ray; content: the dataset's fingerprint."""
    tasks, ks, seeds = tuple(config.tasks), config.grouping.groups, config.grouping_seeds
    choices, errors = affinity_choices(tables, tasks, ks)
    try:
        choices += hoa_choices(mean_losses(network_losses(runs, store, seeds), seeds), tasks, ks)
    except GroupingError as e:
        errors["hoa"] = str(e)
    wanted = [g for c in choices for g in c.groups] + [tuple(tasks)]
    planned = {r.key for r in runs}
    extra = list({r.key: r for r in group_runs(config, wanted, runs, content) if r.key not in planned}.values())
    say(f"grouping: {len(choices)} choices need {len(extra)} more runs, {sum(store.has(r.key) for r in extra)} already stored")
    train(extra)
    losses = network_losses(runs + extra, store, seeds)
    try:
        choices += best_choices(mean_losses(losses, seeds), tasks, ks)
    except GroupingError as e:
        errors["best"] = str(e)
    rows = []
    for choice in baseline_choices(tasks) + choices:
        realised = realise(choice.groups, losses, tasks, seeds)
        cost = costs.get(choice.source, {})
        cost = cost.get(cost.get("fraction_unit") or fraction_unit(costs.get("ground_truth", {})))
        rows.append({"max_groups": choice.max_groups, "source": choice.source,
                     "groups": " | ".join("+".join(g) for g in choice.groups), "networks": len(choice.groups),
                     "test_total": realised["test_total"], "test_total_sd": realised["test_total_sd"],
                     "relative_gain": realised["relative_gain"], "seeds": len(realised["seeds"]),
                     "missing": " | ".join("+".join(g) for g in realised["missing"]), "score_seconds": cost})
    return rows, errors, extra


#: The trial process's memory when its run ended, in MiB (engine.runs.process_memory).
MEMORY_COLUMNS = ("peak_rss_mb", "rss_anon_mb", "rss_file_mb", "rss_shmem_mb")


def _runs_table(runs: list[Run], store: ResultStore, execution: Execution) -> pd.DataFrame:
    rows = []
    for run in runs:
        record = store.record(run.key)
        result = record["result"] if record else None
        rows.append({
            "key": run.key, "kind": str(run.kind), "tasks": "+".join(run.tasks), "inject": "+".join(run.inject), "seed": run.seed,
            "status": "done" if record else "failed", "trained_now": run.key in execution.trained,
            "wall_seconds": result["wall_seconds"] if result else math.nan,
            "cpu_seconds": result.get("cpu_seconds", math.nan) if result else math.nan,
            "gpu_seconds": result.get("gpu_seconds", math.nan) if result else math.nan,
            "node": record.get("node") if record else None, "node_id": record.get("node_id") if record else None,
            "attempts": record.get("attempts") if record else None,
            "retries": (record.get("attempts", 1) - 1) if record else None,
            "best_epoch": result["best_epoch"] if result else None,
            "bundle_size": result.get("bundle_size", 1) if result else None,  # networks trained in its trial
            **{k: (record or {}).get("memory", {}).get(k, math.nan) for k in MEMORY_COLUMNS},
            "test_losses": str(result["test_losses"]) if result else None,
            "error": execution.failed.get(run.key),
        })
    return pd.DataFrame(rows)


def _check_writable(out: Path) -> None:
    """The output directory exists and takes a file, or a one-line StoreError says why not."""
    probe = out / f".write-probe-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as e:
        raise StoreError(f"{out}: cannot write the sweep's outputs ({e.strerror or e})") from None


def scorer_failure(name: str, error: Exception, out: Path) -> str:
    """One line saying why scorer `name` failed. A ScorerError is its own message; anything else
    (a bug in a scorer, the user's code) is its type and first line, its traceback kept in
    OUT/logs/scorer-NAME.txt."""
    if isinstance(error, ScorerError):
        return " ".join(str(error).split())
    log = out / "logs" / f"scorer-{name}.txt"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(traceback.format_exception(error)))
        where = f" (traceback in {log})"
    except OSError:
        where = ""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first}{where}" if first else f"{type(error).__name__}{where}"


def ship_by_value(s) -> None:
    """A scorer from the user's file (not importable on the workers) travels to its actors by value."""
    module = sys.modules.get(type(s).__module__)
    if module is not None and module.__name__.startswith(USER_SCORER_PREFIX):
        ray.cloudpickle.register_pickle_by_value(module)


def start_ray(config: SweepConfig, address: str | None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local Ray of this machine (never
    a stray cluster). A local Ray's dashboard binds to 127.0.0.1, Ray's default: reach a cluster's
    through an SSH tunnel (`ray dashboard cluster.yaml`)."""
    connect(address, config.resources.num_cpus)


def run_sweep(config: SweepConfig, address: str | None = None, say=print) -> dict:
    """Run the whole sweep; returns the evaluation summary written to evaluation.json."""
    stages: dict[str, float] = {}
    start = mark = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[name] = round(now - mark, 2)
        mark = now

    out = Path(config.out)
    on_cluster = address is not None or "RAY_ADDRESS" in os.environ
    if on_cluster and not ray.is_initialized():  # a cluster that does not answer stops the sweep before anything is written
        probe(address or os.environ["RAY_ADDRESS"])
    check_tracking(config)  # a tracking server that does not answer stops the sweep before anything is written
    rendered = config.data.kind == "shards" or (Path(config.data.path) / "manifest.json").exists()
    if not rendered:  # rendering takes a while: first make sure its results can be written
        _check_writable(out)
    root, manifest = open_data(config, say)  # damaged or unfit data stops the sweep before anything is written
    check_data(config, manifest, root)
    stage("data")

    start_ray(config, address)
    content = manifest.fingerprint if config.data.kind == "shards" else None
    for name, why in config.skipped_scorers().items():
        say(f"scorer {name} skipped: {why}")
    runs = plan(config, content)
    check_resources(config, capacity(), sorted(runs_by_kind(runs)))  # a run no node can hold would wait forever
    _check_writable(out)
    store = ResultStore(config.storage or str(out / "store"))
    store.check_writable()
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ctrl-C stops the sweep (KeyboardInterrupt), not just Tune's loop: the store decides what is done,
    # so nothing is lost, and the command says how to resume
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    reader = config.data.resolved_reader(on_cluster)
    say(f"{len(runs)} runs planned, {sum(store.has(r.key) for r in runs)} already stored; trials read the data by {reader}")
    stage("ray start")
    shared = share_splits(root, reader, manifest, window=config.data.shuffle_window, readahead=config.data.readahead)
    execution = train_runs(config, runs, store, shared, manifest.stats, str(out / "tune"), say)
    stage("training")

    seeds = collect(runs, store, config.seeds)
    scores, costs, scorer_errors = {}, {}, {}
    with ModelMappers(shared, actors=config.resources.scorer_actors,
                      num_cpus=min(1.0, config.resources.cpus_per_run), num_gpus=min(config.resources.gpus_per_run, 1.0),
                      input=config.data.input) as mapper:
        artifacts = Artifacts(tuple(config.tasks), seeds, map_models=mapper)
        for name in config.active_scorers:
            options = config.scorer_options(name)
            try:
                s = config.scorer(name)
                ship_by_value(s)
                scores[name] = s.score(artifacts, **options)
                costs[name] = cost_of(scores[name], s.requirements(**options), artifacts)
            except Exception as e:  # a scorer's failure (the user's code included) leaves the others and the report
                scorer_errors[name] = scorer_failure(name, e, out)
                say(f"scorer {name} failed: {scorer_errors[name]}")
    stage("scorers")

    stl = {s.seed: {t: r.test_losses[t] for t, r in s.stl.items()} for s in seeds}
    pairs = {s.seed: {k: r.test_losses for k, r in s.pairs.items()} for s in seeds}
    per_seed = gains_per_seed(stl, pairs)
    truth = ground_truth(per_seed)
    truth_table = {(r.target, r.partner): r.gain for r in truth.itertuples()}
    judged = evaluate_all(
        {int(seed): {(r.target, r.partner): r.gain for r in rows.itertuples()} for seed, rows in per_seed.groupby("seed")},
        {name: {(r.target, r.partner): r.value for r in s.table.itertuples()} for name, s in scores.items()},
        {name: {int(seed): {(r.target, r.partner): r.value for r in rows.itertuples()} for seed, rows in s.per_seed.groupby("seed")}
         for name, s in scores.items() if s.per_seed is not None and len(s.per_seed)},
        bootstrap=config.bootstrap, tasks=list(config.tasks))
    checked = learning({s.seed: {t: r.test_losses[t] for t, r in s.stl.items()} for s in seeds},
                       {s.seed: {t: r.chance_losses[t] for t, r in s.stl.items() if t in r.chance_losses} for s in seeds},
                       list(config.tasks))
    judged["warnings"] = learning_warnings(checked) + judged["warnings"]
    judged["headline"] = learning_clause(checked) + judged["headline"]
    for warning in judged["warnings"]:
        say(f"warning: {warning}")
    gt_cost = cost_dict(run_cost(r for s in seeds for r in [*s.stl.values(), *s.pairs.values()]))
    unit = fraction_unit(gt_cost)
    for c in [*costs.values(), gt_cost]:
        c["fraction_of_ground_truth"] = c[unit] / gt_cost[unit] if gt_cost[unit] else None
        c["fraction_unit"] = unit
    stage("evaluation")

    grouping = None
    if config.grouping.groups:
        affinities = {name: {(r.target, r.partner): r.value for r in s.table.itertuples()} for name, s in scores.items()}
        affinities["ground_truth"] = truth_table
        costs_by_source = {**costs, "ground_truth": dict(gt_cost), "hoa": dict(gt_cost)}

        def train_more(extra: list[Run]) -> None:
            more = train_runs(config, extra, store, shared, manifest.stats, str(out / "tune"), say)
            execution.trained += more.trained
            execution.skipped += more.skipped
            execution.failed.update(more.failed)

        rows, errors, extra = validate_groupings(config, runs, store, affinities, costs_by_source, train_more, say, content)
        runs = runs + extra
        grouping = {"rows": rows, "errors": errors, "seeds": list(config.grouping_seeds)}
        stage("grouping")

    summary = {
        "sweep": config.name, "tasks": list(config.tasks), "seeds": list(config.seeds),
        "headline": judged["headline"], "warnings": judged["warnings"],
        "scorers": judged["scorers"], "noise_ceiling": judged["noise_ceiling"], "comparisons": judged["comparisons"],
        "stability": judged["stability"], "reference": judged["reference"], "learning": checked, "scorer_errors": scorer_errors,
        "costs": {**costs, "ground_truth": dict(gt_cost)},
        "runs": {"planned": len(runs), "trained": len(execution.trained), "skipped": len(execution.skipped),
                 "failed": execution.failed},
        "details": {name: s.details for name, s in scores.items()}, "grouping": grouping,
        "config": to_dict(config), "versions": _versions(), "stages": stages,
    }
    stages["total"] = round(time.perf_counter() - start, 2)
    write_outputs(out, summary, scores, per_seed, truth, _runs_table(runs, store, execution))
    return summary


def _versions() -> dict:
    import numpy
    import pyarrow
    import torch

    return {"raytaskaff": __version__, "ray": ray.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__, "python": platform.python_version(), "machine": platform.platform()}
