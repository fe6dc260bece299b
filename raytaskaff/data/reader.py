"""Reading a split as torch batches without needless copies.

`SplitData` wraps Arrow tables with random access to every row (memory-mapped shards, or a table
fetched from Ray's object store); every field comes out as zero-copy numpy views of shape
(rows, *its per-sample shape): (rows, H, W, C) for a dense field, (rows, K) for an image-level one,
one per Arrow chunk. The table says how: a declared field's column carries its shape, a column
without one is a Taskonomy domain. Building a batch is the only copy: the rows of a batch are
gathered into one fresh buffer (page-locked when the batch is bound for a GPU), which torch
holds without copying again. The rows come in the order `data.order` gives, which
`data.stream.StreamingSplit` (shards read in turn from object storage) follows too, so that every
reader yields the same batches for a seed.

`jobs` yields each batch as a `BatchJob`, a call that gathers it: jobs are independent and only
read, so `training.prefetch.gathered` runs them on several threads and still hands the batches
out in order; `batches` runs them one after another.
"""

from __future__ import annotations

import collections
import os
import weakref
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import pyarrow as pa
import torch

from raytaskaff.data.domains import domain
from raytaskaff.data.fields import canonical
from raytaskaff.data.order import flat_order
from raytaskaff.data.shards import Manifest, read_shard
from raytaskaff.errors import DataError

#: Rows at least this large are copied one by one from a table of several chunks (one copy, no
#: temporary); smaller ones per chunk, vectorised, where a copy per row would cost more in Python.
ROW_COPY_BYTES = 16384

#: One batch, not yet gathered: `job(pin)` returns {field: raw (B, *shape) tensor}, in page-locked
#: memory when `pin` (so that its copy to a GPU can run asynchronously).
BatchJob = Callable[[bool], dict[str, torch.Tensor]]


class _Recycled:
    """Batch buffers used again once nothing holds them, so that a batch gathered on one thread and
    dropped on another does not cost fresh pages every time (the C allocator hands memory freed
    across threads back to the kernel: hundreds of page faults a batch at 256 px).

    A buffer is a plain byte array; a batch's tensor wraps a view of it, which its storage alone
    holds: when the storage goes (every tensor and view of it gone), the view is collected and
    the bytes come back here. At most `keep` buffers of each size wait.
    """

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self._free: dict[int, collections.deque] = collections.defaultdict(collections.deque)

    def tensor(self, shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
        nbytes = int(np.prod(shape)) * dtype.itemsize
        free = self._free[nbytes]
        try:
            raw = free.pop()
        except IndexError:
            raw = np.empty(nbytes, np.uint8)
        view = raw.view(dtype).reshape(shape)
        weakref.finalize(view, self._give_back, raw)
        return torch.from_numpy(view)

    def _give_back(self, raw: np.ndarray) -> None:
        free = self._free[raw.nbytes]
        if len(free) < self.keep:
            free.append(raw)


_RECYCLED = _Recycled()


def empty_batch(shape: tuple[int, ...], dtype: np.dtype, pin: bool) -> torch.Tensor:
    """An uninitialised tensor to gather into: page-locked when `pin` (torch's host allocator keeps
    and reuses those), else from buffers used again once dropped."""
    dtype = np.dtype(dtype)
    if pin:
        return torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype, pin_memory=True)
    return _RECYCLED.tensor(shape, dtype)


def column_shape(column: pa.Field, size: int) -> tuple[int, ...]:
    """The per-sample shape of a field's column: from its metadata, or a Taskonomy domain's."""
    meta = column.metadata or {}
    if b"shape" in meta:
        return tuple(int(n) for n in meta[b"shape"].decode().split(","))
    return (size, size, domain(column.name).channels)


def data_columns(table: pa.Table) -> list[str]:
    """The columns that hold fields (fixed-size lists), not meta."""
    return [f.name for f in table.schema if pa.types.is_fixed_size_list(f.type)]


