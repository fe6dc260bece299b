"""The one durable writer (`raytaskaff.atomic`): an fsync error other than "this file system does
not sync" is one line and leaves the old file as it was, no litter; "unsupported" writes on. The
store's records and the pipeline's scorer tracebacks go through it."""

import errno
import os
import stat

import pytest

from raytaskaff.atomic import NotDurable, atomic_path, sync_folder, write_text
from raytaskaff.pipeline import scorer_failure
from raytaskaff.store import ResultStore, StoreError
from raytaskaff.training.loop import RunResult, RunSpec


def _fsync_failing(monkeypatch, code: int, folders_only: bool = False) -> list[str]:
    """os.fsync raising OSError(`code`) (on folders only, with `folders_only`); returns the kinds
    of descriptor it was called on, in order."""
    calls = []
    real = os.fsync

    def fsync(fd):
        folder = stat.S_ISDIR(os.fstat(fd).st_mode)
        calls.append("folder" if folder else "file")
        if folder or not folders_only:
            raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("code, name", [(errno.EIO, "EIO"), (errno.ENOSPC, "ENOSPC"), (errno.EDQUOT, "EDQUOT")])
def test_a_disk_error_at_fsync_is_one_line_and_the_old_file_stays(tmp_path, monkeypatch, code, name):
    target = tmp_path / "evaluation.json"
    target.write_text("old")
    calls = _fsync_failing(monkeypatch, code)
    with pytest.raises(NotDurable) as e:
        write_text(target, "new")
    message = str(e.value)
    assert message == (f"{target}: not written: the disk reported {name} ({os.strerror(code)}) when it was synced; "
                       "the previous file is kept")
    assert "\n" not in message and calls == ["file"]  # failed before the rename: the folder never synced
    assert target.read_text() == "old" and _files(tmp_path) == ["evaluation.json"]  # no temporary file left


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP])
def test_a_file_system_that_cannot_fsync_is_written_without(tmp_path, monkeypatch, code):
    target = tmp_path / "evaluation.json"
    target.write_text("old")
    calls = _fsync_failing(monkeypatch, code)
    write_text(target, "new")
    assert target.read_text() == "new" and _files(tmp_path) == ["evaluation.json"]
    assert calls == ["file", "folder"]


def test_a_folder_that_fails_to_sync_after_the_rename_says_so(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    _fsync_failing(monkeypatch, errno.EIO, folders_only=True)
    with pytest.raises(NotDurable, match=r"a.txt: written: the disk reported EIO .* when its folder was synced; "
                                         r"it may not survive a crash"):
        write_text(target, "new")
    assert _files(tmp_path) == ["a.txt"]


def test_a_writer_that_raises_leaves_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("stopped")
    assert target.read_text() == "old" and _files(tmp_path) == ["a.txt"]


def test_unsynced_writes_skip_fsync_only(tmp_path, monkeypatch):
    calls = _fsync_failing(monkeypatch, errno.EIO)
    with atomic_path(tmp_path / "checkpoint.pt", sync=False) as tmp:
        tmp.write_bytes(b"epoch 3")
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"epoch 3" and calls == []


def test_sync_folder_syncs_every_file_then_the_folder(tmp_path, monkeypatch):
    for name in ("train-00000.arrow", "manifest.json"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    calls = _fsync_failing(monkeypatch, errno.EINVAL)
    sync_folder(tmp_path)
    assert calls == ["file", "file", "folder"]
    sync_folder(tmp_path, files=False)  # a parent's entries after a staged folder's rename
    assert calls == ["file", "file", "folder", "folder"]
    monkeypatch.undo()
    _fsync_failing(monkeypatch, errno.EIO)
    with pytest.raises(NotDurable, match=r"manifest.json: not written: the disk reported EIO"):
        sync_folder(tmp_path)


def _result():
    return RunResult(RunSpec(("normal",)), 0, {"normal": 0.5}, {"normal": 0.6}, {}, 0, 1, [], 1.0, 1.0, "cpu", 1)


def test_a_local_stores_record_is_durable_or_a_store_error(tmp_path, monkeypatch):
    store = ResultStore(str(tmp_path / "store"))
    store.save("k", _result())
    path = tmp_path / "store" / "runs" / "k" / "result.json"
    before = path.read_bytes()
    calls = _fsync_failing(monkeypatch, errno.EIO)
    with pytest.raises(StoreError, match=r"runs/k/result.json: not written: the disk reported EIO .*the previous file is kept"):
        store.save("k", _result(), node="elsewhere")
    assert calls == ["file"] and path.read_bytes() == before
    assert not [p for p in (tmp_path / "store").rglob("*") if ".tmp" in p.name]
    monkeypatch.undo()
    calls = _fsync_failing(monkeypatch, errno.EINVAL)  # no fsync here: written all the same
    store.save("k", _result(), node="elsewhere")
    assert store.record("k")["node"] == "elsewhere" and calls == ["file", "folder"]


def test_a_scorers_traceback_is_written_durably(tmp_path, monkeypatch):
    try:
        raise ValueError("bad input\nsecond line")
    except ValueError as e:
        error = e
    line = scorer_failure("ias", error, tmp_path)
    log = tmp_path / "logs" / "scorer-ias.txt"
    assert line == f"ValueError: bad input (traceback in {log})"
    assert "Traceback" in log.read_text() and "second line" in log.read_text()
    calls = _fsync_failing(monkeypatch, errno.EIO)  # the traceback cannot be kept: the line says nothing of it
    assert scorer_failure("rsa", error, tmp_path) == "ValueError: bad input"
    assert calls == ["file"] and _files(tmp_path / "logs") == ["scorer-ias.txt"]


def test_a_cache_stamp_that_cannot_be_synced_costs_only_a_check(tmp_path, monkeypatch):
    """Writers that may fail (here the data check's stamp) take `NotDurable` as the OSError it is."""
    from raytaskaff.data.verify import _write_stamp

    _fsync_failing(monkeypatch, errno.EIO)
    _write_stamp(tmp_path / "stamp.json", {"shards": {}})
    assert _files(tmp_path) == []


def test_a_network_whose_record_cannot_be_written_is_not_put_in_place(tmp_path, monkeypatch):
    """The record's sync fails: the old record and the old network stay, as a pair."""
    from raytaskaff.store import staged_network

    store = ResultStore(str(tmp_path / "store"))
    folder = store.run_dir("k")
    for data in (b"old network", b"new network"):
        staged = staged_network(folder)
        staged.write_bytes(data)
        result = _result()
        result.model_path = str(staged)
        if data == b"new network":
            _fsync_failing(monkeypatch, errno.EIO)
            with pytest.raises(StoreError, match="not written: the disk reported EIO"):
                store.save("k", result)
            monkeypatch.undo()
        else:
            store.save("k", result)
    assert (folder / "model.pt").read_bytes() == b"old network"
    assert store.find("k").model_path == str(folder / "model.pt")  # the old pair, checked
    assert sorted(_files(folder)) == ["model.pt", "result.json", "result.lock"]
