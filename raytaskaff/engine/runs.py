"""Training the planned runs on Ray: one Tune trial per bundle, fractional resources, retries.

The runs of a call are grouped into bundles (`plan.bundles`, `resources.bundle`): the networks of
one seed and input, trained in one trial by `training.bundle.train_bundle`, each batch read once
and, on a GPU, the networks stacked into one module (`resources.fuse`). Each trial opens its
splits through the sweep's `SharedData` (the object store, memory-mapped shards or a stream;
engine/data.py). A trial with a fraction of a GPU caps its own CUDA memory at that fraction, since
Ray does not isolate GPU memory between the trials it packs on one device. Every network
checkpoints each epoch into its own run directory and its result is stored in the `ResultStore`
under its own key; a network that fails fails alone, and the retry trains only what is missing.
With `resources.workers > 0` a trial (of one run) instead fits a Ray Train TorchTrainer with that
many DDP workers (instrumented runs, which need one process, stay on the trial). The store, not
Tune's experiment state, decides what is done: a re-run skips every run with a stored result, and
Tune starts a fresh experiment each time (its own restore can fail after a hard kill).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import ray
import torch
from ray import tune
from ray.util import metrics

from raytaskaff.atomic import write_bytes
from raytaskaff.config import SweepConfig
from raytaskaff.engine import tracking
from raytaskaff.engine.cluster import WaitingReporter
from raytaskaff.engine.data import SharedData
from raytaskaff.errors import RaytaskaffError
from raytaskaff.estimate import longest_first
from raytaskaff.names import experiment_name, run_title
from raytaskaff.plan import Bundle, Run, bundles, numerics
from raytaskaff.store import NOT_WRITABLE, ResultStore, StoreError, staged_network
from raytaskaff.training.bundle import Member, TrainingDiverged, train_bundle
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
                       probes=config.probes if probes else None, input=config.data.input, tasks=config.declared_tasks,
                       gpu_fraction=config.resources.gpus_per_run or 1.0, gather_threads=config.data.gather_threads)


def cap_cuda_memory(fraction: float, device: str) -> None:
    """Let this process allocate at most `fraction` of the GPU's memory (a fractional run packed
    with others on one GPU then fails alone with an out-of-memory error instead of starving them)."""
    if 0 < fraction < 1 and device.startswith("cuda"):
        torch.cuda.set_per_process_memory_fraction(fraction, torch.device(device))


def _open(shared: SharedData, stats: dict) -> DataSplits:
    return DataSplits(*(shared.open(s) for s in ("train", "val", "test")), stats=stats, fields=shared.field_specs())


#: Set to 1, a run planned for CUDA on a node without it trains on the CPU (and records "cpu"):
#: for rehearsing the engine on Ray's logical GPUs (tests, fake clusters), never for results.
CPU_FOR_LOGICAL_GPUS = "RAYTASKAFF_CPU_FOR_LOGICAL_GPUS"


class NoCuda(RaytaskaffError):
    """A run planned for CUDA landed on a node where CUDA does not work."""


def _device(sweep: SweepConfig) -> str:
    """This process's training device: the GPU Ray assigned (CUDA_VISIBLE_DEVICES) when the sweep
    asks for GPUs, else the CPU; its memory capped at the run's share of the GPU. A run planned for
    CUDA (its key says so: `plan.numerics`) on a node without working CUDA fails (`NoCuda`, one
    line) rather than train on the CPU under a CUDA key, unless `CPU_FOR_LOGICAL_GPUS` is set."""
    wants = sweep.resources.gpus_per_run > 0
    if wants and not torch.cuda.is_available() and os.environ.get(CPU_FOR_LOGICAL_GPUS) != "1":
        raise NoCuda(f"resources.gpus_per_run is {sweep.resources.gpus_per_run:g}, but node {_node()} has no working CUDA "
                     f"(torch {torch.__version__}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): "
                     f"runs keyed {numerics(sweep)} do not train on its CPU; fix the node's driver or set gpus_per_run: 0")
    device = "cuda" if wants and torch.cuda.is_available() else "cpu"
    if device == "cuda" and sweep.resources.workers:
        from ray.train.torch import get_device

        device = str(get_device())
    if device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"
    cap_cuda_memory(sweep.resources.gpus_per_run, device)
    return device


def _node() -> str:
    try:
        return ray.util.get_node_ip_address()
    except Exception:  # outside Ray (a test calling the trial's functions directly)
        return "here"


def _train_here(run: Run, shared: SharedData, stats: dict, sweep: SweepConfig, folder, model, on_epoch=None) -> RunResult:
    """Train one run in this process (one Ray Train worker of a DDP run); its network saved at `model`."""
    torch.set_num_threads(max(1, int(sweep.resources.cpus_per_run)))
    return train(RunSpec(run.tasks, run.inject), sweep.model.build(), train_config(sweep, _device(sweep), run.probes),
                 _open(shared, stats), run.seed, checkpoint=folder / "checkpoint.pt", model_path=model,
                 on_epoch=on_epoch)


def _train_bundle_here(runs: list[Run], shared: SharedData, stats: dict, sweep: SweepConfig, folders: dict,
                       on_epoch=None) -> list[RunResult | BaseException]:
    """Train the runs of one bundle in this process (a Tune trial), each batch read once.

    folders: {run key: its store folder}; on_epoch: callback(epoch, {run: record})."""
    torch.set_num_threads(max(1, int(sweep.resources.cpus_per_run)))
    device = _device(sweep)
    members = [Member(RunSpec(r.tasks, r.inject), probes=r.probes, checkpoint=folders[r.key] / "checkpoint.pt",
                      model_path=staged_network(folders[r.key])) for r in runs]  # `store.save` puts it in place
    by_member = {id(m): r for m, r in zip(members, runs)}
    report = None if on_epoch is None else lambda epoch, records: on_epoch(epoch, {by_member[id(m)]: rec for m, rec in records.items()})
    config = train_config(sweep, device, any(r.probes for r in runs))
    # on CUDA the runs' keys say whether they stack (plan.stacking): a bundle that cannot fails
    # rather than store separate networks under keys that say fused
    on = torch.device(device).type
    return train_bundle(members, sweep.model.build(), config, _open(shared, stats), runs[0].seed, on_epoch=report,
                        fuse=sweep.resources.fuses(on), fall_back=on != "cuda")


def _ddp_worker(loop_config: dict) -> dict | None:
    """A Ray Train worker: the process group is set up, so `train` runs DistributedDataParallel.
    Rank 0 returns the result and the network's bytes: it saved the network on its own node, and
    the trial that stores it may run on another. A network that diverged returns its record
    (`RunResult.diverged`) and its message: the trial stores it, and nothing retries it."""
    try:
        result = _train_here(**loop_config)
    except TrainingDiverged as diverged:
        if diverged.result is None:
            raise
        if ray.train.get_context().get_world_rank() != 0:
            return None
        return {"result": diverged.result.to_dict(), "model": None, "diverged": str(diverged)}
    if ray.train.get_context().get_world_rank() != 0:
        return None
    model = Path(loop_config["model"])
    if not (result.model_path and model.exists()):
        return {"result": result.to_dict(), "model": None}
    data = model.read_bytes()
    model.unlink()  # the trial stores the bytes; a worker on the trial's node leaves no second copy
    return {"result": result.to_dict(), "model": data}


def train_with_ray_train(run: Run, shared: SharedData, stats: dict, sweep: SweepConfig,
                         folder) -> RunResult | TrainingDiverged:
    """One run on `sweep.resources.workers` Ray Train workers (TorchTrainer, DDP). A fixed cost of
    20-30 s makes this the path for runs too large for one device, not for small ones. A network
    that diverged comes back as its `TrainingDiverged`, whose `result` records it, as from a bundle."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    r = sweep.resources
    per_worker = {"CPU": r.cpus_per_run, **({"GPU": r.gpus_per_run} if r.gpus_per_run else {})}
    trainer = TorchTrainer(
        _ddp_worker,
        train_loop_config={"run": run, "shared": shared, "stats": stats, "sweep": sweep, "folder": folder,
                           "model": staged_network(folder)},
        scaling_config=ScalingConfig(num_workers=r.workers, use_gpu=r.gpus_per_run > 0, resources_per_worker=per_worker),
        run_config=RunConfig(name=f"raytaskaff-{run.key}", storage_path=str(folder / "ray_train")),
    )
    returned = trainer.fit().return_value
    result = RunResult.from_dict(returned["result"])
    if returned.get("diverged"):
        diverged = TrainingDiverged(returned["diverged"], **{k: result.diverged.get(k) for k in ("epoch", "step", "task")})
        diverged.result = result
        return diverged
    if returned["model"] is not None:  # onto the trial's node, from which the store takes it (`store.save`)
        staged = staged_network(folder)
        write_bytes(staged, returned["model"])
        result.model_path = str(staged)
    result.cpu_seconds *= r.workers  # rank 0 measured its own share; the workers are alike
    result.gpu_seconds *= r.workers
    return result


