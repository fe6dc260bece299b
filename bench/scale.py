"""A sweep over a dataset several times larger than Ray's object store, in bounded memory.

    python -m bench.scale [--views 1000,4000] [--size 64] [--store-mb 100] [--readers mmap,object_store] [--json]

Renders synthetic datasets of each of `--views` views (all eleven domains), starts a local Ray whose
object store is capped at `--store-mb` MiB (as `ray start --object-store-memory` does), and runs a
small sweep on the largest with each reader, and on the others with the first reader: two tasks,
one seed, one epoch, the small model, td and rsa (whose actor reads the test split too). Reported
side by side: the dataset's size against the store's, whether every run was stored, the bytes Ray
spilled to disk or allocated outside its store, the peak of the store's use (polled every 0.2 s),
and each trial's memory when its run ended (runs.parquet: private memory; file-backed pages,
the libraries' and the touched shards', shared through the page cache; shared memory, the object
store's). Evaluation batches are 64 views, so that every split fills them and the compute memory
of the datasets' runs is alike. Aims: the largest dataset >= 3x the store; with `mmap`, every run stored, nothing
spilled, and a trial's private memory (the batches, the model's activations, torch and Ray
themselves) no larger on the largest dataset than on the smallest (ratio <= 1.1): the data is in
the page cache, shared and evictable, not in the trial.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.rows import Row, bench_parser, report

ROOT = Path(__file__).resolve().parent.parent


def _dataset_bytes(root: str) -> int:
    return sum(p.stat().st_size for p in Path(root).glob("*") if p.suffix in (".arrow", ".parquet"))


class StoreWatch:
    """Polls the object store's use on a thread; `stop()` returns (peak bytes used, spilled bytes,
    bytes allocated on disk outside the store). Uses Ray's internal memory query (ray memory)."""

    def __init__(self, every: float = 0.2) -> None:
        import ray
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        self._state = get_state_from_address(ray.get_runtime_context().gcs_address)
        self._reply = get_memory_info_reply
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(every,), daemon=True)
        self._thread.start()

    def stats(self):
        return self._reply(self._state).store_stats

    def _poll(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.peak = max(self.peak, self.stats().object_store_bytes_used)
            except Exception:  # a poll racing the shutdown
                return

    def stop(self) -> tuple[int, int, int]:
        self._stop.set()
        self._thread.join()
        stats = self.stats()
        return max(self.peak, stats.object_store_bytes_used), stats.spilled_bytes_total, stats.object_store_bytes_fallback


def sweep_once(root: str, reader: str, store_mb: int, out: str) -> dict:
    """One small sweep over the dataset at `root` on a fresh local Ray with a capped object store."""
    import pandas as pd
    import ray

    from raytaskaff.config import load_config
    from raytaskaff.engine.sweep import run_sweep

    smoke = load_config(ROOT / "sweeps" / "smoke.yaml")
    config = dataclasses.replace(
        smoke, name=f"scale-{reader}", tasks=("depth_zbuffer", "normal"), seeds=(0,), out=out,
        data=dataclasses.replace(smoke.data, kind="shards", path=root, reader=reader),
        model=dataclasses.replace(smoke.model, widths=None), training=dataclasses.replace(smoke.training, epochs=1, batch_size=64, eval_batch_size=64),
        scorers={"td": smoke.scorers["td"], "rsa": {"images": 64}},
        grouping=dataclasses.replace(smoke.grouping, groups=()), bootstrap=0)
    ray.init(num_cpus=2, object_store_memory=store_mb * 2**20, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        watch = StoreWatch()
        start = time.perf_counter()
        summary = run_sweep(config, say=lambda *a: None)
        wall = time.perf_counter() - start
        peak, spilled, fallback = watch.stop()
    finally:
        ray.shutdown()
    runs = pd.read_parquet(Path(out) / "results" / "runs.parquet")
    return {"summary": summary, "runs": runs, "wall": wall, "peak": peak, "spilled": spilled, "fallback": fallback}


def rows(views: tuple[int, ...] = (1000, 4000), size: int = 64, store_mb: int = 100,
         readers: tuple[str, ...] = ("mmap", "object_store")) -> Iterator[Row]:
    from raytaskaff.data.synth import SynthConfig, generate

    mib = 2**20
    private: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(views):
            root = os.path.join(tmp, f"data-{n}")
            start = time.perf_counter()
            generate(root, SynthConfig(n=n, size=size, seed=21), workers=2)
            size_bytes = _dataset_bytes(root)
            largest = n == max(views)
            yield Row("scale", f"dataset: {n} views of {size} px, rendered in {time.perf_counter() - start:.0f} s vs "
                      f"object store", f"{size_bytes / mib:.0f} vs {store_mb} MiB", size_bytes / (store_mb * mib),
                      ">= 3" if largest else "-")
            for reader in readers if largest else readers[:1]:
                got = sweep_once(root, reader, store_mb, os.path.join(tmp, f"out-{n}-{reader}"))
                yield from _sweep_rows(n, reader, got, aim=reader == "mmap")
                if reader == readers[0]:
                    private[n] = float(got["runs"].rss_anon_mb.max())
        if len(private) > 1:
            low, high = min(private), max(private)
            yield Row("scale", f"{readers[0]}: largest private memory of a trial, {high} vs {low} views",
                      f"{private[high]:.0f} vs {private[low]:.0f} MiB", private[high] / private[low], "<= 1.1")


def _sweep_rows(n: int, reader: str, got: dict, aim: bool) -> Iterator[Row]:
    mib = 2**20
    runs, summary = got["runs"], got["summary"]
    stored = int((runs.status == "done").sum())
    yield Row("scale", f"{n} views, {reader}: runs stored of planned ({got['wall']:.0f} s)", f"{stored} / {len(runs)}",
              stored / len(runs), ">= 1" if aim else "-")
    moved = got["spilled"] + got["fallback"]
    yield Row("scale", f"{n} views, {reader}: spilled or allocated on disk",
              f"{moved / mib:.0f} MiB (peak in store {got['peak'] / mib:.0f} MiB)", moved / mib, "<= 0" if aim else "-")
    for _, run in runs.iterrows():
        yield Row("scale", f"{n} views, {reader}: {run.kind} {run.tasks}, trial memory at its end",
                  f"private {run.rss_anon_mb:.0f}, file-backed {run.rss_file_mb:.0f}, shared {run.rss_shmem_mb:.0f}, "
                  f"peak RSS {run.peak_rss_mb:.0f} MiB")
    if summary["runs"]["failed"]:
        yield Row("scale", f"{n} views, {reader}: first failure", next(iter(summary["runs"]["failed"].values()))[:120])


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("scale", __doc__)
    parser.add_argument("--views", default="1000,4000", help="dataset sizes in views, comma-separated")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--store-mb", type=int, default=100, help="object store cap in MiB (Ray's minimum is about 75)")
    parser.add_argument("--readers", default="mmap,object_store")
    args = parser.parse_args(argv)
    views = tuple(int(v) for v in args.views.split(","))
    report(rows(views, args.size, args.store_mb, tuple(args.readers.split(","))), args.json)


if __name__ == "__main__":
    main()
