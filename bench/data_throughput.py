"""Data-layer throughput, measured side by side in one run.

    python -m bench.data_throughput [--views 96] [--size 64]

1. generator: synthetic views rendered per second on one core (aim: >= 200 at 64 x 64);
2. reader: raw batches read from memory-mapped shards and normalised to training targets, per
   second on one thread, against what one training step of a model of the default size consumes
   (aim: >= 10x, so data never limits training). The model is the shape the embedded default uses
   (a 3-stage conv encoder of width 16, per-task decoders of width 8, Adam, batch 64, one thread).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from raytaskaff.data.reader import SplitData  # noqa: E402
from raytaskaff.data.synth import SynthConfig, generate, synth_views  # noqa: E402
from raytaskaff.data.transforms import channels, normalise, rgb_input  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, default=96)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    for size in sorted({32, args.size}):
        rate = generator_rate(args.views, size)
        rows.append((f"generator {size}x{size}, 1 core", f"{rate:.0f} views/s", rate / 200, ">= 1 (200 views/s)" if size == 64 else "-"))
    with tempfile.TemporaryDirectory() as tmp:
        for size in (32, 64):
            root = os.path.join(tmp, f"d{size}")
            generate(root, SynthConfig(n=480, size=size, seed=12), workers=2)
            read = reader_rate(root, 64)
            for tasks in (1, 2, 5):
                train = training_rate(size, tasks)
                rows.append((f"reader {size}x{size} vs training {tasks} task(s)", f"{read:.0f} vs {train:.0f} samples/s",
                             read / train, ">= 10"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'value':>26}  {'ratio':>7}  aim")
    for name, value, ratio, aim in rows:
        print(f"{name.ljust(width)}  {value:>26}  {ratio:7.2f}  {aim}")


if __name__ == "__main__":
    main()
