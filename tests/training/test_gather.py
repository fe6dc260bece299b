"""Parallel gathering: the same bytes in the same order for any number of threads, from every reader."""

import threading
import time

import numpy as np
import pyarrow as pa
import pytest
import torch

from raytaskaff.data.reader import SplitData
from raytaskaff.data.stream import StreamingSplit
from raytaskaff.training.loop import TrainConfig
from raytaskaff.training.prefetch import Feed, gathered

FIELDS = ["rgb", "depth_zbuffer", "normal", "segment_semantic", "edge_texture"]


def _reference(split, batch_size, seed, drop_last):
    """The rows each batch should hold, gathered the plain way: one numpy fancy index per field."""
    out = []
    for batch in split.batches(batch_size, FIELDS, shuffle=True, seed=seed, drop_last=drop_last):
        out.append({k: v.numpy().copy() for k, v in batch.items()})
    return out


def _same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert list(g) == FIELDS
        for name in FIELDS:
            assert g[name].dtype == torch.from_numpy(w[name]).dtype
            np.testing.assert_array_equal(g[name].numpy(), w[name])


def _brute_force(root, seed, batch_size, drop_last, window):
    """Batches built from the whole table read into memory and indexed by the seeded order."""
    from raytaskaff.data.order import flat_order

    split = SplitData.open(root, "train", FIELDS, window=window)
    whole = {name: np.concatenate(split.arrays(name)) for name in FIELDS}
    order = flat_order(split.shard_rows, shuffle=True, seed=seed, window=window)
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    return [{name: whole[name][order[s:s + batch_size]] for name in FIELDS} for s in range(0, stop, batch_size)]


@pytest.mark.parametrize("threads", [0, 1, 2, 4, 7])
@pytest.mark.parametrize("batch_size,drop_last", [(3, False), (8, True)])
def test_memory_mapped_batches_are_bit_identical_for_any_thread_count(tiny_dataset, threads, batch_size, drop_last):
    split = SplitData.open(tiny_dataset, "train", FIELDS, window=2)
    assert len(split.arrays("rgb")) > 1  # several shards: the chunked gather is exercised
    want = _brute_force(tiny_dataset, 5, batch_size, drop_last, window=2)
    got = list(gathered(split.jobs(batch_size, FIELDS, shuffle=True, seed=5, drop_last=drop_last), threads=threads, depth=2))
    _same(got, want)


@pytest.mark.parametrize("threads", [0, 1, 3])
@pytest.mark.parametrize("window,readahead", [(1, 0), (2, 1)])
def test_streamed_batches_are_bit_identical_for_any_thread_count(tiny_dataset, threads, window, readahead):
    stream = StreamingSplit(f"file://{tiny_dataset}", "train", window=window, readahead=readahead)
    want = _brute_force(tiny_dataset, 9, 5, False, window=window)  # batches of 5 span shard groups of 7 rows
    got = list(gathered(stream.jobs(5, FIELDS, shuffle=True, seed=9), threads=threads, depth=1))
    _same(got, want)


def test_a_table_in_one_chunk_gathers_with_take(tiny_dataset):
    split = SplitData.open(tiny_dataset, "train", FIELDS)
    one = SplitData(split.table.combine_chunks(), split.size, FIELDS)
    assert len(one.arrays("rgb")) == 1
    _same(list(gathered(one.jobs(6, FIELDS, shuffle=True, seed=2), threads=3)), _reference(split, 6, 2, False))


def _slow_jobs(n, seen, delay):
    for i in range(n):
        def job(pin, i=i):
            time.sleep(delay * ((i * 7) % 5))  # later batches often finish first
            seen.append(i)
            return {"x": torch.full((2,), i)}
        yield job


def test_batches_come_out_in_order_when_threads_finish_out_of_order():
    seen = []
    got = [int(b["x"][0]) for b in gathered(_slow_jobs(30, seen, 0.002), threads=4, depth=2)]
    assert got == list(range(30))
    assert seen != list(range(30))  # the threads really did finish out of order


def test_at_most_threads_plus_depth_batches_are_gathered_ahead():
    made = []

    def jobs():
        for i in range(60):
            made.append(i)
            yield lambda pin, i=i: {"x": torch.full((1,), i)}

    for i, _ in enumerate(gathered(jobs(), threads=3, depth=2)):
        time.sleep(0.005)
        assert len(made) <= i + 1 + 3 + 2
    assert made == list(range(60))


def test_an_error_while_gathering_is_raised_at_its_batch():
    def jobs():
        yield lambda pin: {"x": torch.zeros(1)}
        yield lambda pin: (_ for _ in ()).throw(OSError("shard vanished"))
        yield lambda pin: {"x": torch.ones(1)}

    stream = gathered(jobs(), threads=2)
    assert next(stream)["x"].item() == 0
    with pytest.raises(OSError, match="shard vanished"):
        next(stream)


def test_an_error_in_the_reader_comes_after_the_batches_before_it():
    def jobs():
        yield lambda pin: {"x": torch.zeros(1)}
        raise pa.ArrowIOError("object storage went away")

    stream = gathered(jobs(), threads=2)
    assert next(stream)["x"].item() == 0
    with pytest.raises(pa.ArrowIOError, match="went away"):
        next(stream)


def test_closing_early_stops_every_thread_and_closes_the_reader():
    closed = []

    def jobs():
        try:
            for i in range(10_000):
                yield lambda pin, i=i: {"x": torch.full((1,), i)}
        finally:
            closed.append(True)

    before = {t.ident for t in threading.enumerate()}
    stream = gathered(jobs(), threads=3, depth=2)
    next(stream)
    stream.close()
    assert closed == [True]
    assert not [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("batch-")]


def test_the_feed_follows_the_device_and_the_trial_threads():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert TrainConfig().feed(cpu) == Feed(0, 0, False)  # a CPU trial's cores train
    assert TrainConfig(prefetch=2).feed(cpu) == Feed(1, 2, False)
    assert TrainConfig(gather_threads=3).feed(cpu) == Feed(3, 0, False)
    assert TrainConfig().feed(cuda) == Feed(torch.get_num_threads(), 2, True)
    assert TrainConfig(gather_threads=0, prefetch=0).feed(cuda) == Feed(0, 0, True)


def test_gather_threads_must_not_be_negative():
    from raytaskaff.sections import DataConfig
    from raytaskaff.settings import ConfigError

    with pytest.raises(ConfigError, match="data.gather_threads"):
        DataConfig(gather_threads=-1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs CUDA")
def test_batches_are_gathered_into_page_locked_memory(tiny_dataset):
    split = SplitData.open(tiny_dataset, "train", FIELDS)
    batches = list(gathered(split.jobs(8, FIELDS, shuffle=True, seed=1), threads=2, pin=True))
    assert all(v.is_pinned() for b in batches for v in b.values())
    _same(batches, _reference(split, 8, 1, False))
