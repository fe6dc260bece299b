"""Measured training throughput, and the device-seconds a run needs by it (the dry run's estimate).

`throughput.json` beside this file holds what `python -m bench.training` measured: per device,
model preset, image size and batch size, samples per second by the number of tasks of a run.
An estimate uses a measurement of the same device kind (cpu or cuda) and model, preferring the
same image size and batch size; a rate between two measured task counts is interpolated in 1/rate
(a run's cost grows with its decoders), beyond them the nearest is scaled by the task ratio, and
another image size is scaled by the pixel ratio, said in the estimate's `note`. No measurement of
the model on the device kind means no estimate: a number without a measurement behind it would
look like one.

Bundles: `bundles` in the same file holds, per device, the factor a bundle of a seed's networks
takes of the time those networks take one after another (`python -m bench.bundles --loop`); the
dry run applies the factor of the same device kind to bundled sweeps, and says when there is none.

Pure Python: the dry run reads it before anything heavy is imported.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from raytaskaff.atomic import write_text

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


def rate(table: list[Measurement], kind: str, model: str, size: int, tasks: int, batch_size: int | None = None) -> Rate | None:
    """Samples per second of a `tasks`-task run of `model` at `size` px on a `kind` device, or None."""
    candidates = [m for m in table if m.kind == kind and m.model == model]
    if not candidates:
        return None
    best = min(candidates, key=lambda m: (abs(m.size - size), m.batch_size != batch_size, -m.batch_size))
    value, note = _by_tasks(best.samples_per_second, tasks)
    notes = [note] if note else []
    if best.size != size:
        value *= (best.size / size) ** 2
        notes.append(f"{size} px scaled from {best.size} px by pixels")
    return Rate(value, best, "; ".join(notes))


def run_seconds(table: list[Measurement], kind: str, model: str, size: int, tasks: int, samples: int, probes: bool,
                batch_size: int | None = None) -> tuple[float, Rate] | None:
    """(device-seconds, the rate used) for `samples` training samples of one run, or None."""
    found = rate(table, kind, model, size, tasks, batch_size)
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
