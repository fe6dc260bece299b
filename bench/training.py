"""Training throughput and the cost of gradient instrumentation, measured side by side.

    python -m bench.training [--data DIR] [--size 32] [--device cpu|cuda] [--threads 1]

1. throughput: training samples per second of the default ("small") model for 1, 2, 5 and 10
   tasks (one epoch of the train split; validation excluded);
2. instrumentation overhead: the same MTL epoch with gradient probes (gs and etap every step, the
   TAG lookahead every 10 steps) over the epoch without (aim: at most 1.3x), and with gs and etap
   recorded every 10th step only.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/synthetic-32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tasks", default="1,2,5,10")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not os.path.exists(os.path.join(args.data, "manifest.json")):
        generate(args.data, SynthConfig(n=5000, size=32, seed=0), workers=min(8, os.cpu_count() or 1))
    stats = Manifest.load(args.data).stats
    data = DataSplits(*(SplitData.open(args.data, s) for s in ("train", "val", "test")), stats=stats)
    n = len(data.train) // args.batch_size * args.batch_size
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, {args.threads} thread(s)"
    print(f"device: {device}; {n} training samples of {Manifest.load(args.data).size} px per epoch, batch {args.batch_size}")
    print(f"{'measure':40}  {'value':>22}  {'ratio':>6}  aim")
    epoch_seconds(RunSpec(TEN[:1]), data, args.device, None, args.batch_size)  # warm-up, discarded
    for count in (int(c) for c in args.tasks.split(",")):
        spec = RunSpec(TEN[:count])
        plain = epoch_seconds(spec, data, args.device, None, args.batch_size)
        print(f"{f'throughput, {count} task(s)':40}  {f'{n / plain:.0f} samples/s':>22}  {'':>6}  -", flush=True)
        if count > 1:
            probed = epoch_seconds(spec, data, args.device, ProbeConfig(lookahead_every=10), args.batch_size)
            ratio = probed / plain
            print(f"{f'instrumented epoch, {count} tasks':40}  {f'{probed:.1f} s vs {plain:.1f} s':>22}  {ratio:6.2f}  <= 1.3", flush=True)
            sparse = epoch_seconds(spec, data, args.device, ProbeConfig(lookahead_every=10, gradients_every=10), args.batch_size)
            print(f"{f'  gs/etap every 10th step, {count} tasks':40}  {f'{sparse:.1f} s vs {plain:.1f} s':>22}  {sparse / plain:6.2f}  <= 1.3", flush=True)


if __name__ == "__main__":
    main()
