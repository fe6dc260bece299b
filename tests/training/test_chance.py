"""The chance level of a task (`training.chance`): each family's trivial predictor, fitted on the
train split, scored on test, against numpy by hand; and STL runs record it, so a network that
learned nothing (the planted coin flip) is told from one that learned (the bright top half)."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.models import preset
from raytaskaff.settings import TaskSpec
from raytaskaff.tasks import resolve
from raytaskaff.training.chance import chance_losses
from raytaskaff.training.loop import DataSplits, RunSpec, TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import declared  # noqa: E402

TASKS = (
    TaskSpec("top", "binary", "attributes", index=0),
    TaskSpec("left_and_coin", "binary", "attributes", index=[1, 2]),
    TaskSpec("colour", "classification", "colour"),
    TaskSpec("brightness", "image_regression", "brightness"),
    TaskSpec("bright", "dense_classes", "bright"),
)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("declared") / "data"
    declared.write(root, n=320)
    manifest = Manifest.load(root)
    return DataSplits(*(SplitData.open(root, s) for s in ("train", "val", "test")), stats=manifest.stats, fields=manifest.all_fields())


def _all(split, field):
    return np.concatenate([b[field].numpy() for b in split.batches(64, [field])])


def _task(splits, name):
    return resolve(name, {t.name: t for t in TASKS}, splits.fields, splits.train.size)


def _chance(splits, name, **kw):
    return chance_losses([_task(splits, name)], splits.train, splits.test, splits.stats, torch.device("cpu"), 16, **kw)[name]


def test_classes_take_the_log_prior_of_train_with_one_added(splits):
    train, test = _all(splits.train, "colour")[:, 0], _all(splits.test, "colour")[:, 0]
    prior = (np.bincount(train, minlength=3) + 1) / (len(train) + 3)
    assert _chance(splits, "colour") == pytest.approx(-np.log(prior[test]).mean(), rel=1e-5)
    pixels, test_pixels = _all(splits.train, "bright").ravel(), _all(splits.test, "bright").ravel()
    prior = (np.bincount(pixels, minlength=2) + 1) / (len(pixels) + 2)
    assert _chance(splits, "bright") == pytest.approx(-np.log(prior[test_pixels]).mean(), rel=1e-5)


def test_binary_entries_take_their_own_rate(splits):
    train, test = _all(splits.train, "attributes")[:, 1:3], _all(splits.test, "attributes")[:, 1:3]
    rate = (train.sum(0) + 1) / (len(train) + 2)
    bce = -(test * np.log(rate) + (1 - test) * np.log(1 - rate))
    assert _chance(splits, "left_and_coin") == pytest.approx(bce.mean(), rel=1e-5)
    assert _chance(splits, "left_and_coin") == pytest.approx(math.log(2), abs=0.05)  # about half of each


def test_regression_takes_the_training_mean_of_its_standardised_values(splits):
    stats = splits.stats["brightness"]
    z = lambda v: (v - stats["mean"][0]) / max(stats["std"][0], 1e-6)  # noqa: E731
    train, test = z(_all(splits.train, "brightness")[:, 0]), z(_all(splits.test, "brightness")[:, 0])
    assert _chance(splits, "brightness") == pytest.approx(np.abs(test - train.mean()).mean(), rel=1e-4)


def test_a_masked_taskonomy_depth_keeps_masked_pixels_in_the_denominator(train_dataset):
    """depth_zbuffer: the mean over valid pixels of train; the masked L1 counts invalid pixels as
    zero error but divides by every pixel (`tasks.DenseRegression`)."""
    data = DataSplits(*(SplitData.open(train_dataset, s) for s in ("train", "val", "test")), stats=Manifest.load(train_dataset).stats)
    task = data.task("depth_zbuffer")
    targets = {}
    for split in ("train", "test"):
        parts = [task.target(b, data.stats) for b in getattr(data, split).batches(32, list(task.fields()))]
        targets[split] = (torch.cat([p.value for p in parts]).numpy(), torch.cat([p.mask for p in parts]).numpy())
    value, mask = targets["train"]
    mean = (value * mask).sum() / mask.sum()
    value, mask = targets["test"]
    by_hand = (np.abs(value - mean) * mask).mean()
    got = chance_losses([task], data.train, data.test, data.stats, torch.device("cpu"), 32)["depth_zbuffer"]
    assert got == pytest.approx(by_hand, rel=1e-4) and mask.mean() < 1  # some pixels are masked


def test_the_fit_reads_at_most_its_rows(splits):
    """A fit on the first 32 rows of the seeded order differs from the whole split's (a bounded
    cost on large data), and one seed gives one answer."""
    assert _chance(splits, "colour", rows=32) == _chance(splits, "colour", rows=32)
    assert _chance(splits, "colour", rows=32) != _chance(splits, "colour")


def test_runs_record_it_and_tell_a_coin_flip_from_a_learnt_label(splits):
    torch.set_num_threads(1)
    config = TrainConfig(epochs=4, batch_size=32, lr=1e-2, tasks=TASKS + (TaskSpec("coin", "binary", "attributes", index=2),))
    model = preset("tag_celeba", widths=(8,))
    top, coin = (train(RunSpec((name,)), model, config, splits, seed=0) for name in ("top", "coin"))
    pair = train(RunSpec(("top", "coin")), model, config, splits, seed=0)
    assert set(top.chance_losses) == {"top"} and set(coin.chance_losses) == {"coin"}
    # every run records its own tasks' levels, the same numbers whatever trained beside it
    assert pair.chance_losses == {**top.chance_losses, **coin.chance_losses}
    assert top.test_losses["top"] < 0.5 * top.chance_losses["top"]  # learnt
    assert coin.test_losses["coin"] > 0.95 * coin.chance_losses["coin"]  # the coin flip: nothing to learn
