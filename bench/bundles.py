"""Bundles against one network per trial, through the engine, side by side in one process.

    python -m bench.bundles [--config sweeps/default.yaml] [--seeds 0,1,2,3,4,5] [--epochs 16]
                            [--gpus 0] [--modes auto,one] [--peak-tflops 989] [--json]

Each mode trains the same planned runs of `--config` (its STL, pair, all-task and label-injection
runs on `--seeds`; the grouping stage excluded) with `engine.runs.train_runs` into a fresh result
store, on one local Ray that every mode shares (its start-up, and a first untimed round that
starts the trial processes, excluded):
- `auto`: `resources.bundle: auto` (a trial per seed and input; networks stacked on a GPU);
- `one`: `resources.bundle: 1`, one network per trial (the way sweeps ran before bundles);
- `packed`: `bundle: 1` at 1/8 GPU per run (8 networks per GPU at once; GPU only);
- `unfused`: `bundle: auto` with `fuse: false` (the networks of a bundle as separate modules,
  reading each batch once);
- `fused`: `bundle: auto` with `fuse: true` (stacked also on a CPU: the equivalence check).
Without a GPU (`--gpus 0`) each trial gets `resources.cpus_per_run` CPUs and trials share the
machine's cores; with one, `one` gets the whole GPU per trial (one network at a time) and `auto`
and `unfused` get `--gpus-per-bundle` of it. `--kinds stl,pair,all` keeps one seed's 16 networks.

`--loop cpu|cuda` times instead, in one process without Ray, one seed's STL, pair and all-task
networks trained one after another against the same as one bundle: the factor the dry run
applies to bundled runs.

`--step cpu|cuda` times one fused training step (forward, backward, Adam) of one seed's STL and
pair networks stacked, with the batch norm folded into one call over N x C channels against the
plain tensor operations it replaced, A and B interleaved (`--repeats` each; medians and their
ratio), and the bytes the step's autograd graph saves (`torch.autograd.graph.saved_tensors_hooks`,
each storage counted once); `--bf16`: bf16 activations with fp32 batch-norm statistics, as bf16
autocast trains on a GPU.

Rows: each mode's training-stage wall-clock and samples/s, `one / auto` (aim >= 1.8 on 2 CPU
cores for the default), on a GPU `packed / auto` (aim >= 5 for one seed's 16 networks), and the
agreement of every mode with `one`: the largest relative difference of a test loss, the Spearman
correlation of the ground truths (aim >= 0.95) and whether every target keeps its best partner.
With a GPU, the fraction of its bf16 peak (`--peak-tflops`, dense) that `auto` reaches: the
training FLOPs (3 x the forward's, counted by `torch.utils.flop_counter` for each network) of
every sample trained, over the stage's wall-clock.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import ray
import torch
from scipy import stats

from bench.rows import Row, bench_parser, report
from raytaskaff.config import load_config
from raytaskaff.engine.data import share_splits
from raytaskaff.engine.runs import train_runs
from raytaskaff.pipeline import prepare_data
from raytaskaff.evaluation.ground_truth import gains_per_seed, ground_truth
from raytaskaff.plan import RunKind, plan
from raytaskaff.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent
MODES = {
    "auto": {"bundle": "auto", "fuse": "auto"},
    "one": {"bundle": 1, "fuse": "auto"},
    "packed": {"bundle": 1, "fuse": "auto", "gpus_per_run": 0.125},
    "unfused": {"bundle": "auto", "fuse": False},
    "fused": {"bundle": "auto", "fuse": True},
}


def _truth(runs, store: ResultStore) -> dict[tuple[str, str], float]:
    """{(target, partner): mean gain over seeds} of the stored STL and pair runs."""
    stl, pairs = {}, {}
    for r in runs:
        result = store.find(r.key)
        if r.kind == RunKind.STL:
            stl.setdefault(r.seed, {})[r.tasks[0]] = result.test_losses[r.tasks[0]]
        elif r.kind == RunKind.PAIR:
            pairs.setdefault(r.seed, {})[r.tasks] = result.test_losses
    truth = ground_truth(gains_per_seed(stl, pairs))
    return {(t, p): g for t, p, g in zip(truth.target, truth.partner, truth.gain)}


def _best(truth: dict) -> dict[str, set[str]]:
    targets = {t for t, _ in truth}
    out = {}
    for t in targets:
        top = max(g for (a, _), g in truth.items() if a == t)
        out[t] = {p for (a, p), g in truth.items() if a == t and g == top}
    return out


def training_flops(config, runs, size: int) -> float:
    """Training FLOPs per sample summed over `runs`' networks (3 x a forward's, fp32 count)."""
    from torch.utils.flop_counter import FlopCounterMode

    from raytaskaff.models import MultiTaskNet
    from raytaskaff.tasks import task

    total = 0.0
    x = torch.zeros(1, 3, size, size)
    for r in runs:
        net = MultiTaskNet([task(n) for n in r.tasks], config.model.build(), inject=[task(n) for n in r.inject])
        extra = torch.zeros(1, sum(task(n).inject_channels for n in r.inject), size, size) if r.inject else None
        with FlopCounterMode(display=False) as counter:
            net(x, extra)
        total += 3 * counter.get_total_flops()
    return total


def rows(config_path: str, seeds: list[int] | None, epochs: int | None, gpus: float, modes: list[str],
         peak_tflops: float, kinds: list[str] | None = None, gpus_per_bundle: float = 1.0) -> Iterator[Row]:
    base = load_config(ROOT / config_path)
    training = base.training if epochs is None else dataclasses.replace(base.training, epochs=epochs)
    config = dataclasses.replace(base, seeds=tuple(seeds) if seeds else base.seeds, training=training,
                                 grouping=dataclasses.replace(base.grouping, groups=()))
    resources = dataclasses.replace(config.resources, gpus_per_run=gpus_per_bundle if gpus else 0.0)
    config = dataclasses.replace(config, resources=resources)
    root, manifest = prepare_data(config)
    runs = [r for r in plan(config) if not kinds or str(r.kind) in kinds]
    train_views = sum(manifest.shard_rows("train"))
    samples = len(runs) * training.epochs * (train_views // training.batch_size) * training.batch_size
    where = f"{gpus:g} GPU" if gpus else f"{config.resources.num_cpus or os.cpu_count()} CPUs"
    print(f"{len(runs)} runs on seeds {list(config.seeds)}, {training.epochs} epochs of {train_views} views, {where}")

    start = time.perf_counter()
    ray.init(num_cpus=config.resources.num_cpus, num_gpus=gpus or None, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    print(f"Ray start-up: {time.perf_counter() - start:.1f} s (excluded)")
    shared = share_splits(root, "object_store", manifest)
    seconds, truths, losses = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        # untimed: start the trial worker processes (and their imports) that every mode then reuses
        warm = dataclasses.replace(config, training=dataclasses.replace(training, epochs=1),
                                   resources=dataclasses.replace(resources, bundle=1))
        train_runs(warm, plan(warm)[:4], ResultStore(str(Path(tmp) / "warm" / "store")), shared, manifest.stats,
                   str(Path(tmp) / "warm" / "tune"), say=lambda *a: None)
        for mode in modes:
            options = {k: v for k, v in MODES[mode].items() if k != "gpus_per_run"}
            fraction = MODES[mode].get("gpus_per_run", 1.0 if mode == "one" else resources.gpus_per_run) if gpus else 0.0
            if mode == "packed" and not gpus:
                continue
            variant = dataclasses.replace(config, resources=dataclasses.replace(resources, gpus_per_run=fraction, **options))
            store = ResultStore(str(Path(tmp) / mode / "store"))
            execution = train_runs(variant, runs, store, shared, manifest.stats, str(Path(tmp) / mode / "tune"),
                                   say=lambda *a: None)
            if execution.failed:
                raise RuntimeError(f"{mode}: {len(execution.failed)} runs failed: {next(iter(execution.failed.values()))}")
            seconds[mode] = execution.wall_seconds
            truths[mode] = _truth(runs, store)
            losses[mode] = {r.key: store.find(r.key).test_losses for r in runs}
            print(f"{mode}: {seconds[mode]:.1f} s")
    ray.shutdown()

    for mode, s in seconds.items():
        yield Row("bundles", f"training stage, {mode}", f"{s:.1f} s, {samples / s:,.0f} samples/s")
    if "one" in seconds and "auto" in seconds:
        yield Row("bundles", "bundle: 1 / bundle: auto", f"{seconds['one']:.1f} s vs {seconds['auto']:.1f} s",
                  seconds["one"] / seconds["auto"], ">= 1.8" if not gpus else "-")
    if "packed" in seconds and "auto" in seconds:
        yield Row("bundles", "8 per GPU / bundle: auto", f"{seconds['packed']:.1f} s vs {seconds['auto']:.1f} s",
                  seconds["packed"] / seconds["auto"], ">= 5")
    if gpus and "auto" in seconds:
        flops = training_flops(config, runs, manifest.size) * samples / len(runs)
        reached = flops / seconds["auto"] / (peak_tflops * 1e12)
        yield Row("bundles", f"auto: fraction of {peak_tflops:g} TFLOP/s bf16",
                  f"{flops / seconds['auto'] / 1e12:.2f} TFLOP/s", reached)
    reference = "one" if "one" in truths else next(iter(truths), None)
    for mode in truths:
        if mode == reference:
            continue
        worst = max(abs(a[t] - b[t]) / abs(b[t]) for k in losses[mode] for a, b in [(losses[mode][k], losses[reference][k])]
                    for t in b)
        pairs = sorted(truths[reference])
        rho = stats.spearmanr([truths[mode][p] for p in pairs], [truths[reference][p] for p in pairs]).statistic
        same = _best(truths[mode]) == _best(truths[reference])
        yield Row("bundles", f"{mode} vs {reference}: largest test-loss difference", f"{100 * worst:.3f} %", worst, "<= 0.01")
        yield Row("bundles", f"{mode} vs {reference}: ground truth Spearman, same best partners",
                  f"{rho:.3f}, {'yes' if same else 'no'}", float(np.float64(rho)), ">= 0.95")


def loop_rows(config_path: str, seed: int, epochs: int | None, device: str) -> Iterator[Row]:
    """In one process, no Ray: one seed's STL, pair and all-task networks trained one after another
    with `train` against one `train_bundle` (stacked on a GPU, `resources.fuse: auto`): the
    factor a bundle takes of the separate runs' time (the dry run's `bundle_factor`)."""
    from raytaskaff.engine.runs import train_config
    from raytaskaff.training.bundle import Member, train_bundle
    from raytaskaff.training.loop import DataSplits, RunSpec, train

    base = load_config(ROOT / config_path)
    config = dataclasses.replace(base, seeds=(seed,), training=base.training if epochs is None else
                                 dataclasses.replace(base.training, epochs=epochs))
    root, manifest = prepare_data(config)
    from raytaskaff.data.reader import SplitData

    data = DataSplits(*(SplitData.open(root, s) for s in ("train", "val", "test")), stats=manifest.stats)
    runs = [r for r in plan(config) if r.kind in (RunKind.STL, RunKind.PAIR, RunKind.ALL)]
    model, loop = config.model.build(), train_config(config, device, True)
    torch.set_num_threads(1)
    train(RunSpec(runs[0].tasks), model, dataclasses.replace(loop, epochs=1), data, seed)  # warm-up (kernels, allocator)
    start = time.perf_counter()
    for r in runs:
        train(RunSpec(r.tasks), model, loop if r.probes else dataclasses.replace(loop, probes=None), data, seed)
    separate = time.perf_counter() - start
    start = time.perf_counter()
    train_bundle([Member(RunSpec(r.tasks), probes=r.probes) for r in runs], model, loop, data, seed,
                 fuse=config.resources.fuses(torch.device(device).type))
    bundled = time.perf_counter() - start
    yield Row("bundles", f"{len(runs)} networks in one process ({device}), one after another", f"{separate:.1f} s")
    yield Row("bundles", f"{len(runs)} networks as one bundle ({device}) / one after another",
              f"{bundled:.1f} s vs {separate:.1f} s", bundled / separate)


def step_rows(config_path: str, device: str, size: int | None, repeats: int, bf16: bool = False) -> Iterator[Row]:
    """One fused step of one seed's STL and pair networks, folded batch norm against plain, A/B interleaved."""
    import statistics

    from raytaskaff.models import MultiTaskNet
    from raytaskaff.tasks import task
    from raytaskaff.training.fused import FusedNets, _StackedBatchNorm

    config = load_config(ROOT / config_path)
    runs = [r for r in plan(config) if r.kind in (RunKind.STL, RunKind.PAIR) and r.seed == config.seeds[0]]
    size = size or config.data.size
    torch.manual_seed(0)
    torch.set_num_threads(1)
    fused = FusedNets([MultiTaskNet([task(n) for n in r.tasks], config.model.build(), seed=0) for r in runs]).to(torch.device(device))
    x = torch.rand(config.training.batch_size, 3, size, size, device=device)
    if bf16:  # activations in bf16, batch norm's parameters and statistics in fp32, as autocast runs them on a
        # GPU (CPU autocast does not reach inside vmap): every other weight, and the input, cast
        for part, template in [("trunk", fused._trunk), *fused._decoders.items()]:
            norms = tuple(f"{n}." for n, m in template.named_modules() if isinstance(m, _StackedBatchNorm))
            for k, p in fused.params[part].items():
                if not k.startswith(norms):
                    fused.params[part][k] = torch.nn.Parameter(p.detach().bfloat16())
        x = x.bfloat16()
    optimizer = torch.optim.Adam(fused.parameters(), lr=1e-4)

    def step() -> int:
        """One step; the bytes its graph saved (distinct storages)."""
        saved = {}

        def pack(t):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        optimizer.zero_grad(set_to_none=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = fused(x)
        sum(p.float().square().mean() for p in out.values()).backward()
        optimizer.step()
        return sum(saved.values())

    times, saved = {True: [], False: []}, {}
    for rep in range(repeats + 1):  # the first round warms up (kernels, allocator), untimed
        for folded in (True, False):
            with mock.patch.object(_StackedBatchNorm, "folded", folded):
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                saved[folded] = step()
                if device == "cuda":
                    torch.cuda.synchronize()
                if rep:
                    times[folded].append(time.perf_counter() - start)
    a, b = statistics.median(times[True]), statistics.median(times[False])
    where = f"{len(runs)} networks, batch {len(x)}, {size} px, {device}{', bf16 activations' if bf16 else ''}"
    yield Row("bundles", f"fused step, batch norm folded ({where})", f"{1000 * a:.1f} ms (median of {repeats})")
    yield Row("bundles", "fused step, batch norm in plain operations", f"{1000 * b:.1f} ms")
    yield Row("bundles", "plain / folded step time", f"{b / a:.3f}", b / a, ">= 1")
    yield Row("bundles", "saved by the step's graph, folded vs plain",
              f"{saved[True] / 2**20:.1f} MiB vs {saved[False] / 2**20:.1f} MiB", saved[False] / saved[True], ">= 1")


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("bundles", __doc__)
    parser.add_argument("--config", default="sweeps/default.yaml")
    parser.add_argument("--seeds", default="", help="comma-separated (default: the config's)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's")
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs of the local Ray (0: CPU only)")
    parser.add_argument("--modes", default="auto,one")
    parser.add_argument("--kinds", default="", help="comma-separated run kinds to train (default: all planned)")
    parser.add_argument("--gpus-per-bundle", type=float, default=1.0, help="GPU share of a trial in modes auto and unfused")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H100/H200 SXM: 989)")
    parser.add_argument("--loop", default="", help="cpu or cuda: time one seed's networks in one process instead (no Ray)")
    parser.add_argument("--step", default="", help="cpu or cuda: time one fused step, batch norm folded against plain")
    parser.add_argument("--size", type=int, default=None, help="--step: image size (default: the config's)")
    parser.add_argument("--repeats", type=int, default=20, help="--step: timed steps of each variant")
    parser.add_argument("--bf16", action="store_true", help="--step: bf16 activations, fp32 batch norm (as autocast on a GPU)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.step:
        report(step_rows(args.config, args.step, args.size, args.repeats, args.bf16), args.json)
        return
    if args.loop:
        report(loop_rows(args.config, seeds[0] if seeds else 0, args.epochs, args.loop), args.json)
        return
    report(rows(args.config, seeds, args.epochs, args.gpus, [m for m in args.modes.split(",") if m], args.peak_tflops,
                [k for k in args.kinds.split(",") if k], args.gpus_per_bundle), args.json)


if __name__ == "__main__":
    main()
