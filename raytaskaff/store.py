"""Run results and saved networks, by run key: the source of truth for what is done.

    STORE/runs/<key>/result.json    the RunResult plus where and how it ran (node, attempts)
    STORE/runs/<key>/model.pt       the selected network (weights_only format, models.save_model)

A run is done when its result.json exists and reads back with its own key. Every file is written
to a temporary name and moved into place, so a crash leaves either the old state or the new one.
STORE is a local directory or any URI pyarrow.fs understands (s3://bucket/path, gs://...). On a
remote store, networks and checkpoints are written to a local cache first and uploaded.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow.fs as pafs

from raytaskaff.errors import RaytaskaffError
from raytaskaff.settings import RunResult


class StoreError(RaytaskaffError):
    """The store cannot be read or written."""


#: What `ResultStore.check_writable` says of a store that takes no file (full or read-only).
NOT_WRITABLE = "the result store is not writable"


class ResultStore:
    def __init__(self, uri: str, cache: str | os.PathLike | None = None) -> None:
        self.uri = str(uri)
        if "://" in self.uri:
            self.fs, self.root = pafs.FileSystem.from_uri(self.uri)
            self.local = False
            self.cache = Path(cache or Path.home() / ".cache" / "raytaskaff")
        else:
            self.fs, self.root = pafs.LocalFileSystem(), str(Path(self.uri).resolve())
            self.uri = self.root  # absolute: Ray workers do not share the driver's working directory
            self.local = True
            self.cache = Path(self.root)
        try:
            self.fs.create_dir(f"{self.root}/runs", recursive=True)
        except OSError as e:
            raise StoreError(f"{self.uri}: cannot create the result store ({e})") from None

    def check_writable(self) -> None:
        """Write and delete a probe file: a read-only or full store fails here, before any training."""
        probe = f"{self.root}/runs/.write-probe-{uuid.uuid4().hex[:8]}"
        try:
            with self.fs.open_output_stream(probe) as f:
                f.write(b"probe")
            self.fs.delete_file(probe)
        except OSError as e:
            raise StoreError(f"{self.uri}: {NOT_WRITABLE} ({e})") from None

    def _path(self, key: str, name: str) -> str:
        return f"{self.root}/runs/{key}/{name}"

    def run_dir(self, key: str) -> Path:
        """A local directory for the run's checkpoint and network (the store itself when local)."""
        path = self.cache / "runs" / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_bytes(self, key: str, name: str, data: bytes) -> None:
        """Atomically write one file of a run."""
        final = self._path(key, name)
        tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            self.fs.create_dir(f"{self.root}/runs/{key}", recursive=True)
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, final)
        except OSError as e:
            try:
                self.fs.delete_file(tmp)  # a full store keeps no partial file
            except OSError:
                pass
            raise StoreError(f"{final}: cannot write ({e})") from None

    def save(self, key: str, result: RunResult, **extra) -> None:
        """Record a finished run: upload its network if the store is remote, then its result."""
        record = {"key": key, "result": result.to_dict(), **extra}
        if not self.local and result.model_path:
            with open(result.model_path, "rb") as f:
                self.write_bytes(key, "model.pt", f.read())
        self.write_bytes(key, "result.json", json.dumps(record, indent=1).encode())

    def record(self, key: str) -> dict | None:
        """The stored record of a run, or None when it has no complete result."""
        path = self._path(key, "result.json")
        try:
            with self.fs.open_input_stream(path) as f:
                data = json.loads(f.read())
        except (FileNotFoundError, OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("key") == key and "result" in data else None

    def has(self, key: str) -> bool:
        return self.record(key) is not None

    def find(self, key: str) -> RunResult | None:
        """The run's result (its network's path made local), or None when it has none."""
        data = self.record(key)
        if data is None:
            return None
        result = RunResult.from_dict(data["result"])
        if result.model_path is not None:
            result.model_path = self.model_path(key)
        return result

    def load(self, key: str) -> RunResult:
        result = self.find(key)
        if result is None:
            raise StoreError(f"{self._path(key, 'result.json')}: no complete result")
        return result

    def model_path(self, key: str) -> str:
        """A local path of the run's saved network (downloaded into the cache if remote)."""
        local = self.run_dir(key) / "model.pt"
        if not self.local and not local.exists():
            with self.fs.open_input_stream(self._path(key, "model.pt")) as src, open(local, "wb") as dst:
                dst.write(src.read())
        return str(local)
