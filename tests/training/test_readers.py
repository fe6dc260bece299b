"""Paired seeds across readers: the same run trained from random-access shards, a table like the
object store's, a stream of shard groups, with or without prefetching, gives bit-identical losses."""

import dataclasses

import pyarrow as pa
import pytest
import torch

from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.data.stream import StreamingSplit
from raytaskaff.models import preset
from raytaskaff.training.loop import DataSplits, RunSpec, TrainConfig, train

MODEL = preset("small", widths=(8, 16))
FAST = TrainConfig(epochs=2, batch_size=16, lr=3e-3, eval_batch_size=20)
SPLITS = ("train", "val", "test")


def _train(data, config=FAST):
    torch.set_num_threads(1)
    return train(RunSpec(("depth_zbuffer", "segment_semantic")), MODEL, config, data, seed=3)


@pytest.fixture(scope="module")
def small_shards(tmp_path_factory):
    """96 views of 16 px in shards of 10 rows, so that batches and windows cross shard boundaries."""
    from raytaskaff.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("data") / "small"
    generate(out, SynthConfig(n=96, size=16, seed=4, points_per_building=2, views_per_point=4), rows_per_shard=10)
    return out


@pytest.mark.parametrize("window", [0, 3])
def test_readers_give_bit_identical_runs(small_shards, window):
    stats = Manifest.load(small_shards).stats
    mapped = DataSplits(*(SplitData.open(small_shards, s, verify=False, window=window) for s in SPLITS), stats=stats)
    # the object store's form: one table per split, its chunks merged, the shards named by the manifest
    tables = {s: pa.Table.from_batches(mapped.train.table.combine_chunks().to_batches()) if s == "train" else getattr(mapped, s).table
              for s in SPLITS}
    rows = {s: Manifest.load(small_shards).shard_rows(s) for s in SPLITS}
    stored = DataSplits(*(SplitData(tables[s], 16, shard_rows=rows[s], window=window) for s in SPLITS), stats=stats)
    reference = _train(mapped)
    results = {"object store": _train(stored), "prefetched": _train(mapped, dataclasses.replace(FAST, prefetch=2))}
    if window:
        streamed = DataSplits(*(StreamingSplit(f"file://{small_shards}", s, window=window, readahead=1) for s in SPLITS), stats=stats)
        results["streamed"] = _train(streamed)
    for name, result in results.items():
        assert result.test_losses == reference.test_losses, name
        assert result.history == reference.history, name


def test_the_window_changes_the_order_and_so_the_run(small_shards):
    stats = Manifest.load(small_shards).stats
    runs = [_train(DataSplits(*(SplitData.open(small_shards, s, window=w) for s in SPLITS), stats=stats)) for w in (0, 2)]
    assert runs[0].history[0]["train"] != runs[1].history[0]["train"]
