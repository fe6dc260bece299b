"""How much signal the embedded default's ground truth carries, against what it costs, knob by knob.

    python -m bench.signal [--variants default,...] [--set NAME:key=value,...] [--seeds 0,1,2] [--root DIR]

A variant is sweeps/default.yaml with a few settings changed (`data.n=2000`, `training.epochs=8`,
`model.widths=[8,16,32]`, `tasks=[normal,depth_zbuffer]`; values are YAML). For each, the STL
and pair runs of its tasks are trained on a local Ray with every CPU, one dataset per data
setting (rendered once under ROOT/data/signal/), and the rows give side by side:
- the single-seed noise ceiling (Spearman of one seed's 20 gains against another's, mean over
  seed pairs) and the split-half reliability of the seed mean (evaluation/noise.py), aims 0.7
  and 0.85;
- the spread of the mean gains and their seed-to-seed standard deviation;
- the wall-clock of those runs (rendering is printed apart).
Runs are kept in ROOT/out/bench-signal/store (ROOT: the repository), so a variant measured before is read back; its
wall-clock is then its runs' own seconds divided by the CPUs, marked "stored".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from bench.rows import Row, report

ROOT = Path(__file__).resolve().parent.parent

#: What was tried (docs/benchmarks.md, "Signal of the default"); `--variants` picks some.
_LIMITED = {"data.n": 2500, "data.size": 32, "data.splits": [0.4, 0.1, 0.5]}  # 1008 training views, 1244 test views
VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "before": {"data.n": 5000, "data.size": 32, "data.splits": [0.8, 0.1, 0.1], "training.epochs": 3, "model.decoder_width": 8},
    "lim1000-e6": {**_LIMITED, "training.epochs": 6, "model.decoder_width": 8},
    "lim1000-e10": {**_LIMITED, "training.epochs": 10, "model.decoder_width": 8},
    "lim1000-e10-lr1e-3": {**_LIMITED, "training.epochs": 10, "model.decoder_width": 8, "training.lr": 0.001},
    "lim500-e16": {"data.n": 2500, "data.size": 32, "data.splits": [0.2, 0.1, 0.7], "training.epochs": 16, "model.decoder_width": 8},
    "lim1000-e10-dec16": {**_LIMITED, "training.epochs": 10, "model.decoder_width": 16},
    "lim1000-e10-dec16-lr1e-3": {**_LIMITED, "training.epochs": 10, "model.decoder_width": 16, "training.lr": 0.001},
    "lim1000-e14-dec16": {**_LIMITED, "training.epochs": 14, "model.decoder_width": 16},
    "lim1000-e10-dec32": {**_LIMITED, "training.epochs": 10, "model.decoder_width": 32},
    "lim1000-e10-dec64": {**_LIMITED, "training.epochs": 10, "model.decoder_width": 64},
    "lim1000-e8-dec64": {**_LIMITED, "training.epochs": 8, "model.decoder_width": 64},
    "s16-lim1000-e10-dec64": {**_LIMITED, "data.size": 16, "training.epochs": 10, "model.decoder_width": 64},
    "s16-e16-dec64": {**_LIMITED, "data.size": 16, "training.epochs": 16, "model.decoder_width": 64},  # the default (6 seeds)
    "s16-e12-dec128": {**_LIMITED, "data.size": 16, "training.epochs": 12, "model.decoder_width": 128},
    "lim2000-e8-dec32": {"data.n": 4000, "data.size": 32, "data.splits": [0.5, 0.1, 0.4], "training.epochs": 8, "model.decoder_width": 32},
}


def parse_overrides(text: str) -> dict[str, object]:
    """'data.n=2000,model.widths=[8,16,32]' -> {"data.n": 2000, "model.widths": [8, 16, 32]} (values are YAML)."""
    out = {}
    for item in re.split(r",(?![^\[]*\])", text):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", key.strip()):
            raise SystemExit(f"bench.signal: expected key=value such as data.n=2000, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def variant_config(overrides: dict[str, object], seeds: tuple[int, ...], name: str, root: Path = ROOT):
    """The default's config with `overrides`: the ground truth's runs only, data under root/data/signal/."""
    from raytaskaff.config import SweepConfig, from_dict

    data = yaml.safe_load((ROOT / "sweeps" / "default.yaml").read_text())
    for key, value in overrides.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    d = data["data"]
    splits = "-".join(f"{f:g}" for f in d.get("splits", (0.8, 0.1, 0.1)))
    d["path"] = str(root / "data" / "signal" / f"n{d['n']}-s{d['size']}-seed{d.get('seed', 0)}-{splits}")
    data.update(name=name, seeds=list(seeds), scorers={"td": {}}, grouping={"groups": []}, tracking={"tensorboard": False},
                out=str(root / "out" / "bench-signal"))
    return from_dict(SweepConfig, data)


def measure(name: str, overrides: dict[str, object], seeds: tuple[int, ...], root: Path = ROOT) -> dict:
    """Train (or read back) one variant's STL and pair runs; its ceilings, gains and wall-clock."""
    import ray

    from raytaskaff.engine.data import share_splits
    from raytaskaff.engine.runs import train_runs
    from raytaskaff.pipeline import Results, collect, prepare_data
    from raytaskaff.evaluation import gains_per_seed, ground_truth, noise_ceiling
    from raytaskaff.plan import plan
    from raytaskaff.preflight import check_data
    from raytaskaff.store import ResultStore

    config = variant_config(overrides, seeds, name, root)
    t = time.perf_counter()
    root, manifest = prepare_data(config, say=lambda *a: None)
    render = time.perf_counter() - t
    check_data(config, manifest, root)  # e.g. a train split smaller than a batch would train nothing
    runs = [r for r in plan(config) if r.kind in ("stl", "pair")]
    store = ResultStore(str(Path(config.out) / "store"))
    fresh = not any(store.has(r.key) for r in runs)
    execution = train_runs(config, runs, store, share_splits(root, "object_store", manifest), manifest.stats,
                           str(Path(config.out) / "tune"), say=lambda *a: None)
    if execution.failed:
        raise SystemExit(f"bench.signal: variant {name}: runs failed: {execution.failed}")
    by_seed = collect(runs, Results(store, runs), config.seeds)
    stl = {s.seed: {t: r.test_losses[t] for t, r in s.stl.items()} for s in by_seed}
    pairs = {s.seed: {k: r.test_losses for k, r in s.pairs.items()} for s in by_seed}
    per_seed = gains_per_seed(stl, pairs)
    truth = ground_truth(per_seed)
    ceiling = noise_ceiling(per_seed)
    cpus = ray.cluster_resources().get("CPU", 1)
    own = sum(r.wall_seconds for s in by_seed for r in [*s.stl.values(), *s.pairs.values()])
    return {
        "variant": name, "overrides": overrides, "train_views": manifest.splits["train"]["count"],
        "single_seed": ceiling["single_seed"]["spearman"], "split_half": (ceiling["split_half"] or {}).get("spearman"),
        "gain_min": float(truth["gain"].min()), "gain_max": float(truth["gain"].max()),
        "gain_std_median": float(np.nanmedian(truth["gain_std"])), "runs": len(runs),
        "gains": {f"{r.target}<-{r.partner}": [round(r.gain, 2), round(r.gain_std, 2)] for r in truth.itertuples()},
        "wall_seconds": execution.wall_seconds if fresh else own / cpus, "stored": not fresh, "render_seconds": render,
    }


