"""Task families on declared fields: losses and metrics against hand computation, heads,
label injection as constant planes, and training on a dataset with planted structure."""

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from raytaskaff.data.fields import Field
from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.errors import DataError
from raytaskaff.models import MultiTaskNet, load_model, preset, save_model
from raytaskaff.settings import TaskSpec
from raytaskaff.tasks import build_task, resolve
from raytaskaff.training.loop import DataSplits, RunSpec, TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import declared  # noqa: E402

FIELDS = {f.name: f for f in declared.FIELDS}
TASKS = (
    TaskSpec("top", "binary", "attributes", index=0),
    TaskSpec("left_and_coin", "binary", "attributes", index=[1, 2]),
    TaskSpec("colour", "classification", "colour"),
    TaskSpec("brightness", "image_regression", "brightness"),
    TaskSpec("bright", "dense_classes", "bright"),
)
SPECS = {t.name: t for t in TASKS}


def _task(name):
    return resolve(name, SPECS, FIELDS, 16)


def test_binary_cross_entropy_by_hand_with_an_invalid_entry():
    field = Field("attributes", "multi_label", "uint8", (3,), invalid=255)
    t = build_task(TaskSpec("two", "binary", "attributes", index=[0, 2]), field)
    raw = torch.tensor([[1, 0, 0], [0, 1, 255]], dtype=torch.uint8)
    target = t.target({"attributes": raw})
    assert target.value.tolist() == [[1.0, 0.0], [0.0, 0.0]] and target.mask.tolist() == [[True, True], [True, False]]
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    by_hand = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0)) + math.log1p(math.exp(0.5))) / 3
    assert t.loss_value(logits, target).item() == pytest.approx(by_hand, rel=1e-6)
    assert t.metrics_from_sums(t.metric_sums(logits, target)) == {"accuracy": pytest.approx(2 / 3)}
    assert t.out_channels == 2 and t.inject_channels == 3 and not t.dense


def test_a_two_class_map_keeps_its_negatives():
    """Without an ignored id, class 0 is a class (Taskonomy's "id 0 is uncertain" is a field's choice)."""
    t = _task("bright")
    labels = torch.tensor([[[0, 1], [1, 0]]])
    logits = torch.randn(1, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    assert t.loss_value(logits, t.target({"bright": labels[..., None]})).item() == pytest.approx(F.cross_entropy(logits, labels).item())
    metrics = t.metrics_from_sums(t.metric_sums(F.one_hot(labels, 2).permute(0, 3, 1, 2).float(), t.target({"bright": labels[..., None]})))
    assert metrics == {"miou": 1.0, "pixel_accuracy": 1.0} and t.inject_channels == 2


def test_classification_and_regression_by_hand():
    colour = _task("colour")
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    target = colour.target({"colour": torch.tensor([[0], [1]], dtype=torch.uint8)})
    assert colour.loss_value(logits, target).item() == pytest.approx(F.cross_entropy(logits, torch.tensor([0, 1])).item())
    assert colour.metrics_from_sums(colour.metric_sums(logits, target))["accuracy"] == 0.5
    planes = colour.encode_input(target, (2, 3))
    assert planes.shape == (2, 3, 2, 3) and planes[0, 0].eq(1).all() and planes[1, 1].eq(1).all() and planes[1, 0].eq(0).all()
    brightness = _task("brightness")
    stats = {"brightness": {"mean": [100.0], "std": [20.0]}}
    target = brightness.target({"brightness": torch.tensor([[140.0], [90.0]])}, stats)
    assert target.value.flatten().tolist() == [2.0, -0.5]
    pred = torch.tensor([[1.0], [0.5]])
    assert brightness.loss_value(pred, target).item() == pytest.approx((1.0 + 1.0) / 2)
    assert brightness.metrics_from_sums(brightness.metric_sums(pred, target, stats)) == {"mae": 1.0}


def test_a_field_of_the_wrong_kind_or_an_index_past_its_end_is_one_line():
    with pytest.raises(DataError, match="task top: a binary task reads a field of kind multi_label; colour is a class_label field"):
        resolve("top", {"top": TaskSpec("top", "binary", "colour")}, FIELDS)
    with pytest.raises(DataError, match="task far: index 7 is past the 3 entries of attributes"):
        resolve("far", {"far": TaskSpec("far", "binary", "attributes", index=7)}, FIELDS)
    with pytest.raises(DataError, match="task x reads field 'hair', which the dataset does not hold"):
        resolve("x", {"x": TaskSpec("x", "binary", "hair")}, FIELDS)


def test_pooled_and_dense_heads_and_a_saved_network(tmp_path):
    tasks = [_task(n) for n in ("top", "left_and_coin", "colour", "bright")]
    net = MultiTaskNet(tasks, preset("tag_celeba", widths=(8,)), inject=[_task("brightness")], seed=1).eval()
    x, extra = torch.rand(2, 3, 16, 16), torch.rand(2, 1, 16, 16)
    out = net(x, extra)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"top": (2, 1), "left_and_coin": (2, 2), "colour": (2, 3), "bright": (2, 2, 16, 16)}
    save_model(net, tmp_path / "m.pt", seed=1)
    again = load_model(tmp_path / "m.pt")
    assert all(torch.equal(again(x, extra)[k], v) for k, v in out.items())


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("declared") / "data"
    declared.write(root, n=320)
    manifest = Manifest.load(root)
    return DataSplits(*(SplitData.open(root, s) for s in ("train", "val", "test")), stats=manifest.stats, fields=manifest.all_fields())


