"""Task losses and metrics against hand-computed values; the registry."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raytaskaff.data.fields import taskonomy_field
from raytaskaff.data.transforms import Target
from raytaskaff.settings import TASK_PRESETS, TaskSpec
from raytaskaff.tasks import UnknownTask, resolve, task


def test_masked_l1_counts_masked_pixels_in_the_denominator():
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    value = torch.tensor([0.0, 0.0, 0.0, 10.0]).view(1, 1, 2, 2)
    mask = torch.tensor([True, True, False, False]).view(1, 1, 2, 2)
    assert task("depth_zbuffer").loss_value(pred, Target(value, mask)).item() == pytest.approx((1 + 2) / 4)
    assert task("edge_texture").loss_value(pred, Target(value)).item() == pytest.approx((1 + 2 + 3 + 6) / 4)


def test_cross_entropy_ignores_uncertain_pixels():
    logits = torch.randn(2, 18, 3, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 18, (2, 3, 3), generator=torch.Generator().manual_seed(1))
    labels[0, 0, 0] = 0
    logp = F.log_softmax(logits, dim=1).permute(0, 2, 3, 1).reshape(-1, 18)
    flat = labels.reshape(-1)
    keep = flat != 0
    expected = -logp[keep, flat[keep]].mean()
    got = task("segment_semantic").loss_value(logits, Target(labels))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_miou_and_pixel_accuracy_by_hand():
    t = task("segment_semantic")
    labels = torch.tensor([[1, 1, 2, 2, 0]])[:, None, :]  # (1, 1, 5): one row of pixels
    predicted = torch.tensor([[1, 2, 2, 2, 3]])[:, None, :]
    logits = F.one_hot(predicted, 18).permute(0, 3, 1, 2).float()
    metrics = t.metrics_from_sums(t.metric_sums(logits, Target(labels)))
    # class 1: tp 1, fp 0, fn 1 -> 1/2; class 2: tp 2, fp 1 -> 2/3; the uncertain pixel is ignored
    assert metrics["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert metrics["pixel_accuracy"] == pytest.approx(3 / 4)


def test_angular_error_and_depth_metrics():
    normal = task("normal")
    target = torch.zeros(1, 3, 1, 2)
    target[:, 2] = -1.0
    pred = target.clone()
    pred[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])  # 90 degrees off
    mask = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    m = normal.metrics_from_sums(normal.metric_sums(pred, Target(target, mask)))
    assert m["angular_error"] == pytest.approx(45.0, abs=1e-4)
    depth = task("depth_zbuffer")
    to_value = lambda metres: (metres * 512 - 1500) / 1000  # noqa: E731 (reference normalisation)
    truth = to_value(torch.tensor([2.0, 4.0, 1.0])).view(1, 1, 1, 3)
    guess = to_value(torch.tensor([2.2, 3.0, 1.0])).view(1, 1, 1, 3)
    mask = torch.tensor([True, True, False]).view(1, 1, 1, 3)
    m = depth.metrics_from_sums(depth.metric_sums(guess, Target(truth, mask)))
    assert m["abs_rel"] == pytest.approx((0.1 + 0.25) / 2, rel=1e-5)
    assert m["delta1"] == pytest.approx(0.5)  # 2.2/2 = 1.1 < 1.25; 4/3 > 1.25
    stats = {"depth_zbuffer": {"mean": [1000.0], "std": [500.0]}}
    standardised = lambda metres: (metres * 512 - 1000) / 500  # noqa: E731
    m = depth.metrics_from_sums(depth.metric_sums(standardised(torch.tensor([2.2, 3.0, 1.0])).view(1, 1, 1, 3),
                                                  Target(standardised(torch.tensor([2.0, 4.0, 1.0])).view(1, 1, 1, 3), mask), stats))
    assert m["abs_rel"] == pytest.approx((0.1 + 0.25) / 2, rel=1e-5)


def test_injection_encodings():
    seg = task("segment_semantic")
    labels = torch.tensor([[[0, 1], [17, 3]]])
    encoded = seg.encode_input(Target(labels))
    assert encoded.shape == (1, 17, 2, 2) and seg.inject_channels == 17
    assert encoded[0, :, 0, 0].sum() == 0 and encoded[0, 0, 0, 1] == 1 and encoded[0, 16, 1, 0] == 1
    depth = task("depth_zbuffer")
    value = torch.tensor([[[[0.5, -2.0]]]])
    mask = torch.tensor([[[[True, False]]]])
    encoded = depth.encode_input(Target(value, mask))
    assert depth.inject_channels == 2
    np.testing.assert_allclose(encoded.flatten().numpy(), [0.5, 0.0, 1.0, 0.0])
    assert task("edge_texture").inject_channels == 1 and task("normal").inject_channels == 4


def test_registry():
    assert {"segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal"} <= set(TASK_PRESETS)
    assert len(TASK_PRESETS) >= 10
    assert all(task(n).name == n and resolve(n, size=8).field == taskonomy_field(TASK_PRESETS[n].field, 8) for n in TASK_PRESETS)
    with pytest.raises(UnknownTask, match="unknown task 'depht'"):
        task("depht")
    declared = {"edge_texture_copy": TaskSpec("edge_texture_copy", "dense_regression", "edge_texture")}
    assert resolve("edge_texture_copy", declared).out_channels == 1
    with pytest.raises(UnknownTask, match="unknown task 'edge_texture_copy'"):
        task("edge_texture_copy")  # a declared task is the sweep's, not a preset
    assert [task(n).out_channels for n in ("segment_semantic", "normal", "reshading", "principal_curvature", "autoencoding")] == [18, 3, 1, 2, 3]
    assert not math.isnan(task("keypoints2d").loss_value(torch.zeros(1, 1, 2, 2), Target(torch.ones(1, 1, 2, 2))).item())
