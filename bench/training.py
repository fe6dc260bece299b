"""Training throughput and the cost of gradient instrumentation, measured side by side.

    python -m bench.training [--data DIR] [--device cpu|cuda] [--threads 1] [--batch-size 64]
                             [--tasks 1,2,5,10] [--model small] [--size 32] [--record] [--json]

1. throughput: training samples per second of a model preset (default "small") for 1, 2, 5 and 10
   tasks (one epoch of the train split; validation excluded); --record writes them into
   raytaskaff/throughput.json, where the dry run's device-hour estimates come from;
2. instrumentation overhead: the same MTL epoch with gradient probes (gs and etap every step, the
   TAG lookahead every 10 steps) over the epoch without (aim: at most 1.3x), and with gs and etap
   recorded every 10th step only.
"""

from __future__ import annotations

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


def epoch_seconds(spec: RunSpec, data: DataSplits, device: str, probes: ProbeConfig | None, batch_size: int,
                  model: str = "small") -> float:
    """Seconds of one training epoch (model building included; the validation pass, which the
    epoch callback follows, is timed on its own and subtracted)."""
    marks = []
    config = TrainConfig(epochs=1, batch_size=batch_size, device=device, probes=probes, eval_batch_size=512)
    start = time.perf_counter()
    # the callback fires after the epoch's validation; time that pass separately and subtract it
    train(spec, preset(model), config, data, seed=0, on_epoch=lambda e, r: marks.append(time.perf_counter()))
    return marks[0] - start - _validation_seconds(spec, data, device, model)


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
         rates: dict[int, float] | None = None) -> Iterator[Row]:
    """Rows for runs of the first `counts` tasks of TEN; renders a synthetic dataset of `size` px
    at `path` (default data/synthetic-SIZE) if missing. `rates` receives {tasks: samples/s}."""
    torch.set_num_threads(threads)
    path = path or f"data/synthetic-{size}"
    if not os.path.exists(os.path.join(path, "manifest.json")):
        generate(path, SynthConfig(n=5000 if size <= 64 else 1024, size=size, seed=0), workers=min(8, os.cpu_count() or 1))
    stats = Manifest.load(path).stats
    data = DataSplits(*(SplitData.open(path, s) for s in ("train", "val", "test")), stats=stats)
    n = len(data.train) // batch_size * batch_size
    print(f"device: {device_name(device, threads)}; model {model}; {n} training samples of {Manifest.load(path).size} px "
          f"per epoch, batch {batch_size}")
    epoch_seconds(RunSpec(TEN[:1]), data, device, None, batch_size, model)  # warm-up, discarded
    for count in counts:
        spec = RunSpec(TEN[:count])
        plain = epoch_seconds(spec, data, device, None, batch_size, model)
        if rates is not None:
            rates[count] = n / plain
        yield Row("training", f"throughput, {count} task(s)", f"{n / plain:.0f} samples/s")
        if count > 1:
            probed = epoch_seconds(spec, data, device, ProbeConfig(lookahead_every=10), batch_size, model)
            yield Row("training", f"instrumented epoch, {count} tasks", f"{probed:.1f} s vs {plain:.1f} s", probed / plain, "<= 1.3")
            sparse = epoch_seconds(spec, data, device, ProbeConfig(lookahead_every=10, gradients_every=10), batch_size, model)
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
    parser.add_argument("--record", action="store_true", help="write the throughput into raytaskaff/throughput.json")
    args = parser.parse_args(argv)
    counts = tuple(int(c) for c in args.tasks.split(","))
    rates: dict[int, float] = {}
    report(rows(args.data, args.device, args.threads, args.batch_size, counts, args.model, args.size, rates), args.json)
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
