"""Training throughput and the cost of gradient instrumentation, measured side by side.

    python -m bench.training [--data DIR] [--device cpu|cuda] [--threads 1] [--batch-size 64]
                             [--tasks 1,2,5,10] [--model small] [--size 32] [--resident]
                             [--gather-threads N] [--record] [--json]

1. throughput: training samples per second of a model preset (default "small") for 1, 2, 5 and 10
   tasks (one epoch of the train split; validation excluded), fed by the reader as a trial is
   (`--gather-threads`, default: the trial's rule, `TrainConfig.feed`); --record writes them into
   raytaskaff/throughput.json, where the dry run's device-hour estimates come from;
   --resident: the roofline first, the same epoch on batches that already sit on the device
   (gathered once, handed out again every step), the network's own limit; the fed rate is then
   given as a fraction of it (aim on a GPU: >= 0.8);
2. instrumentation overhead: the same MTL epoch with gradient probes (gs and etap every step, the
   TAG lookahead every 10 steps) over the epoch without (aim: at most 1.3x), and with gs and etap
   recorded every 10th step only.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator

import torch

from bench.rows import Row, bench_parser, report
from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.data.synth import SynthConfig, generate
from raytaskaff.models import preset
from raytaskaff.training.loop import DataSplits, RunSpec, TrainConfig, train
from raytaskaff.training.probes import ProbeConfig

TEN = ("segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal",
       "depth_euclidean", "reshading", "edge_occlusion", "principal_curvature", "autoencoding")


class ResidentSplit:
    """A training split whose batches already sit on `device`: the first `held` batches of the
    split's first shuffled epoch, gathered once per set of fields and handed out again in turn
    for every step of every epoch, so that an epoch measures the network alone."""

    def __init__(self, split: SplitData, device: str, held: int = 8) -> None:
        self.split, self.device, self.held = split, device, held
        self.size, self.domains = split.size, split.domains
        self._batches: dict[tuple, list[dict[str, torch.Tensor]]] = {}

    def __len__(self) -> int:
        return len(self.split)

    def batches(self, *args, **kwargs):
        """The split's own batches (the chance-level fit before training reads them)."""
        return self.split.batches(*args, **kwargs)

    def jobs(self, batch_size: int, domains: list[str] | None = None, *, shuffle: bool = False, seed: int = 0,
             drop_last: bool = False):
        names = tuple(domains if domains is not None else self.domains)
        if (names, batch_size) not in self._batches:
            first = itertools.islice(self.split.jobs(batch_size, list(names), shuffle=True, seed=0, drop_last=True), self.held)
            self._batches[names, batch_size] = [{k: v.to(self.device) for k, v in job(False).items()} for job in first]
        held = self._batches[names, batch_size]
        steps = len(self) // batch_size if drop_last else -(-len(self) // batch_size)
        for step in range(steps):
            yield lambda pin, batch=held[step % len(held)]: batch


def epoch_seconds(spec: RunSpec, data: DataSplits, device: str, probes: ProbeConfig | None, batch_size: int,
                  model: str = "small", gather_threads: int | None = None) -> float:
    """Seconds of one training epoch: the second of two, so that building the model, the first
    steps' warm-up and the chance-level fit stay out (the validation pass, which the epoch
    callback follows, is timed on its own and subtracted). A `ResidentSplit` as the training
    split is read with no feed at all (no threads, nothing to pin)."""
    marks = []
    resident = isinstance(data.train, ResidentSplit)
    config = TrainConfig(epochs=2, batch_size=batch_size, device=device, probes=probes, eval_batch_size=512,
                         gather_threads=0 if resident else gather_threads, prefetch=0 if resident else None)
    # the callback fires after each epoch's validation; time that pass separately and subtract it
    train(spec, preset(model), config, data, seed=0, on_epoch=lambda e, r: marks.append(time.perf_counter()))
    return marks[1] - marks[0] - _validation_seconds(spec, data, device, model)


def _validation_seconds(spec, data, device, model: str = "small") -> float:
    import contextlib

    from raytaskaff.models import MultiTaskNet
    from raytaskaff.tasks import task
    from raytaskaff.training.loop import evaluate, resolve_device

    tasks = [task(n) for n in spec.tasks]
    net = MultiTaskNet(tasks, preset(model)).to(resolve_device(device))
    start = time.perf_counter()
    evaluate(net, data.val, tasks, [], data.stats, resolve_device(device), 512, contextlib.nullcontext)
    return time.perf_counter() - start


def device_name(device: str, threads: int) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    import platform

    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} CPUs), {threads} thread(s)"


