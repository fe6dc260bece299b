"""Several runs packed on one GPU through Ray, against one run at a time.

    python -m bench.packing [--per-gpu 1,2,4,8] [--data data/synthetic-32] [--epochs 1]
                            [--tasks segment_semantic] [--device cuda] [--json]

For each k of `--per-gpu`, k runs of the default's model train at once as Ray tasks of
`num_gpus=1/k` each, the way a sweep with `gpus_per_run: 1/k` packs them (each run caps its CUDA
memory at 1/k, `engine.runs.cap_cuda_memory`), after one untimed round that starts the worker
processes; every run is the whole training loop (`train`: the
epochs, validation and test) on the memory-mapped dataset, each with its own seed. Reported per k:
samples/s per run and in total (training samples of all runs over the span from the first start
to the last end), the total against one run at a time (aim at 4 per GPU: >= 3x), peak CUDA memory
per run, and the GPU's utilisation and memory sampled by `nvidia-smi` every 0.5 s. With
`--device cpu` the same runs share this machine's cores instead (k at most its core count): a
check that the benchmark runs, not a packing result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.rows import Row, bench_parser, report


def _train_one(root: str, tasks: tuple[str, ...], seed: int, epochs: int, fraction: float, device: str) -> dict:
    """One run of the default's model on the dataset at `root` (inside a Ray task)."""
    import torch

    from raytaskaff.data.reader import SplitData
    from raytaskaff.data.shards import Manifest
    from raytaskaff.engine.runs import cap_cuda_memory
    from raytaskaff.models import preset
    from raytaskaff.training.loop import DataSplits, RunSpec, TrainConfig, train

    torch.set_num_threads(1)
    if device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"
        cap_cuda_memory(fraction, device)
        torch.cuda.reset_peak_memory_stats()
    data = DataSplits(*(SplitData.open(root, s, verify=False) for s in ("train", "val", "test")), stats=Manifest.load(root).stats)
    config = TrainConfig(epochs=epochs, batch_size=64, device=device)
    start = time.time()
    train(RunSpec(tasks), preset("small"), config, data, seed=seed)
    end = time.time()
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
    return {"start": start, "end": end, "samples": len(data.train) // 64 * 64 * epochs, "peak_bytes": peak}


class _Smi:
    """nvidia-smi sampling utilisation and memory every 0.5 s into a file, while it lives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.process = None
        if shutil.which("nvidia-smi"):
            self.process = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                             "--format=csv,noheader,nounits", "-lms", "500"],
                                            stdout=open(path, "w"), stderr=subprocess.DEVNULL)

    def stop(self) -> str:
        if self.process is None:
            return "no nvidia-smi"
        self.process.terminate()
        self.process.wait()
        samples = [[float(x) for x in line.split(",")] for line in self.path.read_text().splitlines() if "," in line]
        if not samples:
            return "no samples"
        util = [s[0] for s in samples]
        return f"utilisation mean {sum(util) / len(util):.0f} %, memory max {max(s[1] for s in samples):.0f} MiB"


def rows(per_gpu: tuple[int, ...] = (1, 2, 4, 8), root: str = "data/synthetic-32", epochs: int = 1,
         tasks: tuple[str, ...] = ("segment_semantic",), device: str = "cuda") -> Iterator[Row]:
    import ray
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.packing: no CUDA device (use --device cpu to check that it runs)")
    if not os.path.exists(os.path.join(root, "manifest.json")):
        from raytaskaff.data.synth import SynthConfig, generate

        generate(root, SynthConfig(n=5000, size=32, seed=0), workers=min(8, os.cpu_count() or 1))
    name = torch.cuda.get_device_name() if device == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"device: {name}, torch {torch.__version__}; model small, tasks {'+'.join(tasks)}, {epochs} epoch(s)", flush=True)
    ray.init(num_cpus=max(os.cpu_count() or 1, max(per_gpu)) if device == "cuda" else os.cpu_count(),
             include_dashboard=False, log_to_driver=False, configure_logging=False)
    remote = ray.remote(_train_one)

    def options(k: int) -> dict:
        return {"num_gpus": 1 / k, "num_cpus": 1} if device == "cuda" else {"num_cpus": 1}

    single = None
    try:
        # warm-up: start the worker processes (imports, CUDA contexts) before anything is timed
        ray.get([remote.options(**options(max(per_gpu))).remote(os.path.abspath(root), tasks, 0, 1, 1 / max(per_gpu), device)
                 for _ in range(max(per_gpu))])
        with tempfile.TemporaryDirectory() as tmp:
            for k in per_gpu:
                smi = _Smi(Path(tmp) / f"smi-{k}.csv")
                done = ray.get([remote.options(**options(k)).remote(os.path.abspath(root), tasks, seed, epochs, 1 / k, device)
                                for seed in range(k)])
                gpu = smi.stop()
                span = max(d["end"] for d in done) - min(d["start"] for d in done)
                total = sum(d["samples"] for d in done) / span
                each = sum(d["samples"] / (d["end"] - d["start"]) for d in done) / k
                single = single or total
                peak = max(d["peak_bytes"] for d in done) / 2**20
                aim = ">= 3" if k == 4 and device == "cuda" else "-"
                yield Row("packing", f"{k} run(s) per {'GPU' if device == 'cuda' else 'machine'}: total vs one at a time",
                          f"{total:.0f} vs {single:.0f} samples/s (per run {each:.0f})", total / single, aim)
                yield Row("packing", f"{k} run(s): peak CUDA memory per run; GPU", f"{peak:.0f} MiB; {gpu}")
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("packing", __doc__)
    parser.add_argument("--per-gpu", default="1,2,4,8", help="runs per GPU, comma-separated")
    parser.add_argument("--data", default="data/synthetic-32", help="dataset (the default's, rendered if missing)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--tasks", default="segment_semantic", help="tasks of each run, comma-separated")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = parser.parse_args(argv)
    per_gpu = tuple(int(k) for k in args.per_gpu.split(","))
    report(rows(per_gpu, args.data, args.epochs, tuple(args.tasks.split(",")), args.device), args.json)


if __name__ == "__main__":
    main()
