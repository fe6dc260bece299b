"""How much memory a network's training step and evaluation need, measured, not guessed.

`measure` builds one network (a model preset's `ModelConfig`, its task heads, injected label
channels), runs two real steps on a tiny batch (`MEASURE_BATCHES` rows at `measure_size(size)` px,
zero gradients, forward, backward, optimizer step) and two evaluation forwards, and counts:

- the state: parameters, buffers, gradients and the optimizer's state, summed from the tensors
  themselves after the step (Adam and AdamW: 2 x the parameters; SGD with momentum: 1 x);
- the saved activations: every tensor autograd saves for the backward pass
  (`torch.autograd.graph.saved_tensors_hooks`), counted once per storage (data pointer and
  size), parameters and buffers left out (they are state);
- the transient peaks: the highest total of CPU memory allocated during the forward and backward
  (everything alive above the state held before the step: saved activations, the gradients as
  they fill, each operator's outputs and scratch), during the optimizer step, and during an
  evaluation forward under `torch.no_grad`, read from the profiler's allocation events
  (`torch.profiler.profile(profile_memory=True)`: the allocator's running total at each event).

Everything that depends on the batch is measured at two batch sizes and split into a fixed part
and a part per sample; the part per sample scales linearly in the batch and in the input area
(every activation of these fully convolutional networks is the input's area times a constant,
at any size the stride divides; `bench.memory` checks it against steps at other batches and sizes).

Precision: "fp32", or "bf16" for bf16 autocast. CUDA's autocast keeps fp32 weights (and their
gradients and optimizer state) and runs convolutions in bf16, saving their bf16 outputs; CPU
autocast does the same, so "bf16" is measured under CPU autocast. What differs on a GPU and is
not counted here: the CUDA context (about 0.5 GiB per process), cuDNN's workspaces, and the
caching allocator's rounding and fragmentation; the budget keeps a margin for them
(`resources.memory_fraction`). `torch.cuda.max_memory_allocated` confirms a prediction on a GPU.

Stacked networks (`training.fused.FusedNets`) are measured as a fused unit of one network: the
stacked batch norm (`fused._StackedBatchNorm`) works in fp32, so under bf16 it keeps an fp32
copy of each activation it normalises, which this counts. A bundle's networks are predicted by
`bundle_bytes`: their state summed, and the peak of the unit that needs most (the units of a
bundle step one after another; a fused unit's networks at once).

Measurements are cached per (model, size, heads, injected channels, precision, fused,
optimizer) in the process. Planning needs them without torch: `record` writes every shipped
preset's measured parts to `memory.json` beside this module (`python -m bench.memory --record`),
and `training.memory_table` predicts a network as the sum of its parts for the planner, the dry
run and the preflight. Importing this module loads no torch (measuring does).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from raytaskaff.settings import ModelConfig
from raytaskaff.training.memory_table import (
    PRECISIONS,
    PROBE_INJECT,
    PROBES,
    TABLE,
    Network,
    Part,
    load_table,
    table_size,
    units_of,
)

#: Batch sizes of the two measured steps (their difference gives the bytes per sample).
MEASURE_BATCHES = (2, 4)
#: Largest image size measured: larger sizes are scaled from it by area.
MEASURE_SIZE = 32


@dataclass(frozen=True)
class Footprint:
    """One network's memory, in bytes, at `size` px.

    params, buffers, grads, optimizer: the state a training step holds. The rest depends on the
    batch, each as lines (fixed, per sample) at `size` px whose highest at a batch is the peak
    there: activations, the peak of forward and backward above the state (saved activations,
    operator outputs and scratch; the gradients are state), one line per moment of the step that
    can be its peak (the start of the backward pass at large batches, a weight gradient's
    scratch at small ones); evaluation, the same for an evaluation forward without gradients;
    saved, the saved activations alone (one line, within activations). step: the optimizer
    step's transient above the state (independent of the batch)."""

    size: int
    precision: str
    params: int
    buffers: int
    grads: int
    optimizer: int
    activations: tuple[tuple[float, float], ...]
    saved: tuple[float, float]
    step: int
    evaluation: tuple[tuple[float, float], ...]

    @property
    def state(self) -> int:
        return self.params + self.buffers + self.grads + self.optimizer

    def _at(self, lines, batch: int, size: int | None) -> float:
        area = 1.0 if size is None else (size / self.size) ** 2
        return max(fixed + batch * per * area for fixed, per in lines)

    def activation_bytes(self, batch: int, size: int | None = None) -> float:
        return self._at(self.activations, batch, size)

    def saved_bytes(self, batch: int, size: int | None = None) -> float:
        return self._at([self.saved], batch, size)

    def evaluation_bytes(self, batch: int, size: int | None = None) -> float:
        return self._at(self.evaluation, batch, size)

    def train_bytes(self, batch: int, size: int | None = None) -> float:
        """The training step's peak: the state and the larger of forward-backward and optimizer step."""
        return self.state + max(self.activation_bytes(batch, size), self.step)

    def eval_bytes(self, batch: int, size: int | None = None) -> float:
        """An evaluation forward's peak during training (the state stays allocated)."""
        return self.state + self.evaluation_bytes(batch, size)


