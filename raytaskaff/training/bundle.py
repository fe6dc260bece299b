"""Training a bundle: the networks of one seed and data order, each batch read and moved once.

A bundle is a list of `Member`s (one network each: its `RunSpec`, whether it is instrumented,
its checkpoint and where its selected network goes). They train in lock step on the same seeded
batches, and each keeps its own loss, gradients, optimizer state, schedule, best epoch, probes,
checkpoint and result, so a bundle's result for a network is that network's separate run's (up
to the order of floating-point reductions; see `training.fused`).

The networks are grouped into units:
- a `FusedUnit` stacks the networks of one architecture (`fused.architecture`) that carry no
  gradient probe: one vmapped forward and backward for all of them, one optimizer;
- a `PlainUnit` trains one network as a separate run does: the instrumented networks (the
  gradient probes need their own backward passes), a lone network, and a DDP-wrapped network.

A network whose loss stops being finite fails alone: its rows stop contributing to the bundle's
loss, it writes nothing more, and the others train on. A fused step reads nothing back to the
host: its losses are summed, and a diverged network masked, on the device (`_Tally`); the host
reads them every `READ_EVERY` steps and at each epoch's end, so a diverged network is named at
most that many steps late (its rows are left out of the loss from the step it diverged). Networks
resumed from checkpoints of different epochs train in separate passes (each pass in lock step).

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

from raytaskaff.data.transforms import rgb_input
from raytaskaff.errors import RaytaskaffError
from raytaskaff.models import MultiTaskNet, part_seed, save_atomic, save_model
from raytaskaff.settings import RunResult, RunSpec
from raytaskaff.tasks import Task
from raytaskaff.training.chance import chance_losses, label_fields
from raytaskaff.training.fused import FusedNets, architecture
from raytaskaff.training.optim import make_optimizer
from raytaskaff.training.prefetch import Feed
from raytaskaff.training.probes import GradientProbe


class TrainingDiverged(RaytaskaffError):
    """A loss became NaN or infinite."""


class OutOfMemory(RaytaskaffError):
    """A network alone does not fit its device: the message names predicted and actual memory."""


def out_of_memory(e: BaseException) -> bool:
    """Whether `e` is an allocator's out-of-memory error (torch.OutOfMemoryError, CUDA's, or a
    RuntimeError saying so: CPU allocators and some kernels raise plain ones)."""
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


class StackingFailed(RuntimeError):
    """The first step of stacked networks failed on this device (a kernel without a batching
    rule there, say); nothing was written. `train_bundle` raises it, one line naming the device
    and the reason, or trains the bundle unstacked instead (`fall_back`)."""


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


class _Inputs:
    """One batch decoded once for every member: images, every task's target, each injection's
    input channels. Images and injected channels come in the layout their networks compute in,
    each made once per batch: channels-last for the plain networks (`x`, `extra_of`), the
    standard layout for the stacked ones (`image`, `extra_of(state, torch.contiguous_format)`)."""

    def __init__(self, raw: dict[str, torch.Tensor], states: list[_State], stats: dict, input: str) -> None:
        self._raw = raw[input]  # (B, H, W, 3) uint8
        self._images: dict[torch.memory_format, torch.Tensor] = {}
        tasks = {t.name: t for s in states for t in (*s.tasks, *s.inject)}
        self.targets = {name: t.target(raw, stats) for name, t in tasks.items()}
        size = tuple(self._raw.shape[1:3])
        self.extra: dict[tuple, torch.Tensor | None] = {(): None}
        for s in states:
            names = tuple(t.name for t in s.inject)
            if names not in self.extra:
                self.extra[names] = torch.cat([t.encode_input(self.targets[t.name], size) for t in s.inject], dim=1)
        self._standard_extra: dict[tuple, torch.Tensor | None] = {(): None}

    def __len__(self) -> int:
        return len(self._raw)

    def image(self, layout: torch.memory_format = torch.channels_last) -> torch.Tensor:
        """(B, 3, H, W) float images in `layout`."""
        if layout not in self._images:
            raw = self._raw
            if layout != torch.channels_last:  # reordered as bytes, a quarter of a float copy
                raw = raw.permute(0, 3, 1, 2).contiguous(memory_format=layout).permute(0, 2, 3, 1)
            self._images[layout] = rgb_input(raw).contiguous(memory_format=layout)
        return self._images[layout]

    x = property(image)

    def extra_of(self, state: _State, layout: torch.memory_format = torch.channels_last) -> torch.Tensor | None:
        names = tuple(t.name for t in state.inject)
        if layout == torch.channels_last:
            return self.extra[names]
        if names not in self._standard_extra:
            self._standard_extra[names] = self.extra[names].contiguous(memory_format=layout)
        return self._standard_extra[names]


def _losses(state: _State, preds: dict[str, torch.Tensor], targets: dict) -> dict[str, torch.Tensor]:
    return {t.name: t.loss_value(preds[t.name], targets[t.name]) for t in state.tasks}


def _finite(losses: dict[str, torch.Tensor]) -> bool:
    """Whether every loss is finite: one read on the host (a plain step decides on it whether to
    take its optimizer step; a fused step decides on the device and reads nothing)."""
    return bool(torch.isfinite(torch.stack([v.detach().float() for v in losses.values()])).all())


READ_EVERY = 32
"""Steps between two reads of the training losses on the host (one more at each epoch's end): the
steps in between queue on the device without waiting on a transfer."""


class _Tally:
    """The training losses of a unit's networks, kept on the device between reads: whether each
    network has diverged, the step where it did and that step's losses (to name the loss), and the
    running sums of every loss times its batch's rows (fp64, as the host summed them). `_read`
    brings every unit's tally to the host in one transfer.

    names: each network's loss names, in order; the losses of a step come flat in that order.
    """

    def __init__(self, names: list[list[str]], device: torch.device) -> None:
        self.names = names
        self.owner = torch.tensor([i for i, n in enumerate(names) for _ in n], dtype=torch.int64, device=device)
        self.dead = torch.zeros(len(names), dtype=torch.bool, device=device)
        self.at = torch.full((len(names),), -1, dtype=torch.int64, device=device)
        self.first = torch.zeros(len(self.owner), dtype=torch.float64, device=device)
        self.sums = torch.zeros(len(self.owner), dtype=torch.float64, device=device)
        self._told = [True] * len(names)

    def tell(self, alive: list[bool]) -> None:
        """The networks the host has failed (a validation loss that is not finite) are dead on the
        device too: a transfer only when that changes."""
        if alive != self._told:
            self._told = list(alive)
            self.dead |= ~torch.tensor(alive, device=self.dead.device)

    def add(self, values: torch.Tensor, rows: int, step: int) -> torch.Tensor:
        """Count one step's losses (L,) (flat, detached); the networks alive after it, (M,) bool."""
        values = values.double()
        bad = torch.zeros(len(self.names), dtype=torch.float64, device=values.device)
        bad = bad.index_add_(0, self.owner, (~torch.isfinite(values)).double()) > 0
        newly = bad & ~self.dead
        self.at = torch.where(newly, step, self.at)
        self.first = torch.where(newly[self.owner], values, self.first)
        self.dead |= bad
        self.sums += torch.where(self.dead[self.owner], 0.0, values * rows)
        return ~self.dead

    def restart(self) -> None:
        """A new epoch: running sums from zero."""
        self.sums.zero_()

    def packed(self) -> torch.Tensor:
        return torch.cat([self.dead.double(), self.at.double(), self.first, self.sums])

    def unpack(self, values, states: list[_State], epoch: int) -> dict[int, dict[str, float]]:
        """Fail the networks of `states` that diverged since the last read, naming the first
        non-finite loss of the step where it happened; the running sums {id(state): {task: sum}}.
        values: an iterator over the floats of `packed`, advanced past them."""
        m, n = len(self.names), len(self.owner)
        dead, at, first, sums = ([next(values) for _ in range(k)] for k in (m, m, n, n))
        first, sums = iter(first), iter(sums)
        running = {}
        for i, s in enumerate(states):
            found = {name: next(first) for name in self.names[i]}
            running[id(s)] = {name: next(sums) for name in self.names[i]}
            if dead[i] and s.alive and at[i] >= 0:
                bad = next(f"loss of {k} is {v}" for k, v in found.items() if not math.isfinite(v))
                s.error = TrainingDiverged(f"{bad} at epoch {epoch} step {int(at[i])}: training stopped")
        return running


def _read(units: list, epoch: int) -> dict[int, dict[str, float]]:
    """Every unit's tally on the host in one transfer (`_Tally.unpack`)."""
    values = iter(torch.cat([u.tally.packed() for u in units]).tolist())
    running = {}
    for u in units:
        running.update(u.tally.unpack(values, u.states, epoch))
    return running


class PlainUnit:
    """One network, trained as a separate run (optionally DDP-wrapped, optionally probed)."""

    def __init__(self, state: _State, config, device: torch.device, world: int, schedule) -> None:
        self.states = [state]
        self.model = state.model = state.model.to(device, memory_format=torch.channels_last)
        self.net = self.model
        if world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = make_optimizer(config.optimizer, self.model.parameters(), config.lr, config.weight_decay, config.momentum)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        if state.member.probes and config.probes and len(state.tasks) > 1:
            state.probe = GradientProbe(self.model, state.tasks, self.optimizer, config.probes)
        self.tally = _Tally([[t.name for t in state.tasks]], device)
        self.stopped = False  # a loss was not finite: it takes no more steps (failed at the next read)

    def resume(self) -> None:
        state = self.states[0]
        saved = state.saved
        if state.probe is not None:
            state.probe.epochs = saved["probes"]
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])

    def step(self, inputs: _Inputs, step: int, autocast, amp: bool) -> None:
        """One training step, its losses counted in `tally` (a failed network trains no more)."""
        state = self.states[0]
        if not state.alive or self.stopped:
            return
        self.optimizer.zero_grad(set_to_none=True)
        extra = inputs.extra_of(state)
        if state.probe is not None and state.probe.wants(step):  # the probe runs the backward passes
            losses = state.probe.backward(inputs.x, extra, inputs.targets, step, autocast if amp else None)
            finite = _finite(losses)
        else:
            with autocast():
                losses = _losses(state, self.net(inputs.x, extra), inputs.targets)
            finite = _finite(losses)
            if finite:
                sum(losses.values()).backward()
        if finite:  # a non-finite loss fails the network (named at the next read): it takes no step
            self.optimizer.step()
            self.scheduler.step()
        self.stopped = not finite
        self.tally.add(torch.stack([v.detach().float() for v in losses.values()]), len(inputs), step)

    def predict(self, inputs: _Inputs, autocast) -> dict[int, dict[str, torch.Tensor]]:
        state = self.states[0]
        with autocast():
            return {0: self.model(inputs.x, inputs.extra_of(state))} if state.alive else {}

    def train(self, mode: bool) -> None:
        self.model.train(mode)

    def model_state(self, position: int) -> dict:
        return self.model.state_dict()

    def load_model_state(self, position: int, state: dict) -> None:
        self.model.load_state_dict(state)

    def optimizer_state(self, position: int) -> dict:
        return self.optimizer.state_dict()

    def parameters_of(self, position: int) -> int:
        return sum(p.numel() for p in self.model.parameters())


