"""Sharing a split through Ray: the object store on one node, Ray Data at cluster scale.

`share_splits` shares every split one way or the other. `put_split` stores a split's Arrow table once; every task or actor that receives the reference
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


def share_splits(root: str | os.PathLike, reader: str, splits: tuple[str, ...] = ("train", "val", "test")) -> dict:
    """Each split in the object store once, for trials to map without a copy: {split: reference}.

    "object_store": the driver reads the shards and puts each split as one Arrow table (a single
    node, or a cluster whose driver can hold the dataset in memory).
    "ray_data": Ray Data reads the Parquet shards in parallel tasks across the cluster and each
    block stays in the object store of the node that read it; a split is the list of its block
    references, in shard order (order is preserved, so paired seeds see the rows as the local
    reader does). The shard directory must be readable from every node (NFS or a shared mount).
    A trial turns either form into a `SplitData` with `SplitData(ray.get(reference), size)`.
    """
    if reader == "ray_data":
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        return {s: read_split(root, s).to_arrow_refs() for s in splits}
    if reader != "object_store":
        raise ValueError(f"unknown reader {reader!r} (known: object_store, ray_data)")
    return {s: put_split(SplitData.open(root, s)) for s in splits}


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
