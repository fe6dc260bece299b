"""The sweep engine against a plain loop, and its parallel speed-up, measured side by side.

    python -m bench.engine [--data data/synthetic-16-2500] [--tasks 3] [--epochs 1] [--json]

The same runs (STL and pairs of the first `--tasks` tasks of the default, one seed) are trained
1. in one process, one after another, with the plain training loop (one thread);
2. by the engine (Ray Tune trials, fresh result store) on a local Ray with 1 CPU;
3. the same on a local Ray with 2 CPUs.
Aims: engine / plain <= 1.15 with one CPU; speed-up from 1 to 2 CPUs >= 1.8. Ray's own start-up
(a few seconds, once per sweep) is excluded from both engine timings and printed apart.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import ray
import torch

from bench.rows import Row, bench_parser, report
from raytaskaff.config import load_config
from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.engine.data import share_splits
from raytaskaff.engine.runs import train_config, train_runs
from raytaskaff.plan import plan
from raytaskaff.settings import RunKind
from raytaskaff.store import ResultStore
from raytaskaff.training.loop import DataSplits, RunSpec, train

ROOT = Path(__file__).resolve().parent.parent


def rows(path: str = "data/synthetic-16-2500", tasks: int = 3, epochs: int = 1) -> Iterator[Row]:
    base = load_config(ROOT / "sweeps" / "default.yaml")
    config = dataclasses.replace(base, tasks=base.tasks[:tasks], seeds=(0,), scorers={"td": {}},
                                 data=dataclasses.replace(base.data, path=path),
                                 training=dataclasses.replace(base.training, epochs=epochs))
    runs = [r for r in plan(config) if r.kind in (RunKind.STL, RunKind.PAIR)]
    splits = {s: SplitData.open(path, s) for s in ("train", "val", "test")}
    stats = Manifest.load(path).stats
    print(f"{len(runs)} runs ({', '.join(r.label for r in runs)}), {len(splits['train'])} training views, {epochs} epoch(s)")

    torch.set_num_threads(1)
    start = time.perf_counter()
    data = DataSplits(splits["train"], splits["val"], splits["test"], stats)
    for run in runs:
        train(RunSpec(run.tasks, run.inject), config.model.build(), train_config(config, "cpu", run.probes), data, run.seed)
    plain = time.perf_counter() - start

    engine = {}
    for cpus in (1, 2):
        t = time.perf_counter()
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        startup = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as tmp:
            store = ResultStore(str(Path(tmp) / "store"))
            tables = share_splits(path, "object_store")
            execution = train_runs(config, runs, store, tables, splits["train"].size, stats, str(Path(tmp) / "tune"), say=lambda *a: None)
            assert not execution.failed, execution.failed
            engine[cpus] = execution.wall_seconds
        ray.shutdown()
        print(f"Ray start-up with {cpus} CPU(s): {startup:.1f} s (excluded)")

    yield Row("engine", "plain loop, 1 process, 1 thread", f"{plain:.1f} s")
    yield Row("engine", "engine, 1 CPU / plain loop", f"{engine[1]:.1f} s vs {plain:.1f} s", engine[1] / plain, "<= 1.15")
    yield Row("engine", "engine speed-up, 1 -> 2 CPUs", f"{engine[1]:.1f} s vs {engine[2]:.1f} s", engine[1] / engine[2], ">= 1.8")


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("engine", __doc__)
    parser.add_argument("--data", default="data/synthetic-16-2500")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    report(rows(args.data, args.tasks, args.epochs), args.json)


if __name__ == "__main__":
    main()
