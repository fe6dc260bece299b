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

The dry run prices a run as its STL network's time (the rate at one task) times its kind's cost
factor (`kind_factor`: pair, all-task, group and label-injection networks over the STL network),
from a side-by-side measurement (`python -m bench.training --kinds`, "kinds" in the file) of the
same model and heads (dense decoders or pooled image-level heads, whose extra heads cost very
differently), else the model's rates by task count, else a side-by-side measurement on the
other device kind, else the FLOPs model; each factor says which. A run's evaluation (validation
each epoch, test once) counts as forward passes, `FORWARD_SHARE` of a training sample.

Trials: "trial_overhead" holds the seconds a sweep's trial slot spends per trial beyond its
networks (`python -m bench.scaling --overhead`), which the dry run's wall-clock adds per trial.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from raytaskaff.atomic import write_text
from raytaskaff.settings import MODEL_PRESETS, ModelConfig

TABLE = Path(__file__).with_name("throughput.json")
#: Instrumented runs (gradient probes) cost about this much more (docs/benchmarks.md, bench.training).
PROBE_FACTOR = 1.5
#: An evaluated sample costs about this share of a trained one: a forward pass of the three passes
#: (forward, backward of activations and of weights) a training step makes (`flops_per_sample`).
FORWARD_SHARE = 1 / 3


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
    heads: str = "dense"  # the measured networks' heads: dense decoders, or pooled image-level heads


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
    if entry["heads"] == "dense":  # the default, as the rows before heads were recorded
        del entry["heads"]
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
    best = min(candidates, key=lambda m: (m.heads != heads_family(dense), abs(m.size - size), m.batch_size != batch_size,
                                          -m.batch_size))
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
    if heads_family(dense) != best.heads:
        notes.append(f"measured with {best.heads} heads: {'image-level' if best.heads == 'dense' else 'dense'} heads are not scaled")
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


#: Task families with a dense decoder; the others (classification, binary, image regression) have
#: a pooled linear head, and cost a network far less per head.
DENSE_FAMILIES = ("dense_regression", "dense_classes")


def heads_family(dense: Sequence[bool]) -> str | None:
    """"dense" (every head a dense decoder), "pooled" (none), or None (mixed)."""
    if all(dense):
        return "dense"
    if not any(dense):
        return "pooled"
    return None


@dataclass(frozen=True)
class KindFactors:
    """Time per training sample of a preset's networks over that of its one-task (STL) network,
    measured side by side in one process, interleaved (`python -m bench.training --kinds`).

    heads: "dense" (dense decoders) or "pooled" (image-level heads), whose extra heads cost very
    differently (on CPU a pair 1.1-1.7 STL networks against 1.0); factors: by number of tasks ("2": a pair, the
    largest: an all-task network; "1" is 1 by definition) and "li" (one task with one partner's
    label injected as input channels); overrides: the preset's sizes overridden as a config's model
    section does ({} for the preset as shipped)."""

    device: str
    kind: str
    model: str
    heads: str
    size: int
    batch_size: int
    factors: dict[str, float]
    overrides: dict = field(default_factory=dict)
    repetitions: int = 0
    torch: str = ""
    date: str = ""
    command: str = ""


@dataclass(frozen=True)
class Factor:
    """A run's device-seconds over its STL network's: `source` is "measured" (side by side),
    "rates" (the measured rates by task count) or "flops" (the FLOPs model); `note` says from what."""

    value: float
    source: str
    note: str


def load_kind_factors(path: str | os.PathLike | None = None) -> list[KindFactors]:
    data = json.loads(Path(path or TABLE).read_text())
    return [KindFactors(**k) for k in data.get("kinds", [])]


def record_kind_factors(entry: KindFactors, path: str | os.PathLike | None = None) -> None:
    """Add `entry` to `path` (default: `TABLE`), replacing the one of the same device, model,
    heads, size and batch size (atomically)."""
    path = Path(path or TABLE)
    data = json.loads(path.read_text())
    same = ("device", "kind", "model", "heads", "size", "batch_size", "overrides")
    kept = [k for k in data.get("kinds", []) if any(k[s] != getattr(entry, s) for s in same)]
    row = asdict(entry)
    row["factors"] = {k: round(v, 3) for k, v in entry.factors.items()}
    data["kinds"] = kept + [row]
    write_text(path, json.dumps(data, indent=1) + "\n")


def _by_count(factors: dict[int, float], tasks: int) -> tuple[float, str]:
    """The factor of `tasks` tasks from measured counts (1 task: 1): linear in the task count
    between two (a head costs what the one before it did), beyond them extended along the last
    two, never downwards (a noisy pair below its STL network predicts nothing of 40 tasks)."""
    points = {1: 1.0, **factors}
    known = sorted(points)
    if tasks in points:
        return points[tasks], ""
    low = max([k for k in known if k < tasks], default=None)
    high = min([k for k in known if k > tasks], default=None)
    if high is None:  # beyond the largest count: a head costs what the last ones did (never less than nothing)
        a, b = known[-2], known[-1]
        slope = max((points[b] - points[a]) / (b - a), 0.0)
        return points[b] + slope * (tasks - b), f"{tasks} tasks extended from {a} and {b}"
    w = (tasks - low) / (high - low)
    return (1 - w) * points[low] + w * points[high], ""


