"""The training and probe settings, declared once: the sweep config reads them from YAML and the
training loop runs with them. Torch-free, so that a config is checked before anything heavy loads.

A bad value raises `ConfigError` (a `ValueError`) naming the key as a sweep config spells it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from raytaskaff.errors import RaytaskaffError

#: The TAG lookahead variants (see training/probes.py).
VARIANTS = ("faithful", "corrected")


class ConfigError(RaytaskaffError, ValueError):
    """A setting is malformed; the message names the key."""


def check_choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")


def check_at_least(key: str, value, low) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{key}: must be an integer >= {low}, got {value!r}")


def check_range(key: str, value, low: float, high: float = math.inf, *, above: bool = False) -> None:
    """A finite number in [low, high] (in (low, high] when `above`)."""
    ok = math.isfinite(value) and (value > low if above else value >= low) and value <= high
    if not ok:
        bounds = f"{'>' if above else '>='} {low:g}" + (f" and <= {high:g}" if math.isfinite(high) else "")
        raise ConfigError(f"{key}: must be a finite number {bounds}, got {value!r}")


@dataclass(frozen=True)
class Training:
    """The hyper-parameters of every run of a sweep: epochs, batch_size, lr (peak), optimizer
    ("adam", "adamw", "sgd"; momentum for sgd), weight_decay, schedule ("cosine" per step, or
    "constant"), grad_scale (1/sqrt(T) at the shared representation), amp (bf16 autocast, CUDA
    only), eval_batch_size."""

    epochs: int = 2
    batch_size: int = 64
    lr: float = 2e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    grad_scale: bool = False
    amp: bool = True
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        check_at_least("training.epochs", self.epochs, 1)
        check_at_least("training.batch_size", self.batch_size, 1)
        check_at_least("training.eval_batch_size", self.eval_batch_size, 1)
        check_range("training.lr", self.lr, 0, above=True)
        check_range("training.momentum", self.momentum, 0, 1)
        check_range("training.weight_decay", self.weight_decay, 0)
        check_choice("training.optimizer", self.optimizer, ("adam", "adamw", "sgd"))
        check_choice("training.schedule", self.schedule, ("cosine", "constant"))


@dataclass(frozen=True)
class ProbeConfig:
    """Gradient probes of an MTL run. lookahead_every: steps between TAG lookaheads (the
    reference uses 10); gradients_every: steps between gs/etap records (1: every step, TAG's
    definition of CS; per-task gradients cost one encoder backward per task, so larger values make
    long all-task runs cheaper); variant: "faithful" to the reference or "corrected" (see
    training/probes.py)."""

    lookahead_every: int = 10
    variant: str = "corrected"
    gradients_every: int = 1

    def __post_init__(self) -> None:
        check_at_least("probes.lookahead_every", self.lookahead_every, 1)
        check_at_least("probes.gradients_every", self.gradients_every, 1)
        check_choice("probes.variant", self.variant, VARIANTS)