def _trial(trial_config: dict, shared: SharedData, stats: dict, sweep: SweepConfig, store_uri: str) -> None:
    """One Tune trial: train the runs of one bundle that have no stored result (resuming each from
    its checkpoint) and store each run's result under its key. A network whose loss turned
    non-finite is stored as diverged (`RunResult.diverged`) and the trial goes on: CPU training
    is deterministic, so a retry would diverge again; the trial's last report names them
    (`DIVERGED`). A run that fails otherwise fails alone: the others are stored, then the trial
    fails naming it, and Tune's retry trains only what is still missing."""
    runs = [Run(**{k: tuple(v) if isinstance(v, list) else v for k, v in r.items()}) for r in trial_config["bundle"]["runs"]]
    store = ResultStore(store_uri)
    staged: list[Path] = []  # this trial's networks, under names of their own until stored
    try:
        runs = [r for r in runs if not store.has(r.key)]
        if not runs:
            return
        folders = {r.key: store.run_dir(r.key) for r in runs}
        attempts = {r.key: store.claim_attempt(r.key) for r in runs}
        for r in runs:  # a trial retried on another node resumes from the last epoch stored remotely
            store.pull_checkpoint(r.key)

        def on_epoch(epoch: int, records: dict) -> None:
            for run in records:
                store.push_checkpoint(run.key)
            tune.report(tracking.bundle_metrics(epoch, records))

        if sweep.resources.workers and not runs[0].probes:  # bundles of one run under DDP
            results = [train_with_ray_train(runs[0], shared, stats, sweep, folders[runs[0].key])]
        else:
            results = _train_bundle_here(runs, shared, stats, sweep, folders, on_epoch=on_epoch)
        threads = max(1, int(sweep.resources.cpus_per_run)) * max(1, sweep.resources.workers)
        failed, diverged = [], {}
        staged += [Path(r.model_path) for r in results if isinstance(r, RunResult) and r.model_path]
        for run, result in zip(runs, results):
            if isinstance(result, TrainingDiverged) and result.result is not None:
                diverged[run.key] = f"{run_title(run)}: {result}"
                result = result.result
            elif isinstance(result, BaseException):
                failed.append(f"{run_title(run)}: {result}")
                continue
            store.save(run.key, result, kind=str(run.kind), label=run.label, node=ray.util.get_node_ip_address(),
                       node_id=ray.get_runtime_context().get_node_id(), attempts=attempts[run.key],
                       threads=threads, memory=process_memory())
            store.drop_checkpoint(run.key)
        if failed:
            others = "; the others are stored" if len(failed) < len(runs) else ""
            raise NetworksFailed(f"{len(failed)} of {len(runs)} networks failed ({'; '.join(failed)}){others}")
        if diverged:
            tune.report({DIVERGED: json.dumps(diverged)})
    except Exception:
        for path in staged:  # networks not stored (a stored one was moved into place): this trial's own names
            path.unlink(missing_ok=True)
        store.check_writable()  # a full or read-only store says so (StoreError), which stops the sweep
        raise


