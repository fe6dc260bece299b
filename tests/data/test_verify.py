"""The dataset is checked once: a stamp records what was verified, changed shards are checked again."""

import os
import shutil

import pytest

from raytaskaff.data.shards import Manifest
from raytaskaff.data.verify import cache_dir, verify_once
from raytaskaff.errors import DataError


@pytest.fixture
def copy(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.setenv("RAYTASKAFF_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "copy"
    shutil.copytree(tiny_dataset, out)
    return out


def _flip_byte(path, keep_time=False):
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_time:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_second_check_trusts_the_stamp(copy):
    shards = len(Manifest.load(copy).shards)
    first = verify_once(copy)
    assert (first.checked, first.trusted) == (shards, 0)
    assert first.stamp.parent == cache_dir() / "verified" and first.stamp.is_file()
    second = verify_once(copy)
    assert (second.checked, second.trusted) == (0, shards)


def test_a_changed_shard_is_checked_again_and_refused(copy):
    manifest = Manifest.load(copy)
    verify_once(copy)
    shard = copy / manifest.shards[2].file
    _flip_byte(shard)
    with pytest.raises(DataError, match="checksum mismatch"):
        verify_once(copy)
    with pytest.raises(DataError, match="checksum mismatch"):  # a failed check is never stamped
        verify_once(copy)


def test_a_touched_shard_alone_is_rehashed(copy):
    manifest = Manifest.load(copy)
    verify_once(copy)
    os.utime(copy / manifest.shards[0].file)
    again = verify_once(copy)
    assert (again.checked, again.trusted) == (1, len(manifest.shards) - 1)


def test_the_same_data_elsewhere_is_checked_there(copy, tmp_path):
    verify_once(copy)
    moved = tmp_path / "moved"
    shutil.copytree(copy, moved)
    assert Manifest.load(moved).fingerprint == Manifest.load(copy).fingerprint
    assert verify_once(moved).checked == len(Manifest.load(moved).shards)


def test_trials_check_sizes_not_checksums(copy):
    """What a trial opens (verify=False) reads no checksum: a same-size change passes there and
    only the driver's check finds it."""
    from raytaskaff.data.reader import SplitData

    manifest = Manifest.load(copy)
    _flip_byte(copy / manifest.shards_of("train")[0].file)
    assert len(SplitData.open(copy, "train", verify=False)) == manifest.splits["train"]["count"]
    with pytest.raises(DataError, match="checksum mismatch"):
        verify_once(copy)
    (copy / manifest.shards_of("train")[1].file).write_bytes(b"short")
    with pytest.raises(DataError, match="bytes, manifest says"):
        SplitData.open(copy, "train", verify=False)


def test_an_unwritable_cache_only_costs_a_recheck(copy, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("RAYTASKAFF_CACHE", str(blocker))
    shards = len(Manifest.load(copy).shards)
    assert verify_once(copy).checked == shards
    assert verify_once(copy).checked == shards