def measure_size(size: int, stride: int = 32) -> int:
    """The size a network is measured at for `size` px: `size` itself up to `MEASURE_SIZE`, else
    the largest size <= `MEASURE_SIZE` whose ratio to `size` keeps every stride's feature map
    whole (`size` / 2^k for the smallest such k)."""
    s = size
    while s > MEASURE_SIZE and s % 2 == 0 and (s // 2) % stride == 0:
        s //= 2
    return s


def _storage_key(t) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


def _allocations(prof, leave_out: Sequence = ()) -> list[tuple[int, int]]:
    """(time in ns, bytes allocated since the profile started) at every CPU allocation event of a
    profile. Summed from the events' sizes (a free is a negative size): the profiler's own running
    total also holds blocks of earlier profiles whose frees it never saw. leave_out: tensors
    allocated during the profile (gradients) whose allocation is not counted (each the last
    allocation at its address)."""
    from torch._C._profiler import _EventType

    events, todo = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while todo:
        node = todo.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.alloc_size, node.extra_fields.ptr))
        todo.extend(node.children)
    events.sort()
    skip, wanted = set(), {t.untyped_storage().data_ptr() for t in leave_out}
    for i in range(len(events) - 1, -1, -1):
        if events[i][2] in wanted and events[i][1] > 0:
            skip.add(i)
            wanted.discard(events[i][2])
    total, running = 0, []
    for i, (t, size, _) in enumerate(events):
        total += 0 if i in skip else size
        running.append((t, total))
    return running


def _timeline(prof, region: str, allocs: list[tuple[int, int]]) -> list[int]:
    """The peak bytes allocated during each step of `region` (a `record_function` of the
    profile): one value per operator called at its top level, in order, so that two profiles of
    the same step at two batch sizes line up operator by operator."""
    import bisect

    from torch._C._profiler import _EventType

    todo, node = list(prof.profiler.kineto_results.experimental_event_tree()), None
    while todo:
        n = todo.pop()
        if n.tag == _EventType.TorchOp and n.name == region:
            node = n
            break
        todo.extend(n.children)
    times = [t for t, _ in allocs]
    peaks = []
    for child in sorted(node.children, key=lambda c: c.start_time_ns):
        end = child.end_time_ns if child.tag == _EventType.TorchOp else child.start_time_ns
        lo, hi = bisect.bisect_left(times, child.start_time_ns), bisect.bisect_right(times, end)
        inside = [total for _, total in allocs[lo:hi]]
        peaks.append(max(inside) if inside else (allocs[lo - 1][1] if lo else 0))
    return peaks


class _Proxy:  # noqa: D101
    """What `measure` trains: a plain network or a fused unit of one, with its forward and loss.
    The loss is the mean square of every prediction in fp32 (the real losses of the tasks read
    targets and differ in small, per-pixel temporaries of the prediction's size)."""

    def __init__(self, net, fused: bool) -> None:
        if fused:
            from raytaskaff.training.fused import FusedNets

            self.module = FusedNets([net])
            self.parameters = self.module.parameters()
            self.buffers = [b for part in self.module.buffers.values() for b in part.values()]
        else:
            self.module = net
            self.parameters = list(net.parameters())
            self.buffers = list(net.buffers())

    def forward(self, x, extra):
        out = self.module(x, extra)
        return sum(v.float().square().mean() for v in out.values())


