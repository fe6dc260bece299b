"""One seed of the flagship sweep trained as one fused bundle: whether its networks stacked, and
the device's measured peak of allocated memory against the memory model's prediction.

    python -m bench.flagship [--config sweeps/taskonomy-5.yaml] [--views 320] [--size 256]
                             [--epochs 1] [--data DIR] [--device cuda] [--model PRESET]
                             [--tasks a,b,c] [--batch-size N] [--eval-batch-size N] [--json]

The config's tasks, model and training settings (taskonomy-5: five tasks, the large preset, batch
64, evaluation batch 256, bf16 autocast) on `--views` synthetic views of `--size` px (rendered
once into `--data`, at the stored size), `--epochs` of them: the STL and pair networks of seed 0
(15 for five tasks, none instrumented, so that all of them can stack) as one bundle,
`train_bundle(..., fuse=True)` without a fallback, on the whole device (no per-trial memory cap:
the peak measured is the bundle's own). The flags override the config (`--model small --size 32
--device cpu` checks the plumbing on a CPU).

Rows: the networks per recorded training mode and the device; on CUDA the measured peak
(`torch.cuda.max_memory_allocated`, GiB, training and evaluation together), the prediction of
`raytaskaff.training.memory` for the same bundle, batch and evaluation batch (the evaluation
batch capped at the largest split evaluated), and measured against predicted, the larger over the
smaller (aim <= 1.25). Exits 1 when a network did not train fused, when stacking failed or the
device ran out of memory (one line each, with the peak and the prediction), or when the
comparison misses its aim; 2 without the device asked for.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from itertools import combinations
from pathlib import Path

import torch

from bench.rows import Row, bench_parser, report
from raytaskaff.config import load_config
from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.data.synth import SynthConfig, generate
from raytaskaff.settings import RunSpec, preset
from raytaskaff.tasks import task
from raytaskaff.training.bundle import Member, StackingFailed, describe_device, train_bundle
from raytaskaff.training.loop import DataSplits, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
GIB = 2**30
#: Measured over predicted peak (or the inverse), at most.
AIM = 1.25


def dataset(path: str | os.PathLike, views: int, size: int) -> Path:
    """Synthetic views at `size` px in `path`, rendered there once (at the stored size: the
    labels' fidelity does not matter here, the render time does)."""
    path = Path(path)
    if not (path / "manifest.json").exists():
        generate(path, SynthConfig(n=views, size=size, seed=0, render_size=size), workers=os.cpu_count() or 1)
    return path


def seed_networks(tasks) -> list[RunSpec]:
    """A seed's STL and pair networks, in plan order."""
    return [RunSpec((t,)) for t in tasks] + [RunSpec(p) for p in combinations(tasks, 2)]


def predicted_bytes(model: str, size: int, specs: list[RunSpec], batch: int, eval_batch: int,
                    precision: str) -> tuple[float, float] | str:
    """(training peak, evaluation peak) in bytes of the fused bundle by the memory model, or why
    there is none. `raytaskaff.training.memory_table.predict_bundle` (from its recorded table), else
    `bundle_bytes` (measured on this machine's CPU)."""
    try:
        from raytaskaff.training import memory, memory_table
    except ImportError as e:
        return f"no memory model here ({e})"
    networks = [memory_table.Network(tuple((task(n).out_channels, task(n).dense) for n in s.tasks)) for s in specs]
    try:
        try:
            return memory_table.predict_bundle(model, size, networks, batch, precision, fuse=True, eval_batch=eval_batch)
        except (KeyError, OSError):  # no recorded table, or a preset it lacks: measured instead
            pass
        return memory.bundle_bytes(preset(model), size, networks, batch, precision, fuse=True, eval_batch=eval_batch)
    except Exception as e:  # the prediction is a comparison, not the check's subject: say why it is missing
        return f"the memory model failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"


def failures(results) -> list[str]:
    """One line per network that did not train fused: its tasks, its mode and why."""
    out = []
    for r in results:
        if isinstance(r, BaseException):
            out.append(f"a network failed: {r}")
        elif r.training != "fused":
            out.append(f"{'+'.join(r.spec.tasks)}: {r.training} ({r.training_reason})")
    return out


def main(argv=None) -> int:
    parser = bench_parser("flagship", __doc__)
    parser.add_argument("--config", default=str(ROOT / "sweeps" / "taskonomy-5.yaml"))
    parser.add_argument("--views", type=int, default=320)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--data", help="where the synthetic views are (rendered there when absent); "
                                       "default data/synthetic-SIZE-VIEWS-flat")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", help="a model preset instead of the config's")
    parser.add_argument("--tasks", help="comma-separated tasks instead of the config's")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--eval-batch-size", type=int)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"bench.flagship: no CUDA device (torch {torch.__version__})", file=sys.stderr)
        return 2

    config = load_config(args.config)
    training = dataclasses.replace(config.training, epochs=args.epochs,
                                   **{k: v for k, v in (("batch_size", args.batch_size), ("eval_batch_size", args.eval_batch_size)) if v})
    model = args.model or config.model.preset
    model_config = preset(args.model) if args.model else config.model.build()
    tasks = args.tasks.split(",") if args.tasks else list(config.tasks)
    root = dataset(Path(args.data or ROOT / "data" / f"synthetic-{args.size}-{args.views}-flat"), args.views, args.size)
    data = DataSplits(*(SplitData.open(root, s) for s in ("train", "val", "test")), stats=Manifest.load(root).stats)
    specs = seed_networks(tasks)
    train_config = TrainConfig(**dataclasses.asdict(training), device=str(device), normalisation=config.data.normalisation,
                               tasks=config.declared_tasks)
    precision = "bf16" if training.amp and device.type == "cuda" else "fp32"
    eval_batch = min(training.eval_batch_size, max(len(data.val), len(data.test)))
    prediction = predicted_bytes(model, args.size, specs, training.batch_size, eval_batch, precision)
    said = "" if isinstance(prediction, str) else f", predicted {max(prediction) / GIB:.1f} GiB"

    def rows():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        results, error = [], None
        try:
            results = train_bundle([Member(s) for s in specs], model_config, train_config, data, seed=0, fuse=True)
        except StackingFailed as e:
            error = f"stacking failed: {e}"
        except Exception as e:  # out of memory: torch's error, or the bundle's own once it cannot split further
            if not (isinstance(e, torch.OutOfMemoryError) or "OutOfMemory" in type(e).__name__):
                raise
            error = f"out of memory ({str(e).splitlines()[0]})"
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        where = describe_device(device)
        shape = f"{len(specs)} networks of {model} at {args.size} px, batch {training.batch_size}, eval {eval_batch}, {precision}"
        if error is not None:
            measured = "" if peak is None else f"; {peak / GIB:.1f} GiB allocated at the peak"
            raise SystemExit(f"bench.flagship: {shape} on {where}: {error}{measured}{said}")
        modes = {m: sum(getattr(r, "training", None) == m for r in results) for m in ("fused", "separate", "fell back")}
        yield Row("flagship", f"networks fused of {len(specs)} ({shape})", f"{modes['fused']} on {where}",
                  modes["fused"] / len(specs), ">= 1")
        yield Row("flagship", "bundle's training and evaluation, wall-clock", f"{seconds:.1f} s")
        if isinstance(prediction, str):
            yield Row("flagship", "predicted peak", prediction)
        else:
            yield Row("flagship", "predicted peak: training, evaluation", f"{prediction[0] / GIB:.2f}, {prediction[1] / GIB:.2f} GiB")
        if peak is not None:
            yield Row("flagship", "measured peak (torch.cuda.max_memory_allocated)", f"{peak / GIB:.2f} GiB")
            if not isinstance(prediction, str):
                predicted = max(prediction)
                yield Row("flagship", "measured vs predicted peak, larger over smaller",
                          f"{peak / GIB:.2f} vs {predicted / GIB:.2f} GiB", max(peak / predicted, predicted / peak), f"<= {AIM}")
        for line in failures(results):
            print(f"not fused: {line}", file=sys.stderr)

    measured = list(rows())
    report(measured, args.json)
    return 0 if all(r.met() is not False for r in measured) else 1


if __name__ == "__main__":
    sys.exit(main())
