"""Run results and saved networks, by run key: the source of truth for what is done.

    STORE/runs/<key>/result.json    the RunResult plus where and how it ran (node, attempts) and
                                    the size and SHA-256 of the run's files
    STORE/runs/<key>/model.pt       the selected network (weights_only format, models.save_model)
    STORE/runs/<key>/checkpoint.pt  on a remote store, the last epoch's checkpoint of a run in training
    STORE/runs/<key>/attempt-N      one empty file per attempt at training the run (`claim_attempt`;
                                    on a remote store attempts/<time>-<id>)
    STORE/runs/<key>/result.lock    a local store's lock of the run's network and record while
                                    they are replaced (two writers of one key)
    STORE/.sweep.lock               a local store's one-writer lock (`WriterLock`), as OUT/.sweep.lock

A run is done when its result.json exists (`has`: one stat, or one HEAD on object storage, nothing
parsed; `stored`: the keys of many runs from one listing). Every file is written to a temporary
name, synced and moved into place (`atomic`), so a crash leaves either the old state or the new
one, and a disk error is a StoreError with the old file kept. STORE is a local directory or any
URI pyarrow.fs understands (s3://bucket/path, gs://...). On a remote store, networks and
checkpoints are written to a local cache first and uploaded (a checkpoint after every epoch, so
that a trial retried on another node resumes there); a found run names its network by its place
in the store, and whoever reads it (a scorer actor on any node) fetches it by key into its own
node's cache (`local_model`, one store opened per process), checked against its record there.

A network and its record are one unit: the trainer saves the network under a name of its own
(`staged_network`); `save` takes the digest of those bytes, moves them into place as model.pt and
then writes result.json, on a local store under the run's lock, so that two writers of one key
(two sweeps on one store, a zombie trial beside its retry) leave a network and a record that match
whichever wins. Object storage has no lock: there the last upload of each file wins, and a pair
from two writers at one instant is reported as damaged when read.

A record is read once per stage: `find` (and `result_of` given the record a stage has read)
checks the network against that record without reading it again. Reading is retried on transient
errors (READ_RETRIES, waits doubling from RETRY_WAIT); a store that stays unreadable is a
StoreError, never "not done". A result.json that cannot be used (not JSON, another run's record)
is set aside as result.json.damaged-<id> when read and named in a warning: the run counts as not
done, and the next sweep trains it again.
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

from raytaskaff.atomic import OutputError, atomic_path, claim_next, write_bytes
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


def staged_network(folder: str | os.PathLike) -> Path:
    """A name of its own in run folder `folder` (`ResultStore.run_dir`) for the network a trainer
    is about to save: `ResultStore.save` moves it into place as model.pt, with its record."""
    return Path(folder) / f"model.pt.tmp-{uuid.uuid4().hex}"


#: The stores `local_model` opened in this process, by (URI, cache folder): one first contact each.
_OPENED: dict[tuple[str, str], ResultStore] = {}


def local_model(path: str) -> str:
    """A local path of the network a found run names: the path itself when local, else (a URI into
    a remote store, STORE/runs/KEY/model.pt) the network fetched by key into this node's cache,
    through one store per process and cache (not one per network)."""
    if "://" not in str(path):
        return str(path)
    uri, _, rest = str(path).rpartition("/runs/")
    place = (uri, str(cache_dir()))
    if place not in _OPENED:
        _OPENED[place] = ResultStore(uri)
    return _OPENED[place].model_path(rest.split("/")[0])


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
        """Atomically write one file of a run; on a local store durably (`atomic.write_bytes`)."""
        final = self._path(key, name)
        if self.local:
            try:
                Path(final).parent.mkdir(parents=True, exist_ok=True)
                write_bytes(final, data)
            except OutputError as e:
                raise StoreError(str(e)) from None
            except OSError as e:
                raise StoreError(f"{final}: cannot write ({e.strerror or e})") from None
            return
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
        """Record a finished run: its network (`result.model_path`, best saved under a name of its
        own, `staged_network`) moved or uploaded into place as model.pt, then its result, which
        holds the size and SHA-256 of the network's bytes as written. On a local store both under
        the run's lock: two writers of one key leave a matching pair, whichever wins."""
        with self._locked(key):
            files, kept = {}, None
            if result.model_path:
                files["model.pt"], kept = self._place_network(key, Path(result.model_path))
            record = {"key": key, "result": result.to_dict(), "files": files, **extra}
            try:
                self.write_bytes(key, "result.json", json.dumps(record, indent=1).encode())
            except BaseException:
                if kept is not None:  # the record stays as it was: so does its network
                    os.replace(kept, self.run_dir(key) / "model.pt")
                raise
            if kept is not None:
                kept.unlink(missing_ok=True)

    def _place_network(self, key: str, source: Path) -> tuple[dict, Path | None]:
        """Put the network at `source` in place as the run's model.pt: its {size, sha256}, taken
        from the bytes that are put there (a staged file is this writer's own: no other writer
        can change it between the digest and the rename), and on a local store the network it
        replaced, kept under a name of its own (a hard link) until the record is written."""
        final = self.run_dir(key) / "model.pt"
        staged = source.name.startswith("model.pt.tmp-") and source.parent == final.parent
        if self.local and staged:
            found = digest(source)
            kept = staged_network(final.parent)
            try:
                os.link(final, kept)
            except OSError:  # none before (or no hard links here): nothing to put back
                kept = None
            try:
                os.replace(source, final)
            except OSError as e:
                if kept is not None:
                    kept.unlink(missing_ok=True)
                raise StoreError(f"{final}: cannot write ({e.strerror or e})") from None
            return found, kept
        if self.local and source.resolve() == final.resolve():  # saved in place (by hand, or by an older trainer)
            return digest(final), None
        data = source.read_bytes()  # a remote store's upload (or a network saved elsewhere): the bytes hashed are the bytes sent
        found = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        self.write_bytes(key, "model.pt", data)
        if staged:  # on a remote store: this node's cached copy, as a later `model_path` here would fetch it
            os.replace(source, final)
        return found, None

    @contextlib.contextmanager
    def _locked(self, key: str, shared: bool = False):
        """A lock of run `key`'s network and record (STORE/runs/KEY/result.lock) on a local store:
        exclusive to replace them, `shared` to read them as one pair. A reader finds no lock file
        where no network was ever saved, and reads unlocked; object storage has no lock (see the
        module's docstring)."""
        if not self.local:
            yield
            return
        import fcntl

        path = Path(self.root) / "runs" / key / "result.lock"
        if shared and not path.exists():
            yield
            return
        try:
            fd = os.open(path, os.O_RDONLY) if shared else os.open(self.run_dir(key) / path.name, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"{path}: cannot {'read' if shared else 'write'} ({e.strerror or e})") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            except OSError as e:
                raise StoreError(f"{path}: cannot lock ({e.strerror or e})") from None
            yield
        finally:
            os.close(fd)

    def _retried(self, path: str, action, missing=None):
        """`action()`, retried on transient errors; `missing` when `path` does not exist."""
        for attempt in range(READ_RETRIES + 1):
            try:
                return action()
            except FileNotFoundError:
                return missing
            except OSError as e:
                try:
                    if self.fs.get_file_info(path).type == pafs.FileType.NotFound:
                        return missing
                except OSError:
                    pass
                if attempt == READ_RETRIES:
                    raise StoreError(f"{path}: not readable after {READ_RETRIES + 1} tries ({str(e).splitlines()[0]})") from None
                time.sleep(RETRY_WAIT * 2**attempt)
        return missing

    def _read(self, path: str) -> bytes | None:
        """A file's bytes, None when it does not exist; transient errors are retried."""
        def read() -> bytes:
            with self.fs.open_input_stream(path) as f:
                return f.read()

        return self._retried(path, read)

    def record(self, key: str) -> dict | None:
        """The stored record of a run, or None when it has no complete result. A record that
        cannot be used is set aside (see the module's docstring)."""
        path = self._path(key, "result.json")
        raw = self._read(path)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError as e:
            self._set_aside(path, f"not valid JSON ({e})")
            return None
        if not (isinstance(data, dict) and data.get("key") == key and "result" in data):
            found = data.get("key") if isinstance(data, dict) else None
            self._set_aside(path, f"the record of {found!r}, not of {key!r}" if found else "not a run's record")
            return None
        return data

    def _set_aside(self, path: str, why: str) -> None:
        """Move an unusable result.json out of the way (so that `has` no longer finds it), said in
        a warning; a store that cannot move it (read-only) keeps it, and the warning says so."""
        aside = f"{path}.damaged-{uuid.uuid4().hex[:8]}"
        try:
            self.fs.move(path, aside)
            then = f"set aside as {aside.rpartition('/')[2]}; the run counts as not done (the next sweep trains it again)"
        except OSError as e:
            then = f"it cannot be set aside ({str(e).splitlines()[0]}): remove it, and the next sweep trains the run again"
        warnings.warn(f"{path}: {why}: {then}", stacklevel=3)

    def has(self, key: str) -> bool:
        """Whether run `key` has a result.json: one stat (a HEAD), the record not read."""
        path = self._path(key, "result.json")
        return self._retried(path, lambda: self.fs.get_file_info(path).type == pafs.FileType.File, missing=False)

    def stored(self, keys) -> set[str]:
        """The keys among `keys` that have a result.json, from one listing of the store."""
        runs = f"{self.root}/runs"
        selector = pafs.FileSelector(runs, recursive=True, allow_not_found=True)
        listed = self._retried(runs, lambda: self.fs.get_file_info(selector), missing=[])
        present = {f.path[len(runs) + 1:].rpartition("/")[0] for f in listed
                   if f.base_name == "result.json" and f.type == pafs.FileType.File}
        return present & set(keys)

    def find(self, key: str) -> RunResult | None:
        """The run's result (its network's path made local and checked), or None when it has none;
        on a local store record and network read as one pair, under the run's lock."""
        with self._locked(key, shared=True):
            data = self.record(key)
            return None if data is None else self.result_of(key, data)

    def result_of(self, key: str, record: dict) -> RunResult:
        """The result in run `key`'s stored record (`record`, as read once by the caller), its
        network's path made local and, on a local store, checked against that record."""
        result = RunResult.from_dict(record["result"])
        if result.model_path is not None:  # where it is read, `local_model` makes it a local file
            result.model_path = self.model_path(key, record) if self.local else f"{self.uri.rstrip('/')}/runs/{key}/model.pt"
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

    def model_path(self, key: str, record: dict | None = None) -> str:
        """A local path of the run's saved network, checked against the size and SHA-256 in its
        record (`record`, else read now): on a remote store fetched into this node's cache
        (atomically) unless a checked copy is there. A missing or damaged network is a StoreError."""
        if record is None:
            record = self.record(key) or {}
        expected = (record.get("files") or {}).get("model.pt")
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
