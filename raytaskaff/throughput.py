"""Measured training throughput, and the device-seconds a run needs by it (the dry run's estimate).

`throughput.json` beside this file holds what `python -m bench.training` measured: per device,
model preset, image size and batch size, samples per second by the number of tasks of a run.
An estimate uses a measurement of the same device kind (cpu or cuda) and model, preferring the
same image size and batch size; a rate between two measured task counts is interpolated in 1/rate
(a run's cost grows with its decoders), beyond them the nearest is scaled by the task ratio, and
another image size is scaled by the pixel ratio, said in the estimate's `note` (as are sizes a
config overrides and image-level heads, which the preset's rate does not account for). A preset
with no measurement on the device kind is estimated from the measurement nearest to it in FLOPs
per sample (`flops_per_sample`), its rate scaled by the ratio of the two networks' FLOPs, and the
note says so and from which measurement. The scaled rate keeps the measured network's share of
the device's peak: a small measured network is bound by kernel launches, so a larger one scaled
from it is estimated slow, and a smaller one scaled from a large network fast. No measurement at
all on the device kind means no estimate: a number without a measurement behind it would look
like one.

Bundles: `bundles` in the same file holds, per device, the factor a bundle of a seed's networks
takes of the time those networks take one after another (`python -m bench.bundles --loop`); the
dry run applies the factor of the same device kind to bundled sweeps, and says when there is none.

Pure Python: the dry run reads it before anything heavy is imported.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from raytaskaff.atomic import write_text
from raytaskaff.settings import MODEL_PRESETS, ModelConfig

TABLE = Path(__file__).with_name("throughput.json")
#: Instrumented runs (gradient probes) cost about this much more (docs/benchmarks.md, bench.training).
PROBE_FACTOR = 1.5


@dataclass(frozen=True)
class Measurement:
    device: str
    kind: str
    model: str
    size: int
    batch_size: int
    samples_per_second: dict[int, float]
    torch: str = ""
    date: str = ""
    command: str = ""


@dataclass(frozen=True)
class Rate:
    """An estimated rate, the measurement it comes from, and how it was extrapolated ("" if not)."""

    samples_per_second: float
    measurement: Measurement
    note: str = ""


def load_table(path: str | os.PathLike | None = None) -> list[Measurement]:
    """The measurements of `path` (default: `TABLE`)."""
    data = json.loads(Path(path or TABLE).read_text())
    return [Measurement(**{**m, "samples_per_second": {int(k): float(v) for k, v in m["samples_per_second"].items()}})
            for m in data["measurements"]]


def record(measurement: Measurement, path: str | os.PathLike | None = None) -> None:
    """Add a measurement to `path` (default: `TABLE`), replacing the one of the same device,
    model, size and batch size (atomically)."""
    path = Path(path or TABLE)
    data = json.loads(path.read_text())
    same = ("device", "kind", "model", "size", "batch_size")
    kept = [m for m in data["measurements"] if any(m[k] != getattr(measurement, k) for k in same)]
    entry = asdict(measurement)
    entry["samples_per_second"] = {str(k): round(v, 1) for k, v in sorted(measurement.samples_per_second.items())}
    data["measurements"] = kept + [entry]
    write_text(path, json.dumps(data, indent=1) + "\n")


def _by_tasks(rates: dict[int, float], tasks: int) -> tuple[float, str]:
    known = sorted(rates)
    if tasks in rates:
        return rates[tasks], ""
    low = max([k for k in known if k < tasks], default=None)
    high = min([k for k in known if k > tasks], default=None)
    if low is not None and high is not None:
        w = (tasks - low) / (high - low)
        return 1 / ((1 - w) / rates[low] + w / rates[high]), ""
    nearest = low if low is not None else high
    return rates[nearest] * nearest / tasks, f"{tasks} tasks scaled from {nearest}"


def _conv(h: int, w: int, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0) -> tuple[int, int, int]:
    """(multiply-adds, out height, out width) of a k x k convolution of an h x w map."""
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    return ho * wo * cin * cout * k * k, ho, wo


def flops_per_sample(model: ModelConfig, size: int, heads: Sequence[tuple[int, bool]] = ((1, True),),
                     inject_channels: int = 0) -> int:
    """FLOPs (2 x multiply-adds) of one forward pass of one `size` x `size` image through
    `raytaskaff.models.MultiTaskNet(heads, model)`: its convolutions, transposed convolutions and
    linear layers (batch norm, activations, pooling and additions, a few operations per value, are
    left out).

    heads: (output channels, dense) per task: a dense decoder, or a pooled linear head;
    inject_channels: label-injection input channels (0: none). Counted from the architecture in
    `raytaskaff.models` without building it (no torch), and checked against a count of the built
    network's layers (tests/test_throughput.py). Training takes about three times this per
    sample (forward and backward), the same factor for every network, so ratios hold."""
    macs = 0

    def conv(h, w, cin, cout, k, stride=1, pad=0):
        nonlocal macs
        m, ho, wo = _conv(h, w, cin, cout, k, stride, pad)
        macs += m
        return ho, wo

    h = w = size
    if model.backbone == "resnet18":
        stem = (3, 64, 7, 2, 3)
    else:
        stem = (3, model.widths[0], 3, 1, 1)
    if inject_channels:
        conv(h, w, inject_channels, *stem[1:])
    h, w = conv(h, w, *stem)
    if model.backbone == "resnet18":
        h, w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1  # 3x3 max-pool, stride 2, padding 1
        cin = 64
        for i, width in enumerate((64, 128, 256, 512)):
            for block in range(2):  # BasicBlocks: two 3x3 convs, a strided 1x1 shortcut where the shape changes
                stride = 2 if i and not block else 1
                if stride != 1 or cin != width:
                    conv(h, w, cin, width, 1, stride)
                h, w = conv(h, w, cin, width, 3, stride, 1)
                conv(h, w, width, width, 3, 1, 1)
                cin = width
        width, stride = 512, 32
    elif model.backbone == "residual":
        h, w = h // 2, w // 2  # 2x2 max-pool
        width = model.widths[0]
        conv(h, w, width, width, 3, 1, 1)
        conv(h, w, width, width, 3, 1, 1)
        stride = 2
    else:
        cin = model.widths[0]
        for width in model.widths:
            h, w = conv(h, w, cin, width, 3, 2, 1)
            for _ in range(model.blocks - 1):
                conv(h, w, width, width, 3, 1, 1)
            cin = width
        width, stride = model.widths[-1], 2 ** len(model.widths)
    if model.neck:
        conv(h, w, width, model.neck, 1)
        width = model.neck
    ups = int(math.log2(stride))
    for out_channels, dense in heads:
        if not dense:
            macs += width * out_channels
            continue
        dh, dw, cin = h, w, width
        for i in range(ups):
            cout = max(8, model.decoder_width // 2**i)
            macs += dh * dw * cin * cout * 4  # 2x2 transposed convolution, stride 2: 4 taps per input pixel
            dh, dw = 2 * dh, 2 * dw
            conv(dh, dw, cout, cout, 3, 1, 1)
            cin = cout
        conv(dh, dw, cin, out_channels, 1)
    return 2 * macs


def _network_flops(network: ModelConfig, size: int, dense: Sequence[bool]) -> int:
    """FLOPs per sample of a network with one head per entry of `dense` (one output each: the
    outputs of the last 1x1 convolution are a small share that the dry run does not know)."""
    return flops_per_sample(network, size, [(1, d) for d in dense])


def rate(table: list[Measurement], kind: str, model: str, size: int, tasks: int, batch_size: int | None = None, *,
         network: ModelConfig | None = None, dense: Sequence[bool] | None = None) -> Rate | None:
    """Samples per second of a `tasks`-task run of `model` at `size` px on a `kind` device, or None
    when nothing is measured on that kind of device.

    network: the run's model when it is not the preset `model` as it is (overridden sizes);
    dense: per task, whether its head is a dense decoder (default: all, as `bench.training` measures)."""
    network = network or MODEL_PRESETS.get(model)
    dense = tuple(dense) if dense is not None else (True,) * tasks
    on_kind = [m for m in table if m.kind == kind]
    candidates = [m for m in on_kind if m.model == model]
    if not candidates:
        return _scaled_by_flops(on_kind, model, network, size, dense, batch_size)
    best = min(candidates, key=lambda m: (abs(m.size - size), m.batch_size != batch_size, -m.batch_size))
    value, note = _by_tasks(best.samples_per_second, tasks)
    notes = [note] if note else []
    if best.size != size:
        value *= (best.size / size) ** 2
        notes.append(f"{size} px scaled from {best.size} px by pixels")
    # the preset's own rate stays the estimate: scaling it by FLOPs would assume a compute-bound
    # device, which small networks are not; the note says what it leaves out
    overridden = _overrides(model, network)
    if overridden:
        notes.append(f"the rate of preset {model} as measured: its sizes overridden here ({overridden}) are not scaled")
    if not all(dense):
        notes.append("measured with dense decoders: image-level heads are not scaled")
    return Rate(value, best, "; ".join(notes))


def _overrides(model: str, network: ModelConfig | None) -> str:
    """The sizes in which `network` differs from preset `model`, in words ("" when none)."""
    base = MODEL_PRESETS.get(model)
    if network is None or base is None or network == base:
        return ""
    ours, theirs = asdict(network), asdict(base)
    return ", ".join(f"{k} {list(v) if isinstance(v, tuple) else v}" for k, v in ours.items() if v != theirs[k])


def _scaled_by_flops(on_kind: list[Measurement], model: str, network: ModelConfig | None, size: int,
                     dense: tuple[bool, ...], batch_size: int | None) -> Rate | None:
    """The rate of the measurement nearest in FLOPs per sample (a one-task network of each), scaled
    by the ratio of the FLOPs of the measured network and of this one at the run's task count."""
    known = [m for m in on_kind if m.model in MODEL_PRESETS]
    if network is None or not known:
        return None
    one = _network_flops(network, size, dense[:1])
    best = min(known, key=lambda m: (abs(math.log(_network_flops(MODEL_PRESETS[m.model], m.size, (True,)) / one)),
                                     m.batch_size != batch_size, -m.batch_size))
    value, note = _by_tasks(best.samples_per_second, len(dense))
    measured = _network_flops(MODEL_PRESETS[best.model], best.size, (True,) * len(dense))
    value *= measured / _network_flops(network, size, dense)
    overridden = _overrides(model, network)
    what = f"model {model!r}" + (f" ({overridden})" if overridden else "")
    notes = [note] if note else []
    notes.append(f"estimate: {what} has no {best.kind} measurement, its rate scaled by FLOPs per sample from "
                 f"{best.model} at {best.size} px, batch {best.batch_size}, measured on {best.device}")
    return Rate(value, best, "; ".join(notes))


def run_seconds(table: list[Measurement], kind: str, model: str, size: int, tasks: int, samples: int, probes: bool,
                batch_size: int | None = None, *, network: ModelConfig | None = None,
                dense: Sequence[bool] | None = None) -> tuple[float, Rate] | None:
    """(device-seconds, the rate used) for `samples` training samples of one run, or None (see `rate`)."""
    found = rate(table, kind, model, size, tasks, batch_size, network=network, dense=dense)
    if found is None:
        return None
    return samples / found.samples_per_second * (PROBE_FACTOR if probes else 1.0), found


@dataclass(frozen=True)
class BundleFactor:
    """A bundle of `networks` networks took `factor` of their one-after-another time."""

    device: str
    kind: str
    model: str
    size: int
    batch_size: int
    networks: int
    factor: float
    torch: str = ""
    date: str = ""
    command: str = ""


def bundle_factor(kind: str, model: str, path: str | os.PathLike | None = None) -> BundleFactor | None:
    """The measured bundle factor of a `kind` device, preferring the same model; None without one."""
    data = json.loads(Path(path or TABLE).read_text())
    found = [BundleFactor(**b) for b in data.get("bundles", []) if b["kind"] == kind]
    return min(found, key=lambda b: b.model != model, default=None)
