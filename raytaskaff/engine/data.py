"""Sharing a split through Ray: the object store on one node, Ray Data at cluster scale.

`put_split` stores a split's Arrow table once; every task or actor that receives the reference
maps the same shared-memory buffers, and `SplitData` turns them into numpy views without a copy
(the views are read-only). `read_split` streams the Parquet shards of shared storage with Ray Data
and `torch_batches` yields the same raw batches as `SplitData.batches`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pyarrow as pa
import ray
import torch

from raytaskaff.data.reader import SplitData, dataset_files
from raytaskaff.data.shards import Manifest
from raytaskaff.errors import DataError


def put_split(data: SplitData) -> ray.ObjectRef:
    """Put the split's Arrow table in the object store (once; share the reference)."""
    return ray.put(data.table)


def split_from_store(table: pa.Table, size: int, domains: list[str] | None = None) -> SplitData:
    """A SplitData over a table received from the object store (pass the ObjectRef as a top-level
    task or actor argument and Ray hands over the table, backed by shared memory)."""
    return SplitData(table, size, domains)


def read_split(root: str | os.PathLike, split: str, **read_args) -> ray.data.Dataset:
    """A Ray Dataset over the shards of `split` (Parquet shards are read with read_parquet;
    Arrow IPC shards, which Ray Data cannot read itself, are memory-mapped here and handed over)."""
    manifest = Manifest.load(root)
    files = dataset_files(root, split)
    if manifest.format == "parquet":
        return ray.data.read_parquet(files, **read_args)
    local = SplitData.open(root, split)
    return ray.data.from_arrow(local.table)


def torch_batches(dataset: ray.data.Dataset, size: int, batch_size: int, domains: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Raw {domain: (B, H, W, C) tensor} batches from a Ray Dataset, as SplitData.batches gives."""
    for batch in dataset.iter_batches(batch_size=batch_size, batch_format="pyarrow"):
        if not isinstance(batch, pa.Table):
            raise DataError(f"Ray Data returned a {type(batch).__name__}, expected a pyarrow Table")
        yield from SplitData(batch, size, domains).batches(batch.num_rows, domains)
