"""Reading a split as torch batches without needless copies.

`SplitData` wraps Arrow tables (memory-mapped shards, a table fetched from Ray's object store, or
a batch from Ray Data); every domain comes out as zero-copy numpy views of shape
(rows, H, W, C), one per Arrow chunk. Building a batch is the only copy: the rows of a batch are
gathered into one fresh array, which torch then wraps without copying again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from raytaskaff.data.domains import domain
from raytaskaff.data.shards import META_COLUMNS, Manifest, read_shard
from raytaskaff.errors import DataError


def chunk_arrays(column: pa.ChunkedArray, shape: tuple[int, int, int], dtype: np.dtype) -> list[np.ndarray]:
    """Zero-copy (n, H, W, C) numpy views of a fixed_size_list column, one per chunk."""
    out = []
    for chunk in column.chunks:
        if chunk.null_count:
            raise DataError(f"column has {chunk.null_count} null rows")
        flat = chunk.flatten().to_numpy(zero_copy_only=True)  # flatten() honours slice offsets
        if flat.dtype != dtype:
            raise DataError(f"column holds {flat.dtype}, expected {dtype}")
        out.append(flat.reshape(len(chunk), *shape))
    return out


class SplitData:
    """The views of one split.

    tables: Arrow tables with the shard schema (a list, or one table of several chunks).
    size: H = W of the arrays. domains: the domain columns to expose (default: all present).
    """

    def __init__(self, tables: pa.Table | list[pa.Table], size: int, domains: list[str] | None = None) -> None:
        table = tables if isinstance(tables, pa.Table) else pa.concat_tables(tables)
        present = [c for c in table.column_names if c not in META_COLUMNS]
        self.domains = [domain(d).name for d in (domains if domains is not None else present)]
        missing = [d for d in self.domains if d not in table.column_names]
        if missing:
            raise DataError(f"split has no column for domains {missing}")
        self.table = table
        self.size = size
        self._arrays: dict[str, list[np.ndarray]] = {}
        lengths = [len(c) for c in table.column(self.domains[0]).chunks] if self.domains else [table.num_rows]
        self._offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    @classmethod
    def open(cls, root: str | os.PathLike, split: str, domains: list[str] | None = None, verify: bool = True) -> SplitData:
        """Memory-map the shards of `split` under dataset directory `root`, checking each one."""
        manifest = Manifest.load(root)
        names = [domain(d).name for d in domains] if domains is not None else list(manifest.domains)
        unknown = [d for d in names if d not in manifest.domains]
        if unknown:
            raise DataError(f"{root}: dataset has no domain {unknown[0]!r} (has: {', '.join(manifest.domains)})")
        shards = manifest.shards_of(split)
        if not shards:
            raise DataError(f"{root}: split {split!r} is empty")
        columns = list(META_COLUMNS) + names
        tables = [read_shard(root, s, manifest, columns=columns, verify=verify) for s in shards]
        return cls(tables, manifest.size, names)

    def __len__(self) -> int:
        return self.table.num_rows

    def arrays(self, name: str) -> list[np.ndarray]:
        """Zero-copy (rows, H, W, C) views of domain `name`, one per chunk."""
        if name not in self._arrays:
            spec = domain(name)
            self._arrays[name] = chunk_arrays(self.table.column(name), (self.size, self.size, spec.channels), spec.np_dtype)
        return self._arrays[name]

    def gather(self, name: str, rows: np.ndarray) -> np.ndarray:
        """(len(rows), H, W, C) array of domain `name` at global row indices `rows` (one copy)."""
        chunks = self.arrays(name)
        if len(chunks) == 1:
            return chunks[0][rows]
        which = np.searchsorted(self._offsets, rows, side="right") - 1
        out = np.empty((len(rows), *chunks[0].shape[1:]), dtype=chunks[0].dtype)
        for c in np.unique(which):
            pick = which == c
            out[pick] = chunks[c][rows[pick] - self._offsets[c]]
        return out

    def meta(self, column: str) -> np.ndarray:
        """A metadata column (building, point, view, split, field_of_view_rads) as numpy."""
        return self.table.column(column).to_numpy()

    def batches(self, batch_size: int, domains: list[str] | None = None, *, shuffle: bool = False,
                seed: int = 0, drop_last: bool = False, rows: np.ndarray | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Yield {domain: raw (B, H, W, C) tensor} batches (uint8/uint16, as stored).

        shuffle: a permutation drawn from `seed`, so two runs with one seed see one data order.
        rows: restrict to these row indices (default: all).
        """
        names = [domain(d).name for d in domains] if domains is not None else self.domains
        order = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        if shuffle:
            order = np.random.default_rng(seed).permutation(order)
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            picked = order[start:start + batch_size]
            yield {name: torch.from_numpy(self.gather(name, picked)) for name in names}


def dataset_files(root: str | os.PathLike, split: str) -> list[str]:
    """Paths of the shards of `split`, for readers such as Ray Data."""
    manifest = Manifest.load(root)
    return [str(Path(root) / s.file) for s in manifest.shards_of(split)]
