"""python -m raytaskaff.sweep: run a sweep (default: the embedded default on a local Ray).

    python -m raytaskaff.sweep [--config sweeps/default.yaml] [--out DIR] [--address auto]
                               [--dry-run [--views N --size PX] [--gpus N]]

The config is read and checked before Ray starts: an unknown key or a bad value is a one-line
error and exit code 2. A re-run of the same command resumes: runs with a stored result are not
trained again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raytaskaff.config import SweepConfig, load_config
from raytaskaff.errors import RaytaskaffError, one_line
from raytaskaff.plan import plan, summary

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "sweeps" / "default.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m raytaskaff.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="sweep YAML (default: sweeps/default.yaml)")
    parser.add_argument("--out", default=None, help="output directory (default: the config's `out`)")
    parser.add_argument("--address", default=None,
                        help="Ray address: omit to start a local Ray, `auto` to join the cluster this machine belongs to")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (runs by kind, resources, estimate) and exit")
    parser.add_argument("--views", type=int, default=None,
                        help="dry run: training views to estimate for (default: the dataset's, when it exists)")
    parser.add_argument("--size", type=int, default=None, help="dry run: image size with --views (default: the dataset's)")
    parser.add_argument("--gpus", type=int, default=None, help="dry run: wall-clock on this many GPUs (or CPU cores)")
    return parser


def _manifest(config: SweepConfig):
    """The manifest of the sweep's shard dataset, or None (synthetic, or not readable yet)."""
    if config.data.kind == "synthetic":
        return None
    from raytaskaff.data.shards import Manifest

    try:
        return Manifest.load(config.data.path)
    except RaytaskaffError:
        return None


def _train_views(config: SweepConfig) -> tuple[int, int] | None:
    """(training views, image size) of the sweep's data, when known without reading it all."""
    if config.data.kind == "synthetic":  # the train split's share of n (whole buildings: about that)
        return int(config.data.n * config.data.splits[0]), config.data.size
    manifest = _manifest(config)
    return None if manifest is None else (manifest.splits.get("train", {}).get("count", 0), manifest.size)


def describe(config: SweepConfig, views: int | None = None, size: int | None = None, devices: int | None = None) -> str:
    """The plan in words: runs by kind, resources, and an estimate of device-hours from measured
    throughput (`throughput.json`) for `views` training views of `size` px (default: the
    dataset's), with the wall-clock on `devices` GPUs (or CPU cores)."""
    from raytaskaff import throughput

    manifest = _manifest(config)
    # the keys of a dry run are never stored: a dataset not yet converted gets a stand-in identity
    runs = plan(config, manifest.fingerprint if manifest else "not-yet-read")
    r = config.resources
    lines = [f"sweep {config.name}: {len(config.tasks)} tasks x {len(config.seeds)} seeds, {len(runs)} runs",
             "runs by kind: " + ", ".join(f"{k} {v}" for k, v in summary(runs).items()),
             f"resources per trial: {r.cpus_per_run} CPU, {r.gpus_per_run} GPU" + (f", {r.workers} Ray Train workers" if r.workers else ""),
             _trials(config, runs),
             f"scorers: {', '.join(config.active_scorers)}"]
    lines += [f"scorer {name} skipped: {why}" for name, why in config.skipped_scorers().items()]
    known = _train_views(config)
    if views is not None:
        known = (views, size or (known[1] if known else None))
    kind, unit = ("cuda", "GPU-hours") if r.gpus_per_run else ("cpu", "CPU core-hours")
    if known is None or known[1] is None:
        lines.append(f"estimated device-hours: none ({config.data.path} has no readable manifest yet: give --views and --size)")
    else:
        count, px = known
        table = throughput.load_table()
        costs = [throughput.run_seconds(table, kind, config.model.preset, px, len(run.tasks), count * config.training.epochs,
                                        run.probes, config.training.batch_size) for run in runs]
        if any(c is None for c in costs):
            lines.append(f"estimated device-hours: none (no {kind} throughput of model {config.model.preset!r} is recorded in "
                         f"raytaskaff/throughput.json; measure it with `python -m bench.training --device {kind} "
                         f"--model {config.model.preset} --size {px} --record`)")
        else:
            seconds = sum(c[0] for c in costs)
            used = {c[1].measurement.device for c in costs}
            notes = sorted({c[1].note for c in costs if c[1].note})
            if r.bundle_limit > 1:
                factor = throughput.bundle_factor(kind, config.model.preset)
                if factor is None:
                    notes.append(f"no bundle factor is measured on {kind}: counted as one network per trial")
                else:
                    seconds *= factor.factor
                    notes.append(f"bundled: x{factor.factor:.2f} of one network after another, measured for "
                                 f"{factor.networks} networks of {factor.model} at {factor.size} px on {factor.device}")
            lines.append(f"estimated device-hours: {seconds / 3600:.2f} {unit} ({count} training views of {px} px x "
                         f"{config.training.epochs} epochs; measured on {', '.join(sorted(used))}"
                         + (f"; {'; '.join(notes)}" if notes else "") + ")")
            if devices:
                lines.append(f"wall-clock on {devices} {'GPUs' if kind == 'cuda' else 'CPU cores'}: {seconds / devices / 3600:.2f} h "
                             "at the throughput of one run per device (packed runs may do better; not in the estimate)")
    lines.append(f"output: {config.out}")
    return "\n".join(lines)


def _trials(config: SweepConfig, runs) -> str:
    """How the runs are bundled into trials, in words."""
    from raytaskaff.plan import bundles

    r = config.resources
    if r.bundle_limit == 1:
        why = ", DDP" if r.workers else (" on CPUs" if r.bundle == "auto" else "")
        return f"trials: {len(runs)}, one network each (resources.bundle: {r.bundle}{why})"
    trials = bundles(runs, r.bundle_limit)
    stacked = {"auto": "stacked on a GPU", True: "stacked", False: "not stacked"}[r.fuse]
    return (f"trials: {len(trials)} bundles of up to {max(len(b.runs) for b in trials)} networks "
            f"(resources.bundle: {r.bundle}, {stacked})")


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a scheduler, `kill`, `ray job stop`) stops the sweep as Ctrl-C does."""
    import signal
    import threading

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _interrupt_on_sigterm()
    try:
        config = load_config(args.config, out=args.out)
        if args.dry_run:
            print(describe(config, args.views, args.size, args.gpus))
            return 0
        from raytaskaff.engine.sweep import run_sweep

        result = run_sweep(config, address=args.address)
    except RaytaskaffError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
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
