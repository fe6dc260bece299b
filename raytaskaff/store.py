"""Run results and saved networks, by run key: the source of truth for what is done.

    STORE/runs/<key>/result.json    the RunResult plus where and how it ran (node, attempts) and
                                    the size and SHA-256 of the run's files
    STORE/runs/<key>/model.pt       the selected network (weights_only format, models.save_model)
    STORE/runs/<key>/checkpoint.pt  on a remote store, the last epoch's checkpoint of a run in training
    STORE/runs/<key>/attempt-N      one empty file per attempt at training the run (`claim_attempt`;
                                    on a remote store attempts/<time>-<id>)
    STORE/.sweep.lock               a local store's one-writer lock (`WriterLock`), as OUT/.sweep.lock

A run is done when its result.json exists and reads back with its own key. Every file is written
to a temporary name and moved into place, so a crash leaves either the old state or the new one.
STORE is a local directory or any URI pyarrow.fs understands (s3://bucket/path, gs://...). On a
remote store, networks and checkpoints are written to a local cache first and uploaded (a
checkpoint after every epoch, so that a trial retried on another node resumes there); a found
run names its network by its place in the store, and whoever reads it (a scorer actor on any
node) fetches it by key into its own node's cache (`local_model`), checked against its record.

Reading is retried on transient errors (READ_RETRIES, waits doubling from RETRY_WAIT); a store that
stays unreadable is a StoreError, never "not done". A result.json that does not parse counts as not
done (the run is trained again and the file replaced) and is named in a warning.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
import uuid
import warnings
from pathlib import Path

import pyarrow.fs as pafs

from raytaskaff.atomic import atomic_path, claim_next, write_bytes
from raytaskaff.data.shards import bounded, first_contact, storage_timeout
from raytaskaff.data.verify import cache_dir
from raytaskaff.errors import DataError, RaytaskaffError
from raytaskaff.settings import RunResult

#: Tries after a transient read error, and the first wait between them (doubling).
READ_RETRIES = 3
RETRY_WAIT = 0.5


class StoreError(RaytaskaffError):
    """The store cannot be read or written."""


#: What `ResultStore.check_writable` says of a store that takes no file (full or read-only).
NOT_WRITABLE = "the result store is not writable"


def digest(path: str | os.PathLike) -> dict:
    """{size, sha256} of a local file."""
    stat = os.stat(path)
    return dict(_digest(str(path), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=512)
def _digest(path: str, size: int, mtime_ns: int) -> tuple:  # a file read again unchanged is not hashed again
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return (("size", size), ("sha256", h.hexdigest()))


def _reach(uri: str) -> tuple[pafs.FileSystem, str]:
    fs, root = pafs.FileSystem.from_uri(uri)
    fs = bounded(fs, storage_timeout())  # the client's own retries cut, so that it does not outlive the bound
    fs.get_file_info(root)  # the first request: an unreachable store hangs here
    return fs, root


def local_model(path: str) -> str:
    """A local path of the network a found run names: the path itself when local, else (a URI into
    a remote store, STORE/runs/KEY/model.pt) the network fetched by key into this node's cache."""
    if "://" not in str(path):
        return str(path)
    store, _, rest = str(path).rpartition("/runs/")
    return ResultStore(store).model_path(rest.split("/")[0])