def rows(variants: dict[str, dict[str, object]], seeds: tuple[int, ...], root: Path = ROOT):
    import ray

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        for name, overrides in variants.items():
            m = measure(name, overrides, seeds, root)
            print(json.dumps(m), file=sys.stderr, flush=True)
            spec = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "as sweeps/default.yaml"
            wall = f"{m['wall_seconds']:.0f} s{' (stored)' if m['stored'] else ''}"
            yield Row("signal", f"{name} ({spec}): single-seed ceiling", f"{m['single_seed']:.2f}", m["single_seed"], ">= 0.7")
            yield Row("signal", f"{name}: split-half reliability", f"{m['split_half']:.2f}", m["split_half"], ">= 0.85")
            yield Row("signal", f"{name}: mean gains, median seed sd",
                      f"{m['gain_min']:+.1f} to {m['gain_max']:+.1f} %, {m['gain_std_median']:.1f} %")
            yield Row("signal", f"{name}: {m['runs']} STL and pair runs, {m['train_views']} training views", f"{wall}, render {m['render_seconds']:.0f} s")
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.signal", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="default", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--set", action="append", default=[], metavar="NAME:key=value,...", help="an extra variant")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--root", type=Path, default=ROOT, help="where datasets and runs are kept (default: the repository)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    chosen = {}
    for name in filter(None, args.variants.split(",")):
        if name not in VARIANTS:
            raise SystemExit(f"bench.signal: unknown variant {name!r} (known: {', '.join(VARIANTS)})")
        chosen[name] = VARIANTS[name]
    for item in args.set:
        name, sep, spec = item.partition(":")
        if not sep:
            raise SystemExit(f"bench.signal: --set needs NAME:key=value,..., got {item!r}")
        chosen[name] = parse_overrides(spec)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    report(rows(chosen, seeds, args.root), args.json)


if __name__ == "__main__":
    main()
