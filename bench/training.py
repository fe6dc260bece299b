"""Training throughput and the cost of gradient instrumentation, measured side by side.

    python -m bench.training [--data DIR] [--device cpu|cuda] [--threads 1] [--batch-size 64]
                             [--tasks 1,2,5,10] [--json]

1. throughput: training samples per second of the default ("small") model for 1, 2, 5 and 10
   tasks (one epoch of the train split; validation excluded);
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


def epoch_seconds(spec: RunSpec, data: DataSplits, device: str, probes: ProbeConfig | None, batch_size: int) -> float:
    """Seconds of one training epoch (model building included; the validation pass, which the
    epoch callback follows, is timed on its own and subtracted)."""
    marks = []
    config = TrainConfig(epochs=1, batch_size=batch_size, device=device, probes=probes, eval_batch_size=512)
    start = time.perf_counter()
    # the callback fires after the epoch's validation; time that pass separately and subtract it
    train(spec, preset("small"), config, data, seed=0, on_epoch=lambda e, r: marks.append(time.perf_counter()))
    return marks[0] - start - _validation_seconds(spec, data, device)


def _validation_seconds(spec, data, device) -> float:
    import contextlib

    from raytaskaff.models import MultiTaskNet
    from raytaskaff.tasks import task
    from raytaskaff.training.loop import evaluate, resolve_device

    tasks = [task(n) for n in spec.tasks]
    model = MultiTaskNet(tasks, preset("small")).to(resolve_device(device))
    start = time.perf_counter()
    evaluate(model, data.val, tasks, [], data.stats, resolve_device(device), 512, contextlib.nullcontext)
    return time.perf_counter() - start


def rows(path: str = "data/synthetic-32", device: str = "cpu", threads: int = 1, batch_size: int = 64,
         counts: tuple[int, ...] = (1, 2, 5, 10)) -> Iterator[Row]:
    """Rows for runs of the first `counts` tasks of TEN; renders the default dataset at `path` if missing."""
    torch.set_num_threads(threads)
    if not os.path.exists(os.path.join(path, "manifest.json")):
        generate(path, SynthConfig(n=5000, size=32, seed=0), workers=min(8, os.cpu_count() or 1))
    stats = Manifest.load(path).stats
    data = DataSplits(*(SplitData.open(path, s) for s in ("train", "val", "test")), stats=stats)
    n = len(data.train) // batch_size * batch_size
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu, {threads} thread(s)"
    print(f"device: {name}; {n} training samples of {Manifest.load(path).size} px per epoch, batch {batch_size}")
    epoch_seconds(RunSpec(TEN[:1]), data, device, None, batch_size)  # warm-up, discarded
    for count in counts:
        spec = RunSpec(TEN[:count])
        plain = epoch_seconds(spec, data, device, None, batch_size)
        yield Row("training", f"throughput, {count} task(s)", f"{n / plain:.0f} samples/s")
        if count > 1:
            probed = epoch_seconds(spec, data, device, ProbeConfig(lookahead_every=10), batch_size)
            yield Row("training", f"instrumented epoch, {count} tasks", f"{probed:.1f} s vs {plain:.1f} s", probed / plain, "<= 1.3")
            sparse = epoch_seconds(spec, data, device, ProbeConfig(lookahead_every=10, gradients_every=10), batch_size)
            yield Row("training", f"  gs/etap every 10th step, {count} tasks", f"{sparse:.1f} s vs {plain:.1f} s", sparse / plain, "<= 1.3")


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("training", __doc__)
    parser.add_argument("--data", default="data/synthetic-32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tasks", default="1,2,5,10", help="task counts, comma-separated")
    args = parser.parse_args(argv)
    counts = tuple(int(c) for c in args.tasks.split(","))
    report(rows(args.data, args.device, args.threads, args.batch_size, counts), args.json)


if __name__ == "__main__":
    main()
