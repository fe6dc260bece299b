"""How a sweep grows with its task count: runs, CPU core-hours, wall-clock on this machine, and a
projection for a GPU cluster.

    python -m bench.scaling [--tasks 2,5,10] [--measure 2] [--gpus 8] [--json]
    python -m bench.scaling --overhead [--record]      # Tune's time per trial, on 96 tiny trials
    python -m bench.scaling --tiny-40 [--images 300] [--size 32]   # the 40-task estimate against a run

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

--overhead: 96 tiny trials (`overhead_config`) run for real; Tune's time per trial is the training
stage's wall-clock times the trials at once, less the runs' own wall-clock (the stored
`wall_seconds`: building, training and evaluating the network), over the trials: the hand-over,
the trial's start, opening the data, writing results and checkpoints (and, once per slot, the
worker's start, spread over the trials). --record writes it into
raytaskaff/throughput.json ("trial_overhead"), where the dry run's wall-clock takes it from.

--tiny-40: celeba-40's forty attributes (short aliases, so that no trial name is long) on a fake
CelebA (tests/fake_celeba.py, converted by the folder converter) at tiny settings: 1 seed, 1
epoch, no label injection, the MTL scorers on the all-task network, rsa, no grouping. The dry
run's estimate (core-hours, wall-clock on this machine's cores) against the sweep run for real.
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
    return run_measured(config)[0]


def run_measured(config: SweepConfig) -> tuple[dict, "pd.DataFrame"]:
    """Run the sweep for real in a fresh output directory: (evaluation.json, runs.parquet)."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.yaml"
        path.write_text(yaml.safe_dump({**to_dict(config), "out": f"{tmp}/out"}))
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        done = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(path)], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the {config.name} sweep failed: {done.stderr.strip().splitlines()[-1:]}")
        return (json.loads((Path(tmp) / "out" / "results" / "evaluation.json").read_text()),
                pd.read_parquet(Path(tmp) / "out" / "results" / "runs.parquet"))


def per_trial_seconds(training_wall: float, slots: int, run_walls: list[float], trials: int) -> float:
    """Seconds of a slot per trial beyond its runs' own wall-clock: `slots` trials at once for
    `training_wall` seconds, less the runs' `run_walls`, over `trials` (idle slots at the end count
    too, as they do in a sweep's wall-clock)."""
    return (training_wall * slots - sum(run_walls)) / trials