def chunk_arrays(column: pa.ChunkedArray, shape: tuple[int, ...], dtype: np.dtype) -> list[np.ndarray]:
    """Zero-copy (n, *shape) numpy views of a fixed_size_list column, one per chunk."""
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
    shard_rows: rows of each shard, in order (default: the table's chunks); window: shards
    shuffled together (`data.order.row_order`; 0: one permutation of every row).
    """

    def __init__(self, tables: pa.Table | list[pa.Table], size: int, domains: list[str] | None = None, *,
                 shard_rows: tuple[int, ...] | None = None, window: int = 0) -> None:
        table = tables if isinstance(tables, pa.Table) else pa.concat_tables(tables)
        present = data_columns(table)
        self.domains = [canonical(d) for d in (domains if domains is not None else present)]
        missing = [d for d in self.domains if d not in table.column_names]
        if missing:
            raise DataError(f"split has no column for domains {missing}")
        self.table = table
        self.size = size
        self._arrays: dict[str, list[np.ndarray]] = {}
        lengths = [len(c) for c in table.column(self.domains[0]).chunks] if self.domains else [table.num_rows]
        self._offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.shard_rows = tuple(shard_rows) if shard_rows is not None else tuple(lengths)
        if sum(self.shard_rows) != table.num_rows:
            raise DataError(f"shards of {sum(self.shard_rows)} rows given for a table of {table.num_rows}")
        self.window = window

    @classmethod
    def open(cls, root: str | os.PathLike, split: str, domains: list[str] | None = None, verify: bool = True,
             window: int = 0) -> SplitData:
        """Memory-map the shards of `split` under dataset directory `root`, checking each one
        (sizes, columns, rows; `verify` also checksums and checks class ids)."""
        manifest = Manifest.load(root)
        names = [canonical(d) for d in domains] if domains is not None else list(manifest.domains)
        unknown = [d for d in names if d not in manifest.domains]
        if unknown:
            raise DataError(f"{root}: dataset has no domain {unknown[0]!r} (has: {', '.join(manifest.domains)})")
        shards = manifest.shards_of(split)
        if not shards:
            raise DataError(f"{root}: split {split!r} is empty")
        columns = list(manifest.meta_columns) + names
        tables = [read_shard(root, s, manifest, columns=columns, verify=verify) for s in shards]
        return cls(tables, manifest.size, names, shard_rows=tuple(s.rows for s in shards), window=window)

    def __len__(self) -> int:
        return self.table.num_rows

    def arrays(self, name: str) -> list[np.ndarray]:
        """Zero-copy (rows, *shape) views of field `name`, one per chunk."""
        if name not in self._arrays:
            column = self.table.schema.field(name)
            dtype = np.dtype(column.type.value_type.to_pandas_dtype())
            self._arrays[name] = chunk_arrays(self.table.column(name), column_shape(column, self.size), dtype)
        return self._arrays[name]

    def gather(self, name: str, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(len(rows), *shape) array of field `name` at global row indices `rows` (one copy),
        written into `out` when given."""
        chunks = self.arrays(name)
        if out is None:
            out = np.empty((len(rows), *chunks[0].shape[1:]), dtype=chunks[0].dtype)
        if len(chunks) == 1:
            return np.take(chunks[0], rows, axis=0, out=out)
        which = np.searchsorted(self._offsets, rows, side="right") - 1
        local = rows - self._offsets[which]
        if out[0].nbytes >= ROW_COPY_BYTES:  # large rows (images): one copy each, straight into place
            for i, (c, r) in enumerate(zip(which.tolist(), local.tolist())):
                out[i] = chunks[c][r]
            return out
        for c in np.unique(which):  # small rows: vectorised per chunk (a temporary, then a scatter)
            pick = which == c
            out[pick] = chunks[c][local[pick]]
        return out

    def take(self, names: list[str], rows: np.ndarray, pin: bool = False) -> dict[str, torch.Tensor]:
        """{field: (len(rows), *shape) tensor} of `names` at `rows`, gathered straight into fresh
        (page-locked when `pin`) buffers."""
        out = {}
        for name in names:
            first = self.arrays(name)[0]
            out[name] = empty_batch((len(rows), *first.shape[1:]), first.dtype, pin)
            self.gather(name, rows, out[name].numpy())
        return out

    def head(self, n: int) -> SplitData:
        """The first n rows (all, when fewer), without a copy."""
        return SplitData(self.table.slice(0, min(n, len(self))), self.size, self.domains)

    def meta(self, column: str) -> np.ndarray:
        """A meta column (Taskonomy: building, point, view, split, field_of_view_rads) as numpy."""
        return self.table.column(column).to_numpy()

    def jobs(self, batch_size: int, domains: list[str] | None = None, *, shuffle: bool = False,
             seed: int = 0, drop_last: bool = False, rows: np.ndarray | None = None) -> Iterator[BatchJob]:
        """The batches of `batches`, in the same order, each as a job that gathers it."""
        names = [canonical(d) for d in domains] if domains is not None else self.domains
        for name in names:  # the views are made once, here, not by racing gather threads
            self.arrays(name)
        if rows is None:
            order = flat_order(self.shard_rows, shuffle=shuffle, seed=seed, window=self.window)
        else:
            order = np.asarray(rows, dtype=np.int64)
            if shuffle:
                order = np.random.default_rng(seed).permutation(order)
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield partial(self.take, names, order[start:start + batch_size])

    def batches(self, batch_size: int, domains: list[str] | None = None, *, shuffle: bool = False,
                seed: int = 0, drop_last: bool = False, rows: np.ndarray | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Yield {field: raw (B, *shape) tensor} batches (as stored: uint8/uint16 for Taskonomy).

        shuffle: the order `data.order.row_order` draws from `seed` and this split's window, so two
        runs with one seed see one data order, whichever reader serves them.
        rows: restrict to these row indices (default: all; shuffled as one permutation).
        """
        for job in self.jobs(batch_size, domains, shuffle=shuffle, seed=seed, drop_last=drop_last, rows=rows):
            yield job(False)