#: The key of a trial's last report that names its diverged networks, {run key: line} as JSON.
DIVERGED = "diverged"


def diverged_of(metrics: dict | None) -> dict[str, str]:
    """{run key: one line} of the networks a trial recorded as diverged (its last report)."""
    text = (metrics or {}).get(DIVERGED)
    return json.loads(text) if isinstance(text, str) else {}


class NetworksFailed(RuntimeError):
    """Some networks of a bundle failed (their results are missing); the others were stored."""


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
    the kinds it trains. A trial trains a bundle: its runs count as done once stored, as failed
    when its last attempt ends without them."""

    def __init__(self, runs: list[Run], pending: list[Bundle], say, stopper: _StopWhenStoreFails, stored,
                 log: Path | None = None) -> None:
        """runs: those of this call; pending: the bundles of those to train (the others are
        stored); stored: run key -> whether the store holds its result; log: where Tune's
        tracebacks go (`ray_logs_to`), named in the line of a failed trial."""
        self.total = sum(len(b.runs) for b in pending)
        self.log = log
        self.bundles, self.say, self.stopper, self.stored = {b.key: b for b in pending}, say, stopper, stored
        self.done = self.failed = 0
        self.start = time.perf_counter()
        self.done_counter = metrics.Counter("raytaskaff_runs_done", description="Sweep runs finished")
        self.failed_counter = metrics.Counter("raytaskaff_runs_failed", description="Sweep runs failed after retries")
        self.planned_gauge = metrics.Gauge("raytaskaff_runs_planned_by_kind", description="Sweep runs to have, by kind",
                                           tag_keys=("kind",))
        self.done_gauge = metrics.Gauge("raytaskaff_runs_done_by_kind", description="Sweep runs stored, by kind",
                                        tag_keys=("kind",))
        waiting = {r.key for b in pending for r in b.runs}
        self.done_by_kind = Counter(str(r.kind) for r in runs if r.key not in waiting)
        for kind, n in Counter(str(r.kind) for r in runs).items():
            self.planned_gauge.set(n, tags={"kind": kind})
            self.done_gauge.set(self.done_by_kind[kind], tags={"kind": kind})

    def _finish(self, trial, status: str, why: str = "", diverged=()) -> None:
        bundle = self.bundles.get(trial.config["bundle"]["key"])
        runs = bundle.runs if bundle else ()
        done = [r for r in runs if self.stored(r.key) and r.key not in diverged]
        self.done += len(done)
        self.failed += len(runs) - len(done)
        if done:
            self.done_counter.inc(len(done))
        if len(runs) > len(done):
            self.failed_counter.inc(len(runs) - len(done))
        for r in done:
            self.done_by_kind[str(r.kind)] += 1
            self.done_gauge.set(self.done_by_kind[str(r.kind)], tags={"kind": str(r.kind)})
        finished = self.done + self.failed
        elapsed = time.perf_counter() - self.start
        eta = elapsed / finished * (self.total - finished) if finished else float("nan")
        label = "?" if bundle is None else run_title(bundle.runs[0]) if len(bundle.runs) == 1 else bundle.label
        self.say(f"[{finished}/{self.total}] {status:6} {label}{why}  (elapsed {elapsed:.0f} s, ETA {eta:.0f} s)")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        diverged = diverged_of(trial.last_result)
        if diverged:
            self._finish(trial, "DIVERGED", f": {len(diverged)} networks diverged, recorded and not retried "
                                            f"({'; '.join(diverged.values())})", diverged)
        else:
            self._finish(trial, "done")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        """After the trial's last attempt: one line saying why and where its traceback is."""
        text = _trial_error(trial)
        store_error = _store_error(text)
        where = f"; traceback in {self.log}" if self.log is not None else ""
        self._finish(trial, "FAILED", f": {store_error or error_line(text)}{where}")
        if store_error and self.stopper.error is None:
            self.stopper.error = store_error
            self.say(f"stopping: {store_error}")


