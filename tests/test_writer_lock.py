"""One writer per output: a second sweep on an output folder (or a store) in use is refused in one
line naming the first; a killed sweep leaves no stuck lock; a read-only output is refused before
Ray starts; a probe of writability leaves no file, whether or not it could write."""

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raytaskaff.store import LOCK_NAME, InUse, ResultStore, StoreError, WriterLock, probe_folder, written_folders

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sweeps" / "smoke.yaml"
HOLD = """
import sys, time
from raytaskaff.store import WriterLock
lock = WriterLock(sys.argv[1], "output folder", "first")
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """A process holding the lock of tmp_path/out, as a running sweep does."""
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline().strip() == "held"
    yield out, process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_second_writer_is_refused_naming_the_first_until_the_first_is_killed(holder):
    out, process = holder
    with pytest.raises(InUse) as e:
        WriterLock(out, "output folder").acquire()
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{out}: the output folder is in use by the sweep first started ")
    assert f"on {socket.gethostname()} (pid {process.pid})" in message
    os.kill(process.pid, signal.SIGKILL)  # nothing runs on its way out: the kernel drops the lock
    process.wait()
    assert (out / LOCK_NAME).exists()  # a killed sweep's file stays, unlocked
    with WriterLock(out, "output folder", "second"):
        assert '"sweep": "second"' in (out / LOCK_NAME).read_text()
    assert not (out / LOCK_NAME).exists()  # a sweep that ends removes its file


def test_a_second_sweep_on_an_output_in_use_exits_in_one_line(holder, tmp_path):
    out, process = holder
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(SMOKE), "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith(f"error: {out}: the output folder is in use by the sweep first") and f"(pid {process.pid})" in lines[0]
    assert time.perf_counter() - start < 60 and not done.stdout  # before the data is rendered and Ray started
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_two_sweeps_sharing_one_store_are_refused(tmp_path):
    """Each sweep locks its output folder and its store: another output folder does not help."""
    first = written_folders(tmp_path / "a", None)
    assert first == [(tmp_path / "a", "output folder"), (tmp_path / "a" / "store", "result store")]
    assert written_folders(tmp_path / "a", "s3://bucket/store") == first[:1]  # object storage has no lock
    with WriterLock(*first[1], "a"):
        folder, what = written_folders(tmp_path / "b", str(tmp_path / "a" / "store"))[1]
        with pytest.raises(InUse, match="the result store is in use by the sweep a"):
            WriterLock(folder, what).acquire()


def _read_only(folder: Path) -> bool:
    """Make `folder` refuse new files (chmod for a user; chattr +i for root, where supported)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return True
    return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0


def test_a_read_only_output_is_refused_before_ray_starts(tmp_path, monkeypatch):
    import raytaskaff.engine.sweep as engine_sweep
    from raytaskaff.config import load_config

    parent = tmp_path / "readonly"
    (parent / "out").mkdir(parents=True)
    if not _read_only(parent / "out"):
        pytest.skip("no way to make a folder read-only here")
    try:
        def no_ray(*args, **kwargs):
            raise AssertionError("Ray started")

        monkeypatch.setattr(engine_sweep, "connect", no_ray)
        monkeypatch.setattr(engine_sweep, "open_data", no_ray)  # nor was the data rendered
        config = load_config(SMOKE, out=str(parent / "out"))
        with pytest.raises(StoreError) as e:
            engine_sweep.run_sweep(config, say=lambda *a: None)
        assert str(e.value).startswith(f"{parent / 'out'}: cannot write the output folder (") and "\n" not in str(e.value)
        assert not list((parent / "out").iterdir())
    finally:
        subprocess.run(["chattr", "-i", str(parent / "out")], capture_output=True)
        (parent / "out").chmod(0o755)


def _failing_fsync(monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def test_probes_leave_no_file_when_the_disk_is_full(tmp_path, monkeypatch):
    store = ResultStore(str(tmp_path / "store"))
    (tmp_path / "out").mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    _failing_fsync(monkeypatch)
    with pytest.raises(OSError):
        probe_folder(tmp_path / "out")
    with pytest.raises(StoreError, match="the result store is not writable .No space left on device"):
        store.check_writable()
    with pytest.raises(StoreError, match="cannot write the output folder .No space left on device"):
        WriterLock(tmp_path / "out", "output folder").acquire()
    with pytest.raises(StoreError, match="cannot write the output folder"):
        WriterLock(tmp_path / "new" / "out", "output folder").acquire()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no probe, no lock, no folder


def test_a_remote_stores_probe_is_removed_when_its_write_fails(tmp_path, monkeypatch):
    import pyarrow.fs as pafs

    store = ResultStore(f"file://{tmp_path / 'store'}", cache=tmp_path / "cache")
    store.check_writable()
    real = pafs.LocalFileSystem.open_output_stream

    class Failing:
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            return self

        def write(self, data):
            self.stream.write(data)
            raise OSError(errno.ENOSPC, "No space left on device")

        def __exit__(self, *exc):
            self.stream.close()

    monkeypatch.setattr(store, "fs", type("FS", (), {
        "open_output_stream": lambda self, path: Failing(real(pafs.LocalFileSystem(), path)),
        "delete_file": lambda self, path: pafs.LocalFileSystem().delete_file(path)})())
    with pytest.raises(StoreError, match="not writable"):
        store.check_writable()
    assert not list((tmp_path / "store" / "runs").iterdir())