def test_declared_tasks_learn_their_planted_labels(splits):
    torch.set_num_threads(1)
    config = TrainConfig(epochs=6, batch_size=32, lr=1e-2, tasks=TASKS)
    result = train(RunSpec(("top", "left_and_coin", "colour")), preset("tag_celeba", widths=(16,)), config, splits, seed=0)
    assert result.test_metrics["top"]["accuracy"] > 0.9  # the top half's brightness
    assert result.test_metrics["colour"]["accuracy"] > 0.6  # chance is 1/3
    assert set(result.test_losses) == {"top", "left_and_coin", "colour"}


def test_an_injected_image_level_label_is_used(splits):
    """The coin flip cannot be learnt from the image; told its own value (another task on the same
    entry, injected as constant planes), the network predicts it almost perfectly."""
    torch.set_num_threads(1)
    coin, told = TaskSpec("coin", "binary", "attributes", index=2), TaskSpec("coin_told", "binary", "attributes", index=2)
    config = TrainConfig(epochs=4, batch_size=32, lr=1e-2, tasks=(coin, told))
    model = preset("tag_celeba", widths=(8,))
    alone = train(RunSpec(("coin",)), model, config, splits, seed=0)
    injected = train(RunSpec(("coin",), inject=("coin_told",)), model, config, splits, seed=0)
    assert alone.test_metrics["coin"]["accuracy"] < 0.75 and alone.test_losses["coin"] > 0.5
    assert injected.test_metrics["coin"]["accuracy"] > 0.95 and injected.test_losses["coin"] < 0.5 * alone.test_losses["coin"]


def test_a_declared_dense_regression_is_standardised_and_masked_by_its_fields():
    """Invalid where its own encoding says so (0) or where the mask field's does (255)."""
    height = Field("height", "dense_regression", "uint16", (1, 3, 1), invalid=0, mask="sky", normalisation={"offset": [100.0], "scale": [50.0]})
    sky = Field("sky", "class_map", "uint8", (1, 3, 1), classes=2, invalid=255)
    fields = {"height": height, "sky": sky}
    masked = resolve("h", {"h": TaskSpec("h", "dense_regression", "height", masked=True)}, fields)
    plain = resolve("h", {"h": TaskSpec("h", "dense_regression", "height")}, fields)
    batch = {"height": torch.tensor([[[[150], [0], [200]]]], dtype=torch.uint16).view(1, 1, 3, 1),
             "sky": torch.tensor([[[[0], [0], [255]]]], dtype=torch.uint8).view(1, 1, 3, 1)}
    target = masked.target(batch)
    assert target.value.flatten().tolist() == [1.0, -2.0, 2.0] and target.mask.flatten().tolist() == [True, False, False]
    pred = torch.zeros(1, 1, 1, 3)
    assert masked.loss_value(pred, target).item() == pytest.approx(1.0 / 3)  # masked pixels stay in the denominator
    assert plain.target(batch).mask is None and plain.loss_value(pred, plain.target(batch)).item() == pytest.approx(5.0 / 3)
    assert masked.fields() == ("height", "sky") and masked.inject_channels == 2 and plain.inject_channels == 1
    encoded = masked.encode_input(target)
    assert encoded.flatten().tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    stats = {"height": {"mean": [175.0], "std": [25.0]}}
    dataset = resolve("d", {"d": TaskSpec("d", "dense_regression", "depth2")},
                      {"depth2": Field("depth2", "dense_regression", "uint16", (1, 3, 1))})
    assert dataset.target({"depth2": batch["height"]}, {"depth2": stats["height"]}).value.flatten().tolist() == [-1.0, -7.0, 1.0]


def test_entries_by_name():
    both = resolve("tl", {"tl": TaskSpec("tl", "binary", "attributes", index=["left", "top"])}, FIELDS)
    assert both.entries == [1, 0]
    assert both.target({"attributes": torch.tensor([[1, 0, 1]], dtype=torch.uint8)}).value.tolist() == [[0.0, 1.0]]
    with pytest.raises(DataError, match=r"task x: attributes has no entry 'tpo' \(its entries are top, left, coin\)"):
        resolve("x", {"x": TaskSpec("x", "binary", "attributes", index="tpo")}, FIELDS)
    with pytest.raises(DataError, match="its entries have no names"):
        resolve("x", {"x": TaskSpec("x", "image_regression", "brightness", index="mean")}, FIELDS)
