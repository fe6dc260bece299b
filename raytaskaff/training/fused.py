"""Several networks of one architecture trained as one stacked module (the networks of a bundle).

The networks of a seed (its STL, pair, all-task and group networks, or its label-injection
networks with the same number of injected channels) share the trunk architecture: encoder, neck
and injection stem. `FusedNets` stacks their trunk parameters and BatchNorm buffers along a new
leading dimension N and runs them with `torch.func.vmap` over `functional_call`: one call reads
the batch once and computes every network's representation (on CPU and GPU, vmap turns a stacked
convolution into one grouped convolution). The decoders of a task are stacked over the networks
that have that task. BatchNorm keeps its running statistics per network: one batch norm over the
networks' channels folded together (N x C), each channel with its own network's weight and
statistics (`_FoldedBatchNorm`).

Equivalence with separate networks: the parameters of network i are row i of each stack, every
loss reads only its own row, and the training loss of the bundle is the sum of the networks'
losses, so each row's gradient is its own network's gradient. Adam, AdamW and SGD (momentum,
weight decay) update elementwise, so one optimizer over the stacks steps each network exactly as
its own optimizer would. What differs is the order of floating-point reductions inside the
grouped convolutions (fp32 results within about 1e-6 relative of the separate networks').
Nothing here clips a global norm, which would couple the networks.

Shapes: images (B, 3, H, W) are shared; the representation is (N, B, C, h, w); the predictions
of task t are (N_t, B, out_t, H, W) for the N_t networks that predict t (or (N_t, B, out_t) for
an image-level head).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F
from torch.func import functional_call, vmap

from raytaskaff.models import MultiTaskNet

_TRUNK = ("encoder.", "neck.", "inject_stem.")


class _ScaleRows(torch.autograd.Function):
    """Identity forward; multiplies row n of the gradient by scales[n] (each network's own
    1/sqrt(T) at the shared representation, `models.scale_grad`)."""

    @staticmethod
    def forward(ctx, x, scales):
        ctx.save_for_backward(scales)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        (scales,) = ctx.saved_tensors
        return grad * scales.view(-1, *([1] * (grad.dim() - 1))).to(grad.dtype), None


def architecture(net: MultiTaskNet) -> tuple:
    """What must be equal for two networks to share a stack: the model config and the number of
    injected channels (the decoders are stacked per task, so task sets may differ)."""
    return (net.config, sum(s.inject_channels for s in net.inject_specs))


class _Trunk(nn.Module):
    """Encoder, neck and injection stem of a network: (B, 3, H, W) (+ extra) -> representation,
    computed by the network's own `MultiTaskNet.represent`. Its gradient scale is 1 here: each
    network's own scale is applied per row after the vmapped trunk (`_ScaleRows`)."""

    grad_scale = 1.0

    def __init__(self, net: MultiTaskNet) -> None:
        super().__init__()
        self.encoder, self.neck, self.inject_stem = net.encoder, net.neck, net.inject_stem

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return MultiTaskNet.represent(self, x, extra)


class _FoldedBatchNorm(torch.autograd.Function):
    """`F.batch_norm` of N stacked networks as one call over N x C channels (HFTA's fusion of
    batch norm, Wang et al. 2021): under vmap a stacked convolution leaves its output as
    (B, N x C, H, W) in memory, so the networks' channels are the channels of one batch norm,
    their weights and running statistics the (N, C) stacks read as N x C. The vendor kernel
    (cuDNN's, the CPU one) runs on that plain tensor, with its own backward; vmap never sees it.

    Only for use under vmap (its `vmap` rule is the computation); `_StackedBatchNorm` calls it.
    """

    generate_vmap_rule = False

    @staticmethod
    def forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
        return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("_FoldedBatchNorm is differentiated only under vmap (through its vmap rule)")

    @staticmethod
    def vmap(info, in_dims, x, weight, bias, running_mean, running_var, training, momentum, eps):
        if in_dims[0] is None or any(d != 0 for d in in_dims[1:5]):  # not stacked networks: row by row
            return vmap(_batch_norm_rows, in_dims=(*in_dims[:5], None, None, None))(
                x, weight, bias, running_mean, running_var, training, momentum, eps), 0
        x = x.movedim(in_dims[0], 1)  # (B, N, C, H, W): a view of the stacked convolution's output
        b, n, c = x.shape[:3]
        y = F.batch_norm(x.reshape(b, n * c, *x.shape[3:]), running_mean.view(n * c), running_var.view(n * c),
                         weight.reshape(n * c), bias.reshape(n * c), training, momentum, eps)
        return y.reshape(b, n, c, *x.shape[3:]), 1


