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


def _fsync(path: Path, directory: bool = False) -> None:
    """Push a file (or a folder's entries) to disk; a file system that cannot is left as it is."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to; on leaving the block it is synced and moved onto
    `path`. If the block raises, the temporary file is removed and `path` is untouched."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent, directory=True)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # only this writer's own file: after the rename there is none


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


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
