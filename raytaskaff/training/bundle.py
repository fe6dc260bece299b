"""Training a bundle: the networks of one seed and data order, each batch read and moved once.

A bundle is a list of `Member`s (one network each: its `RunSpec`, whether it is instrumented,
its checkpoint and where its selected network goes). They train in lock step on the same seeded
batches, and each keeps its own loss, gradients, optimizer state, schedule, best epoch, probes,
checkpoint and result, so a bundle's result for a network is that network's separate run's (up
to the order of floating-point reductions; see `training.fused`). What a result holds does not
depend on which networks shared its bundle: its chance levels are computed from the data for its
own tasks (`training.chance`).

The networks are grouped into units (`training.units`): a `FusedUnit` stacks the networks of one
architecture, a `PlainUnit` trains one network as a separate run does. A batch is decoded once
for all of them and the bundle is evaluated through one code path (`training.evaluation`).

A network whose loss stops being finite fails alone: its rows stop contributing to the bundle's
loss, it writes nothing more, and the others train on. Its result says so: `RunResult.diverged`
holds the epoch, the step (None: the validation pass), the task and the loss
(`tally.TrainingDiverged.as_record`). A fused step reads nothing back to the host: its losses
are summed, and a diverged network masked, on the device (`tally.Tally`); the host reads them
every `READ_EVERY` steps and at each epoch's end, so a diverged network is named at most that
many steps late. Networks resumed from checkpoints of different epochs train in separate passes
(each pass in lock step).

Each result says how its network was trained (`RunResult.training`: "fused", "separate" or
"fell back", with the reason) and on which device (`describe_device`). Should stacked networks
fail their first step, `train_bundle` fails with `StackingFailed` in one line, or, when asked
(`fall_back=True`), trains them again unstacked and records "fell back" with the error. The
engine asks on CPUs only: on CUDA a run's key says whether it trains stacked (`plan.stacking`).
"""

from __future__ import annotations

import gc
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from raytaskaff.errors import RaytaskaffError
from raytaskaff.models import MultiTaskNet, part_seed, save_atomic, save_model
from raytaskaff.settings import RunResult, RunSpec
from raytaskaff.tasks import Task
from raytaskaff.training.chance import chance_losses
from raytaskaff.training.evaluation import Inputs, eval_chunk, evaluate_units, fields_of
from raytaskaff.training.prefetch import Feed
from raytaskaff.training.probes import GradientProbe
from raytaskaff.training.tally import TrainingDiverged, read_tallies
from raytaskaff.training.units import StackingFailed, build_units, out_of_memory


class OutOfMemory(RaytaskaffError):
    """A network alone does not fit its device: the message names predicted and actual memory."""


@dataclass(eq=False)  # hashed by identity: a bundle's callbacks key records by member
class Member:
    """One network of a bundle: what it trains, whether its gradient probes run, where its
    checkpoint (each epoch) and its selected network go."""

    spec: RunSpec
    probes: bool = False
    checkpoint: str | os.PathLike | None = None
    model_path: str | os.PathLike | None = None


@dataclass(eq=False)
class _State:
    """A member while it trains."""

    member: Member
    tasks: list[Task]
    inject: list[Task]
    model: MultiTaskNet
    history: list[dict] = field(default_factory=list)
    best: tuple = (math.inf, -1, None)  # (summed val loss, epoch, state dict)
    first_epoch: int = 0
    probe: GradientProbe | None = None
    parameters: int = 0
    error: BaseException | None = None
    saved: dict | None = None  # the checkpoint it resumes from
    earlier: dict = field(default_factory=dict)  # what earlier attempts spent, from its checkpoint
    clock: _Clock | None = None
    training: tuple[str, str | None] = ("separate", None)  # (RunResult.training, its reason), set by build_units

    @property
    def alive(self) -> bool:
        return self.error is None

    def spent(self, now: dict[str, float] | None = None) -> dict[str, float]:
        """{wall, cpu, gpu} seconds of this network so far, earlier attempts included (now: this
        attempt's share, read from its clock when not given)."""
        now = now if now is not None else self.clock.share() if self.clock is not None else {}
        return {k: self.earlier.get(k, 0.0) + now.get(k, 0.0) for k in ("wall", "cpu", "gpu")}


