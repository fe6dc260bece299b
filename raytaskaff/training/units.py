"""The units a bundle trains: a `PlainUnit` per separate network, a `FusedUnit` per stack.

- a `FusedUnit` stacks the networks of one architecture (`fused.architecture`) that carry no
  gradient probe: one vmapped forward and backward for all of them, one optimizer;
- a `PlainUnit` trains one network as a separate run does: the instrumented networks (the
  gradient probes need their own backward passes), a lone network, and a DDP-wrapped network.

Each unit steps its networks on a batch (`evaluation.Inputs`), counts their losses on the
device (`tally.Tally`), predicts for evaluation, and gives each network's model and optimizer
state as a separate run's (so that checkpoints resume either way).
"""

from __future__ import annotations

import torch

from raytaskaff.training.evaluation import Inputs
from raytaskaff.training.fused import FusedNets, architecture
from raytaskaff.training.optim import make_optimizer
from raytaskaff.training.probes import GradientProbe
from raytaskaff.training.tally import Tally, all_finite


def out_of_memory(e: BaseException) -> bool:
    """Whether `e` is an allocator's out-of-memory error (torch.OutOfMemoryError, CUDA's, or a
    RuntimeError saying so: CPU allocators and some kernels raise plain ones)."""
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


class StackingFailed(RuntimeError):
    """The first step of stacked networks failed on this device (a kernel without a batching
    rule there, say); nothing was written. `train_bundle` raises it, one line naming the device
    and the reason, or trains the bundle unstacked instead (`fall_back`)."""


def _losses(state, preds: dict[str, torch.Tensor], targets: dict) -> dict[str, torch.Tensor]:
    return {t.name: t.loss_value(preds[t.name], targets[t.name]) for t in state.tasks}


class PlainUnit:
    """One network, trained as a separate run (optionally DDP-wrapped, optionally probed)."""

    def __init__(self, state, config, device: torch.device, world: int, schedule) -> None:
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
        self.tally = Tally([[t.name for t in state.tasks]], device)
        self.stopped = False  # a loss was not finite: it takes no more steps (failed at the next read)

    def resume(self) -> None:
        state = self.states[0]
        saved = state.saved
        if state.probe is not None:
            state.probe.epochs = saved["probes"]
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])

    def step(self, inputs: Inputs, step: int, autocast, amp: bool) -> None:
        """One training step, its losses counted in `tally` (a failed network trains no more)."""
        state = self.states[0]
        if not state.alive or self.stopped:
            return
        self.optimizer.zero_grad(set_to_none=True)
        extra = inputs.extra_of(state)
        if state.probe is not None and state.probe.wants(step):  # the probe runs the backward passes
            losses = state.probe.backward(inputs.x, extra, inputs.targets, step, autocast if amp else None)
            finite = all_finite(losses)
        else:
            with autocast():
                losses = _losses(state, self.net(inputs.x, extra), inputs.targets)
            finite = all_finite(losses)
            if finite:
                sum(losses.values()).backward()
        if finite:  # a non-finite loss fails the network (named at the next read): it takes no step
            self.optimizer.step()
            self.scheduler.step()
        self.stopped = not finite
        self.tally.add(torch.stack([v.detach().float() for v in losses.values()]), len(inputs), step)

    def predict(self, inputs: Inputs, autocast) -> dict[int, dict[str, torch.Tensor]]:
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


class FusedUnit:
    """Several networks of one architecture, stacked (`training.fused.FusedNets`)."""

    def __init__(self, states: list, config, device: torch.device, schedule) -> None:
        self.states = states
        self.fused = FusedNets([s.model for s in states]).to(device)
        self.optimizer = make_optimizer(config.optimizer, self.fused.parameters(), config.lr, config.weight_decay, config.momentum)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        for s in states:
            s.model = None  # the stacks hold the weights from here on
        self.stepped = False
        self.tally = Tally([[t.name for t in s.tasks] for s in states], device)

    def resume(self) -> None:
        for i, s in enumerate(self.states):
            self.fused.load_state_dict(i, s.saved["model"])
        self.fused.load_optimizer_states(self.optimizer, [s.saved["optimizer"] for s in self.states])
        self.scheduler.load_state_dict(self.states[0].saved["scheduler"])

    def _extra(self, inputs: Inputs) -> torch.Tensor | None:
        """The injected labels (standard layout): one tensor when every network receives the same
        partners' labels, else stacked (N, B, C, H, W), a row per network."""
        extras = [inputs.extra_of(s, torch.contiguous_format) for s in self.states]
        if all(e is extras[0] for e in extras):
            return extras[0]
        return torch.stack(extras)

    def step(self, inputs: Inputs, step: int, autocast, amp: bool) -> None:
        if self.stepped:
            return self._step(inputs, step, autocast)
        try:  # the first step says whether this device's kernels take stacked networks
            self._step(inputs, step, autocast)
        except RuntimeError as e:
            if out_of_memory(e):  # not a kernel's refusal: train_bundle splits the bundle
                raise
            raise StackingFailed(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from e
        self.stepped = True

    def _step(self, inputs: Inputs, step: int, autocast) -> None:
        """One step of every network; nothing is read back to the host (`tally.Tally`)."""
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

    def predict(self, inputs: Inputs, autocast) -> dict[int, dict[str, torch.Tensor]]:
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


def build_units(states: list, config, device: torch.device, world: int, schedule, fuse: bool = True) -> list:
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
