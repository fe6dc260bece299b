"""Training the planned runs on Ray: one Tune trial per run, fractional resources, retries.

Each trial opens its splits through the sweep's `SharedData` (the object store, memory-mapped
shards or a stream; engine/data.py). A run with a fraction of a GPU caps its own CUDA memory at
that fraction, since Ray does not isolate GPU memory between the runs it packs on one device.
A trial trains with the plain loop (`training.loop.train`), checkpointing each epoch into the run's
directory, and records its result in the `ResultStore` under the run's key. With
`resources.workers > 0` a trial instead fits a Ray Train TorchTrainer with that many DDP workers
(instrumented runs, which need one process, stay on the trial). The store, not Tune's
experiment state, decides what is done: a re-run skips every run with a stored result, and Tune
starts a fresh experiment each time (its own restore can fail after a hard kill).
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import ray
import torch
from ray import tune
from ray.util import metrics

from raytaskaff.config import SweepConfig
from raytaskaff.engine import tracking
from raytaskaff.engine.cluster import WaitingReporter
from raytaskaff.engine.data import SharedData
from raytaskaff.plan import Run
from raytaskaff.store import NOT_WRITABLE, ResultStore, StoreError
from raytaskaff.training.loop import DataSplits, RunResult, RunSpec, TrainConfig, train


@dataclass
class Execution:
    """What happened to the runs of one call: trained now, already stored, failed (with errors)."""

    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0


def train_config(config: SweepConfig, device: str, probes: bool) -> TrainConfig:
    """The training loop's config: the sweep's hyper-parameters plus what the engine decides."""
    return TrainConfig(**dataclasses.asdict(config.training), device=device, normalisation=config.data.normalisation,
                       probes=config.probes if probes else None, input=config.data.input, tasks=config.declared_tasks)


def cap_cuda_memory(fraction: float, device: str) -> None:
    """Let this process allocate at most `fraction` of the GPU's memory (a fractional run packed
    with others on one GPU then fails alone with an out-of-memory error instead of starving them)."""
    if 0 < fraction < 1 and device.startswith("cuda"):
        torch.cuda.set_per_process_memory_fraction(fraction, torch.device(device))


def _train_here(run: Run, shared: SharedData, stats: dict, sweep: SweepConfig, folder, on_epoch=None) -> RunResult:
    """Train one run in this process (a Tune trial, or one Ray Train worker of a DDP run)."""
    torch.set_num_threads(max(1, int(sweep.resources.cpus_per_run)))
    data = DataSplits(*(shared.open(s) for s in ("train", "val", "test")), stats=stats, fields=shared.field_specs())
    device = "cuda" if sweep.resources.gpus_per_run > 0 and torch.cuda.is_available() else "cpu"
    if device == "cuda" and sweep.resources.workers:
        from ray.train.torch import get_device

        device = str(get_device())
    if device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"  # the GPU Ray assigned (CUDA_VISIBLE_DEVICES)
    cap_cuda_memory(sweep.resources.gpus_per_run, device)
    return train(RunSpec(run.tasks, run.inject), sweep.model.build(), train_config(sweep, device, run.probes), data, run.seed,
                 checkpoint=folder / "checkpoint.pt", model_path=folder / "model.pt", on_epoch=on_epoch)


def _ddp_worker(loop_config: dict) -> dict | None:
    """A Ray Train worker: the process group is set up, so `train` runs DistributedDataParallel."""
    result = _train_here(**loop_config)
    return result.to_dict() if ray.train.get_context().get_world_rank() == 0 else None


def train_with_ray_train(run: Run, shared: SharedData, stats: dict, sweep: SweepConfig, folder) -> RunResult:
    """One run on `sweep.resources.workers` Ray Train workers (TorchTrainer, DDP). A fixed cost of
    20-30 s makes this the path for runs too large for one device, not for small ones."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    r = sweep.resources
    per_worker = {"CPU": r.cpus_per_run, **({"GPU": r.gpus_per_run} if r.gpus_per_run else {})}
    trainer = TorchTrainer(
        _ddp_worker,
        train_loop_config={"run": run, "shared": shared, "stats": stats, "sweep": sweep, "folder": folder},
        scaling_config=ScalingConfig(num_workers=r.workers, use_gpu=r.gpus_per_run > 0, resources_per_worker=per_worker),
        run_config=RunConfig(name=f"raytaskaff-{run.key}", storage_path=str(folder / "ray_train")),
    )
    result = RunResult.from_dict(trainer.fit().return_value)
    result.device_seconds *= r.workers  # rank 0 measured its own share; the workers are alike
    return result


