"""Gradient instrumentation of multi-task runs: the raw material of the `gs`, `gt` and `etap` scorers.

At every instrumented step the per-task gradients g_i of the shared parameters are taken from one
forward pass (each decoder reads its own detached copy of the representation, so one backward
gives every task's gradient at the representation; the encoder is then back-propagated for every
task at once, one backward batched over the tasks' gradients at the representation with
`is_grads_batched`, rather than a backward per task). Their sum is the gradient the optimizer uses, so the run trains exactly as it would
without instrumentation. From the g_i:

- gs (TAG's "CS" baseline, Fifty et al. 2021): cos(g_t, g_p), every step, over every shared
  parameter ("gs") and, as TAG's code takes it, over the encoder's convolution and linear kernel
  weights alone, batch-norm weights and biases left out ("gs_kernels"; `kernel_mask`).
- gt (TAG's lookahead transference): every `lookahead_every` steps, for each source task p, the
  losses after a virtual step on p alone: Z(p -> t) = (1 - L_t(theta - u_p) / L_t(theta)) / lr.
- etap (ETAP's first-order form, Ayman et al.): Z(p -> t) ~ (g_t . u_p) / (L_t lr), every step.

Precision: gt divides a small difference of two losses by lr, so both losses are computed in fp32
by the same functional forward (the training forward may run under bf16 autocast, whose rounding
alone would dominate the gap). etap divides by the training forward's losses, in its precision:
there L_t only scales a first-order term whose precision is that of the gradients anyway.

Orientation: every matrix is [target][partner], so gt[t][p] = Z(p -> t).

Three variants of the lookahead step u_p (reference section 3.4): "faithful" reproduces the
reference code's step (plain SGD with weight decay on the encoder only, the neck excluded,
momentum never found); "corrected" uses the optimizer's real update (momentum, Adam moments) on all
shared parameters; "raw" is lr g_p on all shared parameters, no momentum, moments or weight
decay (under Adam, "corrected" is dominated by the optimizer's shared state, which makes every
partner's step alike; "raw" keeps the partner's own direction). `variant` is recorded as "gt" and
"etap"; each of `variants` as "gt/<variant>" and "etap/<variant>", from the same gradients and the
same baseline losses (one more forward pass per task and lookahead each). Every virtual forward
goes through `torch.func.functional_call` on copies of the parameters and BatchNorm buffers, in
fp32: the live parameters, optimizer state and running statistics are untouched (the reference
edits the model in place, and its lookahead updates BN statistics).

The per-step matrices are summed where they are computed (on the GPU for a GPU run) and read back
once per epoch, so that an instrumented step never waits for the device.
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from raytaskaff.data.transforms import Target
from raytaskaff.models import MultiTaskNet
from raytaskaff.settings import VARIANTS, ProbeConfig
from raytaskaff.tasks import Task
from raytaskaff.training.optim import virtual_update

__all__ = ["VARIANTS", "GradientProbe", "ProbeConfig"]


def _flat_rows(tensors: list[torch.Tensor | None], like: list[torch.Tensor], rows: int) -> torch.Tensor:
    """(rows, P): per-row tensors of shape (rows, *p.shape) (None: zeros) laid out flat."""
    return torch.cat([(t.reshape(rows, -1) if t is not None else p.new_zeros(rows, p.numel())) for t, p in zip(tensors, like)], dim=1)


def _split(flat: torch.Tensor, like: list[torch.Tensor], rows: int | None = None) -> list[torch.Tensor]:
    """Views of a flat (P,) tensor shaped like `like` (with `rows`: of (rows, P), each (rows, *p.shape))."""
    out, start = [], 0
    for p in like:
        piece = flat[..., start:start + p.numel()]
        out.append(piece.view_as(p) if rows is None else piece.reshape(rows, *p.shape))
        start += p.numel()
    return out


#: The layers whose `weight` is a kernel (TAG's gradient cosine takes these and nothing else).
KERNEL_LAYERS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d,
                 torch.nn.ConvTranspose3d, torch.nn.Linear)


def kernel_mask(model: MultiTaskNet, shared: list[torch.Tensor]) -> torch.Tensor:
    """(P,) bool over the flat shared parameters: True on the `weight` of the encoder's
    convolution and linear layers (TAG's gradient cosine), False on batch-norm weights, biases,
    the neck and the injection stem."""
    kernels = {id(m.weight) for m in model.encoder.modules() if isinstance(m, KERNEL_LAYERS)}
    return torch.cat([torch.full((p.numel(),), id(p) in kernels, dtype=torch.bool, device=p.device) for p in shared])


def cosine_matrix(grads: torch.Tensor) -> torch.Tensor:
    """(T, P) gradients -> (T, T) cosines (0 where a gradient is zero)."""
    unit = grads / grads.norm(dim=1, keepdim=True).clamp(min=1e-30)
    return unit @ unit.T


class GradientProbe:
    """Instrumented backward passes and per-epoch affinity matrices for one MTL run."""

    def __init__(self, model: MultiTaskNet, tasks: list[Task], optimizer: torch.optim.Optimizer, config: ProbeConfig) -> None:
        if len(tasks) < 2:
            raise ValueError("gradient probes need a multi-task run")
        self.model, self.tasks, self.optimizer, self.config = model, tasks, optimizer, config
        self.shared = model.shared_parameters()
        encoder = {id(p) for p in model.encoder_parameters()}
        # the parameters a lookahead steps: the encoder alone (faithful) or everything shared
        self.stepped = {v: [i for i, p in enumerate(self.shared) if v != "faithful" or id(p) in encoder] for v in VARIANTS}
        self.kernels = kernel_mask(model, self.shared).nonzero().squeeze(1)  # (K,) indices into the flat P
        # the variants computed, the recorded one first; each with the probe names it fills
        self.variants = [config.variant] + [v for v in config.variants if v != config.variant]
        self.names = {v: ([""] if v == config.variant else []) + ([f"/{v}"] if v in config.variants else []) for v in self.variants}
        names = ["gs", "gs_kernels", "gt", "etap"] + [f"{k}/{v}" for v in config.variants for k in ("gt", "etap")]
        self.epochs: dict[str, list[list[list[float]]]] = {k: [] for k in names}
        self._reset()

    def _reset(self) -> None:
        self._sums: dict[str, torch.Tensor | None] = {k: None for k in self.epochs}
        self._counts = {k: 0 for k in self.epochs}

    def wants(self, step: int) -> bool:
        """Whether step `step` of an epoch is instrumented (else train it the plain way)."""
        return step % self.config.gradients_every == 0 or step % self.config.lookahead_every == 0

    def backward(self, x: torch.Tensor, extra: torch.Tensor | None, targets: dict[str, Target], step: int,
                 autocast=None) -> dict[str, torch.Tensor]:
        """Forward and backward one batch, leaving the summed gradient in `.grad`, and record the
        step's probes; returns the task losses. Call before `optimizer.step()`."""
        model = self.model
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            z = model.represent(x, extra)
            copies = {t.name: z.detach().requires_grad_() for t in self.tasks}
            preds = model.heads(copies)
            losses = {t.name: t.loss_value(preds[t.name], targets[t.name]) for t in self.tasks}
        sum(losses.values()).backward()  # decoder gradients, and each task's gradient at z
        at_z = torch.stack([copies[t.name].grad for t in self.tasks])  # (T, *z.shape)
        per_task = torch.autograd.grad(z, self.shared, grad_outputs=at_z, is_grads_batched=True, allow_unused=True)
        grads = _flat_rows(list(per_task), self.shared, len(self.tasks)).float()  # (T, P)
        for p, g in zip(self.shared, _split(grads.sum(0), self.shared)):
            p.grad = g.clone() if p.grad is None else p.grad + g  # accumulate, as backward() does

        loss_values = torch.stack([losses[t.name].detach().float() for t in self.tasks])
        gradients, lookahead = step % self.config.gradients_every == 0, step % self.config.lookahead_every == 0
        if gradients:
            self._add("gs", cosine_matrix(grads))
            self._add("gs_kernels", cosine_matrix(grads.index_select(1, self.kernels)))
        if gradients or lookahead:
            lr = self.optimizer.param_groups[0]["lr"]
            updates = {v: self._updates(grads, v) for v in self.variants}  # (T, P) each: u_p, zero outside the stepped
            if gradients:
                for v, u in updates.items():
                    # etap[t][p] = (g_t . u_p) / (L_t lr), L_t from the training forward (autocast's precision)
                    etap = (grads @ u.T) / (loss_values[:, None] * lr)
                    for suffix in self.names[v]:
                        self._add("etap" + suffix, etap)
            if lookahead:
                for v, gt in self._lookahead(x, extra, targets, updates, lr).items():
                    for suffix in self.names[v]:
                        self._add("gt" + suffix, gt)
        return losses

    def _updates(self, grads: torch.Tensor, variant: str) -> torch.Tensor:
        """(T, P) virtual updates of each task's step alone under `variant`, every task at once
        (the update rules are elementwise, so a leading task dimension broadcasts through them)."""
        rows = len(self.tasks)
        stepped = self.stepped[variant]
        params = [self.shared[i] for i in stepped]
        split = _split(grads, self.shared, rows)
        g = [split[i] for i in stepped]  # (T, *p.shape) each
        group = self.optimizer.param_groups[0]
        if variant == "corrected":
            u = virtual_update(self.optimizer, params, g)
        elif variant == "faithful":  # the reference: lr (g + wd theta), whatever the optimizer
            u = [group["lr"] * (gi + group.get("weight_decay", 0.0) * p.detach()) for gi, p in zip(g, params)]
        else:  # raw: the gradient itself, no optimizer state and no weight decay
            u = [group["lr"] * gi for gi in g]
        full: list[torch.Tensor | None] = [None] * len(self.shared)
        for i, ui in zip(stepped, u):
            full[i] = ui
        return _flat_rows(full, self.shared, rows).to(grads.dtype)

    @torch.no_grad()
    def _lookahead(self, x, extra, targets, updates: dict[str, torch.Tensor], lr) -> dict[str, torch.Tensor]:
        """{variant: (T, T) [target][source] transference of one batch}, on copies of parameters
        and buffers: (1 - L_t(theta - u_p) / L_t(theta)) / lr, both losses from the same fp32
        forward, the baseline (computed once for every variant) without a step (not the training
        forward's losses, which may be bf16)."""
        model = self.model
        names = {id(p): n for n, p in model.named_parameters()}
        inputs, kwargs = (x.float(),), {"extra": None if extra is None else extra.float()}

        def losses(moved: dict[str, torch.Tensor]) -> list[torch.Tensor]:
            # fresh copies of the live BatchNorm buffers: the train-mode forward writes into them
            state = {**{n: b.clone() for n, b in model.named_buffers()}, **moved}
            with torch.autocast(x.device.type, enabled=False):  # fp32 even if the caller autocasts
                preds = functional_call(model, state, inputs, kwargs, strict=False)
                return [t.loss_value(preds[t.name].float(), targets[t.name]) for t in self.tasks]

        before = torch.stack(losses({}))
        out = {}
        for variant, u in updates.items():
            columns = []
            for source in range(len(self.tasks)):
                after = losses({names[id(p)]: p.detach() - d for p, d in zip(self.shared, _split(u[source], self.shared))})
                columns.append((1.0 - torch.stack(after) / before) / lr)  # [target] for this source, fp32
            out[variant] = torch.stack(columns, dim=1).double()
        return out

    def _add(self, name: str, matrix: torch.Tensor) -> None:
        """Add one step's matrix to the epoch's sum, on the device it was computed on."""
        matrix = matrix.detach().double()
        total = self._sums[name]
        self._sums[name] = matrix.clone() if total is None else total.add_(matrix)
        self._counts[name] += 1

    def end_epoch(self) -> None:
        """Close the epoch: store each probe's mean over its steps, [target][partner]."""
        for name, total in self._sums.items():
            if self._counts[name]:
                self.epochs.setdefault(name, []).append((total.cpu() / self._counts[name]).tolist())
        self._reset()
