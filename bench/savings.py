"""Savings that change no bit, on the default sweep's networks, each measured side by side.

    python -m bench.savings [--views 640] [--repeats 5] [--json]

The default's networks (model "small", decoders of width 64, 16 px, batch 64, its five tasks: the
five STL networks, a pair and the all-task network, stacked as one bundle trains them) on
synthetic views rendered once under /tmp. Each pair of variants runs interleaved in this one
process, the fastest of `--repeats` each (CPU time, one thread), and each row says whether the
two give the same bits:

- the validation pass without the task metrics the loop throws away (`evaluate_units(metrics=False)`)
  against the pass with them: the same losses bit for bit (taken);
- Adam's `foreach` kernels against its single-tensor loop, 30 steps on the all-task network's
  parameters: torch picks the loop on a CPU (`foreach=None` resolves to False off CUDA); the
  kernels give the same bits in less time (taken: `optim.make_optimizer` asks for them);
- an epoch checkpoint written with its fsync (`models.save_atomic`) against the same bytes moved
  into place without one. Not taken: the rename replaces the previous checkpoint, so one lost to
  a power cut takes its predecessor with it and the run restarts from epoch 0, not one epoch back
  (`bundle.resume_state` reads an unreadable checkpoint as none);
- trials started longest first against plan order, the default's training stage simulated by the
  cost model (taken: `estimate.longest_first`; no result depends on the order).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.rows import Row, bench_parser, report
from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.data.synth import SynthConfig, generate
from raytaskaff.models import MultiTaskNet, preset, save_atomic
from raytaskaff.settings import RunSpec
from raytaskaff.tasks import task
from raytaskaff.training.bundle import Member, _Clock, _no_autocast, _start
from raytaskaff.training.evaluation import evaluate_units, fields_of
from raytaskaff.training.loop import DataSplits, TrainConfig
from raytaskaff.training.prefetch import Feed
from raytaskaff.training.units import build_units

NAME = "savings"
TASKS = ("segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal")
MODEL = preset("small", decoder_width=64)
CONFIG = TrainConfig(epochs=16, batch_size=64, lr=0.002, optimizer="adam", schedule="cosine")


def _data(views: int) -> DataSplits:
    root = Path(tempfile.gettempdir()) / f"raytaskaff-bench-savings-16-{views}"
    if not (root / "manifest.json").exists():
        generate(root, SynthConfig(n=views, size=16, seed=0, split_fractions=(0.4, 0.1, 0.5)))
    return DataSplits(*(SplitData.open(root, s) for s in ("train", "val", "test")), stats=Manifest.load(root).stats)


def _fastest(a, b, repeats: int) -> tuple[float, float]:
    """The fastest CPU time of each of two callables, run alternately."""
    ta, tb = [], []
    for _ in range(repeats):
        for f, times in ((a, ta), (b, tb)):
            start = time.process_time()
            f()
            times.append(time.process_time() - start)
    return min(ta), min(tb)


def validation(data: DataSplits, repeats: int):
    specs = [RunSpec((t,)) for t in TASKS] + [RunSpec(TASKS[3:]), RunSpec(TASKS)]
    device = torch.device("cpu")
    clock = _Clock(len(specs), device, 1.0)
    states = [_start(Member(s), MODEL, CONFIG, data, 0, device, clock) for s in specs]
    units = build_units(states, CONFIG, device, 1, lambda s: 1.0, fuse=True)
    fields = fields_of(states, data.val, "rgb")

    def run(metrics: bool):
        return evaluate_units(units, data.val, states, data.stats, device, CONFIG.eval_batch_size, _no_autocast,
                              Feed(0, 0), "rgb", fields, metrics=metrics)

    same = all(run(True)[id(s)][0] == run(False)[id(s)][0] for s in states)
    with_metrics, losses_only = _fastest(lambda: run(True), lambda: run(False), repeats)
    yield Row(NAME, f"validation pass, {len(specs)} stacked networks, {len(data.val)} views: losses only / with metrics",
              f"{losses_only * 1e3:.0f} / {with_metrics * 1e3:.0f} ms", losses_only / with_metrics, "<= 1.0")
    yield Row(NAME, "validation losses without the metrics: bit-identical", str(same), float(same), "== 1")


def adam(repeats: int, steps: int = 30):
    net = MultiTaskNet([task(t) for t in TASKS], MODEL, seed=0)
    grads = [[torch.randn_like(p) for p in net.parameters()] for _ in range(steps)]

    def train(foreach: bool) -> list[torch.Tensor]:
        params = [torch.nn.Parameter(p.detach().clone()) for p in net.parameters()]
        optimizer = torch.optim.Adam(params, lr=CONFIG.lr, foreach=foreach)
        for g in grads:
            for p, gi in zip(params, g):
                p.grad = gi
            optimizer.step()
        return params

    same = all(torch.equal(a, b) for a, b in zip(train(False), train(True)))
    loop, kernels = _fastest(lambda: train(False), lambda: train(True), repeats)
    default = torch.optim.Adam(list(net.parameters())).defaults["foreach"]
    yield Row(NAME, f"Adam step, all-task network, {steps} steps: foreach / single-tensor loop",
              f"{kernels / steps * 1e3:.2f} / {loop / steps * 1e3:.2f} ms", kernels / loop, "<= 1.0")
    yield Row(NAME, f"Adam foreach and loop bit-identical on CPU (torch's CPU default: foreach={default} -> loop)",
              str(same), float(same), "== 1")


def checkpoint(repeats: int):
    net = MultiTaskNet([task(t) for t in TASKS], MODEL, seed=0)
    optimizer = torch.optim.Adam(net.parameters())
    state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "best_model": net.state_dict()}
    folder = Path(tempfile.mkdtemp(prefix=".bench-savings-", dir=os.getcwd()))  # a disk, not a tmpfs
    target = folder / "checkpoint.pt"

    def unsynced() -> None:
        tmp = folder / "checkpoint.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, target)

    synced, plain = [], []
    for _ in range(repeats):  # wall-clock: an fsync waits on the disk, not on the CPU
        for f, times in ((lambda: save_atomic(state, target), synced), (unsynced, plain)):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
    a, b = statistics.median(synced), statistics.median(plain)
    size = target.stat().st_size
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    yield Row(NAME, f"epoch checkpoint ({size / 1e6:.1f} MB): with fsync / without (median wall)",
              f"{a * 1e3:.1f} / {b * 1e3:.1f} ms", a / b)


def trial_order():
    """The training stage of the default sweep by the cost model (its measured CPU rates and Tune's
    per-trial overhead, `throughput.json`): trials started longest first (`estimate.longest_first`,
    taken) against plan order, on 2, 4 and 8 cores. Simulated: list scheduling of the trials'
    modelled seconds, as `estimate.wall_seconds` does."""
    from raytaskaff import estimate, throughput
    from raytaskaff.config import load_config
    from raytaskaff.plan import bundles, plan

    config = load_config(Path(__file__).resolve().parents[1] / "sweeps" / "default.yaml")
    views, px, _ = estimate.train_views(config)
    trials = bundles(plan(config, "content"), config.resources.bundle_limit)
    costs = estimate.run_costs(config, [r for t in trials for r in t.runs], px, views)
    overhead = throughput.trial_overhead("cpu")
    per = overhead.seconds if overhead is not None else 0.0
    seconds = [sum(costs[r.key][0] for r in t.runs) + per for t in trials]
    for cores in (2, 4, 8):
        planned, lpt = estimate.makespan(seconds, cores, in_order=True), estimate.makespan(seconds, cores)
        yield Row(NAME, f"default's training stage on {cores} cores, {len(trials)} trials: longest first / plan order "
                  "(simulated)", f"{lpt:.0f} / {planned:.0f} s", lpt / planned)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(NAME, __doc__)
    parser.add_argument("--views", type=int, default=640, help="synthetic views rendered (the default sweep has 2500)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = _data(args.views)
    rows = [*validation(data, args.repeats), *adam(args.repeats), *checkpoint(args.repeats), *trial_order()]
    report(rows, args.json)


if __name__ == "__main__":
    main()