def _trial(trial_config: dict, shared: SharedData, stats: dict, sweep: SweepConfig, store_uri: str) -> None:
    """One Tune trial: train one run and store its result (resuming from its checkpoint)."""
    run = Run(**{k: tuple(v) if isinstance(v, list) else v for k, v in trial_config["run"].items()})
    store = ResultStore(store_uri)
    try:
        folder = store.run_dir(run.key)
        attempts = _count_attempt(folder / "attempts")
        if sweep.resources.workers and not run.probes:
            result = train_with_ray_train(run, shared, stats, sweep, folder)
        else:
            result = _train_here(run, shared, stats, sweep, folder,
                                 on_epoch=lambda epoch, record: tune.report(tracking.epoch_metrics(epoch, record)))
        threads = max(1, int(sweep.resources.cpus_per_run)) * max(1, sweep.resources.workers)
        store.save(run.key, result, kind=str(run.kind), label=run.label, node=ray.util.get_node_ip_address(),
                   node_id=ray.get_runtime_context().get_node_id(), attempts=attempts,
                   threads=threads, memory=process_memory())
        (folder / "checkpoint.pt").unlink(missing_ok=True)
    except Exception:
        store.check_writable()  # a full or read-only store says so (StoreError), which stops the sweep
        raise


def process_memory() -> dict[str, float]:
    """This process's memory in MiB (Linux /proc): peak resident set, and now its private memory
    (anon: heap, batches, the model), pages of mapped files (file: memory-mapped shards, shared
    through the page cache) and shared memory (shmem: Ray's object store). Empty elsewhere."""
    fields = {"VmHWM": "peak_rss_mb", "RssAnon": "rss_anon_mb", "RssFile": "rss_file_mb", "RssShmem": "rss_shmem_mb"}
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in fields:
                    out[fields[name]] = round(int(value.split()[0]) / 1024, 1)  # kB
    except OSError:
        return {}
    return out


def _count_attempt(path) -> int:
    """This attempt's number (1 for the first), recorded atomically in `path`: a full disk keeps the
    previous count instead of leaving an empty file."""
    text = path.read_text().strip() if path.exists() else ""
    attempts = int(text) + 1 if text.isdigit() else 1
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(str(attempts))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return attempts


class _StopWhenStoreFails(tune.Stopper):
    """Ends the experiment once a trial found the result store unwritable: every run after it would
    fail the same way."""

    def __init__(self) -> None:
        self.error: str | None = None

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.error is not None


