"""Arrow/Parquet shards of raw label encodings (Taskonomy's, or any dataset's), and their JSON manifest.

A dataset is a directory:

    manifest.json            fields (or Taskonomy domains), shapes, dtypes, counts per split and group, shards
    train-00000.arrow ...    one row per sample: its meta columns (Taskonomy: building, point, view,
                             split, field_of_view_rads; others: split, the group column and free
                             meta) and one fixed_size_list column per field (the raw values)

A manifest that declares `fields` (`data.fields.Field`) describes itself, with a `group` column
(what no two splits share: a building, a person) and `meta` columns; one that does not (every
Taskonomy or synthetic dataset) holds Taskonomy domains, read as the Taskonomy preset of fields.

Shards hold one record batch each, uncompressed Arrow IPC by default so that they memory-map and
convert to numpy without a copy; Parquet (`format="parquet"`) is for Ray Data on shared storage.
A dataset is read from a local path or from any URI pyarrow.fs understands (s3://, gs://,
file://...): see `location`. Everything is first written into a hidden staging directory beside the target and renamed into
place at the end, so an interrupted write leaves no half-written dataset. The manifest is written
last: a directory without one is not a dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import NoReturn, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from raytaskaff import __version__
from raytaskaff.atomic import sync_folder
from raytaskaff.data.domains import DOMAINS, check_raw, domain
from raytaskaff.data.fields import Field, taskonomy_field
from raytaskaff.errors import DataError

T = TypeVar("T")

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
FORMATS = {"arrow": ".arrow", "parquet": ".parquet"}
SPLITS = ("train", "val", "test")
META_COLUMNS = {
    "building": pa.string(),
    "point": pa.int32(),
    "view": pa.int32(),
    "split": pa.string(),
    "field_of_view_rads": pa.float32(),
}


def is_uri(root: str | os.PathLike) -> bool:
    """Whether `root` names object storage or another pyarrow filesystem (s3://..., file://...)."""
    return "://" in str(root)


#: Seconds the first contact with storage behind a URI (a dataset's manifest, a result store) may
#: take before it is given up in one line: an unreachable bucket otherwise hangs for many minutes
#: in the storage client's own retries. RAYTASKAFF_STORAGE_TIMEOUT overrides it.
FIRST_CONTACT_S = 30.0


def first_contact(root: str | os.PathLike, what: Callable[[], T], timeout: float | None = None) -> T:
    """what() (the first read of storage at `root`), given up with a DataError when it does not
    return within `timeout` seconds. It runs in a daemon thread, so Ctrl-C and SIGTERM stay
    answered while the main thread waits."""
    if timeout is None:
        timeout = storage_timeout()
    done: dict = {}

    def attempt() -> None:
        try:
            done["value"] = what()
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            done["error"] = e

    worker = threading.Thread(target=attempt, name=f"{CONTACT} {root}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise DataError(f"{root}: the storage did not answer within {timeout:g} s (no network, or a wrong endpoint or "
                        "bucket; RAYTASKAFF_STORAGE_TIMEOUT sets the bound)")
    if "error" in done:
        raise done["error"]
    return done["value"]


CONTACT = "first contact with"


def exit_process(code: int) -> NoReturn:
    """End a command with `code`. Where a first contact was given up and its thread still waits
    inside the storage client's native code, the interpreter's teardown can crash under it (a
    segfault instead of `code`), so the streams are flushed and the process ends at once."""
    if any(t.name.startswith(CONTACT) and t.is_alive() for t in threading.enumerate()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def storage_timeout() -> float:
    """Seconds storage behind a URI may stay silent: RAYTASKAFF_STORAGE_TIMEOUT, else FIRST_CONTACT_S."""
    return float(os.environ.get("RAYTASKAFF_STORAGE_TIMEOUT") or FIRST_CONTACT_S)


def bounded(fs: pafs.FileSystem, timeout: float) -> pafs.FileSystem:
    """`fs` with its storage client's own retries cut. S3: three tries of a request, the policy
    S3FileSystem() defaults to (one from_uri makes retries some 30 times, about 100 s, when nobody
    answers), with the AWS SDK's connect (1 s) and stalled-request (3 s) timeouts: about 10 s in all.
    GCS: retries for at most `timeout` seconds (its default: 15 minutes). This matters after
    `first_contact` gives up: pyarrow waits for an S3 request still under way when the process exits,
    and Ctrl-C or SIGTERM wait with it. Other filesystems are returned as they are."""
    if isinstance(fs, pafs.S3FileSystem):
        options = fs.__reduce__()[1][0]  # what from_uri chose: endpoint, region, scheme, credentials
        return pafs.S3FileSystem(**options, retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3))
    if isinstance(fs, pafs.GcsFileSystem):
        options = fs.__reduce__()[1][0]
        return pafs.GcsFileSystem(**{**options, "retry_time_limit": timedelta(seconds=timeout)})
    return fs


def location(root: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(filesystem, base path) of a dataset: a local path (made absolute, trailing slash dropped)
    or a URI such as s3://bucket/taskonomy-256 (its client's waits `bounded`)."""
    if is_uri(root):
        try:
            fs, base = pafs.FileSystem.from_uri(str(root))
        except (pa.ArrowException, ValueError, OSError) as e:
            raise DataError(f"{root}: not a readable dataset location ({str(e).splitlines()[0]})") from None
        return bounded(fs, storage_timeout()), base.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(root)


def join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


@dataclass(frozen=True)
class ShardInfo:
    file: str
    split: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a dataset directory holds; `Manifest.load` checks it before anything is read.

    size: H = W of every array. domains: name -> {"dtype", "shape": [H, W, C]}.
    splits: split -> {"count": n, "buildings": {building: n}} ("groups": {group value: n} when declared).
    stats: domain -> {"mean": [per channel], "std": [...]}, raw values of the train split over
    valid pixels (class maps excluded), for normalising domains that Taskonomy has no constants for.
    fields: name -> `Field.to_dict()` when the dataset declares its fields (else {}: Taskonomy
    domains); group: the column no two splits share; meta: its other meta columns {name: Arrow type}.
    """

    size: int
    format: str
    domains: dict
    splits: dict
    shards: tuple[ShardInfo, ...]
    producer: dict
    stats: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    fields: dict = field(default_factory=dict)
    group: str = "building"
    meta: dict = field(default_factory=dict)

    @property
    def declared(self) -> bool:
        """Whether the manifest declares its fields (else its domains are Taskonomy's)."""
        return bool(self.fields)

    def field(self, name: str) -> Field:
        """The field called `name` (a Taskonomy domain's preset when nothing is declared)."""
        if self.declared:
            if name not in self.fields:
                raise DataError(f"dataset has no field {name!r} (has: {', '.join(self.fields)})")
            return Field.from_dict(name, self.fields[name])
        return taskonomy_field(name, self.size)

    def all_fields(self) -> dict[str, Field]:
        return {name: self.field(name) for name in self.domains}

    @property
    def meta_columns(self) -> dict[str, pa.DataType]:
        """The meta columns of every shard, in order."""
        if not self.declared:
            return dict(META_COLUMNS)
        return {"split": pa.string(), self.group: pa.string(), **{k: pa.type_for_alias(v) for k, v in self.meta.items()}}

    def shards_of(self, split: str) -> tuple[ShardInfo, ...]:
        if split not in self.splits:
            raise DataError(f"dataset has no split {split!r} (has: {', '.join(self.splits)})")
        return tuple(s for s in self.shards if s.split == split)

    def shape(self, name: str) -> tuple[int, int, int]:
        return tuple(self.domains[name]["shape"])

    def shard_rows(self, split: str) -> tuple[int, ...]:
        return tuple(s.rows for s in self.shards_of(split))

    @property
    def fingerprint(self) -> str:
        """What identifies the dataset's content: a hash of every shard's checksum, split and row
        count, the shapes, the producer and the format version. Not its path or file names, so the
        same data moved or copied keeps its fingerprint, and data converted anew changes it."""
        content = {
            "format_version": self.format_version, "size": self.size, "domains": self.domains, "producer": self.producer,
            "shards": sorted((s.split, s.rows, s.sha256) for s in self.shards),
        }
        if self.declared:  # what a Taskonomy manifest leaves implicit (its fingerprint stays as it was)
            content.update(fields=self.fields, group=self.group, meta=self.meta)
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]

    def to_json(self) -> str:
        data = asdict(self)
        data["shards"] = [asdict(s) for s in self.shards]
        if not self.declared:  # a Taskonomy manifest reads as it always did
            for key in ("fields", "group", "meta"):
                del data[key]
        return json.dumps(data, indent=1)

    @classmethod
    def load(cls, root: str | os.PathLike) -> Manifest:
        if is_uri(root):  # storage that does not answer is given up within a bound
            return first_contact(root, lambda: cls._load(root))
        return cls._load(root)

    @classmethod
    def _load(cls, root: str | os.PathLike) -> Manifest:
        fs, base = location(root)
        path = join(base, MANIFEST)
        try:
            with fs.open_input_stream(path) as f:
                text = f.read().decode()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise DataError(f"{root}: no {MANIFEST} (not a dataset, or its writing was interrupted)") from None
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{root}: cannot read {MANIFEST} ({str(e).splitlines()[0]})") from None
        try:
            data = json.loads(text)
            shards = tuple(ShardInfo(**s) for s in data.pop("shards"))
            manifest = cls(shards=shards, **data)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise DataError(f"{path}: malformed manifest ({type(e).__name__}: {e})") from None
        manifest._check(path)
        return manifest

    def _check(self, path: str) -> None:
        if self.format_version != FORMAT_VERSION:
            raise DataError(f"{path}: format_version {self.format_version}, this reader knows {FORMAT_VERSION}")
        if self.format not in FORMATS:
            raise DataError(f"{path}: unknown format {self.format!r}")
        if self.declared:
            if set(self.fields) != set(self.domains):
                raise DataError(f"{path}: fields {sorted(self.fields)} and domains {sorted(self.domains)} differ")
            if self.group in self.meta or self.group == "split":
                raise DataError(f"{path}: the group column {self.group!r} is also a meta column")
        for name, info in self.domains.items():
            try:
                spec = self.field(name)
            except DataError as e:
                raise DataError(f"{path}: {e}") from None
            if info.get("dtype") != spec.dtype or list(info.get("shape", ())) != list(spec.shape):
                raise DataError(f"{path}: domain {name} is {info}, expected {spec.dtype} {list(spec.shape)}")
            if spec.dense and spec.shape[:2] != (self.size, self.size):
                raise DataError(f"{path}: field {name} is {list(spec.shape)}, not {self.size} px")
        for split, info in self.splits.items():
            rows = sum(s.rows for s in self.shards if s.split == split)
            if rows != info.get("count"):
                raise DataError(f"{path}: split {split} counts {info.get('count')} rows but its shards hold {rows}")


def schema(size: int, domains: list[str]) -> pa.Schema:
    """The shard schema of Taskonomy domains at `size` px."""
    fields = [pa.field(name, kind) for name, kind in META_COLUMNS.items()]
    for name in domains:
        spec = domain(name)
        fields.append(pa.field(name, pa.list_(pa.from_numpy_dtype(spec.np_dtype), size * size * spec.channels)))
    return pa.schema(fields)


def field_column(spec: Field) -> pa.Field:
    """The Arrow column of a declared field: its raw values flattened, its shape in the column's
    metadata, so that a table read on its own (from the object store) says how to reshape it."""
    kind = pa.list_(pa.from_numpy_dtype(spec.np_dtype), spec.entries)
    return pa.field(spec.name, kind, metadata={b"shape": ",".join(map(str, spec.shape)).encode()})


def manifest_schema(manifest: Manifest) -> pa.Schema:
    """The schema every shard of `manifest` has."""
    if not manifest.declared:
        return schema(manifest.size, list(manifest.domains))
    columns = [pa.field(name, kind) for name, kind in manifest.meta_columns.items()]
    return pa.schema(columns + [field_column(manifest.field(name)) for name in manifest.domains])


def _sha256(path: str | Path, fs: pafs.FileSystem | None = None) -> str:
    digest = hashlib.sha256()
    with (open(path, "rb") if fs is None else fs.open_input_stream(str(path))) as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class _Stats:
    """Per-channel running mean and standard deviation of raw values over valid pixels."""

    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] = {}

    def add(self, name: str, batch: np.ndarray, valid: np.ndarray | None) -> None:
        x = batch.reshape(-1, batch.shape[-1]).astype(np.float64)
        if valid is not None:
            x = x[valid.reshape(-1)]
        acc = np.stack([np.full(x.shape[1], len(x), dtype=np.float64), x.sum(0), (x * x).sum(0)])
        self.sums[name] = self.sums.get(name, 0) + acc

    def result(self) -> dict:
        out = {}
        for name, (n, s, ss) in self.sums.items():
            n = np.maximum(n, 1)
            mean = s / n
            out[name] = {"mean": mean.round(6).tolist(), "std": np.sqrt(np.maximum(ss / n - mean**2, 0)).round(6).tolist()}
        return out


class ShardWriter:
    """Collects samples and writes them as shards plus a manifest, atomically.

        with ShardWriter(out, size=64, domains=["rgb", "depth_zbuffer"]) as w:      # Taskonomy domains
            w.add("train", "bldg", point=0, view=0, fov=1.0, arrays={"rgb": ..., "depth_zbuffer": ...})

        with ShardWriter(out, size=64, fields=[Field("rgb", "image", ...), ...],   # declared fields
                         group="identity", meta={"image": "string"}) as w:
            w.add_sample("train", "2880", arrays={"rgb": ..., "attributes": ...}, meta={"image": "000001.jpg"})

    On a clean exit the dataset appears at `out` in one rename; on an exception nothing appears.
    An existing dataset at `out` is replaced only with overwrite=True.
    """

    def __init__(self, out: str | os.PathLike, size: int, domains: list[str] | None = None, *, format: str = "arrow",
                 rows_per_shard: int = 1024, producer: dict | None = None, overwrite: bool = False,
                 fields: list[Field] | None = None, group: str = "building", meta: dict[str, str] | None = None) -> None:
        if format not in FORMATS:
            raise DataError(f"unknown shard format {format!r} (known: {', '.join(FORMATS)})")
        if not domains and not fields:
            raise DataError("a dataset needs at least one domain")
        self.out = Path(out)
        if self.out.exists() and any(self.out.iterdir()) and not overwrite:
            raise DataError(f"{self.out}: exists and is not empty (use --overwrite to replace it)")
        self.size, self.format, self.rows_per_shard = size, format, rows_per_shard
        self.declared = {f.name: f for f in fields or ()}
        if len(self.declared) != len(fields or ()):
            raise DataError("field names must be distinct")
        for spec in self.declared.values():
            if spec.dense and spec.shape[:2] != (size, size):
                raise DataError(f"field {spec.name}: shape {list(spec.shape)}, not {size} px")
        self.group, self.meta = group, dict(meta or {})
        self.domains = list(self.declared) if fields else [domain(d).name for d in domains]
        self.meta_columns = ({"split": pa.string(), group: pa.string(), **{k: pa.type_for_alias(v) for k, v in self.meta.items()}}
                             if fields else dict(META_COLUMNS))
        self.schema = (pa.schema([pa.field(k, t) for k, t in self.meta_columns.items()] + [field_column(f) for f in fields])
                       if fields else schema(size, self.domains))
        self.producer = {"name": "raytaskaff", "version": __version__, **(producer or {})}
        self.overwrite = overwrite
        self.staging = self.out.parent / f".{self.out.name}.partial-{uuid.uuid4().hex[:8]}"
        self.staging.mkdir(parents=True)
        self.pending: dict[str, list[dict]] = defaultdict(list)
        self.shards: list[ShardInfo] = []
        self.counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
        self.stats = _Stats()

    def add(self, split: str, building: str, point: int, view: int, fov: float, arrays: dict[str, np.ndarray]) -> None:
        """One Taskonomy view."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
        missing = set(self.domains) - set(arrays)
        if missing:
            raise DataError(f"{building} point {point} view {view}: missing domains {sorted(missing)}")
        for name in self.domains:
            check_raw(name, arrays[name], self.size)
        row = {"building": building, "point": point, "view": view, "split": split, "field_of_view_rads": fov}
        self._append(split, building, row, arrays)

    def add_sample(self, split: str, group: str, arrays: dict[str, np.ndarray], meta: dict | None = None) -> None:
        """One sample of a dataset of declared fields: `group` its group column's value, `meta`
        its other meta columns."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
        meta = dict(meta or {})
        if set(meta) != set(self.meta):
            raise DataError(f"sample of group {group}: meta columns {sorted(meta)}, expected {sorted(self.meta)}")
        missing = set(self.domains) - set(arrays)
        if missing:
            raise DataError(f"sample of group {group}: missing fields {sorted(missing)}")
        for name in self.domains:
            self.declared[name].check(arrays[name])
        self._append(split, str(group), {"split": split, self.group: str(group), **meta}, arrays)

    def _append(self, split: str, group: str, row: dict, arrays: dict[str, np.ndarray]) -> None:
        row.update({name: arrays[name] for name in self.domains})
        self.pending[split].append(row)
        counts = self.counts[split]
        counts[group] = counts.get(group, 0) + 1
        if len(self.pending[split]) >= self.rows_per_shard:
            self._flush(split)

    def _flush(self, split: str) -> None:
        rows, self.pending[split] = self.pending[split], []
        if not rows:
            return
        columns = [pa.array([r[name] for r in rows], type=kind) for name, kind in self.meta_columns.items()]
        for name in self.domains:
            stacked = np.stack([r[name] for r in rows])
            if split == "train":
                self._add_stats(name, stacked, rows)
            flat = pa.array(stacked.reshape(-1))
            columns.append(pa.FixedSizeListArray.from_arrays(flat, stacked[0].size))
        batch = pa.RecordBatch.from_arrays(columns, schema=self.schema)
        index = sum(s.split == split for s in self.shards)
        name = f"{split}-{index:05d}{FORMATS[self.format]}"
        path = self.staging / name
        if self.format == "arrow":
            with ipc.new_file(path, self.schema) as writer:
                writer.write_batch(batch)
        else:
            pq.write_table(pa.Table.from_batches([batch]), path, compression="zstd", row_group_size=len(rows))
        self.shards.append(ShardInfo(name, split, len(rows), path.stat().st_size, _sha256(path)))

    def _add_stats(self, name: str, stacked: np.ndarray, rows: list[dict]) -> None:
        if self.declared:
            spec = self.declared[name]
            if spec.kind in ("dense_regression", "dense_vector", "scalar", "image"):
                valid = None if spec.invalid is None else np.any(stacked != spec.invalid, axis=-1)
                self.stats.add(name, stacked, valid)
            return
        spec = DOMAINS[name]
        if spec.resize == "nearest":
            return
        valid = None
        if spec.invalid is not None:
            valid = np.any(stacked != spec.invalid, axis=-1)
        self.stats.add(name, stacked, valid)

    def close(self) -> Manifest:
        for split in SPLITS:
            self._flush(split)
        if self.declared:
            domains = {d: {"dtype": f.dtype, "shape": list(f.shape)} for d, f in self.declared.items()}
            described = {"fields": {d: f.to_dict() for d, f in self.declared.items()}, "group": self.group, "meta": self.meta}
        else:
            domains = {d: {"dtype": DOMAINS[d].dtype, "shape": [self.size, self.size, DOMAINS[d].channels]} for d in self.domains}
            described = {}
        manifest = Manifest(
            size=self.size,
            format=self.format,
            domains=domains,
            splits={s: {"count": sum(c.values()), ("groups" if self.declared else "buildings"): dict(sorted(c.items()))}
                    for s, c in self.counts.items()},
            shards=tuple(self.shards),
            producer=self.producer,
            stats=self.stats.result(),
            **described,
        )
        tmp = self.staging / (MANIFEST + ".tmp")
        tmp.write_text(manifest.to_json())
        os.replace(tmp, self.staging / MANIFEST)
        sync_folder(self.staging)  # every shard, the manifest and a converter's summary on disk before the rename
        self._commit()
        sync_folder(self.out.parent, files=False)
        self.manifest = manifest
        return manifest

    def _commit(self) -> None:
        old = None
        if self.out.exists():
            old = self.out.parent / f".{self.out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.out, old)
        try:
            os.replace(self.staging, self.out)
        except BaseException:  # interrupted between the two renames: the old dataset goes back
            if old is not None and not self.out.exists():
                os.replace(old, self.out)
            raise
        if old is not None:
            shutil.rmtree(old)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            try:
                self.close()
            except BaseException:  # a failure or an interruption (Ctrl-C, SIGTERM) while the last shards are written
                self.abort()
                raise
        else:
            self.abort()


def read_shard(root: str | os.PathLike, info: ShardInfo, manifest: Manifest, columns: list[str] | None = None,
               verify: bool = True) -> pa.Table:
    """Open one shard and check it against the manifest (size, columns and their types, rows).

    A local Arrow shard is memory-mapped (its pages are shared through the page cache, nothing is
    read until used); a shard behind a URI, or in Parquet, is read into memory.
    verify: also compare the file's SHA-256 with the manifest and check class ids (reads the whole
    file once: the driver does it once per dataset, see `data.verify`; trials do not).
    """
    fs, base = location(root)
    path = join(base, info.file)
    found = fs.get_file_info(path)
    if found.type != pafs.FileType.File:
        raise DataError(f"{path}: missing (listed in the manifest)")
    if found.size != info.bytes:
        raise DataError(f"{path}: {found.size} bytes, manifest says {info.bytes} (truncated or replaced)")
    remote = is_uri(root)
    if verify and _sha256(path, fs if remote else None) != info.sha256:
        raise DataError(f"{path}: checksum mismatch (corrupt or replaced)")
    try:
        if manifest.format == "arrow":
            source = fs.open_input_file(path) if remote else pa.memory_map(path, "r")
            table = ipc.open_file(source).read_all()
        else:
            table = pq.read_table(path, filesystem=fs, memory_map=not remote)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable {manifest.format} file ({str(e).splitlines()[0]})") from None
    expected = manifest_schema(manifest)
    for f in expected:
        if f.name not in table.column_names:
            raise DataError(f"{path}: missing column {f.name!r}")
        if table.schema.field(f.name).type != f.type:
            raise DataError(f"{path}: column {f.name!r} is {table.schema.field(f.name).type}, expected {f.type}")
    if table.num_rows != info.rows:
        raise DataError(f"{path}: {table.num_rows} rows, manifest says {info.rows}")
    if verify:
        _check_classes(path, table, manifest)
    return table.select(columns) if columns is not None else table


def _check_classes(path: str, table: pa.Table, manifest: Manifest) -> None:
    """Every class map's ids are below its class count (a label out of range would break the loss)."""
    for name in manifest.domains:
        classes = manifest.field(name).classes
        if classes is None or not table.num_rows or name not in table.column_names:
            continue
        values = pc.list_flatten(table.column(name))
        top = pc.max(values).as_py()
        if top is not None and top >= classes:
            first = pc.index(pc.greater_equal(values, classes), True).as_py()
            row = first // manifest.field(name).entries
            keys = (manifest.group, *manifest.meta) if manifest.declared else ("building", "point", "view")
            view = ", ".join(f"{k} {table.column(k)[row].as_py()}" for k in keys if k in table.column_names)
            raise DataError(f"{path}: {name} of row {row} ({view}) holds class id {values[first].as_py()}, out of range "
                            f"(ids are 0..{classes - 1})")
