"""The three readers side by side, against what training consumes; gathering on 1..N threads.

    python -m bench.readers [--sizes 64,256] [--views 192] [--batch-size 64] [--threads 1,2,4] [--keep DIR] [--json]

For each image size, one synthetic dataset (shards of 32 views) is read for two shuffled epochs by
every reader a trial can use, on one thread: the object store (the split's table put in a local
Ray and read back zero-copy), memory-mapped Arrow shards, and the stream of shard groups through
a file:// URI (pyarrow.fs, as for s3://; shuffle window 4, read-ahead 1). A batch is gathered and
turned into the five reference tasks' targets, as a training step needs it. Each rate is set
against the training rate of the model the shipped configs use at that size (64 px: "medium", as
sweeps/synthetic-10.yaml; 256 px: "large", as sweeps/taskonomy-5.yaml), one task, on one CPU
thread: aim >= 3x, so that the reader never limits a CPU trial. The stream reads local files here;
from object storage its rate is also bounded by the network.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from bench.rows import Row, bench_parser, report
from raytaskaff.data.reader import SplitData
from raytaskaff.data.stream import StreamingSplit
from raytaskaff.data.synth import SynthConfig, generate
from raytaskaff.data.transforms import normalise, rgb_input
from raytaskaff.training.prefetch import gathered

TASKS = ("segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal")
MODEL_AT = {64: "medium", 256: "large"}
WINDOW = 4


def read_rate(split, batch_size: int, epochs: int = 2) -> float:
    """Samples per second of shuffled batches, turned into targets, from `split`."""
    start, count = time.perf_counter(), 0
    for epoch in range(epochs):
        for batch in split.batches(batch_size, ["rgb", *TASKS], shuffle=True, seed=epoch, drop_last=True):
            rgb_input(batch["rgb"])
            for name in TASKS:
                normalise(name, batch[name], depth_raw=batch["depth_zbuffer"])
            count += len(batch["rgb"])
    return count / (time.perf_counter() - start)


def gather_rate(split, batch_size: int, threads: int, seconds: float = 3.0) -> float:
    """Samples per second of shuffled raw batches (input and the tasks' labels) gathered on
    `threads` threads, as a GPU trial's feed gathers them: whole epochs, as many as `seconds` take."""
    start, count, epoch = time.perf_counter(), 0, 0
    while epoch == 0 or time.perf_counter() - start < seconds:
        for batch in gathered(split.jobs(batch_size, ["rgb", *TASKS], shuffle=True, seed=epoch, drop_last=True), threads, depth=2):
            count += len(batch["rgb"])
        epoch += 1
    return count / (time.perf_counter() - start)


def copy_rate(sample_bytes: int, rows: int, batch_size: int, threads: int, seconds: float = 2.0) -> float:
    """Samples per second that `threads` threads copy out of a `rows`-sample array in memory, a
    contiguous batch at a time into a fresh buffer each (numpy copyto): this machine's copy
    bandwidth for the bytes a gather moves, the most a gather of them can reach."""
    import threading

    import numpy as np

    source = np.ones((rows, sample_bytes), np.uint8)
    copied = [0] * threads
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        start = i * batch_size
        while time.perf_counter() < stop:
            start = (start + batch_size) % (rows - batch_size + 1)
            np.copyto(torch.empty((batch_size, sample_bytes), dtype=torch.uint8).numpy(), source[start:start + batch_size])
            copied[i] += batch_size

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    began = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(copied) / (time.perf_counter() - began)


def gpu_consumption(size: int) -> tuple[float, str] | None:
    """(samples/s, device) the large network trains one task at `size` px on the fastest GPU measured."""
    from raytaskaff import throughput

    found = [m for m in throughput.load_table() if m.kind == "cuda" and m.model == "large" and m.size == size and 1 in m.samples_per_second]
    if not found:
        return None
    best = max(found, key=lambda m: m.samples_per_second[1])
    return best.samples_per_second[1], best.device


def thread_rows(root: str, size: int, batch_size: int, threads: tuple[int, ...]) -> Iterator[Row]:
    """Gathered samples/s by thread count, memory-mapped and streamed, against one thread and a GPU."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    gpu = gpu_consumption(size)
    readers = {"mmap": SplitData.open(root, "train", verify=False, window=WINDOW),
               "streaming": StreamingSplit(f"file://{root}", "train", window=WINDOW, readahead=1)}
    if len(readers["mmap"]) < batch_size:
        raise SystemExit(f"bench.readers: {len(readers['mmap'])} training views make no batch of {batch_size}: give more --views")
    first = next(readers["mmap"].jobs(1, ["rgb", *TASKS]))(False)
    sample_bytes = sum(v.numel() * v.element_size() for v in first.values())
    for name, split in readers.items():
        gather_rate(split, batch_size, 1, seconds=0)  # warm the page cache: every count reads the same bytes
        one = None
        for n in threads:
            rate = gather_rate(split, batch_size, n)
            one = one or rate
            yield Row("readers", f"gather {name} {size}x{size}, {n} thread(s) vs 1", f"{rate:.0f} samples/s", rate / one)
            if name == "mmap":
                copy = copy_rate(sample_bytes, len(split), batch_size, min(n, cores))
                yield Row("readers", f"  vs copying its {sample_bytes / 1e6:.2f} MB a sample on {min(n, cores)} thread(s)",
                          f"{rate:.0f} vs {copy:.0f} samples/s", rate / copy, ">= 0.8")
            if gpu is not None:
                yield Row("readers", f"  vs large network on {gpu[1]}, 1 task", f"{rate:.0f} vs {gpu[0]:.0f} samples/s",
                          rate / gpu[0], ">= 1")


def training_rate(model: str, size: int, batch_size: int, steps: int) -> float:
    """Samples per second one CPU thread trains model preset `model` on one dense task."""
    from raytaskaff.models import MultiTaskNet, preset
    from raytaskaff.tasks import task

    net = MultiTaskNet([task("depth_zbuffer")], preset(model)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.rand(batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()
        loss = net(x, None)["depth_zbuffer"].abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - start)


def _object_store_split(root: str, window: int) -> SplitData:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    local = SplitData.open(root, "train", verify=False)
    table = ray.get(ray.put(local.table))  # what a trial gets: the table in shared memory
    return SplitData(table, local.size, shard_rows=local.shard_rows, window=window)


def rows(sizes: tuple[int, ...] = (64, 256), views: int = 192, batch_size: int = 64,
         threads: tuple[int, ...] = (1, 2, 4), keep: str | None = None) -> Iterator[Row]:
    """The rows; the datasets are rendered in a temporary folder, or in `keep` (and reused from
    there when already rendered with the same settings)."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            root = os.path.join(keep or tmp, f"d{size}-{views}")
            if not os.path.exists(os.path.join(root, "manifest.json")):
                start = time.perf_counter()
                generate(root, SynthConfig(n=views, size=size, seed=12), workers=2, rows_per_shard=32)
                print(f"rendered {views} views of {size} px in {time.perf_counter() - start:.0f} s", flush=True)
            model = MODEL_AT.get(size, "small")
            train = training_rate(model, size, min(batch_size, 16) if size >= 256 else batch_size, steps=3 if size >= 256 else 10)
            yield Row("readers", f"training {model} at {size} px, 1 task, 1 thread", f"{train:.1f} samples/s")
            readers = {
                "object_store": _object_store_split(root, WINDOW),
                "mmap": SplitData.open(root, "train", verify=False, window=WINDOW),
                "streaming": StreamingSplit(f"file://{root}", "train", window=WINDOW, readahead=1),
            }
            for name, split in readers.items():
                rate = read_rate(split, batch_size)
                yield Row("readers", f"{name} {size}x{size} vs training", f"{rate:.0f} vs {train:.1f} samples/s", rate / train, ">= 3")
            if size == max(sizes) and threads:
                yield from thread_rows(root, size, batch_size, threads)
    try:
        import ray

        ray.shutdown()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("readers", __doc__)
    parser.add_argument("--sizes", default="64,256", help="image sizes, comma-separated")
    parser.add_argument("--views", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", default="1,2,4", help="gather thread counts at the largest size, comma-separated ('' for none)")
    parser.add_argument("--keep", default=None, help="render the datasets into this folder and reuse them (default: a temporary one)")
    args = parser.parse_args(argv)
    threads = tuple(int(n) for n in args.threads.split(",") if n)
    report(rows(tuple(int(s) for s in args.sizes.split(",")), args.views, args.batch_size, threads, args.keep), args.json)


if __name__ == "__main__":
    main()