def _step(proxy: _Proxy, optimizer, x, extra, autocast) -> tuple[int, int, int]:
    """One profiled training step from no gradients: (the peak during each operator of forward and
    backward, the peak of the optimizer step, bytes of saved activations), the peaks above the
    state held before the step,
    the gradients' own allocations left out (they are state: `Footprint.grads`). The optimizer's state exists from its first step on:
    the first step's optimizer peak includes creating it, so `measure` keeps the last one's."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    state = {_storage_key(t) for t in (*proxy.parameters, *proxy.buffers)}
    saved: dict[tuple[int, int], None] = {}

    def pack(t):
        key = _storage_key(t)
        if key not in state:
            saved[key] = None
        return t

    optimizer.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with record_function("memory.forward_backward"):
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast():
                loss = proxy.forward(x.clone(), None if extra is None else extra.clone())
            loss.backward()
            del loss
        with record_function("memory.optimizer"):
            optimizer.step()
    grads = [p.grad for p in proxy.parameters if p.grad is not None]
    allocs = _allocations(prof, grads)
    fb, opt = _timeline(prof, "memory.forward_backward", allocs), _timeline(prof, "memory.optimizer", allocs)
    return fb, max(opt, default=0), sum(n for _, n in saved)


def _evaluate(proxy: _Proxy, x, extra, autocast) -> list[int]:
    """The peak bytes during each operator of an evaluation forward (no gradient) and its loss."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with record_function("memory.evaluation"), torch.no_grad(), autocast():
            out = proxy.module(x.clone(), None if extra is None else extra.clone())
            loss = sum(float(v.float().square().mean()) for v in out.values())
            del out, loss
    return _timeline(prof, "memory.evaluation", _allocations(prof))


def _envelope(at: dict[int, list[int]]) -> tuple[tuple[float, float], ...]:
    """(fixed, per sample) of every moment of two timelines measured at two batch sizes, where
    they line up (the same operators), the moments that can be the highest at some batch only;
    else the two peaks' line alone."""
    (b1, t1), (b2, t2) = sorted(at.items())
    pairs = list(zip(t1, t2)) if len(t1) == len(t2) else [(max(t1, default=0), max(t2, default=0))]
    lines = set()
    for v1, v2 in pairs:
        per = max((v2 - v1) / (b2 - b1), 0.0)
        lines.add((max(v1 - per * b1, 0.0), per))
    return tuple(sorted(line for line in lines
                        if not any(o != line and o[0] >= line[0] and o[1] >= line[1] for o in lines)))


def _autocast(precision: str):
    import torch

    if precision == "bf16":
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return lambda: torch.autocast("cpu", enabled=False)


def measure(config: ModelConfig, size: int, heads: Sequence[tuple[int, bool]], inject_channels: int = 0,
            precision: str = "fp32", fused: bool = False, optimizer: str = "adam") -> Footprint:
    """The `Footprint` of one network, measured on CPU at `measure_size(size)` px (cached).

    config: the model; heads: (out_channels, dense) per task head; inject_channels: label
    channels injected at the input (label injection); precision: "fp32" or "bf16" (autocast);
    fused: as a `FusedNets` unit (the stacked path) rather than a plain network; optimizer:
    "adam", "adamw" or "sgd" (with momentum)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    heads = tuple(sorted((int(c), bool(d)) for c, d in heads))
    return _measure(config, int(size), heads, int(inject_channels), precision, bool(fused), optimizer)


@functools.lru_cache(maxsize=None)
def _measure(config: ModelConfig, size: int, heads: tuple, inject_channels: int, precision: str, fused: bool,
             optimizer: str, exact: bool = False) -> Footprint:
    import torch

    from raytaskaff.models import HeadSpec, InjectSpec, MultiTaskNet
    from raytaskaff.training.optim import make_optimizer

    specs = [HeadSpec(f"head{i}", c, d) for i, (c, d) in enumerate(heads)]
    inject = [InjectSpec("injected", inject_channels)] if inject_channels else []
    with torch.random.fork_rng(devices=[]):
        net = MultiTaskNet(specs, config, inject=inject, seed=0)
        stride = net.encoder.stride
        at = size if exact else measure_size(size, stride)
        proxy = _Proxy(net.to(memory_format=torch.channels_last), fused)
        opt = make_optimizer(optimizer, proxy.parameters, 1e-3, 0.0, 0.9)
        autocast = _autocast(precision)
        torch.manual_seed(0)
        acts, saved, evals, steps = {}, {}, {}, []
        for b in MEASURE_BATCHES:
            x = torch.randn(b, 3, at, at).contiguous(memory_format=torch.channels_last)
            extra = torch.randn(b, inject_channels, at, at) if inject_channels else None
            acts[b], step, saved[b] = _step(proxy, opt, x, extra, autocast)
            steps.append(step)
            proxy.module.train(False)
            evals[b] = _evaluate(proxy, x, extra, autocast)
            proxy.module.train()
    nbytes = lambda ts: sum(t.nbytes for t in ts)  # noqa: E731
    state = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
    return Footprint(
        size=at, precision=precision, params=nbytes(proxy.parameters), buffers=nbytes(proxy.buffers),
        grads=nbytes(proxy.parameters), optimizer=nbytes(state), activations=_envelope(acts), saved=_envelope({b: [v] for b, v in saved.items()})[0],
        step=steps[-1], evaluation=_envelope(evals))


def bundle_bytes(config: ModelConfig, size: int, networks: Sequence[Network], batch: int, precision: str = "fp32",
                 fuse: bool = True, optimizer: str = "adam", eval_batch: int | None = None) -> tuple[float, float]:
    """(training peak, evaluation peak) in bytes of a bundle of `networks` trained together at
    `batch` rows of `size` px (evaluation at `eval_batch` rows per forward, default `batch`).

    As `training.units.build_units` groups them: networks that train alone, and (`fuse`) every
    other network stacked with those of its injected channels, or (not `fuse`) each a plain unit.
    Every network's state stays allocated; the units step one after another, so the peak above
    the state is that of the unit that needs most; a fused unit's networks need theirs at once."""
    eval_batch = batch if eval_batch is None else eval_batch
    state = train = evaluation = 0.0
    for fused, members in units_of(networks, fuse):
        feet = [measure(config, size, n.heads, n.inject_channels, precision, fused, optimizer) for n in members]
        state += sum(f.state for f in feet)
        train = max(train, sum(f.activation_bytes(batch, size) for f in feet), sum(f.step for f in feet))
        evaluation = max(evaluation, sum(f.evaluation_bytes(eval_batch, size) for f in feet))
    return state + train, state + evaluation