class _Clock:
    """The costs of one attempt at a bundle, split evenly among its networks: wall-clock, process
    CPU time (core-seconds), and on a GPU its wall time times the fraction of the GPU held."""

    def __init__(self, networks: int, device: torch.device, gpu_fraction: float) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.networks, self.gpu = networks, gpu_fraction if device.type == "cuda" else 0.0

    def share(self) -> dict[str, float]:
        wall = (time.perf_counter() - self.wall) / self.networks
        return {"wall": wall, "cpu": (time.process_time() - self.cpu) / self.networks, "gpu": wall * self.gpu}


READ_EVERY = 32
"""Steps between two reads of the training losses on the host (one more at each epoch's end): the
steps in between queue on the device without waiting on a transfer."""


@dataclass(eq=False)
class _Pass:
    """A training pass: its members and their units, and how it computes (device, DDP rank and
    world, autocast), reads batches (`feed`) and makes targets (`stats`)."""

    states: list[_State]
    units: list
    config: object
    data: object
    seed: int
    device: torch.device
    rank: int
    world: int
    amp: bool
    autocast: object
    stats: dict
    feed: Feed


def _begin(states: list[_State], config, data, seed: int, device: torch.device, rank: int, world: int,
           fuse: bool) -> _Pass:
    """The pass's units built (each resumed from its members' checkpoints) and set to train, with
    the learning-rate schedule over the whole run."""
    total_steps = len(data.train) // config.batch_size * config.epochs
    schedule = (lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps))) if config.schedule == "cosine" else (lambda s: 1.0)
    units = build_units(states, config, device, world, schedule, fuse)
    for u in units:
        if u.states[0].saved is not None:
            u.resume()
        u.train(True)
    amp = config.amp and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else _no_autocast
    return _Pass(states, units, config, data, seed, device, rank, world, amp, autocast, _stats(config, data),
                 config.feed(device))


def _train_epoch(p: _Pass, epoch: int) -> tuple[int, dict[int, dict[str, float]]]:
    """One epoch of training steps on the seed's batches; (rows seen, each live member's summed
    training losses {id(state): {task: sum}})."""
    seen = 0
    for u in p.units:
        u.tally.restart()
    order_seed = part_seed(p.seed, f"data/{epoch}")  # the same order for every run of this seed
    batches = p.data.train.jobs(p.config.batch_size, fields_of(p.states, p.data.train, p.config.input), shuffle=True,
                                seed=order_seed, drop_last=True)
    for step, batch in enumerate(p.feed(batches)):
        if p.world > 1:  # every rank draws the same global batch and trains on its share of the rows
            batch = {k: v[p.rank::p.world] for k, v in batch.items()}
        inputs = Inputs({k: v.to(p.device, non_blocking=True) for k, v in batch.items()}, p.states, p.stats, p.config.input)
        for u in p.units:
            u.step(inputs, step, p.autocast, p.amp)
        seen += len(inputs)
        if (step + 1) % READ_EVERY == 0:
            read_tallies(p.units, epoch)
    return seen, read_tallies(p.units, epoch)


def _evaluate(p: _Pass, split, metrics: bool = True) -> dict[int, tuple[dict, dict]]:
    """`evaluation.evaluate_units` of the pass's units over `split`."""
    return evaluate_units(p.units, split, p.states, p.stats, p.device, p.config.eval_batch_size, p.autocast, p.feed,
                          p.config.input, fields_of(p.states, split, p.config.input), chunk=eval_chunk(p.config, p.device),
                          metrics=metrics)


def _end_epoch(p: _Pass, epoch: int, seen: int, running: dict, on_epoch) -> None:
    """Close an epoch: probes, validation losses (no metrics: the loop selects on losses), each
    live member's record, best state and checkpoint (`_close_epoch`), then `on_epoch`."""
    for s in p.states:
        if s.probe is not None and s.alive:
            s.probe.end_epoch()
    val = _evaluate(p, p.data.val, metrics=False)
    records = {}
    for u in p.units:
        for position, s in enumerate(u.states):
            if s.alive:
                record = _close_epoch(u, position, s, epoch, seen, running[id(s)], val[id(s)][0], p.rank, p.seed)
                if record is not None:
                    records[s.member] = record
    if on_epoch is not None and records:
        on_epoch(epoch, records)