def _batch_norm_rows(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """One network's batch norm in plain tensor operations (what `_StackedBatchNorm` computes
    when its networks cannot be folded into one call): fp32 statistics of the activations, as
    autocast keeps them, the output in the activations' dtype; the running statistics updated in
    place with PyTorch's rule (momentum-weighted, the variance unbiased)."""
    xf = x.float()
    if training:
        mean = xf.mean(dim=(0, 2, 3))
        var = xf.var(dim=(0, 2, 3), unbiased=False)
        count = xf.numel() / xf.shape[1]
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(mean.detach() * momentum)
            running_var.mul_(1 - momentum).add_(var.detach() * momentum * count / max(count - 1, 1))
    else:
        mean, var = running_mean, running_var
    scale = weight * torch.rsqrt(var + eps)
    return (xf * scale[:, None, None] + (bias - mean * scale)[:, None, None]).to(x.dtype)


class _StackedBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d for use under vmap over stacked networks.

    Under vmap the fused kernels cannot be called as `nn.BatchNorm2d` calls them: they ask for
    the input's memory format, which vmap does not answer, and functorch's batching rule refuses
    bf16 activations beside fp32 running statistics. `_FoldedBatchNorm` calls them itself on the
    networks' channels folded into one tensor (`folded`, the default); otherwise
    (`folded = False`, or a momentum of None, whose factor would have to be read from each
    network's count) the statistics are computed in plain tensor operations. Either way fp32
    statistics of the activations (as autocast does for batch norm), the output in the input's
    dtype, the running statistics updated in place (under vmap each network's own row) with
    PyTorch's rule. Same parameter and buffer names as `nn.BatchNorm2d`, so a network's state dict
    fits it unchanged.
    """

    folded = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
        if self.folded and self.momentum is not None:
            return _FoldedBatchNorm.apply(x, self.weight, self.bias, self.running_mean, self.running_var, self.training,
                                          self.momentum, self.eps)
        # momentum None: the cumulative average, as nn.BatchNorm2d keeps it (a tensor: nothing read)
        m = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.float()
        return _batch_norm_rows(x, self.weight, self.bias, self.running_mean, self.running_var, self.training, m,
                                self.eps)


def _meta_copy(module: nn.Module) -> nn.Module:
    """A parameter-free template of `module` for `functional_call` (its tensors on `meta`), its
    BatchNorm layers replaced by `_StackedBatchNorm`."""
    template = copy.deepcopy(module).to("meta")
    for name, child in list(template.named_modules()):
        if type(child) is nn.BatchNorm2d:
            stacked = _StackedBatchNorm(child.num_features, child.eps, child.momentum, device="meta")
            if not name:
                return stacked
            parent, _, leaf = name.rpartition(".")
            setattr(template.get_submodule(parent) if parent else template, leaf, stacked)
    return template


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors]).contiguous()


class FusedNets:
    """N `MultiTaskNet`s of one architecture as stacked tensors: one forward for all of them.

    nets: the networks, built as usual (their seeded initial weights are copied, so network i
    starts exactly where the separate run starts); they are not kept or modified.
    """

    def __init__(self, nets: list[MultiTaskNet]) -> None:
        if not nets:
            raise ValueError("a fused module needs at least one network")
        if len({architecture(n) for n in nets}) != 1:
            raise ValueError("fused networks must share one architecture (model config and injected channels)")
        self.size = len(nets)
        self.task_names = [list(n.task_names) for n in nets]
        self.tasks = list(dict.fromkeys(t for n in nets for t in n.task_names))
        # rows[t]: which networks predict t, in order; row_of[(i, t)]: network i's row in t's stack
        self.rows = {t: [i for i, n in enumerate(nets) if t in n.task_names] for t in self.tasks}
        self.row_of = {(i, t): r for t, members in self.rows.items() for r, i in enumerate(members)}
        self.training = True

        trunk = _Trunk(nets[0])
        self._trunk = _meta_copy(trunk)
        self._param_names = {"trunk": [n for n, _ in trunk.named_parameters()]}
        self._buffer_names = {"trunk": [n for n, _ in trunk.named_buffers()]}
        trunks = [dict(_Trunk(n).named_parameters()) for n in nets], [dict(_Trunk(n).named_buffers()) for n in nets]
        self.params = {"trunk": {k: nn.Parameter(_stack([p[k] for p in trunks[0]])) for k in self._param_names["trunk"]}}
        self.buffers = {"trunk": {k: _stack([b[k] for b in trunks[1]]) for k in self._buffer_names["trunk"]}}
        self._decoders = {}
        for t in self.tasks:
            decoders = [nets[i].decoders[t] for i in self.rows[t]]
            self._decoders[t] = _meta_copy(decoders[0])
            self._param_names[t] = [n for n, _ in decoders[0].named_parameters()]
            self._buffer_names[t] = [n for n, _ in decoders[0].named_buffers()]
            self.params[t] = {k: nn.Parameter(_stack([dict(d.named_parameters())[k] for d in decoders]))
                              for k in self._param_names[t]}
            self.buffers[t] = {k: _stack([dict(d.named_buffers())[k] for d in decoders]) for k in self._buffer_names[t]}
        self.scales = torch.tensor([n.grad_scale for n in nets], dtype=torch.float32)
        self._scaled = any(n.grad_scale != 1.0 for n in nets)  # decided here: a forward reads nothing back
        self._index = {t: torch.tensor(rows) for t, rows in self.rows.items()}  # moved with `to`
        self._plain_names = [[n for n, _ in net.named_parameters()] for net in nets]
        self._buffer_keys = [[n for n, _ in net.named_buffers()] for net in nets]

    # -- tensors ---------------------------------------------------------------------------------
    def parameters(self) -> list[nn.Parameter]:
        """Every stacked parameter, trunk first, then each task's decoders (the optimizer's order)."""
        return [p for part in self.params.values() for p in part.values()]

    def to(self, device: torch.device) -> FusedNets:
        with torch.no_grad():
            for part in self.params.values():
                for k, p in part.items():
                    part[k] = nn.Parameter(p.to(device))
            for part in self.buffers.values():
                for k, b in part.items():
                    part[k] = b.to(device)
        self.scales = self.scales.to(device)
        self._index = {t: i.to(device) for t, i in self._index.items()}
        return self

    def train(self, mode: bool = True) -> FusedNets:
        self.training = mode
        self._trunk.train(mode)
        for d in self._decoders.values():
            d.train(mode)
        return self

    # -- forward ---------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """{task: (N_t, B, ...) predictions} of every network for one batch.

        x: (B, 3, H, W) images, shared; extra: injected labels, (B, C, H, W) shared by every
        network or (N, B, C, H, W) one per network (label injection from different partners)."""
        def trunk(params, buffers, x, extra):
            return functional_call(self._trunk, (params, buffers), (x,), {"extra": extra})

        per_net = extra is not None and extra.dim() == x.dim() + 1
        # vmap's convolutions and reductions want the standard layout (a no-op for inputs made in
        # it, as `training.bundle` makes them)
        x = x.contiguous()
        extra = None if extra is None else extra.contiguous()
        z = vmap(trunk, in_dims=(0, 0, None, 0 if per_net else None))(self.params["trunk"], self.buffers["trunk"], x, extra)
        if self._scaled:
            z = _ScaleRows.apply(z, self.scales)
        out = {}
        for t in self.tasks:
            rows = self.rows[t]
            zt = z if len(rows) == self.size else z.index_select(0, self._index[t])

            def decode(params, buffers, z, t=t):
                return functional_call(self._decoders[t], (params, buffers), (z,))

            out[t] = vmap(decode)(self.params[t], self.buffers[t], zt)
        return out

    def predictions(self, out: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
        """Network i's predictions {task: (B, ...)} out of a fused forward's output."""
        return {t: out[t][self.row_of[(i, t)]] for t in self.task_names[i]}

    # -- one network's view ----------------------------------------------------------------------
    def _locate(self, i: int, name: str) -> tuple[dict, str, int]:
        """(stack dict, key, row) of network i's parameter or buffer `name` (a MultiTaskNet name)."""
        if name.startswith(_TRUNK):
            part = self.params["trunk"] if name in self.params["trunk"] else self.buffers["trunk"]
            return part, name, i
        _, t, rest = name.split(".", 2)  # decoders.<task>.<rest>
        part = self.params[t] if rest in self.params[t] else self.buffers[t]
        return part, rest, self.row_of[(i, t)]

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Network i's `MultiTaskNet.state_dict()` (copies)."""
        out = {}
        for name in (*self._plain_names[i], *self._buffer_keys[i]):
            part, key, row = self._locate(i, name)
            out[name] = part[key][row].detach().clone()
        return out

    @torch.no_grad()
    def load_state_dict(self, i: int, state: dict[str, torch.Tensor]) -> None:
        """Write a `MultiTaskNet.state_dict()` into network i's rows."""
        for name in (*self._plain_names[i], *self._buffer_keys[i]):
            part, key, row = self._locate(i, name)
            part[key][row].copy_(state[name])

    def optimizer_state(self, optimizer: torch.optim.Optimizer, i: int) -> dict:
        """Network i's share of the stacked optimizer's state, as the state dict of an optimizer
        of the same kind over `MultiTaskNet.parameters()` (so a bundle's checkpoint resumes as a
        separate run and back)."""
        full = optimizer.state_dict()
        index = {id(p): k for k, p in enumerate(self.parameters())}
        state = {}
        for j, name in enumerate(self._plain_names[i]):
            part, key, row = self._locate(i, name)
            saved = full["state"].get(index[id(part[key])])
            if saved is not None:
                state[j] = {k: v[row].clone() if torch.is_tensor(v) and v.dim() > 0 else v for k, v in saved.items()}
        group = {k: v for k, v in full["param_groups"][0].items() if k != "params"}
        return {"state": state, "param_groups": [{**group, "params": list(range(len(self._plain_names[i])))}]}

    def load_optimizer_states(self, optimizer: torch.optim.Optimizer, states: list[dict]) -> None:
        """Stack the networks' optimizer state dicts (one per network, as `optimizer_state` writes
        them) into `optimizer`, the optimizer over `parameters()`."""
        params = self.parameters()
        stacked: dict[int, dict] = {}
        for k, p in enumerate(params):
            rows = []
            for i in range(self.size):
                for j, name in enumerate(self._plain_names[i]):
                    part, key, row = self._locate(i, name)
                    if part[key] is p:
                        rows.append((row, states[i]["state"].get(j)))
            rows.sort(key=lambda r: r[0])
            if any(s is None for _, s in rows):
                continue
            first = rows[0][1]
            stacked[k] = {name: torch.stack([s[name] for _, s in rows]) if torch.is_tensor(v) and v.dim() > 0 else v
                          for name, v in first.items()}
        group = {k: v for k, v in states[0]["param_groups"][0].items() if k != "params"}
        optimizer.load_state_dict({"state": stacked, "param_groups": [{**group, "params": list(range(len(params)))}]})
