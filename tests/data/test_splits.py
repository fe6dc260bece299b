"""Building splits: the built-in ones and split files."""

import pytest

from raytaskaff.data.splits import PAPER_SPLIT, TINY_SPLIT, load_split
from raytaskaff.errors import DataError


@pytest.mark.parametrize("name, split, sizes", [("paper", PAPER_SPLIT, (58, 10, 4)), ("tiny", TINY_SPLIT, (25, 5, 5))])
def test_named_splits_are_disjoint_with_known_sizes(name, split, sizes):
    assert tuple(len(split[s]) for s in ("train", "val", "test")) == sizes
    assignment = load_split(name)
    assert len(assignment) == sum(sizes)  # no building in two splits
    assert all(assignment[b] == s for s, buildings in split.items() for b in buildings)


def test_paper_split_holds_the_reference_buildings():
    assert load_split("paper")["hanson"] == "train"
    assert load_split("paper")["corozal"] == "val"
    assert load_split("paper")["mcdade"] == "test"


def test_omnidata_csv_with_carriage_returns(tmp_path):
    path = tmp_path / "train_val_test_tiny.csv"
    path.write_bytes(b"id,train,val,test\rhanson,1,0,0\rwiconisco,0,1,0\rihlen,0,0,1\rskipped,0,0,0")
    assert load_split(str(path)) == {"hanson": "train", "wiconisco": "val", "ihlen": "test"}


def test_pairs_file_with_header_comments_and_spaces(tmp_path):
    path = tmp_path / "split.txt"
    path.write_text("building,split\n# mine\nhanson,train\n\ncorozal validation\nihlen\ttest\n")
    assert load_split(str(path)) == {"hanson": "train", "corozal": "val", "ihlen": "test"}


@pytest.mark.parametrize("text, message", [
    ("hanson,train\ncorozal\n", r"split.txt:2: expected 'building,split'"),
    ("hanson,train\ncorozal,holdout\n", r"split.txt:2: unknown split 'holdout'"),
    ("hanson,train\nhanson,test\n", r"split.txt:2: building 'hanson' is already in split 'train'"),
    ("id,train,val,test\nhanson,1,1,0\n", r"split.txt:2: building 'hanson' is flagged for more than one split"),
    ("id,train,val,test\nhanson,1,x,0\n", r"split.txt:2: flags must be 0 or 1"),
    ("id,train,val,test\nhanson,1,0\n", r"split.txt:2: expected 'id,train,val,test'"),
    ("\n\n", r"split.txt: empty split file"),
    ("id,train,val,test\nhanson,0,0,0\n", r"split.txt: no building is assigned"),
])
def test_malformed_files_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "split.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as error:
        load_split(str(path))
    assert "\n" not in str(error.value)


def test_unknown_split_name():
    with pytest.raises(DataError, match="unknown split 'medium'"):
        load_split("medium")