def as_part(f: Footprint) -> Part:
    """A measured network as one part: its steepest activation line (the one that is the peak
    at large batches), the rest of its lines and its optimizer step as scratch."""
    line = max(f.activations, key=lambda ln: (ln[1], ln[0]))
    scratch = max([f.step, *(fixed for fixed, _ in f.activations)])
    evaluation = max(f.evaluation, key=lambda ln: (ln[1], ln[0]))
    return Part(float(f.state), line, float(scratch), evaluation)


def parts_of(measured: dict[str, Footprint]) -> dict[str, Part]:
    """{trunk, dense, channel, pooled, inject} parts from the footprints of the `PROBES` (and
    "inject", one dense head with `PROBE_INJECT` injected channels): the trunk is what a second
    head does not add (2 one - two), a dense head what it adds (two - one), an output channel
    of a dense head an eighth of (wide - one), a pooled head (pooled - trunk), an injected
    channel an eighth of (inject - one)."""
    one, two = as_part(measured["one"]), as_part(measured["two"])
    trunk = (one.scaled(2) - two)
    trunk = Part(trunk.state, trunk.line, max(one.scratch, two.scratch), trunk.evaluation)
    return {"trunk": trunk, "dense": two - one, "channel": (as_part(measured["wide"]) - one).scaled(1 / 8),
            "pooled": as_part(measured["pooled"]) - trunk,
            "inject": (as_part(measured["inject"]) - one).scaled(1 / PROBE_INJECT)}


def record(presets: Sequence[str], path: str | Path = TABLE) -> dict:
    """Measure the parts of `presets` in every precision, plain and stacked, and write the table."""
    import platform

    import torch

    from raytaskaff.atomic import write_text
    from raytaskaff.settings import MODEL_PRESETS

    data = json.loads(Path(path).read_text()) if Path(path).exists() else {"presets": {}}
    for name in presets:
        config = MODEL_PRESETS[name]
        size = table_size(config)
        entry = {"size": size}
        for precision in PRECISIONS:
            for fused in (False, True):
                if fused and precision == "bf16":  # CPU autocast does not reach into vmap: fp32 is what runs
                    entry["fused-bf16"] = entry["fused-fp32"]
                    continue
                measured = {k: _measure_at(config, size, heads, 0, precision, fused) for k, heads in PROBES.items()}
                measured["inject"] = _measure_at(config, size, PROBES["one"], PROBE_INJECT, precision, fused)
                entry[f"{'fused' if fused else 'plain'}-{precision}"] = {k: asdict(v) for k, v in parts_of(measured).items()}
        data["presets"][name] = entry
    data["measured"] = {"torch": torch.__version__, "machine": platform.machine(), "batches": list(MEASURE_BATCHES)}
    write_text(Path(path), json.dumps(data, indent=1) + "\n")
    load_table.cache_clear()
    return data


def _measure_at(config, size, heads, inject, precision, fused) -> Footprint:
    """`measure` at exactly `size` px."""
    return _measure(config, size, tuple(sorted(heads)), inject, precision, fused, "adam", exact=True)