def kind_factor(kinds: list[KindFactors], table: list[Measurement], kind: str, model: str, size: int, tasks: int,
                inject: int, dense: Sequence[bool], network: ModelConfig | None = None,
                batch_size: int | None = None) -> Factor:
    """Device-seconds per sample of a run (`tasks` tasks, `inject` injected partners, `dense`
    per task) over its STL network's, from, in this order: a side-by-side measurement of the same
    model and heads on the same device kind; the same model's rates by task count on this kind
    with the same heads (`bench.training` measures dense ones); a side-by-side measurement on the other device
    kind (said so); the FLOPs model (`flops_per_sample`, said so)."""
    dense = tuple(dense)
    family = heads_family(dense)
    if tasks == 1 and not inject:
        return Factor(1.0, "measured", "")
    other = "cpu" if kind == "cuda" else "cuda"
    wanted = _override_sizes(model, network)
    for on in (kind, other):
        rows = [k for k in kinds if k.kind == on and k.model == model and k.heads == family
                and ("li" in k.factors if inject else len(k.factors) > ("li" in k.factors))]
        if rows:
            best = min(rows, key=lambda k: (_plain(k.overrides) != wanted, abs(math.log(k.size / size)),
                                            k.batch_size != batch_size, -int(k.date.replace("-", "") or 0)))
            if inject:
                value, extra = best.factors["li"] * _by_count(_counts(best), tasks)[0], ""
            else:
                value, extra = _by_count(_counts(best), tasks)
            where = f"measured side by side on {on}" + (f" ({best.date})" if best.date else "")
            if best.size != size:
                where += f" at {best.size} px"
            if _plain(best.overrides) != wanted:
                where += f", {model} as {_words(best.overrides) or 'shipped'}"
            if on != kind:
                where += f", nothing measured on {kind}"
            return Factor(value, "measured", where + (f"; {extra}" if extra else ""))
        if on == kind and not inject:
            measured = [m for m in table if m.kind == kind and m.model == model and m.heads == family
                        and len(m.samples_per_second) > 1]
            if measured:
                best = min(measured, key=lambda m: (abs(math.log(m.size / size)), m.batch_size != batch_size, -m.batch_size))
                one, note = _by_tasks(best.samples_per_second, 1)
                many, note = _by_tasks(best.samples_per_second, tasks)
                return Factor(one / many, "rates", f"the rates by task count measured on {best.device}" + (f"; {note}" if note else ""))
    network = network or MODEL_PRESETS.get(model)
    if network is None:
        return Factor(float(tasks), "flops", "no model to count: a task per STL network")
    base = flops_per_sample(network, size, [(1, dense[0])])
    value = flops_per_sample(network, size, [(1, d) for d in dense], inject_channels=inject) / base
    what = "label injection" if inject else f"{family or 'mixed'} heads"
    return Factor(value, "flops", f"FLOPs model: nothing measured for {model} with {what}")


def _override_sizes(model: str, network: ModelConfig | None) -> dict:
    """The sizes in which `network` differs from preset `model` ({} when none)."""
    base = MODEL_PRESETS.get(model)
    if network is None or base is None:
        return {}
    theirs = asdict(base)
    return _plain({k: v for k, v in asdict(network).items() if v != theirs[k]})


def _plain(sizes: dict) -> dict:
    return {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in sizes.items()}


def _words(sizes: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sizes.items())


def _counts(row: KindFactors) -> dict[int, float]:
    return {int(k): v for k, v in row.factors.items() if k != "li"}


@dataclass(frozen=True)
class TrialOverhead:
    """Seconds a trial slot spends per trial beyond its networks' own training (Tune hands the
    trial over, the trial starts and opens the data, results and checkpoints are written),
    measured on a sweep (`python -m bench.scaling --overhead`): the training stage's wall-clock
    times the trials at once, less the runs' own wall-clock, over the trials."""

    device: str
    kind: str
    seconds: float
    trials: int
    date: str = ""
    command: str = ""


def trial_overhead(kind: str, path: str | os.PathLike | None = None) -> TrialOverhead | None:
    """The latest measured per-trial overhead of a `kind` device, else of any device; None without one."""
    data = json.loads(Path(path or TABLE).read_text())
    found = [TrialOverhead(**o) for o in data.get("trial_overhead", [])]
    return max(found, key=lambda o: (o.kind == kind, o.date), default=None)


def record_trial_overhead(entry: TrialOverhead, path: str | os.PathLike | None = None) -> None:
    path = Path(path or TABLE)
    data = json.loads(path.read_text())
    kept = [o for o in data.get("trial_overhead", []) if (o["device"], o["kind"]) != (entry.device, entry.kind)]
    data["trial_overhead"] = kept + [{**asdict(entry), "seconds": round(entry.seconds, 3)}]
    write_text(path, json.dumps(data, indent=1) + "\n")
