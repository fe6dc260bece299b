"""Checking a dataset once, not once per trial.

Hashing every shard (and checking every class id) reads the whole dataset: seconds for the
embedded default, hours for Taskonomy at 256 px. The driver does it before a sweep and records
what it checked in a stamp, `CACHE/verified/<fingerprint>-<location hash>.json`, with each
shard's size and modification time. The next sweep over the same dataset at the same location
re-checks only shards whose size or time changed (replaced, truncated, re-converted). Trials
only check sizes, columns and row counts (`read_shard(verify=False)`).

CACHE is $RAYTASKAFF_CACHE, else ~/.cache/raytaskaff. A stamp is a cache: deleting it only costs
one more full check. A shard rewritten in place with the same size and modification time would
pass unchecked, which is why the stamp records the modification time in nanoseconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from raytaskaff.atomic import write_text
from raytaskaff.data.shards import Manifest, join, location, read_shard


def cache_dir() -> Path:
    """This node's cache (data checks, networks fetched from a remote store): RAYTASKAFF_CACHE, else ~/.cache/raytaskaff."""
    return Path(os.environ.get("RAYTASKAFF_CACHE") or Path.home() / ".cache" / "raytaskaff")


@dataclass(frozen=True)
class Verification:
    """What `verify_once` did: shards checksummed now, and shards trusted from the stamp."""

    checked: int
    trusted: int
    stamp: Path


def _stamp_path(manifest: Manifest, where: str) -> Path:
    place = hashlib.sha256(where.encode()).hexdigest()[:12]
    return cache_dir() / "verified" / f"{manifest.fingerprint}-{place}.json"


def _file_state(fs: pafs.FileSystem, path: str) -> list | None:
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File or info.mtime_ns is None:
        return None  # unknown times are never trusted
    return [info.size, info.mtime_ns]


def verify_once(root: str | os.PathLike, manifest: Manifest | None = None) -> Verification:
    """Checksum and check every shard of the dataset at `root` not already verified in this state.

    Raises `DataError` at the first bad shard (nothing is stamped for it); a stamp that cannot be
    written (a read-only home) only means the next sweep checks again.
    """
    manifest = manifest or Manifest.load(root)
    fs, base = location(root)
    where = str(root) if "://" in str(root) else base
    stamp = _stamp_path(manifest, where)
    try:
        known = json.loads(stamp.read_text()).get("shards", {})
    except (OSError, ValueError, AttributeError):
        known = {}
    state: dict[str, list] = {}
    checked = trusted = 0
    for info in manifest.shards:
        now = _file_state(fs, join(base, info.file))
        if now is not None and known.get(info.file) == now:
            trusted += 1
        else:
            read_shard(root, info, manifest, columns=[], verify=True)
            checked += 1
        if now is not None:
            state[info.file] = now
    if checked:
        _write_stamp(stamp, {"location": where, "fingerprint": manifest.fingerprint, "shards": state})
    return Verification(checked, trusted, stamp)


def _write_stamp(path: Path, content: dict) -> None:
    with contextlib.suppress(OSError):  # a stamp that cannot be written only costs a re-check next time
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(content, indent=1))