def _keep_best(units: list, model_config, config, seed: int, rank: int) -> None:
    """Each live member's selected epoch back into its unit, and its network saved (rank 0)."""
    for u in units:
        for position, s in enumerate(u.states):
            if s.alive:
                u.load_model_state(position, s.best[2])
                if s.member.model_path is not None and rank == 0:
                    net = s.model if s.model is not None else _rebuild(s, model_config, seed, config, u.model_state(position))
                    save_model(net, s.member.model_path, seed)


def train_pass(states: list[_State], model_config, config, data, seed: int, device: torch.device, rank: int,
               world: int, first_epoch: int, on_epoch=None, fuse: bool = True) -> dict[int, tuple[dict, dict]]:
    """Train members that start at `first_epoch` in lock step to the end; returns each live
    member's test (losses, metrics) of its selected epoch, by id of its state."""
    p = _begin(states, config, data, seed, device, rank, world, fuse)
    for epoch in range(first_epoch, config.epochs):
        if not any(s.alive for s in states):
            break
        seen, running = _train_epoch(p, epoch)
        _end_epoch(p, epoch, seen, running, on_epoch)
    _keep_best(p.units, model_config, config, seed, rank)
    return _evaluate(p, data.test)


def _pass_or_split(group: list[_State], model_config, config, data, seed: int, device: torch.device, rank: int,
                   size: int, first: int, on_epoch, fuse: bool, clock: _Clock, states: list[_State]) -> dict:
    """`train_pass` of `group`; out of memory, the group split in two, each half trained on from
    its members' checkpoints (or from the start), each warned about in one line; a network alone
    out of memory raises `OutOfMemory`, one line naming predicted and actual memory. `states`
    (the bundle's) has each retrained member's state replaced by its new one."""
    try:
        return train_pass(group, model_config, config, data, seed, device, rank, size, first, on_epoch, fuse)
    except (RuntimeError, torch.OutOfMemoryError) as e:
        if not out_of_memory(e) or isinstance(e, StackingFailed):
            raise
        words = _memory_words(group, model_config, config, data, device, fuse)
        if len(group) == 1:
            raise OutOfMemory(f"{group[0].member.spec.tasks} alone is out of memory on {device} ({words})") from e
    # out of the except clause: its traceback's frames, and the tensors they held, are gone
    for s in group:
        s.model = None
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    half = (len(group) + 1) // 2
    warnings.warn(f"{len(group)} networks out of memory on {device} ({words}): trained on as bundles of "
                  f"{half} and {len(group) - half}", stacklevel=3)
    tested = {}
    for part in (group[:half], group[half:]):
        fresh = [_start(s.member, model_config, config, data, seed, device, clock) for s in part]
        for old, new in zip(part, fresh):
            states[states.index(old)] = new
        for start in sorted({s.first_epoch for s in fresh}):
            tested.update(_pass_or_split([s for s in fresh if s.first_epoch == start], model_config, config, data,
                                         seed, device, rank, size, start, on_epoch, fuse, clock, states))
    return tested


def _memory_words(group: list[_State], model_config, config, data, device: torch.device, fuse: bool) -> str:
    """"predicted X GiB, Y GiB allocated at the peak" for an out-of-memory message."""
    from raytaskaff.training import memory
    from raytaskaff.training.memory_table import GIB, Network

    try:
        size = int(data.train.size)
        networks = [Network(tuple((t.out_channels, t.dense) for t in s.tasks), sum(t.inject_channels for t in s.inject),
                                   alone=bool(s.member.probes) and config.probes is not None and len(s.tasks) > 1) for s in group]
        precision = "bf16" if config.amp and device.type == "cuda" else "fp32"
        bytes_ = memory.bundle_bytes(model_config, size, networks, config.batch_size, precision, fuse=fuse)[0]
        predicted = f"predicted {bytes_ / GIB:.2f} GiB"
    except Exception as e:  # the message must still be said: a prediction that fails says why
        predicted = f"no prediction: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    actual = (f"{torch.cuda.max_memory_allocated(device) / GIB:.2f} GiB allocated at the peak of "
              f"{torch.cuda.get_device_properties(device).total_memory / GIB:.1f} GiB") if device.type == "cuda" \
        else "the CPU allocator keeps no peak"
    return f"{predicted}, {actual}"