def _trial_error(trial) -> str:
    """The trial's error text: Tune writes it to the trial's local folder before it calls the
    callbacks (`Trial.handle_error`), while `Trial.get_error` reads the copy in the experiment's
    storage, which a sync may not have made yet (seen as a missing error under load)."""
    local = getattr(trial, "error_file", None)
    try:
        if local and os.path.exists(local):
            return Path(local).read_text(errors="replace")
    except OSError:
        pass
    return str(trial.get_error() or "")


def error_line(text: str) -> str:
    """The last line of a trial's error text (a Ray traceback), without the exception's module
    and, for the networks of a bundle that failed, without its class: `3 of 6 networks failed
    (pair depth_zbuffer+normal seed 0: loss of depth_zbuffer is nan at epoch 0 step 0); ...`."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "no error was recorded"
    last = lines[-1]
    found = re.match(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*): (.*)$", last)
    if found is None:
        return last[:500]
    kind, message = found.groups()
    return (message if kind == NetworksFailed.__name__ else f"{kind}: {message}")[:500]


def _store_error(text: str) -> str | None:
    """The StoreError line of a trial's error text, without its class name, or None."""
    for line in reversed(text.strip().splitlines()):
        if f"{StoreError.__name__}: " in line and NOT_WRITABLE in line:
            return line.split(f"{StoreError.__name__}: ", 1)[1].strip()
    return None


