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
from raytaskaff.estimate import (choose_bundles, eval_views, manifest_of, run_costs, train_views, trial_seconds, trial_slots,
                                 wall_seconds)
from raytaskaff.plan import Run, grouping_sources, most_group_runs, plan, summary
from raytaskaff.names import longest_paths
from raytaskaff.preflight import check_path_lengths, check_scorers
from raytaskaff.settings import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "sweeps" / "default.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m raytaskaff.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="sweep YAML (default: sweeps/default.yaml)")
    parser.add_argument("--out", default=None, help="output directory (default: the config's `out`)")
    parser.add_argument("--address", default=None,
                        help="Ray address: omit to start a local Ray, `auto` to join the cluster this machine belongs to")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (runs by kind, resources, estimate) and exit")
    parser.add_argument("--views", type=int, default=None,
                        help="dry run: training views to estimate for (default: the dataset's train split, when it is "
                             "known; without it, give --views and --size)")
    parser.add_argument("--size", type=int, default=None, help="dry run: image size in px (default: the dataset's)")
    parser.add_argument("--gpus", type=int, default=None, help="dry run: wall-clock on this many GPUs (or CPU cores)")
    return parser


def _check_dry_run(config: SweepConfig, views: int | None, size: int | None, devices: int | None) -> None:
    """--views, --size and --gpus: whole numbers of at least 1, and --views with --size where the
    dataset does not say its image size (or --size with --views where it does not say its views)."""
    for flag, value in (("--views", views), ("--size", size), ("--gpus", devices)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: a whole number of at least 1, got {value}")
    if (views is None) != (size is None) and train_views(config) is None:
        given, missing = ("--views", "--size") if size is None else ("--size", "--views")
        raise ConfigError(f"{given} needs {missing}: {config.data.path} has no readable manifest to tell the "
                          f"{'image size' if size is None else 'training views'}")


def describe(config: SweepConfig, views: int | None = None, size: int | None = None, devices: int | None = None) -> str:
    """The plan in words: runs by kind (the grouping runs as the most the grouping stage can add:
    which ones is known only after the scorers), resources, and an estimate of device-hours from
    measured throughput (`throughput.json`) for `views` training views of `size` px (default: the
    dataset's), with the wall-clock on `devices` GPUs (or CPU cores)."""
    manifest = manifest_of(config)
    # the keys of a dry run are never stored: a dataset not yet converted gets a stand-in identity
    content = manifest.fingerprint if manifest else "not-yet-read"
    runs = plan(config, content)
    grouping = most_group_runs(config, runs, content)
    r = config.resources
    head = f"sweep {config.name}: {len(config.tasks)} tasks x {len(config.seeds)} seeds, {len(runs)} runs"
    kinds = "runs by kind: " + ", ".join(f"{k} {v}" for k, v in summary(runs).items())
    if grouping:
        head += f" + up to {len(grouping)} grouping runs (at most {len(runs) + len(grouping)})"
        kinds += f"; grouping runs: up to {len(grouping)}"
    elif config.grouping.groups:
        head += " (the grouping stage adds none)"
    lines = [head, kinds]
    if config.budgeted:
        every = len(config.tasks) * (len(config.tasks) - 1) // 2
        lines.append(f"ground truth on a budget: {config.budget_pairs} of {every} pairs trained on each seed, the other "
                     f"{every - config.budget_pairs} predicted from the scorers (ground_truth.pairs)")
    if config.grouping.groups:
        lines.append(_grouping_line(config, grouping))
    known = _views_known(config, views, size)
    px = known[1] if known else None
    lines += [f"resources per trial: {r.cpus_per_run} CPU, {r.gpus_per_run} GPU" + (f", {r.workers} Ray Train workers" if r.workers else ""),
              _trials(config, runs, grouping, known, devices)]
    trials, why = choose_bundles(config, runs, px, known[0] if known else None, devices)
    if why:
        lines.append(f"bundling: {why}")
    if r.gpus_per_run and r.bundle_limit > 1 and px:
        from raytaskaff.training.memory_table import describe_bundles

        lines += describe_bundles(trials, config, px)
    lines.append(f"scorers: {', '.join(config.active_scorers)}")
    lines += [f"scorer {name} skipped: {why}" for name, why in config.skipped_scorers().items()]
    lines += _estimate(config, runs, grouping, known, devices)
    lines.append(f"output: {config.out}")
    return "\n".join(lines)


def _views_known(config: SweepConfig, views: int | None, size: int | None) -> tuple[int, int, str] | None:
    """(training views, px, where the figures come from): the dataset's, overridden by what is given."""
    known = train_views(config)
    if known is not None and views is not None:
        return views, size or known[1], "as given" if size else f"as given, at the dataset's {known[1]} px"
    if known is not None and size is not None:
        return known[0], size, known[2] + f", at {size} px as given"
    if views is not None and size is not None:
        return views, size, "as given"
    return known


def _estimate(config: SweepConfig, runs: list[Run], grouping: list[Run], known: tuple[int, int, str] | None,
              devices: int | None) -> list[str]:
    """The lines on training views, device-hours and (on `devices`) wall-clock."""
    from raytaskaff import throughput

    r = config.resources
    kind, unit = ("cuda", "GPU-hours") if r.gpus_per_run else ("cpu", "CPU core-hours")
    if known is None:
        return [f"estimated device-hours: none ({config.data.path} has no readable manifest yet: give --views and --size)"]
    count, px, where = known
    batch = config.training.batch_size
    samples = count // batch * batch  # the training loop drops the last partial batch
    lines = [f"training views: {count} of {px} px ({where}); a run trains on {samples} of them an epoch "
             f"({count // batch} batches of {batch}, the last partial batch dropped)"]
    evaluated = eval_views(config, count)
    costs = run_costs(config, runs + grouping, px, count)
    if costs is None:
        return lines + [f"estimated device-hours: none (nothing is measured on a {kind} device in raytaskaff/throughput.json; "
                        f"measure it with `python -m bench.training --device {kind} --model {config.model.preset} "
                        f"--size {px} --record`)"]
    used = sorted({f"{m.device} ({m.model}, {m.size} px, batch {m.batch_size}" + (f", {m.date}" if m.date else "") + ")"
                   for m in (c[1].measurement for c in costs.values())})
    notes = _merged_notes(c[1].note for c in costs.values())
    factor = throughput.bundle_factor(kind, config.model.preset) if r.bundle_limit > 1 else None
    if r.bundle_limit > 1:
        if factor is None:
            notes.append(f"no bundle factor is measured on {kind}: counted as one network after another")
        else:
            notes.append(f"bundled: x{factor.factor:.2f} of one network after another, measured for "
                         f"{factor.networks} networks of {factor.model} at {factor.size} px on {factor.device}")
    seconds = {run_key: c[0] for run_key, c in costs.items()}
    planned = trial_seconds(_bundles(config, runs, known, devices), seconds, factor)
    extra = trial_seconds(_bundles(config, grouping, known, devices), seconds, factor)
    total = f"{_hours(sum(planned))} {unit}"
    if grouping:
        total += f", up to {_hours(sum(planned) + sum(extra))} with the grouping runs"
    lines.append(_kinds_line(runs + grouping, {k: c[2] for k, c in costs.items()}))
    evaluation = (f", and {evaluated[0]} validation views an epoch and {evaluated[1]} test views once at "
                  f"{throughput.FORWARD_SHARE:.2f} of a training sample each" if evaluated
                  else ", evaluation not counted: the sizes of the validation and test splits are not known")
    lines.append(f"estimated device-hours: {total} ({count} training views of {px} px x {config.training.epochs} epochs{evaluation}; "
                 f"an STL run's rate measured on {', '.join(used)}" + (f"; {'; '.join(notes)}" if notes else "") + ")")
    if devices:
        lines.append(_wall_clock(planned, extra, devices, kind, r, throughput.trial_overhead(kind)))
    return lines


def _kinds_line(runs: list[Run], factors: dict) -> str:
    """The cost of each kind of run over an STL run's, and where each factor comes from."""
    by_kind: dict[str, list] = {}
    for run in runs:
        if len(run.tasks) > 1 or run.inject:
            by_kind.setdefault(str(run.kind), []).append((len(run.tasks), factors[run.key]))
    parts = []
    for name, found in by_kind.items():
        values = sorted({round(f.value, 2) for _, f in found})
        tasks = sorted({n for n, _ in found})
        value = f"x{values[0]:.2f}" + (f"-{values[-1]:.2f}" if len(values) > 1 else "")
        size = "" if name in ("pair", "li") else f"{'-'.join(map(str, sorted({tasks[0], tasks[-1]})))} tasks, "
        sources = "; ".join(sorted({f.note for _, f in found}))
        parts.append(f"{name} {value} ({size}{sources})")
    return "cost of a run over an STL run's (per training sample): " + (", ".join(parts) if parts else "only STL runs")


def _bundles(config: SweepConfig, runs: list[Run], known: tuple[int, int, str] | None, devices: int | None):
    """The runs' trials as the engine makes them (`estimate.choose_bundles`): on GPUs sized to
    each trial's memory and cut to at least as many trials as `devices` GPUs hold at once, or one
    network per trial where bundling would not be faster."""
    views, px = (known[0], known[1]) if known else (None, None)
    return choose_bundles(config, runs, px, views, devices)[0]


def _wall_clock(planned: list[float], extra: list[float], devices: int, kind: str, r, overhead) -> str:
    what = "GPUs" if kind == "cuda" else "CPU cores"
    per = overhead.seconds if overhead is not None else 0.0

    def wall(trials):
        return wall_seconds(trials, devices, kind, r.cpus_per_run, r.gpus_per_run, r.max_concurrent, per)

    slots, slowdown = trial_slots(devices, kind, r.cpus_per_run, r.gpus_per_run, r.max_concurrent, len(planned))
    text = f"{_hours(wall(planned))} h"
    if extra:
        text += f", up to {_hours(wall(planned) + wall(extra))} h with the grouping runs (trained after the scorers)"
    if kind == "cuda":
        sharing = (f"{slots} trials at once, {slowdown:.0f} to a GPU at 1/{slowdown:.0f} of its speed each (no gain from "
                   f"packing is measured)" if slowdown > 1 else f"{slots} trials at once, one to a GPU")
        sharing += f", if the cluster has the {slots * r.cpus_per_run:g} CPUs they ask for"
    else:
        sharing = f"{slots} trials at once" + (f", {r.cpus_per_run:g} cores each" if r.cpus_per_run > 1 else "")
    cost = (f"{per:.2f} s of Tune per trial (measured on {overhead.device}" + (f", {overhead.date}" if overhead.date else "")
            + ")" if overhead is not None else "no per-trial time measured: not counted")
    return (f"wall-clock on {devices} {what}: {text}; {len(planned)} trials, {sharing}, plus {cost}; placed longest first, "
            f"each on the slot free first (the longest trial alone: {_hours(max(planned, default=0) * slowdown + per)} h)")


def _merged_notes(notes) -> list[str]:
    """The rates' notes, each part once; "N tasks scaled from M" parts as one per M."""
    import re

    parts = sorted({part for note in notes for part in note.split("; ") if part})
    scaled: dict[int, list[int]] = {}
    out = []
    for part in parts:
        found = re.fullmatch(r"(\d+) tasks scaled from (\d+)", part)
        if found:
            scaled.setdefault(int(found[2]), []).append(int(found[1]))
        else:
            out.append(part)
    return [f"{', '.join(map(str, sorted(n)))} tasks scaled from {m}" for m, n in sorted(scaled.items())] + out


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.2f}" if hours >= 0.01 or hours == 0 else f"{hours:.4f}"