class ResultStore:
    def __init__(self, uri: str, cache: str | os.PathLike | None = None) -> None:
        self.uri = str(uri)
        if "://" in self.uri:
            try:  # storage that does not answer is given up within a bound
                self.fs, self.root = first_contact(self.uri, lambda: _reach(self.uri))
            except DataError as e:
                raise StoreError(str(e)) from None
            self.local = False
            self.cache = Path(cache or cache_dir())
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
        """Write a probe: a read-only or full store fails here, before any training. A local store
        is probed with a file that has no name (`probe_folder`); a remote one with a probe object,
        deleted whether or not it could be written."""
        if self.local:
            try:
                probe_folder(Path(self.root) / "runs")
            except OSError as e:
                raise StoreError(f"{self.uri}: {NOT_WRITABLE} ({e.strerror or e})") from None
            return
        probe = f"{self.root}/runs/.write-probe-{uuid.uuid4().hex[:8]}"
        try:
            with self.fs.open_output_stream(probe) as f:
                f.write(b"probe")
        except OSError as e:
            raise StoreError(f"{self.uri}: {NOT_WRITABLE} ({e})") from None
        finally:
            with contextlib.suppress(OSError):
                self.fs.delete_file(probe)

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
            self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
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
        """Record a finished run: upload its network if the store is remote, then its result, which
        holds the network's size and SHA-256."""
        files = {}
        if result.model_path:
            files["model.pt"] = digest(result.model_path)
            if not self.local:
                with open(result.model_path, "rb") as f:
                    self.write_bytes(key, "model.pt", f.read())
        record = {"key": key, "result": result.to_dict(), "files": files, **extra}
        self.write_bytes(key, "result.json", json.dumps(record, indent=1).encode())

    def _read(self, path: str) -> bytes | None:
        """A file's bytes, None when it does not exist; transient errors are retried."""
        for attempt in range(READ_RETRIES + 1):
            try:
                with self.fs.open_input_stream(path) as f:
                    return f.read()
            except FileNotFoundError:
                return None
            except OSError as e:
                try:
                    if self.fs.get_file_info(path).type == pafs.FileType.NotFound:
                        return None
                except OSError:
                    pass
                if attempt == READ_RETRIES:
                    raise StoreError(f"{path}: not readable after {READ_RETRIES + 1} tries ({str(e).splitlines()[0]})") from None
                time.sleep(RETRY_WAIT * 2**attempt)
        return None

    def record(self, key: str) -> dict | None:
        """The stored record of a run, or None when it has no complete result."""
        path = self._path(key, "result.json")
        raw = self._read(path)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError as e:
            warnings.warn(f"{path}: not valid JSON ({e}): the run counts as not done and is trained again", stacklevel=2)
            return None
        return data if isinstance(data, dict) and data.get("key") == key and "result" in data else None

    def has(self, key: str) -> bool:
        return self.record(key) is not None

    def find(self, key: str) -> RunResult | None:
        """The run's result (its network's path made local), or None when it has none."""
        data = self.record(key)
        return None if data is None else self.result_of(key, data)

    def result_of(self, key: str, record: dict) -> RunResult:
        """The result in run `key`'s stored record (`record`), its network's path made local."""
        result = RunResult.from_dict(record["result"])
        if result.model_path is not None:  # where it is read, `local_model` makes it a local file
            result.model_path = self.model_path(key) if self.local else f"{self.uri.rstrip('/')}/runs/{key}/model.pt"
        return result

    def claim_attempt(self, key: str) -> int:
        """This attempt's number at training the run (1 for the first), counted in the store itself
        so that a trial retried on another node counts on. On a file system each number is claimed
        exclusively, also between sweeps training one key at once. Object storage has no exclusive
        create: each attempt writes a marker of its own and counts the markers it then sees, exact
        for attempts one after another (retries), while two attempts at one instant may count the
        same number."""
        if self.local:
            folder = Path(self.root) / "runs" / key
            legacy = folder / "attempts"  # the count file of stores written before attempts were claimed
            text = legacy.read_text().strip() if legacy.exists() else ""
            return claim_next(folder, "attempt", start=int(text) + 1 if text.isdigit() else 1)
        self.write_bytes(key, f"attempts/{uuid.uuid4().hex}", b"")
        try:
            found = self.fs.get_file_info(pafs.FileSelector(self._path(key, "attempts")))
        except OSError as e:
            raise StoreError(f"{self._path(key, 'attempts')}: cannot list ({e})") from None
        return sum(".tmp-" not in f.base_name for f in found)

    def push_checkpoint(self, key: str) -> None:
        """Upload the run's local checkpoint to a remote store (a local store holds it already)."""
        local = self.run_dir(key) / "checkpoint.pt"
        if not self.local and local.exists():
            self.write_bytes(key, "checkpoint.pt", local.read_bytes())

    def pull_checkpoint(self, key: str) -> None:
        """Bring a remote store's checkpoint of the run into this node's cache, where training
        resumes from it (it is the latest: every epoch of every attempt uploads its own)."""
        if self.local:
            return
        data = self._read(self._path(key, "checkpoint.pt"))
        if data is not None:
            write_bytes(self.run_dir(key) / "checkpoint.pt", data)

    def drop_checkpoint(self, key: str) -> None:
        """Remove the run's checkpoint, here and in a remote store, once its result is stored."""
        (self.run_dir(key) / "checkpoint.pt").unlink(missing_ok=True)
        if not self.local:
            try:
                self.fs.delete_file(self._path(key, "checkpoint.pt"))
            except FileNotFoundError:
                pass
            except OSError as e:
                if self.fs.get_file_info(self._path(key, "checkpoint.pt")).type != pafs.FileType.NotFound:
                    raise StoreError(f"{self._path(key, 'checkpoint.pt')}: cannot delete ({e})") from None

    def model_path(self, key: str) -> str:
        """A local path of the run's saved network, checked against the size and SHA-256 in its
        record: on a remote store fetched into this node's cache (atomically) unless a checked copy
        is there. A missing or damaged network is a StoreError."""
        expected = ((self.record(key) or {}).get("files") or {}).get("model.pt")
        local = self.run_dir(key) / "model.pt"
        if self.local:
            if not local.exists():
                raise StoreError(f"{local}: the run's network is missing (is the store folder shared by every node?)")
            self._check(local, expected, self._path(key, "model.pt"))
            return str(local)
        if local.exists() and (expected is None or digest(local) == expected):
            return str(local)
        source = self._path(key, "model.pt")
        with atomic_path(local) as tmp:
            data = self._read(source)
            if data is None:
                raise StoreError(f"{self.uri}/runs/{key}/model.pt: the run's network is missing from the store")
            tmp.write_bytes(data)
            self._check(tmp, expected, f"{self.uri}/runs/{key}/model.pt")
        return str(local)

    @staticmethod
    def _check(path: Path, expected: dict | None, name: str) -> None:
        if expected is None:  # a record written before files were recorded
            return
        found = digest(path)
        if found["size"] != expected["size"]:
            raise StoreError(f"{name}: {found['size']} bytes where its record says {expected['size']}: the network is damaged")
        if found["sha256"] != expected["sha256"]:
            raise StoreError(f"{name}: its SHA-256 differs from its record's: the network is damaged")


