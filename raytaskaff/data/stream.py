"""Streaming a split from object storage (s3://, gs://, any pyarrow.fs URI) in bounded memory.

`StreamingSplit` has the interface the training loop uses (`len`, `domains`, `size`,
`batches`, `jobs`, `head`) and yields exactly the batches `SplitData` yields for the same seed: both
follow `data.order.row_order`. With a shuffle window of k, the shards of a split are read k at a
time in the seeded order; a background thread reads the next `readahead` groups while the current
one is trained on, so a trial holds at most (1 + readahead) groups of k shards, plus one batch.
A shuffled pass over window 0 (one permutation of every row) would need the whole split at once
and is refused: that order is for readers with random access (memory-mapped shards, the object
store).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import numpy as np
import torch

from raytaskaff.data.fields import canonical
from raytaskaff.data.order import row_order, shard_offsets
from raytaskaff.data.reader import BatchJob, SplitData, empty_batch
from raytaskaff.data.shards import Manifest, read_shard
from raytaskaff.errors import DataError


class StreamingSplit:
    """One split of the dataset at `root` (a URI or a path), read shard group by shard group.

    window: shards shuffled together (>= 1 for shuffled passes); readahead: groups read ahead.
    """

    def __init__(self, root: str | os.PathLike, split: str, domains: list[str] | None = None, *, window: int = 1,
                 readahead: int = 1, manifest: Manifest | None = None) -> None:
        self.root = str(root)
        self.manifest = manifest or Manifest.load(root)
        self.shards = self.manifest.shards_of(split)
        if not self.shards:
            raise DataError(f"{root}: split {split!r} is empty")
        names = [canonical(d) for d in domains] if domains is not None else list(self.manifest.domains)
        unknown = [d for d in names if d not in self.manifest.domains]
        if unknown:
            raise DataError(f"{root}: dataset has no domain {unknown[0]!r} (has: {', '.join(self.manifest.domains)})")
        if window < 0 or readahead < 0:
            raise ValueError(f"window and readahead must be >= 0, got {window} and {readahead}")
        self.split, self.domains, self.window, self.readahead = split, names, window, readahead
        self.size = self.manifest.size
        self.shard_rows = tuple(s.rows for s in self.shards)
        self._offsets = shard_offsets(self.shard_rows)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _read(self, group: np.ndarray, names: list[str]) -> SplitData:
        columns = list(self.manifest.meta_columns) + names
        tables = [read_shard(self.root, self.shards[s], self.manifest, columns=columns, verify=False) for s in group]
        return SplitData(tables, self.size, names, shard_rows=tuple(self.shard_rows[s] for s in group))

    def _groups(self, names: list[str], shuffle: bool, seed: int) -> Iterator[tuple[SplitData, np.ndarray]]:
        """(the group's rows as a SplitData, their local indices in the order they are seen)."""
        order = row_order(self.shard_rows, shuffle=shuffle, seed=seed, window=self.window)
        if shuffle and self.window == 0 and len(self.shards) > 1:
            raise DataError(f"{self.root}: a shuffled pass over all {len(self.shards)} shards at once needs random access; "
                            "stream with a shuffle window of at least 1 shard (data.shuffle_window)")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-read") as pool:
            pending: list[Future] = []
            submitted = 0
            try:
                for i, (group, rows) in enumerate(order):
                    while submitted < len(order) and submitted <= i + self.readahead:
                        pending.append(pool.submit(self._read, order[submitted][0], names))
                        submitted += 1
                    yield pending.pop(0).result(), _local_rows(rows, group, self._offsets)
            finally:
                for future in pending:
                    future.cancel()

    def jobs(self, batch_size: int, domains: list[str] | None = None, *, shuffle: bool = False, seed: int = 0,
             drop_last: bool = False) -> Iterator[BatchJob]:
        """The batches of `batches`, in the same order, each as a job that gathers it (a job holds
        the shard groups its rows lie in, so it can run after the reader has moved on)."""
        names = [canonical(d) for d in domains] if domains is not None else self.domains
        pieces: list[tuple[SplitData, np.ndarray]] = []
        held = 0
        for data, local in self._groups(names, shuffle, seed):
            for name in names:  # the views are made once, here, not by racing gather threads
                data.arrays(name)
            start = 0
            while start < len(local):
                take = min(batch_size - held, len(local) - start)
                pieces.append((data, local[start:start + take]))
                held, start = held + take, start + take
                if held == batch_size:
                    yield partial(_take, pieces, names)
                    pieces, held = [], 0
        if pieces and not drop_last:
            yield partial(_take, pieces, names)

    def batches(self, batch_size: int, domains: list[str] | None = None, *, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[dict[str, torch.Tensor]]:
        """Yield {domain: raw (B, H, W, C) tensor} batches, as `SplitData.batches` does; a batch may
        span two groups of shards."""
        for job in self.jobs(batch_size, domains, shuffle=shuffle, seed=seed, drop_last=drop_last):
            yield job(False)

    def head(self, n: int) -> SplitData:
        """The first n rows (all, when fewer) in shard order, reading only the shards they lie in."""
        needed = int(np.searchsorted(self._offsets, min(n, len(self)), side="left"))
        data = self._read(np.arange(max(needed, 1)), self.domains)
        return data.head(n)


def _local_rows(rows: np.ndarray, group: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Global row indices -> indices into the group's shards concatenated in group order."""
    sizes = offsets[group + 1] - offsets[group]
    local_start = np.zeros(len(offsets) - 1, dtype=np.int64)
    local_start[group] = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    shard = np.searchsorted(offsets, rows, side="right") - 1
    return rows - offsets[shard] + local_start[shard]


def _take(pieces: list[tuple[SplitData, np.ndarray]], names: list[str], pin: bool = False) -> dict[str, torch.Tensor]:
    """One batch made of rows of one or more shard groups, gathered into one buffer per field."""
    if len(pieces) == 1:
        data, rows = pieces[0]
        return data.take(names, rows, pin)
    rows = sum(len(r) for _, r in pieces)
    out = {}
    for name in names:
        first = pieces[0][0].arrays(name)[0]
        out[name] = empty_batch((rows, *first.shape[1:]), first.dtype, pin)
        start = 0
        for data, picked in pieces:
            data.gather(name, picked, out[name].numpy()[start:start + len(picked)])
            start += len(picked)
    return out