def rows(path: str | None = None, device: str = "cpu", threads: int = 1, batch_size: int = 64,
         counts: tuple[int, ...] = (1, 2, 5, 10), model: str = "small", size: int = 32,
         rates: dict[int, float] | None = None, resident: bool = False, gather_threads: int | None = None) -> Iterator[Row]:
    """Rows for runs of the first `counts` tasks of TEN; renders a synthetic dataset of `size` px
    at `path` (default data/synthetic-SIZE) if missing. `rates` receives {tasks: samples/s} (fed).
    resident: each count's roofline first, and the fed rate as a fraction of it."""
    torch.set_num_threads(threads)
    path = path or f"data/synthetic-{size}"
    if not os.path.exists(os.path.join(path, "manifest.json")):
        generate(path, SynthConfig(n=5000 if size <= 64 else 1024, size=size, seed=0), workers=min(8, os.cpu_count() or 1))
    stats = Manifest.load(path).stats
    data = DataSplits(*(SplitData.open(path, s) for s in ("train", "val", "test")), stats=stats)
    n = len(data.train) // batch_size * batch_size
    print(f"device: {device_name(device, threads)}; model {model}; {n} training samples of {Manifest.load(path).size} px "
          f"per epoch, batch {batch_size}")
    feed = TrainConfig(gather_threads=gather_threads).feed(torch.device(device))
    print(f"feed: {feed.threads} gather thread(s), {feed.depth} batch(es) queued ahead, page-locked: {feed.pin}")
    epoch_seconds(RunSpec(TEN[:1]), data, device, None, batch_size, model, gather_threads)  # warm-up (cuDNN, caches), discarded
    on_device = DataSplits(ResidentSplit(data.train, device), data.val, data.test, stats=stats) if resident else None
    for count in counts:
        spec = RunSpec(TEN[:count])
        if on_device is not None:
            roof = n / epoch_seconds(spec, on_device, device, None, batch_size, model)
            yield Row("training", f"roofline (resident batches), {count} task(s)", f"{roof:.0f} samples/s")
        plain = epoch_seconds(spec, data, device, None, batch_size, model, gather_threads)
        if rates is not None:
            rates[count] = n / plain
        if on_device is not None:
            yield Row("training", f"  fed by the reader, {count} task(s)", f"{n / plain:.0f} vs {roof:.0f} samples/s",
                      n / plain / roof, ">= 0.8" if device.startswith("cuda") else "-")
        else:
            yield Row("training", f"throughput, {count} task(s)", f"{n / plain:.0f} samples/s")
        if count > 1:
            probed = epoch_seconds(spec, data, device, ProbeConfig(lookahead_every=10), batch_size, model, gather_threads)
            yield Row("training", f"instrumented epoch, {count} tasks", f"{probed:.1f} s vs {plain:.1f} s", probed / plain, "<= 1.3")
            sparse = epoch_seconds(spec, data, device, ProbeConfig(lookahead_every=10, gradients_every=10), batch_size, model,
                                   gather_threads)
            yield Row("training", f"  gs/etap every 10th step, {count} tasks", f"{sparse:.1f} s vs {plain:.1f} s", sparse / plain, "<= 1.3")


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("training", __doc__)
    parser.add_argument("--data", default=None, help="dataset directory (default: data/synthetic-SIZE, rendered if missing)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tasks", default="1,2,5,10", help="task counts, comma-separated")
    parser.add_argument("--model", default="small", help="model preset (small, medium, large, resnet18)")
    parser.add_argument("--size", type=int, default=32, help="image size of the synthetic data rendered when --data is absent")
    parser.add_argument("--resident", action="store_true", help="measure the roofline on batches already on the device first")
    parser.add_argument("--gather-threads", type=int, default=None, help="gather threads of the fed runs (default: a trial's)")
    parser.add_argument("--record", action="store_true", help="write the throughput into raytaskaff/throughput.json")
    args = parser.parse_args(argv)
    counts = tuple(int(c) for c in args.tasks.split(","))
    rates: dict[int, float] = {}
    report(rows(args.data, args.device, args.threads, args.batch_size, counts, args.model, args.size, rates, args.resident,
                args.gather_threads), args.json)
    if args.record:
        import sys
        from datetime import date

        from raytaskaff import throughput

        size = Manifest.load(args.data or f"data/synthetic-{args.size}").size
        throughput.record(throughput.Measurement(
            device_name(args.device, args.threads), "cuda" if args.device.startswith("cuda") else "cpu", args.model, size,
            args.batch_size, rates, torch.__version__, date.today().isoformat(), "python -m bench.training " + " ".join(sys.argv[1:])))
        print(f"recorded in {throughput.TABLE}", file=sys.stderr)


if __name__ == "__main__":
    main()