class _Progress(tune.Callback):
    """Runs done / total with an ETA on the terminal, and Ray metrics for the dashboard: counters
    of runs done and failed, and gauges by kind (stl, pair, all, li, group) of the runs of this
    call (`raytaskaff_runs_planned_by_kind`, those already stored included) and of those done
    (`raytaskaff_runs_done_by_kind`, stored or trained). Gauges, not counters, since they say
    where the sweep stands (a resumed sweep starts with its stored runs done); a later call sets
    the kinds it trains."""

    def __init__(self, runs: list[Run], pending: list[Run], say, stopper: _StopWhenStoreFails) -> None:
        """runs: those of this call; pending: those of them to train (the others are stored)."""
        self.total, self.labels, self.say, self.stopper = len(pending), {r.key: r.label for r in pending}, say, stopper
        self.done = self.failed = 0
        self.start = time.perf_counter()
        self.done_counter = metrics.Counter("raytaskaff_runs_done", description="Sweep runs finished")
        self.failed_counter = metrics.Counter("raytaskaff_runs_failed", description="Sweep runs failed after retries")
        self.planned_gauge = metrics.Gauge("raytaskaff_runs_planned_by_kind", description="Sweep runs to have, by kind",
                                           tag_keys=("kind",))
        self.done_gauge = metrics.Gauge("raytaskaff_runs_done_by_kind", description="Sweep runs stored, by kind",
                                        tag_keys=("kind",))
        waiting = {r.key for r in pending}
        self.done_by_kind = Counter(str(r.kind) for r in runs if r.key not in waiting)
        for kind, n in Counter(str(r.kind) for r in runs).items():
            self.planned_gauge.set(n, tags={"kind": kind})
            self.done_gauge.set(self.done_by_kind[kind], tags={"kind": kind})

    def _line(self, trial, status: str) -> None:
        finished = self.done + self.failed
        elapsed = time.perf_counter() - self.start
        eta = elapsed / finished * (self.total - finished) if finished else float("nan")
        label = self.labels.get(trial.config["run"]["key"], "?")
        self.say(f"[{finished}/{self.total}] {status:6} {label}  (elapsed {elapsed:.0f} s, ETA {eta:.0f} s)")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.done += 1
        self.done_counter.inc()
        kind = str(trial.config["run"]["kind"])
        self.done_by_kind[kind] += 1
        self.done_gauge.set(self.done_by_kind[kind], tags={"kind": kind})
        self._line(trial, "done")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.failed += 1
        self.failed_counter.inc()
        self._line(trial, "FAILED")
        store_error = _store_error(str(trial.get_error() or ""))
        if store_error and self.stopper.error is None:
            self.stopper.error = store_error
            self.say(f"stopping: {store_error}")


def _store_error(text: str) -> str | None:
    """The StoreError line of a trial's error text, without its class name, or None."""
    for line in reversed(text.strip().splitlines()):
        if f"{StoreError.__name__}: " in line and NOT_WRITABLE in line:
            return line.split(f"{StoreError.__name__}: ", 1)[1].strip()
    return None


def train_runs(config: SweepConfig, runs: list[Run], store: ResultStore, shared: SharedData, stats: dict,
               tune_dir: str, say=print) -> Execution:
    """Train every run without a stored result as a Tune trial; return what happened.

    shared: the splits, from `engine.data.share_splits`; stats: the manifest's statistics."""
    start = time.perf_counter()
    execution = Execution(skipped=[r.key for r in runs if store.has(r.key)])
    pending = [r for r in runs if r.key not in set(execution.skipped)]
    if not pending:
        return execution
    stopper = _StopWhenStoreFails()
    trainable = tune.with_parameters(_trial, shared=shared, stats=stats, sweep=config, store_uri=store.uri)
    own = {"CPU": config.resources.cpus_per_run, **({"GPU": config.resources.gpus_per_run} if config.resources.gpus_per_run else {})}

    def resources(trial_config: dict) -> tune.PlacementGroupFactory:
        # a DDP trial only launches a TorchTrainer, whose workers hold the resources
        ddp = config.resources.workers and not trial_config["run"]["probes"]
        return tune.PlacementGroupFactory([{"CPU": 0.01} if ddp else own])

    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={"run": tune.grid_search([dataclasses.asdict(r) for r in pending])},
        tune_config=tune.TuneConfig(max_concurrent_trials=config.resources.max_concurrent, reuse_actors=True,
                                    trial_name_creator=tracking.trial_name, trial_dirname_creator=tracking.trial_dirname),
        run_config=tune.RunConfig(
            name=f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}", storage_path=os.path.abspath(tune_dir),
            failure_config=tune.FailureConfig(max_failures=config.retries),
            callbacks=[_Progress(runs, pending, say, stopper), WaitingReporter(own, say), *tracking.callbacks(config)],
            stop=stopper, verbose=0,
        ),
    )
    grid = tuner.fit()
    if stopper.error is not None:
        stored = sum(store.has(r.key) for r in pending)
        raise StoreError(f"{stopper.error}; {stored} of {len(pending)} runs were stored before it and are kept: "
                         "make room and run the same command again to resume")
    errors = {}
    for result in grid:
        if result.error is not None:
            errors[result.config["run"]["key"]] = str(result.error).strip().splitlines()[-1][:500]
    for run in pending:
        if store.has(run.key):
            execution.trained.append(run.key)
        else:
            execution.failed[run.key] = errors.get(run.key, "no result was stored")
    execution.wall_seconds = time.perf_counter() - start
    return execution