class FusedUnit:
    """Several networks of one architecture, stacked (`training.fused.FusedNets`)."""

    def __init__(self, states: list[_State], config, device: torch.device, schedule) -> None:
        self.states = states
        self.fused = FusedNets([s.model for s in states]).to(device)
        self.optimizer = make_optimizer(config.optimizer, self.fused.parameters(), config.lr, config.weight_decay, config.momentum)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        for s in states:
            s.model = None  # the stacks hold the weights from here on
        self.stepped = False
        self.tally = _Tally([[t.name for t in s.tasks] for s in states], device)

    def resume(self) -> None:
        for i, s in enumerate(self.states):
            self.fused.load_state_dict(i, s.saved["model"])
        self.fused.load_optimizer_states(self.optimizer, [s.saved["optimizer"] for s in self.states])
        self.scheduler.load_state_dict(self.states[0].saved["scheduler"])

    def _extra(self, inputs: _Inputs) -> torch.Tensor | None:
        """The injected labels (standard layout): one tensor when every network receives the same
        partners' labels, else stacked (N, B, C, H, W), a row per network."""
        extras = [inputs.extra_of(s, torch.contiguous_format) for s in self.states]
        if all(e is extras[0] for e in extras):
            return extras[0]
        return torch.stack(extras)

    def step(self, inputs: _Inputs, step: int, autocast, amp: bool) -> None:
        if self.stepped:
            return self._step(inputs, step, autocast)
        try:  # the first step says whether this device's kernels take stacked networks
            self._step(inputs, step, autocast)
        except RuntimeError as e:
            if out_of_memory(e):  # not a kernel's refusal: train_bundle splits the bundle
                raise
            raise StackingFailed(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from e
        self.stepped = True

    def _step(self, inputs: _Inputs, step: int, autocast) -> None:
        """One step of every network; nothing is read back to the host (`_Tally`)."""
        extra = self._extra(inputs)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast():
            out = self.fused(inputs.image(torch.contiguous_format), extra)
            losses = [_losses(s, self.fused.predictions(out, i), inputs.targets) for i, s in enumerate(self.states)]
        self.tally.tell([s.alive for s in self.states])
        alive = self.tally.add(torch.stack([v.detach().float() for mine in losses for v in mine.values()]), len(inputs), step)
        # a network whose loss is not finite (or that failed before) is left out of the sum: its
        # rows get no gradient from the others' losses, and theirs none from its
        totals = torch.stack([sum(v.values()).float() for v in losses])
        keep = alive & torch.isfinite(totals)
        torch.where(keep, totals, torch.zeros_like(totals)).sum().backward()
        self.optimizer.step()
        self.scheduler.step()

    def predict(self, inputs: _Inputs, autocast) -> dict[int, dict[str, torch.Tensor]]:
        with autocast():
            out = self.fused(inputs.image(torch.contiguous_format), self._extra(inputs))
        return {i: self.fused.predictions(out, i) for i, s in enumerate(self.states) if s.alive}

    def train(self, mode: bool) -> None:
        self.fused.train(mode)

    def model_state(self, position: int) -> dict:
        return self.fused.state_dict(position)

    def load_model_state(self, position: int, state: dict) -> None:
        self.fused.load_state_dict(position, state)

    def optimizer_state(self, position: int) -> dict:
        return self.fused.optimizer_state(self.optimizer, position)

    def parameters_of(self, position: int) -> int:
        return self.fused.parameter_count(position)


def build_units(states: list[_State], config, device: torch.device, world: int, schedule, fuse: bool = True) -> list:
    """Plain units for probed networks, lone networks and DDP; a fused unit per architecture.
    Each state's `training` says which, and why a network trains separate."""
    units, groups = [], {}
    for s in states:
        probed = s.member.probes and config.probes is not None and len(s.tasks) > 1
        if probed or world > 1 or not fuse:
            units.append(PlainUnit(s, config, device, world, schedule))
            s.training = ("separate", "its gradient probes need backward passes of their own" if probed
                          else f"DDP over {world} processes" if world > 1 else "stacking is off for this device (resources.fuse)")
        else:
            groups.setdefault(architecture(s.model), []).append(s)
    for group in groups.values():
        if len(group) == 1:
            units.append(PlainUnit(group[0], config, device, world, schedule))
            group[0].training = ("separate", "no other network of its architecture in its trial")
        else:
            units.append(FusedUnit(group, config, device, schedule))
            for s in group:
                s.training = ("fused", None)
    return units


@torch.no_grad()
def evaluate_units(units: list, data, states: list[_State], stats: dict, device: torch.device, batch_size: int,
                   autocast, feed: Feed, input: str, domains: list[str], chunk: int | None = None) -> dict[int, tuple[dict, dict]]:
    """{id(state): (mean loss per task, metrics per task)} over a split, for every live member.

    batch_size: rows read at a time; chunk: rows per forward (None: the whole batch). Each chunk
    adds its mean loss times its rows, as batches do: a loss that is a mean over every pixel or
    entry (L1, masked L1) is the unchunked one up to the order of floating-point sums; one that
    leaves some out of its denominator (cross-entropy's ignored ids, masked image-level entries)
    weighs chunks by rows, not by counted pixels (3e-5 relative apart in the tests). On a GPU the
    loop passes its training batch (`_eval_chunk`): a forward without gradients of a training
    batch holds less than the training step, which keeps every activation it saves, so
    evaluation never needs more memory than training (`training.memory`)."""
    for u in units:
        u.train(False)
    totals = {id(s): {t.name: 0.0 for t in s.tasks} for s in states}
    sums = {id(s): {t.name: {} for t in s.tasks} for s in states}
    count = 0
    for batch in feed(data.jobs(batch_size, domains)):
        rows = len(next(iter(batch.values())))
        step = rows if chunk is None else max(1, chunk)
        for start in range(0, rows, step):
            part = {k: v[start:start + step].to(device, non_blocking=True) for k, v in batch.items()}
            inputs = _Inputs(part, states, stats, input)
            n = len(inputs)
            for u in units:
                for position, preds in u.predict(inputs, autocast).items():
                    s = u.states[position]
                    for t in s.tasks:
                        totals[id(s)][t.name] += float(t.loss_value(preds[t.name], inputs.targets[t.name])) * n
                        for k, v in t.metric_sums(preds[t.name], inputs.targets[t.name], stats).items():
                            sums[id(s)][t.name][k] = sums[id(s)][t.name].get(k, 0) + v.cpu()
            count += n
    for u in units:
        u.train(True)
    return {id(s): ({k: v / max(count, 1) for k, v in totals[id(s)].items()},
                    {t.name: t.metrics_from_sums(sums[id(s)][t.name]) for t in s.tasks}) for s in states if s.alive}


def _eval_chunk(config, device: torch.device) -> int | None:
    """Rows per evaluation forward: the training batch on a GPU (so that evaluation needs no more
    memory than training), the whole evaluation batch on a CPU (whose results stay as they were)."""
    return config.batch_size if device.type == "cuda" and config.eval_batch_size > config.batch_size else None


def train_pass(states: list[_State], model_config, config, data, seed: int, device: torch.device, rank: int,
               world: int, first_epoch: int, on_epoch=None, fuse: bool = True) -> dict[int, tuple[dict, dict]]:
    """Train members that start at `first_epoch` in lock step to the end; returns each live
    member's test (losses, metrics) of its selected epoch, by id of its state."""
    steps_per_epoch = len(data.train) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    schedule = (lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps))) if config.schedule == "cosine" else (lambda s: 1.0)
    units = build_units(states, config, device, world, schedule, fuse)
    for u in units:
        if u.states[0].saved is not None:
            u.resume()
    amp = config.amp and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else _no_autocast
    stats = _stats(config, data)
    domains = _fields(states, data.train, config.input)
    feed = config.feed(device)
    for u in units:
        u.train(True)
    for epoch in range(first_epoch, config.epochs):
        if not any(s.alive for s in states):
            break
        seen = 0
        for u in units:
            u.tally.restart()
        order_seed = part_seed(seed, f"data/{epoch}")  # the same order for every run of this seed
        batches = data.train.jobs(config.batch_size, domains, shuffle=True, seed=order_seed, drop_last=True)
        for step, batch in enumerate(feed(batches)):
            if world > 1:  # every rank draws the same global batch and trains on its share of the rows
                batch = {k: v[rank::world] for k, v in batch.items()}
            inputs = _Inputs({k: v.to(device, non_blocking=True) for k, v in batch.items()}, states, stats, config.input)
            for u in units:
                u.step(inputs, step, autocast, amp)
            seen += len(inputs)
            if (step + 1) % READ_EVERY == 0:
                _read(units, epoch)
        running = _read(units, epoch)
        for s in states:
            if s.probe is not None and s.alive:
                s.probe.end_epoch()
        val = evaluate_units(units, data.val, states, stats, device, config.eval_batch_size, autocast, feed, config.input,
                             _fields(states, data.val, config.input), chunk=_eval_chunk(config, device))
        records = {}
        for u in units:
            for position, s in enumerate(u.states):
                if s.alive:
                    record = _close_epoch(u, position, s, epoch, seen, running[id(s)], val[id(s)][0], rank, seed)
                    if record is not None:
                        records[s.member] = record
        if on_epoch is not None and records:
            on_epoch(epoch, records)
    for u in units:
        for position, s in enumerate(u.states):
            if s.alive:
                u.load_model_state(position, s.best[2])
                if s.member.model_path is not None and rank == 0:
                    net = s.model if s.model is not None else _rebuild(s, model_config, seed, config, u.model_state(position))
                    save_model(net, s.member.model_path, seed)
    return evaluate_units(units, data.test, states, stats, device, config.eval_batch_size, autocast, feed, config.input,
                          _fields(states, data.test, config.input), chunk=_eval_chunk(config, device))


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

    try:
        size = int(data.train.size)
        networks = [memory.Network(tuple((t.out_channels, t.dense) for t in s.tasks), sum(t.inject_channels for t in s.inject),
                                   alone=bool(s.member.probes) and config.probes is not None and len(s.tasks) > 1) for s in group]
        precision = "bf16" if config.amp and device.type == "cuda" else "fp32"
        bytes_ = memory.bundle_bytes(model_config, size, networks, config.batch_size, precision, fuse=fuse)[0]
        predicted = f"predicted {bytes_ / memory.GIB:.2f} GiB"
    except Exception as e:  # the message must still be said: a prediction that fails says why
        predicted = f"no prediction: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    actual = (f"{torch.cuda.max_memory_allocated(device) / memory.GIB:.2f} GiB allocated at the peak of "
              f"{torch.cuda.get_device_properties(device).total_memory / memory.GIB:.1f} GiB") if device.type == "cuda" \
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
        s.error = TrainingDiverged(f"validation loss is {val_total} at epoch {epoch}: training stopped")
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


