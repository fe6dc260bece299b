"""The order in which a run sees the rows of a split: one function, used by every reader.

Paired seeds need the STL and MTL runs of a seed to see exactly the same sequence of rows, and a
reader that memory-maps shards, one that gets a table from Ray's object store and one that streams
shards from object storage must agree on it. So the order is computed here from the seed and the
shards' row counts alone, and every reader only fetches what it says:

- window 0 (the default): one seeded permutation of all rows of the split. Needs random access
  to any row (the object store, memory-mapped shards).
- window k >= 1: the shards in a seeded order, taken k at a time; the rows of each group of k
  shards in a seeded order. A streaming reader holds one group (plus its read-ahead) at a time.
- no shuffle: every row in shard order.

Each item of the order is (the shards of one group, the global row indices of that group in
the order they are seen). Global row i is row i of the split's shards concatenated in manifest
order.
"""

from __future__ import annotations

import numpy as np


def shard_offsets(shard_rows: list[int] | tuple[int, ...]) -> np.ndarray:
    """(shards + 1,) start of each shard in the global row index, then the total."""
    return np.concatenate([[0], np.cumsum(shard_rows, dtype=np.int64)]).astype(np.int64)


def row_order(shard_rows: list[int] | tuple[int, ...], *, shuffle: bool, seed: int = 0,
              window: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(shard indices, global rows)] of one pass over a split (see the module's docstring)."""
    offsets = shard_offsets(shard_rows)
    total = int(offsets[-1])
    shards = np.arange(len(shard_rows))
    if not shuffle:
        return [(np.array([s]), np.arange(offsets[s], offsets[s + 1])) for s in shards]
    rng = np.random.default_rng(seed)
    if window == 0:
        return [(shards, rng.permutation(total))]
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    shuffled = rng.permutation(shards)
    out = []
    for start in range(0, len(shuffled), window):
        group = shuffled[start:start + window]
        rows = np.concatenate([np.arange(offsets[s], offsets[s + 1]) for s in group])
        out.append((group, rng.permutation(rows)))
    return out


def flat_order(shard_rows: list[int] | tuple[int, ...], *, shuffle: bool, seed: int = 0, window: int = 0) -> np.ndarray:
    """The global rows of `row_order`, as one array."""
    parts = [rows for _, rows in row_order(shard_rows, shuffle=shuffle, seed=seed, window=window)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
