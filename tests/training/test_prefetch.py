"""Batches prefetched on a thread: same batches, same order, errors where they happened."""

import threading
import time

import pytest
import torch

from raytaskaff.training.prefetch import prefetch


def _batches(n, produced=None):
    for i in range(n):
        if produced is not None:
            produced.append(i)
        yield {"x": torch.full((2, 3), i)}


@pytest.mark.parametrize("depth", [0, 1, 2, 5])
def test_order_and_content_are_the_readers(depth):
    got = [int(b["x"][0, 0]) for b in prefetch(_batches(17), depth)]
    assert got == list(range(17))


def test_the_reader_runs_at_most_depth_ahead():
    produced = []
    stream = prefetch(_batches(50, produced), depth=2)
    for i, _ in enumerate(stream):
        time.sleep(0.01)  # let the thread run as far as it may
        assert len(produced) <= i + 1 + 2 + 1  # the batch in hand, `depth` queued, one being put
    assert produced == list(range(50))


def test_a_reader_error_is_raised_in_the_consumer_at_its_batch():
    def failing():
        yield {"x": torch.zeros(1)}
        raise OSError("shard vanished")

    stream = prefetch(failing(), depth=2)
    assert next(stream)["x"].shape == (1,)
    with pytest.raises(OSError, match="shard vanished"):
        next(stream)


def test_closing_early_stops_the_thread():
    before = {t.ident for t in threading.enumerate()}
    stream = prefetch(_batches(10_000), depth=2)
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "batch-prefetch" and t.ident not in before]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning needs CUDA")
@pytest.mark.gpu
def test_batches_are_pinned_for_cuda():
    assert all(b["x"].is_pinned() for b in prefetch(_batches(3), depth=2, pin=True))
