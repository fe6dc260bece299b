"""Batches gathered on a background thread, so that a GPU does not wait on the reader.

The reader's gathers (numpy copies, Arrow reads) release the GIL for most of their time, so one
thread keeps `depth` batches ready while the device computes. On CUDA each batch is pinned, which
lets the copy to the device run asynchronously (`non_blocking=True`). The order of the batches is
the reader's, unchanged: prefetching never touches which rows a step sees.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

import torch

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(batches: Iterable[dict[str, torch.Tensor]], depth: int = 2, pin: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Yield the batches of `batches` in order, produced up to `depth` ahead on a thread.

    pin: pin each batch's tensors (for asynchronous host-to-device copies). An exception in the
    reader is raised here, at the batch where it happened; closing the iterator early stops the
    thread after at most one more batch.
    """
    if depth < 1:
        yield from batches
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if pin:
                    batch = {k: v.pin_memory() for k, v in batch.items()}
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer, which raises it
            put(_Failure(e))

    worker = threading.Thread(target=produce, name="batch-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()
