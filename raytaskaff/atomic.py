"""Files written whole or not at all, by any number of writers at once.

Every local file the package writes goes through `atomic_path`: the content goes to a temporary
name of its own beside the target (unique per writer, so two sweeps that share a run key, or two
reports of one folder, never write into or delete each other's temporary file), is flushed to disk,
then renamed over the target. A reader sees the old file or the new one, never a part; a crash or
a full disk leaves the old file and no litter. The last writer wins.

`claim_next` hands out numbers no other process holds (the attempt counter of a run) by creating
files exclusively, which needs no lock and holds on a shared file system too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from raytaskaff.errors import RaytaskaffError


class OutputError(RaytaskaffError):
    """An output file cannot be written where it was asked for."""


def check_output(path: str | os.PathLike, option: str) -> None:
    """Refuse before any work an output file that could not be written: a folder, a folder that
    does not exist, or one this process may not write into."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give the name of a file")
    if not folder.is_dir():
        raise OutputError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: the folder {folder} is not writable")


class NotDurable(OutputError, OSError):
    """The disk reported an error when a written file was pushed to it (fsync). An OSError too,
    so that a writer that may fail (a cache stamp, a traceback log) handles it as it handles a
    full disk."""


#: fsync errors that mean "this file system does not sync", not "the bytes are lost".
UNSUPPORTED = frozenset(e for e in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, getattr(errno, "ENOSYS", None)) if e)


def _fsync(path: Path, directory: bool = False) -> None:
    """Push a file (or a folder's entries) to disk. A file system that cannot fsync is left as it
    is; a folder that cannot be opened to sync (some platforms) too. Any other error is raised."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def _not_durable(path: Path, error: OSError, after: str, done: str = "not written") -> NotDurable:
    name = errno.errorcode.get(error.errno or 0, "error")
    return NotDurable(f"{path}: {done}: the disk reported {name} ({error.strerror or error}) {after}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, sync: bool = True) -> Iterator[Path]:
    """A temporary path beside `path` to write to; on leaving the block it is synced (unless
    `sync` is False: a file whose loss costs little, such as a checkpoint verified when read) and
    moved onto `path`. If the block raises, or the sync fails (`NotDurable`), the temporary file
    is removed and `path` is untouched."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        yield tmp
        if sync:
            try:
                _fsync(tmp)
            except OSError as e:
                raise _not_durable(path, e, "when it was synced; the previous file is kept") from None
        os.replace(tmp, path)
        if sync:
            try:
                _fsync(path.parent, directory=True)
            except OSError as e:
                raise _not_durable(path, e, "when its folder was synced; it may not survive a crash", "written") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # only this writer's own file: after the rename there is none


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a whole file durably (`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a whole text file (UTF-8) durably (`atomic_path`)."""
    write_bytes(path, text.encode())


def sync_folder(folder: str | os.PathLike, files: bool = True) -> None:
    """Push every file directly in `folder` (unless `files` is False), then the folder's entries,
    to disk: for a folder written whole under a staging name and then renamed into place (a
    dataset's shards: its files before the rename, its parent's entries after). Errors as in
    `atomic_path` (`NotDurable`)."""
    folder = Path(folder)
    for path in sorted(folder.iterdir()) if files else ():
        if path.is_file():
            try:
                _fsync(path)
            except OSError as e:
                raise _not_durable(path, e, "when it was synced") from None
    try:
        _fsync(folder, directory=True)
    except OSError as e:
        raise _not_durable(folder, e, "when the folder was synced") from None


def claim_next(folder: str | os.PathLike, prefix: str, start: int = 1) -> int:
    """The smallest n >= start for which this call created `folder/prefix-n` exclusively. Two
    processes never get the same n."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name.removeprefix(f"{prefix}-")) for p in folder.glob(f"{prefix}-*")
             if p.name.removeprefix(f"{prefix}-").isdigit()]
    n = max([start - 1, *taken]) + 1
    while True:
        try:
            os.close(os.open(folder / f"{prefix}-{n}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return n
        except FileExistsError:
            n += 1