def slots_of(config: SweepConfig) -> int:
    cores = config.resources.num_cpus or os.cpu_count() or 1
    return max(1, int(cores // config.resources.cpus_per_run))


def overhead_config() -> SweepConfig:
    """The default's five tasks on six seeds at 8 px, one epoch of 144 views: 96 trials whose
    networks train in well under a second each, so that Tune's part of a slot's time shows."""
    base = load_config(ROOT / "sweeps" / "default.yaml")
    data = dataclasses.replace(base.data, path="data/synthetic-8-240", n=240, size=8, splits=(0.6, 0.2, 0.2), workers=1)
    return dataclasses.replace(base, name="overhead", data=data, training=dataclasses.replace(base.training, epochs=1, batch_size=16),
                               scorers={"gs": {"source": "all"}}, grouping=dataclasses.replace(base.grouping, groups=()),
                               tracking=dataclasses.replace(base.tracking, tensorboard=False), bootstrap=100)


def overhead_rows(record: bool) -> Iterator[Row]:
    """Tune's time per trial on `overhead_config` (one network per trial)."""
    config = overhead_config()
    evaluation, runs = run_measured(config)
    wall, slots = evaluation["stages"]["training"], slots_of(config)
    trials = len(runs)
    seconds = per_trial_seconds(wall, slots, list(runs["wall_seconds"]), trials)
    yield Row("scaling", f"{trials} tiny trials, {slots} at once", f"training stage {wall:.1f} s, runs' own "
              f"{runs['wall_seconds'].sum():.1f} s")
    yield Row("scaling", "Tune's time per trial (slot-seconds beyond the run)", f"{seconds:.2f} s")
    if record:
        from datetime import date

        throughput.record_trial_overhead(throughput.TrialOverhead(
            cpu_name(), "cpu", seconds, trials, date.today().isoformat(), "python -m bench.scaling --overhead --record"))
        print(f"recorded in {throughput.TABLE}", file=sys.stderr)


def cpu_name() -> str:
    import platform
    import re

    try:
        model = re.search(r"^Model name:\s*(.+)$", subprocess.run(["lscpu"], capture_output=True, text=True).stdout, re.M)[1]
    except (OSError, TypeError):
        model = platform.processor() or platform.machine()
    return f"{model.strip()} ({os.cpu_count()} cores)"


def tiny_40(images: int, size: int, out: str | None = None) -> SweepConfig:
    """celeba-40's task list on a fake CelebA of `images` images at `size` px, tiny settings."""
    from bench.training import _fake_celeba

    data = _fake_celeba(size, images)
    forty = load_config(ROOT / "sweeps" / "celeba-40.yaml")
    raw = to_dict(forty)
    raw.update(
        name="tiny-40", data={**raw["data"], "path": str(Path(data).resolve()), "reader": "object_store"}, seeds=[0],
        tasks=[{"name": f"t{i:02d}", "family": "binary", "field": "attributes", "index": spec.index}
               for i, spec in enumerate(forty.task_specs[t] for t in forty.tasks)],
        training={**raw["training"], "epochs": 1, "batch_size": 32, "amp": False},
        probes={"lookahead_every": 10, "gradients_every": 10},
        scorers={"rsa": {"images": 32}, "gs": {"source": "all"}, "etap": {"source": "all"}},
        resources={"cpus_per_run": 1, "gpus_per_run": 0, "scorer_actors": 1}, grouping={"groups": []},
        tracking={"tensorboard": False}, retries=0, out=out or "out/tiny-40")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tiny-40.yaml").write_text(yaml.safe_dump(raw))
        return load_config(Path(tmp) / "tiny-40.yaml")


def tiny_40_rows(images: int, size: int) -> Iterator[Row]:
    from raytaskaff.sweep import describe

    config = tiny_40(images, size)
    cores = slots_of(config)
    text = describe(config, devices=cores)
    for line in text.splitlines():
        print(line, file=sys.stderr)
    import re

    hours = float(re.search(r"estimated device-hours: ([0-9.]+) CPU core-hours", text)[1])
    wall = float(re.search(rf"wall-clock on {cores} CPU cores: ([0-9.]+) h", text)[1])
    evaluation, runs = run_measured(config)
    trained = runs[runs["kind"] != "group"]
    measured, core = evaluation["stages"]["training"], trained["cpu_seconds"].sum()
    yield Row("scaling", f"tiny 40: {len(trained)} runs, {size} px, 1 epoch", ", ".join(f"{k} {v}" for k, v in summary(plan(config, 'x')).items()))
    yield Row("scaling", "tiny 40: CPU core-seconds, measured / estimated", f"{core:.0f} s / {hours * 3600:.0f} s", core / (hours * 3600))
    yield Row("scaling", f"tiny 40: training on {cores} cores, measured / estimated", f"{measured:.0f} s / {wall * 3600:.0f} s",
              measured / (wall * 3600))
    yield Row("scaling", "tiny 40: Tune's time per trial (measured)",
              f"{per_trial_seconds(measured, cores, list(trained['wall_seconds']), len(trained)):.2f} s")
    yield Row("scaling", "tiny 40: whole sweep", f"{evaluation['stages']['total']:.0f} s")


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
    parser.add_argument("--overhead", action="store_true", help="measure Tune's time per trial on 96 tiny trials")
    parser.add_argument("--record", action="store_true", help="--overhead: write it into raytaskaff/throughput.json")
    parser.add_argument("--tiny-40", action="store_true", help="the 40-task estimate against a tiny run")
    parser.add_argument("--images", type=int, default=300, help="--tiny-40: fake CelebA images")
    parser.add_argument("--size", type=int, default=32, help="--tiny-40: image size")
    args = parser.parse_args(argv)
    if args.overhead:
        report(overhead_rows(args.record), args.json)
        return
    if args.tiny_40:
        report(tiny_40_rows(args.images, args.size), args.json)
        return
    numbers = [int(x) for x in args.tasks.split(",")]
    report(rows(numbers, [int(x) for x in args.measure.split(",") if x], args.gpus), args.json)


if __name__ == "__main__":
    main()
