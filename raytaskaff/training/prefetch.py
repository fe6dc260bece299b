"""Batches gathered on background threads, so that a GPU does not wait on the reader.

A reader's `jobs` (`data.reader.BatchJob`) are independent calls that each gather one batch;
`gathered` runs them on `threads` threads and hands the batches out in the reader's order, so
which rows a step sees, and the bytes it gets, never depend on the number of threads. The
gathers (numpy copies out of memory-mapped or shared Arrow buffers) release the GIL, so threads
scale with the cores a trial holds. A bounded queue keeps at most `threads + depth` batches
gathered or being gathered ahead of the consumer. On CUDA each batch is gathered straight into
page-locked memory, which lets its copy to the device run asynchronously (`non_blocking=True`)
without a second copy on the host.

The reader's own iteration (choosing rows, reading the next shard group of a stream) runs on one
more thread, so the consumer never blocks on it either.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from raytaskaff.data.reader import BatchJob

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def gathered(jobs: Iterable[BatchJob], threads: int = 1, depth: int = 2, pin: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Yield the batches of `jobs` in order, gathered by `threads` threads (0: one after another
    on the caller's thread), at most `threads + depth` ahead.

    pin: gather into page-locked buffers (for asynchronous host-to-device copies). An exception
    while gathering, or in the reader, is raised here at the batch where it happened; closing the
    iterator early stops the threads after the batches already under way.
    """
    if threads < 1:
        for job in jobs:
            yield job(pin)
        return
    ready: queue.Queue = queue.Queue(maxsize=max(threads + depth - 1, 1))
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="batch-gather")

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(jobs)
        try:
            for job in source:
                if not put(pool.submit(job, pin)):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer, which raises it after the batches before it
            put(_Failure(e))
        finally:
            close = getattr(source, "close", None)
            if close is not None:  # a generator's own cleanup (a stream's reader threads) runs here
                close()

    producer = threading.Thread(target=produce, name="batch-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item.result()
    finally:
        stop.set()
        producer.join()
        while not ready.empty():
            item = ready.get_nowait()
            if isinstance(item, Future):
                item.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class Feed:
    """How a loop gets its batches: `threads` gather threads (0: inline), `depth` more queued,
    page-locked when `pin`. `feed(reader.jobs(...))` yields the batches."""

    threads: int = 0
    depth: int = 0
    pin: bool = False

    def __call__(self, jobs: Iterable[BatchJob]) -> Iterator[dict[str, torch.Tensor]]:
        return gathered(jobs, self.threads, self.depth, self.pin)


def prefetch(batches: Iterable[dict[str, torch.Tensor]], depth: int = 2, pin: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Yield the batches of `batches` in order, produced up to `depth` ahead on a thread (0: none).

    For a reader with `jobs`, `gathered` does the same with several threads and no second copy;
    this wraps batches that are already made (pinned on a thread when `pin`).
    """
    def job(batch: dict[str, torch.Tensor]) -> BatchJob:
        return lambda pin: {k: v.pin_memory() for k, v in batch.items()} if pin else batch

    if depth < 1:
        yield from batches
        return
    yield from gathered((job(b) for b in batches), threads=1, depth=depth, pin=pin)