def batch_fields(tasks, data, input: str = "rgb") -> list[str]:
    """The fields a batch holds: the input, every task's label (predicted or injected), and the
    masks the split has."""
    return list(dict.fromkeys([input, *label_fields(tasks, data)]))


def _stats(config, data) -> dict:
    """The normalisation statistics targets are made with: the manifest's, or none (reference constants)."""
    return data.stats if config.normalisation == "dataset" else {}


def _fields(states: list[_State], data, input: str) -> list[str]:
    return batch_fields([t for s in states for t in (*s.tasks, *s.inject)], data, input)



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
    """Train the networks of one seed together; per member its `RunResult`, or the error that
    stopped it (`TrainingDiverged`) while the others trained on.

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
    stl = {t.name: t for s in states if s.alive and len(s.tasks) == 1 and not s.inject for t in s.tasks}
    chance = chance_losses(list(stl.values()), data.train, data.test, _stats(config, data), device, config.eval_batch_size) if rank == 0 else {}
    out: list[RunResult | BaseException] = []
    now = clock.share()  # one reading: the networks of a bundle share its cost evenly
    for s in states:
        if s.error is not None:
            out.append(s.error)
            continue
        test_losses, test_metrics = tested[id(s)]
        spent = s.spent(now)
        out.append(RunResult(
            spec=s.member.spec, seed=seed, test_losses=test_losses, val_losses=s.history[s.best[1]]["val"],
            test_metrics=test_metrics, best_epoch=s.best[1], epochs=config.epochs, history=s.history,
            wall_seconds=spent["wall"], cpu_seconds=spent["cpu"], gpu_seconds=spent["gpu"],
            device=describe_device(device), parameters=s.parameters,
            probes=dict(s.probe.epochs) if s.probe else {}, probe_variant=config.probes.variant if s.probe else None,
            model_path=str(s.member.model_path) if s.member.model_path is not None else None,
            bundle_size=len(states),
            chance_losses={t.name: chance[t.name] for t in s.tasks if t.name in chance},
            training=s.training[0], training_reason=s.training[1],
        ))
    return out
