"""Raw encodings travel; targets are decoded where the network is.

A batch leaves the reader as the integers it was stored as and is decoded, normalised, masked and
one-hot encoded by the training step (`training.evaluation.Inputs`) on the training device. Here that
decoding is held against an independent numpy float32 reimplementation of the reference transform
(reference section 8.1), bit for bit, for every Taskonomy domain and both normalisations; on a GPU,
against the same decoding on the CPU.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.tasks import task
from raytaskaff.training.evaluation import Inputs
from raytaskaff.training.prefetch import gathered

TARGETS = ["segment_semantic", "depth_zbuffer", "depth_euclidean", "normal", "edge_texture", "edge_occlusion",
           "keypoints2d", "reshading", "principal_curvature"]  # every domain the synthetic data has
#: (divisor, offset, scale) of the reference transform, written out again here
REFERENCE = {"depth_zbuffer": (1, [1500], [1000]), "depth_euclidean": (1, [1500], [1000]), "keypoints2d": (1, [50], [100]),
             "edge_texture": (1, [718], [1070]), "edge_occlusion": (1, [56.0248], [239.1265]),
             "reshading": (255, [0.4962], [0.2846]), "principal_curvature": (255, [0.5175, 0.4987], [0.1373, 0.0359]),
             "normal": (255, [0.5] * 3, [0.5] * 3)}
DEPTH_MASKED = {"depth_zbuffer", "depth_euclidean", "normal"}


def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(np.float32).reshape(1, -1, 1, 1)


def reference(name: str, raw: dict[str, np.ndarray], stats: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """(value, mask) of domain `name` from a raw (B, H, W, C) batch, in numpy float32."""
    x = raw[name]
    if name == "segment_semantic":
        return x[..., 0].astype(np.int64), None
    divisor, offset, scale = REFERENCE[name]
    if name in stats and name != "normal":
        n = len(offset)
        offset = [m / divisor for m in stats[name]["mean"][:n]]
        scale = [max(s, 1e-6) / divisor for s in stats[name]["std"][:n]]
    v = x.transpose(0, 3, 1, 2).astype(np.float32)
    if name == "reshading":
        v = ((v[:, 0:1] + v[:, 1:2]) + v[:, 2:3]) / np.float32(3)
    if name == "principal_curvature":
        v = v[:, :2]
    value = (v / np.float32(divisor) - _f32(offset)) / _f32(scale)
    mask = (raw["depth_zbuffer"].astype(np.int32) < 8192).transpose(0, 3, 1, 2) if name in DEPTH_MASKED else None
    return value, mask


@pytest.fixture(scope="module")
def batch(tiny_dataset):
    split = SplitData.open(tiny_dataset, "train")
    fields = ["rgb", *TARGETS]
    [raw] = list(gathered(split.jobs(len(split), fields, shuffle=True, seed=4), threads=2))
    return raw, Manifest.load(tiny_dataset).stats


def test_batches_leave_the_reader_as_their_stored_integers(batch):
    raw, _ = batch
    stored = {"rgb": torch.uint8, "segment_semantic": torch.uint8, "normal": torch.uint8, "reshading": torch.uint8,
              "principal_curvature": torch.uint8}
    for name, tensor in raw.items():
        assert tensor.dtype == stored.get(name, torch.uint16), name
    assert raw["depth_zbuffer"].numpy().max() >= 8192  # the batch holds invalid depth: the masks are exercised


@pytest.mark.parametrize("normalisation", ["dataset", "taskonomy"])
def test_decoding_equals_the_reference_transform_bit_for_bit(batch, normalisation):
    raw, manifest_stats = batch
    stats = manifest_stats if normalisation == "dataset" else {}
    tasks = [task(n) for n in TARGETS]
    inputs = Inputs(raw, [SimpleNamespace(tasks=tasks, inject=[])], stats, "rgb")
    numpy_raw = {k: v.numpy() for k, v in raw.items()}
    np.testing.assert_array_equal(inputs.x.numpy(), numpy_raw["rgb"].transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255))
    for name in TARGETS:
        value, mask = reference(name, numpy_raw, stats)
        got = inputs.targets[name]
        assert got.value.dtype == torch.from_numpy(value).dtype, name
        np.testing.assert_array_equal(got.value.numpy(), value, err_msg=name)
        if mask is None:
            assert got.mask is None, name
        else:
            np.testing.assert_array_equal(got.mask.numpy(), mask, err_msg=name)


def test_label_injection_one_hot_encodes_class_maps_on_the_device(batch):
    raw, stats = batch
    segments = task("segment_semantic")
    inputs = Inputs(raw, [SimpleNamespace(tasks=[task("normal")], inject=[segments])], stats, "rgb")
    extra = inputs.extra_of(SimpleNamespace(inject=[segments]))
    ids = raw["segment_semantic"][..., 0].long()
    assert extra.shape[1] == 17  # id 0, "uncertain", is the all-zero vector
    want = torch.stack([(ids == c).float() for c in range(1, 18)], dim=1)
    assert torch.equal(extra, want)
    assert int(extra.sum()) == int((ids != 0).sum())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("normalisation", ["dataset", "taskonomy"])
def test_decoding_on_the_gpu_equals_decoding_on_the_cpu(batch, normalisation):
    raw, manifest_stats = batch
    stats = manifest_stats if normalisation == "dataset" else {}
    states = [SimpleNamespace(tasks=[task(n) for n in TARGETS], inject=[task("segment_semantic"), task("depth_zbuffer")])]
    cpu = Inputs(raw, states, stats, "rgb")
    gpu = Inputs({k: v.pin_memory().to("cuda", non_blocking=True) for k, v in raw.items()}, states, stats, "rgb")
    assert torch.equal(gpu.x.cpu(), cpu.x)
    for name in TARGETS:
        assert torch.equal(gpu.targets[name].value.cpu(), cpu.targets[name].value), name
        if cpu.targets[name].mask is not None:
            assert torch.equal(gpu.targets[name].mask.cpu(), cpu.targets[name].mask), name
    key = ("segment_semantic", "depth_zbuffer")
    assert torch.equal(gpu.extra[key].cpu(), cpu.extra[key])
