"""python -m raytaskaff.sweep: run a sweep (default: the embedded default on a local Ray).

    python -m raytaskaff.sweep [--config sweeps/default.yaml] [--out DIR] [--address auto] [--dry-run]

The config is read and checked before Ray starts: an unknown key or a bad value is a one-line
error and exit code 2. A re-run of the same command resumes: runs with a stored result are not
trained again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raytaskaff.config import SweepConfig, load_config
from raytaskaff.errors import RaytaskaffError
from raytaskaff.plan import plan, summary

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "sweeps" / "default.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m raytaskaff.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="sweep YAML (default: sweeps/default.yaml)")
    parser.add_argument("--out", default=None, help="output directory (default: the config's `out`)")
    parser.add_argument("--address", default=None,
                        help="Ray address: omit to start a local Ray, `auto` to join the cluster this machine belongs to")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (runs by kind, resources, estimate) and exit")
    return parser


def describe(config: SweepConfig) -> str:
    """The plan in words: runs by kind, resources, and an estimate of device-hours."""
    runs = plan(config)
    kinds = summary(runs)
    r = config.resources
    # per-run cost model measured for the small model on one CPU core (docs/benchmarks.md)
    samples = config.data.n * 0.8 * config.training.epochs
    per_task_rate = {1: 1500.0, 2: 950.0}
    seconds = 0.0
    for run in runs:
        rate = per_task_rate.get(len(run.tasks), 2700.0 / len(run.tasks))
        seconds += samples / rate * (1.5 if run.probes else 1.0) * (config.data.size / 32) ** 2
    lines = [f"sweep {config.name}: {len(config.tasks)} tasks x {len(config.seeds)} seeds, {len(runs)} runs",
             "runs by kind: " + ", ".join(f"{k} {v}" for k, v in kinds.items()),
             f"resources per run: {r.cpus_per_run} CPU, {r.gpus_per_run} GPU" + (f", {r.workers} Ray Train workers" if r.workers else ""),
             f"scorers: {', '.join(config.scorers)}",
             f"estimated device-hours: {seconds / 3600:.2f} (CPU core-hours for the small model at 32 px; GPU runs are faster)",
             f"output: {config.out}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config, out=args.out)
        if args.dry_run:
            print(describe(config))
            return 0
        from raytaskaff.engine.sweep import run_sweep

        result = run_sweep(config, address=args.address)
    except RaytaskaffError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are stored; run the same command again to resume", file=sys.stderr)
        return 130
    failed = result["runs"]["failed"]
    print(f"report: {Path(config.out) / 'report' / 'index.html'}")
    if failed:
        print(f"{len(failed)} runs failed (see the report)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