def log_path(out: str | os.PathLike) -> Path:
    """The sweep's log, OUT/logs/sweep.log: Ray Tune's and Ray Train's messages and tracebacks,
    appended by every invocation (`ray_logs_to`)."""
    return Path(out).resolve() / "logs" / "sweep.log"


#: The loggers whose records go to the sweep's log rather than the terminal.
RAY_LOGGERS = ("ray.tune", "ray.train", "ray.air")


@contextlib.contextmanager
def ray_logs_to(path: Path):
    """Ray Tune's (and Ray Train's) log records go to `path` alone while the block runs, not to the
    terminal: a failed trial is one line of the sweep's progress (`_Progress`), its tracebacks
    (one per attempt, as Tune logs them) are in the file."""
    import logging

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in RAY_LOGGERS]
    before = [(logger.propagate, logger.level) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    try:
        yield path
    finally:
        for logger, (propagate, level) in zip(loggers, before):
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(level)
        handler.close()


@contextlib.contextmanager
def _without_tune_banner():
    """Tune's output engine prints a banner at every fit, even at verbose=0, whose TensorBoard hint
    points at Ray's session staging folder (/tmp/ray/session_*/.../driver_artifacts), not at
    OUT/tensorboard where the sweep's curves are (engine/tracking.py); Tune's legacy output engine
    (RAY_AIR_NEW_OUTPUT=0) at verbose=0 prints nothing. The sweep prints its own progress
    (`_Progress`). A user's RAY_AIR_NEW_OUTPUT=1 brings the banner back."""
    before = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)


