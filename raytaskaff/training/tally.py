"""The training losses of a bundle's networks, summed on the device and read on the host now and then.

A fused step reads nothing back to the host: its losses are summed, and a diverged network
masked, on the device (`Tally`); the host reads every unit's tally in one transfer (`read_tallies`)
every `training.bundle.READ_EVERY` steps and at each epoch's end, so a diverged network is named
at most that many steps late (its rows are left out of the loss from the step it diverged).
"""

from __future__ import annotations

import math

import torch

from raytaskaff.errors import RaytaskaffError


class TrainingDiverged(RaytaskaffError):
    """A loss became NaN or infinite: where (epoch; training step, or None for the validation
    pass), which task and its value. `as_record` is what a result stores of it; `result`, set by
    `training.bundle.train_bundle`, the network's `RunResult` with that record."""

    result = None

    def __init__(self, message: str, epoch: int | None = None, step: int | None = None, task: str | None = None,
                 loss: float | None = None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.task, self.loss = epoch, step, task, loss

    def as_record(self) -> dict:
        """{epoch, step (None: the validation pass), task, loss (a string: "nan", "inf", as JSON
        has no such numbers), message}."""
        return {"epoch": self.epoch, "step": self.step, "task": self.task,
                "loss": None if self.loss is None else str(self.loss), "message": str(self)}


def all_finite(losses: dict[str, torch.Tensor]) -> bool:
    """Whether every loss is finite: one read on the host (a plain step decides on it whether to
    take its optimizer step; a fused step decides on the device and reads nothing)."""
    return bool(torch.isfinite(torch.stack([v.detach().float() for v in losses.values()])).all())


class Tally:
    """The training losses of a unit's networks, kept on the device between reads: whether each
    network has diverged, the step where it did and that step's losses (to name the loss), and the
    running sums of every loss times its batch's rows (fp64, as the host summed them).
    `read_tallies` brings every unit's tally to the host in one transfer.

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

    def unpack(self, values, states: list, epoch: int) -> dict[int, dict[str, float]]:
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
                task, loss = next((k, v) for k, v in found.items() if not math.isfinite(v))
                s.error = TrainingDiverged(f"loss of {task} is {loss} at epoch {epoch} step {int(at[i])}: training stopped",
                                           epoch=epoch, step=int(at[i]), task=task, loss=loss)
        return running


def read_tallies(units: list, epoch: int) -> dict[int, dict[str, float]]:
    """Every unit's tally on the host in one transfer (`Tally.unpack`)."""
    values = iter(torch.cat([u.tally.packed() for u in units]).tolist())
    running = {}
    for u in units:
        running.update(u.tally.unpack(values, u.states, epoch))
    return running
