"""How trials and scorer actors get the splits: the object store, memory-mapped shards, or a stream.

`share_splits` returns a `SharedData`, a small picklable handle that every trial and actor turns
into its splits with `open(split)`:

- "object_store": the driver puts each split's Arrow table in Ray's object store once; every
  trial on a node maps the same shared-memory buffers without a copy. Fastest for data that fits
  in a node's object store (the embedded default, one machine).
- "mmap": each trial memory-maps the Arrow shards itself, from a path every node sees (a local
  NVMe copy on each node, or a shared mount). Only the pages a trial touches are read, and the
  page cache is what several trials on a node share: nothing goes to the object store, and a
  trial's own memory is its batches. The default on clusters.
- "streaming": each trial reads the shards from object storage (s3://, any pyarrow.fs URI) a
  shuffle window at a time with a bounded read-ahead (`data.stream.StreamingSplit`).

All three yield the same batches for a seed (`data.order`), so paired seeds stay paired whichever
reader serves a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import ray

from raytaskaff.data.fields import Field
from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest, is_uri
from raytaskaff.data.stream import StreamingSplit

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SharedData:
    """Where the splits are and how to open them (see the module's docstring).

    root: the dataset's absolute path or URI; size: H = W of its views; shard_rows: {split: rows
    per shard}; refs: {split: object reference of its table} for "object_store"; fields: the
    manifest's declared fields ({name: plain dict}; empty for Taskonomy domains).
    """

    reader: str
    root: str
    size: int
    shard_rows: dict[str, tuple[int, ...]]
    window: int = 0
    readahead: int = 1
    refs: dict = field(default_factory=dict)
    fields: dict = field(default_factory=dict)

    def field_specs(self) -> dict:
        """{name: data.fields.Field} of a dataset that declares its fields, else {}."""
        return {name: Field.from_dict(name, spec) for name, spec in self.fields.items()}

    def open(self, split: str, domains: list[str] | None = None) -> SplitData | StreamingSplit:
        """The split as this process reads it (inside a trial or an actor); domains: the columns
        to expose (default: all)."""
        if self.reader == "object_store":
            return SplitData(ray.get(self.refs[split]), self.size, domains, shard_rows=self.shard_rows[split], window=self.window)
        if self.reader == "mmap":
            return SplitData.open(self.root, split, domains, verify=False, window=self.window)
        return StreamingSplit(self.root, split, domains, window=self.window, readahead=self.readahead)


def share_splits(root: str | os.PathLike, reader: str, manifest: Manifest | None = None, *, window: int = 0,
                 readahead: int = 1, local: dict[str, SplitData] | None = None, splits: tuple[str, ...] = SPLITS) -> SharedData:
    """A handle on the dataset at `root` for trials to open (nothing is read for "mmap" and
    "streaming"; "object_store" puts each split once, from `local` when the driver has it open)."""
    manifest = manifest or Manifest.load(root)
    where = str(root) if is_uri(root) else os.path.abspath(root)
    rows = {s: manifest.shard_rows(s) for s in splits}
    refs = {}
    if reader == "object_store":
        refs = {s: put_split(local[s] if local and s in local else SplitData.open(root, s, verify=False)) for s in splits}
    elif reader not in ("mmap", "streaming"):
        raise ValueError(f"unknown reader {reader!r} (known: object_store, mmap, streaming)")
    return SharedData(reader, where, manifest.size, rows, window, readahead, refs, dict(manifest.fields))


def put_split(data: SplitData) -> ray.ObjectRef:
    """Put the split's Arrow table in the object store (once; share the reference)."""
    return ray.put(data.table)
