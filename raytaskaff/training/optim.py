"""Optimizers, and the update a step *would* make, computed without touching the optimizer.

`virtual_update` is the corrected lookahead's step: the optimizer's real update rule (momentum and
Adam moments included) applied to a hypothetical gradient, reading the live optimizer state and
writing nothing. It mirrors torch.optim's SGD, Adam and AdamW (the tests compare it with a real
step of each).
"""

from __future__ import annotations

import math

import torch


def make_optimizer(name: str, params, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    """The sweep's optimizer, on its `foreach` kernels everywhere: torch picks them on CUDA and the
    per-tensor loop on a CPU, where the kernels take the same bits in about 0.77 of the loop's time
    (`bench/savings.py`; tests/training/test_optim.py compares the bits)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=True)
    raise ValueError(f"unknown optimizer {name!r} (known: adam, adamw, sgd)")


def _group_of(optimizer: torch.optim.Optimizer) -> dict[int, dict]:
    return {id(p): group for group in optimizer.param_groups for p in group["params"]}


@torch.no_grad()
def virtual_update(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """The amounts `u` a step of `optimizer` with gradients `grads` would subtract from `params`
    (new = old - u), given the optimizer's current state. Nothing is modified."""
    groups = _group_of(optimizer)
    updates = []
    for p, g in zip(params, grads):
        group = groups[id(p)]
        state = optimizer.state.get(p, {})
        lr, wd = group["lr"], group.get("weight_decay", 0.0)
        if isinstance(optimizer, torch.optim.SGD):
            d = g + wd * p if wd else g
            momentum = group.get("momentum", 0.0)
            if momentum:
                buf = state.get("momentum_buffer")
                buf = d if buf is None else buf * momentum + (1 - group.get("dampening", 0.0)) * d
                d = d + momentum * buf if group.get("nesterov", False) else buf
            updates.append(lr * d)
        elif isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
            decoupled = isinstance(optimizer, torch.optim.AdamW) or group.get("decoupled_weight_decay", False)
            beta1, beta2 = group["betas"]
            if wd and not decoupled:
                g = g + wd * p
            step = float(state["step"]) + 1 if "step" in state else 1.0
            m = state["exp_avg"] * beta1 + (1 - beta1) * g if "exp_avg" in state else (1 - beta1) * g
            v = state["exp_avg_sq"] * beta2 + (1 - beta2) * g * g if "exp_avg_sq" in state else (1 - beta2) * g * g
            denom = v.sqrt() / math.sqrt(1 - beta2**step) + group["eps"]
            u = (lr / (1 - beta1**step)) * m / denom
            if wd and decoupled:
                u = u + lr * wd * p
            updates.append(u)
        else:
            raise TypeError(f"no virtual update for {type(optimizer).__name__}")
    return updates
