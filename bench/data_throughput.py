"""Data-layer throughput, measured side by side in one run.

    python -m bench.data_throughput [--views 96] [--size 64] [--steps 30] [--json]

1. generator: synthetic views rendered per second on one core (aim: >= 200 at 64 x 64);
2. reader: raw batches read from memory-mapped shards and normalised to training targets, per
   second on one thread, against what one training step of a model of the default size consumes
   (aim: >= 10x, so data never limits training). The model is the shape the embedded default uses
   (a 3-stage conv encoder of width 16, per-task decoders of width 8, Adam, batch 64, one thread),
   timed over `--steps` steps after 5 of warm-up.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from torch import nn

from bench.rows import Row, bench_parser, report
from raytaskaff.data.reader import SplitData
from raytaskaff.data.synth import SynthConfig, generate, synth_views
from raytaskaff.data.transforms import channels, normalise, rgb_input

TASKS = ("segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal")


def generator_rate(views: int, size: int) -> float:
    config = SynthConfig(n=views, size=size, seed=11)
    start = time.perf_counter()
    count = sum(1 for _ in synth_views(config))
    return count / (time.perf_counter() - start)


def reader_rate(root: str, batch_size: int, epochs: int = 3) -> float:
    data = SplitData.open(root, "train", domains=["rgb", *TASKS])
    start, count = time.perf_counter(), 0
    for epoch in range(epochs):
        for batch in data.batches(batch_size, shuffle=True, seed=epoch):
            rgb_input(batch["rgb"])
            for task in TASKS:
                normalise(task, batch[task], depth_raw=batch["depth_zbuffer"])
            count += len(batch["rgb"])
    return count / (time.perf_counter() - start)


def _conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def training_rate(size: int, tasks: int, batch_size: int = 64, steps: int = 30) -> float:
    """Samples per second one training step consumes for a default-sized model with `tasks` heads."""
    torch.manual_seed(0)
    encoder = nn.Sequential(_conv(3, 16), _conv(16, 16, 2), _conv(16, 32, 2), _conv(32, 64, 2))
    heads = nn.ModuleList(
        nn.Sequential(nn.Upsample(scale_factor=8), _conv(64, 8), nn.Conv2d(8, channels(t), 1)) for t in TASKS[:tasks]
    )
    params = list(encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.Adam(params, 2e-3)
    x = torch.rand(batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    for step in range(steps + 5):
        if step == 5:
            start = time.perf_counter()
        z = encoder(x)
        loss = sum(h(z).abs().mean() for h in heads)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - start)


def rows(views: int = 96, size: int = 64, steps: int = 30) -> Iterator[Row]:
    torch.set_num_threads(1)
    for px in sorted({32, size}):
        rate = generator_rate(views, px)
        yield Row("data_throughput", f"generator {px}x{px}, 1 core", f"{rate:.0f} views/s", rate / 200,
                  ">= 1 (200 views/s)" if px == 64 else "-")
    with tempfile.TemporaryDirectory() as tmp:
        for px in (32, 64):
            root = os.path.join(tmp, f"d{px}")
            generate(root, SynthConfig(n=480, size=px, seed=12), workers=2)
            read = reader_rate(root, 64)
            for tasks in (1, 2, 5):
                train = training_rate(px, tasks, steps=steps)
                yield Row("data_throughput", f"reader {px}x{px} vs training {tasks} task(s)",
                          f"{read:.0f} vs {train:.0f} samples/s", read / train, ">= 10")


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("data_throughput", __doc__)
    parser.add_argument("--views", type=int, default=96)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per model")
    args = parser.parse_args(argv)
    report(rows(args.views, args.size, args.steps), args.json)


if __name__ == "__main__":
    main()