def _close_epoch(unit, position: int, s: _State, epoch: int, seen: int, running: dict, val_losses: dict, rank: int,
                 seed: int) -> dict | None:
    """Record a member's epoch, keep its best state and write its checkpoint; its record (None
    when its validation loss is not finite, which fails it)."""
    record = {"epoch": epoch, "train": {k: v / seen for k, v in running.items()}, "val": val_losses}
    s.history.append(record)
    val_total = sum(val_losses.values())
    if not math.isfinite(val_total):
        task = next((k for k, v in val_losses.items() if not math.isfinite(v)), None)
        s.error = TrainingDiverged(f"validation loss is {val_total} at epoch {epoch}: training stopped", epoch=epoch,
                                   task=task, loss=val_losses.get(task, val_total))
        return None
    if val_total < s.best[0]:
        s.best = (val_total, epoch, {k: v.detach().clone() for k, v in unit.model_state(position).items()})
    if s.member.checkpoint is not None and rank == 0:
        save_atomic({"spec": [list(s.member.spec.tasks), list(s.member.spec.inject)], "seed": seed, "epoch": epoch,
                     "model": unit.model_state(position), "optimizer": unit.optimizer_state(position),
                     "scheduler": unit.scheduler.state_dict(), "history": s.history, "best_val": s.best[0],
                     "best_epoch": s.best[1], "best_model": s.best[2], "probes": s.probe.epochs if s.probe else {},
                     "spent": s.spent()},
                    s.member.checkpoint)
    return record


def _rebuild(s: _State, model_config, seed: int, config, state: dict) -> MultiTaskNet:
    """A plain network holding a fused member's weights, to save it as a separate run would."""
    net = MultiTaskNet(s.tasks, model_config, inject=s.inject, seed=seed, grad_scale=config.grad_scale)
    net.load_state_dict(state)
    return net


class _no_autocast:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _stats(config, data) -> dict:
    """The normalisation statistics targets are made with: the manifest's, or none (reference constants)."""
    return data.stats if config.normalisation == "dataset" else {}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def world() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def resume_state(path: Path | None, device: torch.device) -> dict | None:
    """The checkpoint at `path`, or None when there is none or it cannot be read safely (tensors and
    plain data only; anything else is refused by weights_only and the run starts afresh)."""
    if path is None or not path.exists():
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # weights_only refusing a pickled object, a truncated or foreign file
        warnings.warn(f"{path}: unreadable checkpoint ignored, training from the start ({str(e).splitlines()[0]})", stacklevel=2)
        return None


def _start(member: Member, model_config, config, data, seed: int, device: torch.device, clock: _Clock) -> _State:
    """A member's network built from its seed, and its checkpoint when it holds this run."""
    tasks = [data.task(n, config.tasks) for n in member.spec.tasks]
    inject = [data.task(n, config.tasks) for n in member.spec.inject]
    model = MultiTaskNet(tasks, model_config, inject=inject, seed=seed, grad_scale=config.grad_scale)
    state = _State(member, tasks, inject, model, parameters=sum(p.numel() for p in model.parameters()), clock=clock)
    saved = resume_state(Path(member.checkpoint) if member.checkpoint else None, device)
    if saved is not None and saved.get("spec") == [list(member.spec.tasks), list(member.spec.inject)] and saved.get("seed") == seed:
        state.saved, state.history, state.first_epoch = saved, saved["history"], saved["epoch"] + 1
        state.best = (saved["best_val"], saved["best_epoch"], saved["best_model"])
        state.earlier = dict(saved.get("spent") or {})
    return state


