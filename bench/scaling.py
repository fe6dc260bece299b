"""How a sweep grows with its task count: runs, CPU core-hours, wall-clock on this machine, and a
projection for a GPU cluster.

    python -m bench.scaling [--tasks 2,5,10] [--measure 2] [--gpus 8] [--json]

For each task count n, the embedded default's settings (3 epochs of the 32 px synthetic data,
model "small", 3 paired seeds, every scorer, label injection on seed 0) with the first n tasks of
sweeps/synthetic-10.yaml. Per n:
- runs by kind, from the planner (exact);
- CPU core-hours, estimated run by run from the measured one-core throughput (raytaskaff/throughput.py,
  the `--dry-run` estimate), and the wall-clock it means on this machine's cores;
- for the n in `--measure`: the sweep run for real (`python -m raytaskaff.sweep`, fresh output,
  grouping validation off, so that only the planned runs are timed); ratio: measured training
  wall-clock over the estimate;
- a GPU-cluster projection: every run on its own H100 at the throughput bench.training measured
  there (batch 64, bf16; instrumented runs 1.5x), plus Tune's per-trial cost, `--gpus` runs at a
  time as an ideal (perfectly packed) schedule. Packing several runs per GPU is not measured yet.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from bench.rows import Row, bench_parser, report
from raytaskaff.config import SweepConfig, load_config, to_dict
from raytaskaff import throughput
from raytaskaff.plan import plan, summary

ROOT = Path(__file__).resolve().parent.parent
#: Tune's cost per trial beyond training, in seconds of a slot (the load test: 396 tiny runs in 55 s on 2 slots).
TRIAL_OVERHEAD_SECONDS = 0.3
GPU = "NVIDIA H100 80GB HBM3"


def config_for(n: int) -> SweepConfig:
    base = load_config(ROOT / "sweeps" / "default.yaml")
    ten = load_config(ROOT / "sweeps" / "synthetic-10.yaml")
    scorers = {**base.scorers, "td": ten.scorers["td"]}  # a taxonomy that covers all ten tasks
    return dataclasses.replace(base, name=f"scaling-{n}", tasks=ten.tasks[:n], scorers=scorers,
                               grouping=dataclasses.replace(base.grouping, groups=()))


def gpu_seconds(tasks: int, samples: float) -> float:
    """Seconds of an H100 for `samples` training samples of a `tasks`-task run of the default model
    at 32 px, batch 64 (throughput.json, interpolated in 1/rate)."""
    table = [m for m in throughput.load_table() if m.device == GPU]
    return samples / throughput.rate(table, "cuda", "small", 32, tasks, 64).samples_per_second


def cpu_seconds(run, config: SweepConfig, views: int, size: int) -> float:
    """CPU core-seconds of one run, as the dry run estimates them."""
    cost = throughput.run_seconds(throughput.load_table(), "cpu", config.model.preset, size, len(run.tasks),
                                  views * config.training.epochs, run.probes, config.training.batch_size)
    return cost[0]


def measure(config: SweepConfig) -> dict:
    """Run the sweep for real in a fresh output directory; its evaluation summary."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.yaml"
        path.write_text(yaml.safe_dump({**to_dict(config), "out": f"{tmp}/out"}))
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        done = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(path)], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the {config.name} sweep failed: {done.stderr.strip().splitlines()[-1:]}")
        return json.loads((Path(tmp) / "out" / "results" / "evaluation.json").read_text())


def rows(tasks: list[int], measured: list[int], gpus: int) -> Iterator[Row]:
    cores = os.cpu_count() or 1
    for n in tasks:
        config = config_for(n)
        runs = plan(config)
        views, size = int(config.data.n * 0.8), config.data.size
        core_seconds = sum(cpu_seconds(r, config, views, size) for r in runs)
        gpu = sum(gpu_seconds(len(r.tasks), views * config.training.epochs) * (1.5 if r.probes else 1.0)
                  + TRIAL_OVERHEAD_SECONDS for r in runs)
        kinds = ", ".join(f"{k} {v}" for k, v in summary(runs).items())
        yield Row("scaling", f"{n} tasks: runs", f"{len(runs)} ({kinds})")
        yield Row("scaling", f"{n} tasks: CPU core-hours, estimated", f"{core_seconds / 3600:.2f}")
        yield Row("scaling", f"{n} tasks: training on {cores} CPUs, estimated", f"{core_seconds / cores / 60:.1f} min")
        if n in measured:
            summary_ = measure(config)
            wall = summary_["stages"]["training"]
            yield Row("scaling", f"{n} tasks: training on {cores} CPUs, measured", f"{wall / 60:.1f} min "
                      f"(whole sweep {summary_['stages']['total'] / 60:.1f} min)", wall / (core_seconds / cores))
        yield Row("scaling", f"{n} tasks: {gpus} H100s, projected", f"{gpu / gpus / 60:.2f} min ({gpu / 3600:.3f} GPU-hours)")


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("scaling", __doc__)
    parser.add_argument("--tasks", default="2,5,10", help="task counts (at most 10)")
    parser.add_argument("--measure", default="2", help="task counts to run for real (empty: none)")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs of the projected cluster")
    args = parser.parse_args(argv)
    numbers = [int(x) for x in args.tasks.split(",")]
    report(rows(numbers, [int(x) for x in args.measure.split(",") if x], args.gpus), args.json)


if __name__ == "__main__":
    main()