def _sized(config: SweepConfig, runs: list[Run], size: int, views: int, say=print) -> list[Bundle]:
    """The runs' bundles, on GPUs sized to a trial's share of the cluster's GPU memory
    (`preflight.check_memory` first: a GPU memory that is not known, or a network that alone
    does not fit, stops the sweep in one line), at least as many as the GPUs hold at once, or one
    network per trial where the cost model says bundling would not be faster
    (`estimate.choose_bundles`, as the dry run decides)."""
    r = config.resources
    if not r.gpus_per_run or r.bundle_limit == 1:
        return bundles(runs, r.bundle_limit)
    from raytaskaff.engine.cluster import capacity
    from raytaskaff.estimate import choose_bundles
    from raytaskaff.preflight import check_memory, gpu_memory

    cap = capacity()
    check_memory(config, cap, size)
    gpus = int(sum(node.get("GPU", 0) for node in cap.nodes)) or None
    chosen, why = choose_bundles(config, runs, size, views, gpus, gpu_memory(config, cap))
    if why:
        say(f"bundling: {why}")
    return chosen


def train_runs(config: SweepConfig, runs: list[Run], store: ResultStore, shared: SharedData, stats: dict,
               tune_dir: str, say=print) -> Execution:
    """Train every run without a stored result, a Tune trial per bundle (`plan.bundles`,
    `resources.bundle`); return what happened.

    shared: the splits, from `engine.data.share_splits`; stats: the manifest's statistics."""
    start = time.perf_counter()
    present = store.stored([r.key for r in runs])  # one listing of the store, no record read
    execution = Execution(skipped=[r.key for r in runs if r.key in present])
    pending = [r for r in runs if r.key not in set(execution.skipped)]
    if not pending:
        return execution
    views = sum(shared.shard_rows.get("train", ()))
    planned = longest_first(config, _sized(config, pending, shared.size, views, say), shared.size, views)
    stopper = _StopWhenStoreFails()
    trainable = tune.with_parameters(_trial, shared=shared, stats=stats, sweep=config, store_uri=store.uri)
    own = {"CPU": config.resources.cpus_per_run, **({"GPU": config.resources.gpus_per_run} if config.resources.gpus_per_run else {})}

    def resources(trial_config: dict) -> tune.PlacementGroupFactory:
        # a DDP trial only launches a TorchTrainer, whose workers hold the resources
        ddp = config.resources.workers and not trial_config["bundle"]["runs"][0]["probes"]
        return tune.PlacementGroupFactory([{"CPU": 0.01} if ddp else own])

    space = [{"key": b.key, "runs": [dataclasses.asdict(r) for r in b.runs]} for b in planned]
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={"bundle": tune.grid_search(space)},
        tune_config=tune.TuneConfig(max_concurrent_trials=config.resources.max_concurrent, reuse_actors=True,
                                    trial_name_creator=tracking.trial_name, trial_dirname_creator=tracking.trial_dirname),
        run_config=tune.RunConfig(
            name=experiment_name(config.name, time.strftime('%Y%m%d-%H%M%S'), uuid.uuid4().hex[:6]), storage_path=os.path.abspath(tune_dir),
            failure_config=tune.FailureConfig(max_failures=config.retries),
            callbacks=[_Progress(runs, planned, say, stopper, store.has, log_path(config.out)), WaitingReporter(own, say),
                       *tracking.callbacks(config)],
            stop=stopper, verbose=0,
        ),
    )
    with _without_tune_banner(), ray_logs_to(log_path(config.out)):
        grid = tuner.fit()
    if stopper.error is not None:
        stored = sum(store.has(r.key) for r in pending)
        raise StoreError(f"{stopper.error}; {stored} of {len(pending)} runs were stored before it and are kept: "
                         "make room and run the same command again to resume")
    errors, diverged = {}, {}
    for result in grid:
        diverged.update(diverged_of(result.metrics))
        if result.error is not None:
            message = error_line(str(result.error))
            for r in result.config["bundle"]["runs"]:
                errors[r["key"]] = message
    for run in pending:
        if run.key in diverged:  # stored, so not trained again; no result for the scores
            execution.failed[run.key] = f"diverged: {diverged[run.key]}"
        elif store.has(run.key):
            execution.trained.append(run.key)
        else:
            execution.failed[run.key] = errors.get(run.key, "no result was stored")
    execution.wall_seconds = time.perf_counter() - start
    return execution