def _grouping_line(config: SweepConfig, grouping) -> str:
    """What the grouping stage adds, in words."""
    sources = grouping_sources(config)
    scorers = len(config.active_scorers)
    seeds = config.grouping_seeds
    ks = ", ".join(map(str, config.grouping.groups))
    where = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
    if not grouping:
        why = "every group is planned (exhaustive)" if config.grouping.exhaustive else "every group it can choose is a planned run"
        return f"grouping: K = {ks} on {where}: {why}, no more runs"
    sizes = sorted({len(run.tasks) for run in grouping})
    return (f"grouping: the groups that {len(sources)} sources ({scorers} scorers, ground_truth, hoa) choose for K = {ks}, "
            f"trained on {where} where no planned run trains them: up to {len(grouping)} runs, known after the scorers "
            f"(the estimate counts the largest possible groups, of {' and '.join(map(str, sizes))} tasks)")


def _trials(config: SweepConfig, runs, grouping=(), known: tuple[int, int, str] | None = None,
            devices: int | None = None) -> str:
    """How the runs are bundled into trials, in words."""
    r = config.resources
    more = ""
    if r.bundle_limit == 1:
        why = ", DDP" if r.workers else (" on CPUs" if r.bundle == "auto" else "")
        if grouping:
            more = f", and up to {len(grouping)} for the grouping runs"
        return f"trials: {len(runs)}, one network each (resources.bundle: {r.bundle}{why})" + more
    trials = _bundles(config, runs, known, devices)
    if grouping:
        more = f", and up to {len(_bundles(config, list(grouping), known, devices))} for the grouping runs"
    if all(len(b.runs) == 1 for b in trials):
        return f"trials: {len(trials)}, one network each (bundling would not be faster)" + more
    stacked = {"auto": "stacked on a GPU", True: "stacked", False: "not stacked"}[r.fuse]
    return (f"trials: {len(trials)} bundles of up to {max(len(b.runs) for b in trials)} networks "
            f"(resources.bundle: {r.bundle}, {stacked})" + more)


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
        check_scorers(config, Path(args.config))
        check_path_lengths(longest_paths(config.out, config.storage, config.name))
        if args.dry_run:
            _check_dry_run(config, args.views, args.size, args.gpus)
            print(describe(config, args.views, args.size, args.gpus))
            return 0
        if any(v is not None for v in (args.views, args.size, args.gpus)):
            raise ConfigError("--views, --size and --gpus size a dry run: give them with --dry-run")
        from raytaskaff.engine.sweep import run_sweep

        result = run_sweep(config, address=args.address)
    except RaytaskaffError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are stored; run the same command again to resume", file=sys.stderr)
        return 130
    from raytaskaff.report import closing_lines

    failed = result["runs"]["failed"]
    print("\n".join(closing_lines(result["stages"], (Path(config.out) / "report" / "index.html").resolve())))
    if failed:
        log = Path(config.out).resolve() / "logs" / "sweep.log"  # engine.runs.log_path, without importing Ray here
        print(f"{len(failed)} runs failed (see the report; Ray's tracebacks are in {log})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from raytaskaff.data.shards import exit_process

    exit_process(main())  # not sys.exit: a storage client still waiting can crash the teardown
