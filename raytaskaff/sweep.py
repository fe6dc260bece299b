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
from raytaskaff.plan import cpu_seconds, plan, summary

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "sweeps" / "default.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m raytaskaff.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="sweep YAML (default: sweeps/default.yaml)")
    parser.add_argument("--out", default=None, help="output directory (default: the config's `out`)")
    parser.add_argument("--address", default=None,
                        help="Ray address: omit to start a local Ray, `auto` to join the cluster this machine belongs to")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (runs by kind, resources, estimate) and exit")
    return parser


def _train_views(config: SweepConfig) -> tuple[int, int] | None:
    """(training views, image size) of the sweep's data, when known without reading it all."""
    if config.data.kind == "synthetic":
        return int(config.data.n * 0.8), config.data.size
    try:
        from raytaskaff.data.shards import Manifest

        manifest = Manifest.load(config.data.path)
    except RaytaskaffError:
        return None
    return manifest.splits.get("train", {}).get("count", 0), manifest.size


def describe(config: SweepConfig) -> str:
    """The plan in words: runs by kind, resources, and an estimate of device-hours."""
    runs = plan(config)
    r = config.resources
    lines = [f"sweep {config.name}: {len(config.tasks)} tasks x {len(config.seeds)} seeds, {len(runs)} runs",
             "runs by kind: " + ", ".join(f"{k} {v}" for k, v in summary(runs).items()),
             f"resources per run: {r.cpus_per_run} CPU, {r.gpus_per_run} GPU" + (f", {r.workers} Ray Train workers" if r.workers else ""),
             f"scorers: {', '.join(config.scorers)}"]
    views = _train_views(config)
    if config.model.preset != "small" or r.gpus_per_run:
        lines.append("estimated device-hours: none (throughput is measured for the 'small' model on CPU only)")
    elif views is None:
        lines.append(f"estimated device-hours: none ({config.data.path} has no readable manifest yet)")
    else:
        count, size = views
        seconds = sum(cpu_seconds(run, config, count, size) for run in runs)
        lines.append(f"estimated device-hours: {seconds / 3600:.2f} CPU core-hours ({count} training views of {size} px)")
    lines.append(f"output: {config.out}")
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