def describe_device(device: torch.device) -> str:
    """Where a run computed, as its result records it: "cpu", or "cuda:0 NVIDIA H100 80GB HBM3"."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} {torch.cuda.get_device_name(index)}"


def train_bundle(members: list[Member], model_config, config, data, seed: int, on_epoch=None,
                 fuse: bool = True, fall_back: bool = False) -> list[RunResult | BaseException]:
    """Train the networks of one seed together; per member its `RunResult`, or for a network that
    diverged its `TrainingDiverged` (whose `result` records it) while the others trained on.

    config: a `training.loop.TrainConfig`; data: a `training.loop.DataSplits`; on_epoch: optional
    callback(epoch, {member: record}) once per epoch, for the members that trained it; fuse: stack networks of one architecture (False: each
    network its own module, still reading each batch once); fall_back: when stacked networks
    fail their first step, train them unstacked and record "fell back" with the error (by
    default `StackingFailed` is raised instead, nothing trained). A bundle's wall-clock, CPU and GPU
    seconds are split evenly among its networks; a network resumed from its checkpoint adds what
    its earlier attempts spent (recorded there each epoch).
    """
    device = resolve_device(config.device)
    clock = _Clock(len(members), device, config.gpu_fraction)
    rank, size = world()
    if size > 1 and config.probes and any(m.probes for m in members):
        raise ValueError("gradient probes need one process per run; train instrumented runs without DDP")
    if len(data.train) // config.batch_size < 1:
        raise ValueError(f"the train split has {len(data.train)} views, fewer than one batch of {config.batch_size}")
    states = [_start(m, model_config, config, data, seed, device, clock) for m in members]
    tested = {}
    for first in sorted({s.first_epoch for s in states}):  # each resumed epoch trains in its own pass
        group = [s for s in states if s.first_epoch == first]
        try:
            tested.update(_pass_or_split(group, model_config, config, data, seed, device, rank, size, first, on_epoch,
                                         fuse, clock, states))
        except StackingFailed as e:
            stacked = [s.member for s in group if s.training[0] == "fused"]
            where = describe_device(device)
            if not fall_back:
                raise StackingFailed(f"{len(stacked)} stacked networks failed their first step on {where} ({e}); nothing "
                                     "was stored: to train them unstacked, under keys of their own, set resources.fuse: "
                                     "false (or resources.bundle: 1)") from e
            warnings.warn(f"stacked networks failed their first step on {where} ({e}): training the bundle's "
                          f"{len(group)} networks unstacked", stacklevel=2)
            fresh = [_start(s.member, model_config, config, data, seed, device, clock) for s in group]
            states = [fresh[group.index(s)] if s in group else s for s in states]
            tested.update(train_pass(fresh, model_config, config, data, seed, device, rank, size, first, on_epoch, False))
            for s in fresh:
                if s.member in stacked:
                    s.training = ("fell back", f"stacked first step failed on {where}: {e}")
    # each live member's own tasks, from the data alone: a result is the same whatever shared its bundle
    own = {t.name: t for s in states if s.alive for t in s.tasks}
    chance = chance_losses(list(own.values()), data.train, data.test, _stats(config, data), device,
                           config.eval_batch_size) if rank == 0 else {}
    now = clock.share()  # one reading: the networks of a bundle share its cost evenly
    return [_result(s, tested.get(id(s)), seed, config, device, chance, now, len(states)) for s in states]


def _result(s: _State, tested: tuple[dict, dict] | None, seed: int, config, device: torch.device, chance: dict,
            now: dict, size: int) -> RunResult | TrainingDiverged:
    """A member's `RunResult`; for a network that diverged its `TrainingDiverged`, whose `result`
    records the divergence (`RunResult.diverged`) with the history and costs up to it."""
    test_losses, test_metrics = tested if s.error is None else ({}, {})
    spent = s.spent(now)
    result = RunResult(
        spec=s.member.spec, seed=seed, test_losses=test_losses,
        val_losses=s.history[s.best[1]]["val"] if s.error is None else {},
        test_metrics=test_metrics, best_epoch=s.best[1], epochs=config.epochs, history=s.history,
        wall_seconds=spent["wall"], cpu_seconds=spent["cpu"], gpu_seconds=spent["gpu"],
        device=describe_device(device), parameters=s.parameters,
        probes=dict(s.probe.epochs) if s.probe else {}, probe_variant=config.probes.variant if s.probe else None,
        model_path=str(s.member.model_path) if s.member.model_path is not None and s.error is None else None,
        bundle_size=size,
        chance_losses={t.name: chance[t.name] for t in s.tasks if t.name in chance} if s.error is None else {},
        training=s.training[0], training_reason=s.training[1],
        diverged=s.error.as_record() if s.error is not None else None,
    )
    if s.error is None:
        return result
    s.error.result = result
    return s.error