def probe_folder(folder: str | os.PathLike, size: int = 4096) -> None:
    """Write `size` bytes into `folder` and push them to disk, in a file that never has a name
    (O_TMPFILE; elsewhere a file removed as soon as it is made): a read-only or full file system
    raises OSError here, and whatever happens no file is left behind."""
    import tempfile

    with tempfile.TemporaryFile(dir=folder) as f:
        f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())


#: The lock file of an output folder or a local store, held by the one sweep writing into it.
LOCK_NAME = ".sweep.lock"


class InUse(StoreError):
    """Another sweep holds the output folder or the store."""


class WriterLock:
    """The one-writer lock of a folder (an output folder, a local store): an exclusive
    `fcntl.flock` on FOLDER/.sweep.lock, which says who holds it (host, pid, start time, sweep).
    The kernel drops the lock when its holder exits in any way (SIGKILL included), so a killed
    sweep leaves nothing stuck (its file stays, unlocked, and the next sweep takes it); a sweep that
    ends removes its file, and the folders it made if they are still empty. A second sweep is
    refused in one line naming the first. Holds on local file systems and NFS v4 (flock as a
    byte-range lock); object storage (s3://, gs://) has no lock, and a store there is not locked.

    Taking the lock also proves the folder writable (`probe_folder`): a read-only or full one
    is a StoreError before anything else is written."""

    def __init__(self, folder: str | os.PathLike, what: str, sweep: str = "") -> None:
        self.folder, self.what, self.sweep = Path(folder).resolve(), what, sweep
        self._fd: int | None = None
        self._made: list[Path] = []

    def acquire(self) -> None:
        import datetime
        import fcntl
        import socket

        self._made = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        path = self.folder / LOCK_NAME
        while True:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise StoreError(f"{self.folder}: cannot write the {self.what} ({e.strerror or e})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise InUse(f"{self.folder}: the {self.what} is in use by {holder}: wait for it to end, stop it, or "
                            "give this sweep another output folder (--out) or store") from None
            except OSError as e:  # a file system without locks
                os.close(fd)
                raise StoreError(f"{self.folder}: cannot lock the {self.what} ({e.strerror or e})") from None
            try:  # the holder before may have removed the file between our open and our lock: lock the new one
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": started, "sweep": self.sweep})
        try:
            probe_folder(self.folder)
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode() + b"\n", 0)
        except OSError as e:
            self._fd = fd
            self.release()
            raise StoreError(f"{self.folder}: cannot write the {self.what} ({e.strerror or e})") from None
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file, then drop the lock (closing its file), then remove the folders
        `acquire` made that are still empty."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            (self.folder / LOCK_NAME).unlink()
        os.close(self._fd)
        self._fd = None
        for folder in self._made:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def written_folders(out: str | os.PathLike, storage: str | None) -> list[tuple[Path, str]]:
    """The folders a sweep writes, each locked while it runs (`WriterLock`): the output folder
    and a local store (OUT/store, or `storage`, which another sweep's `storage` may name too;
    object storage has no lock)."""
    out = Path(out).resolve()
    if storage and "://" in storage:
        return [(out, "output folder")]
    return [(out, "output folder"), (Path(storage).resolve() if storage else out / "store", "result store")]


def _holder(fd: int) -> str:
    """Who holds a lock, in words, from its file: `the sweep NAME started TIME on HOST (pid N)`."""
    try:
        found = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        found = {}
    if not isinstance(found, dict) or "pid" not in found:
        return "another sweep (it has not yet said which)"
    name = f"the sweep {found['sweep']}" if found.get("sweep") else "a sweep"
    return f"{name} started {found.get('started', '?')} on {found.get('host', '?')} (pid {found['pid']})"
