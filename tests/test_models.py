"""Networks: shapes, paired initialisation, label injection, gradient scaling."""

import math

import pytest
import torch

from raytaskaff.models import MultiTaskNet, preset
from raytaskaff.tasks import task

DEPTH, NORMAL, SEG = task("depth_zbuffer"), task("normal"), task("segment_semantic")


def test_output_shapes_per_task():
    net = MultiTaskNet([DEPTH, NORMAL, SEG], preset("small"))
    out = net(torch.rand(2, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "depth_zbuffer": (2, 1, 32, 32), "normal": (2, 3, 32, 32), "segment_semantic": (2, 18, 32, 32)}
    assert net.represent(torch.rand(2, 3, 32, 32)).shape == (2, 64, 4, 4)


@pytest.mark.parametrize("name,size", [("large", 64), ("resnet18", 64)])
def test_gpu_presets_build_and_run(name, size):
    net = MultiTaskNet([DEPTH], preset(name))
    assert net(torch.rand(1, 3, size, size))["depth_zbuffer"].shape == (1, 1, size, size)


def test_runs_of_one_seed_share_their_initial_weights():
    stl = MultiTaskNet([DEPTH], preset("small"), seed=3)
    pair = MultiTaskNet([DEPTH, NORMAL], preset("small"), seed=3)
    li = MultiTaskNet([DEPTH], preset("small"), seed=3, inject=[NORMAL])
    other = MultiTaskNet([DEPTH], preset("small"), seed=4)
    for a, b, c in zip(stl.encoder.state_dict().values(), pair.encoder.state_dict().values(), li.encoder.state_dict().values()):
        assert torch.equal(a, b) and torch.equal(a, c)
    for a, b in zip(stl.decoders["depth_zbuffer"].state_dict().values(), pair.decoders["depth_zbuffer"].state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(stl.encoder.stem.weight, other.encoder.stem.weight)


def test_injected_labels_are_used():
    net = MultiTaskNet([DEPTH], preset("small"), inject=[NORMAL, SEG])
    assert net.inject_stem.in_channels == NORMAL.inject_channels + SEG.inject_channels == 21
    x = torch.rand(2, 3, 16, 16)
    extra = torch.rand(2, 21, 16, 16)
    with torch.no_grad():  # train mode: BatchNorm on batch statistics, as in training
        a = net(x, extra)["depth_zbuffer"]
        b = net(x, extra * 0)["depth_zbuffer"]
    assert (a - b).abs().max() > 1e-3
    net(x, extra)["depth_zbuffer"].sum().backward()
    assert net.inject_stem.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="injected labels"):
        net(x)


def test_gradient_scaling_of_the_shared_representation():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))  # its own draw: no test before it moves it
    grads = []
    for scale in (False, True):
        net = MultiTaskNet([DEPTH, NORMAL], preset("small", neck=8), grad_scale=scale)
        sum(v.sum() for v in net(x).values()).backward()
        grads.append((net.encoder.stem.weight.grad.clone(), net.neck[0].weight.grad.clone(), net.decoders["normal"].net[0].weight.grad.clone()))
    assert torch.allclose(grads[1][0], grads[0][0] / math.sqrt(2), rtol=1e-3, atol=1e-5)
    assert torch.allclose(grads[1][1], grads[0][1] / math.sqrt(2), rtol=1e-3, atol=1e-5)  # the neck is scaled too
    assert torch.equal(grads[1][2], grads[0][2])  # decoders are not


def test_bad_model_configs():
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("huge")
    with pytest.raises(ValueError, match="unknown backbone"):
        preset("small", backbone="vgg")


def test_saved_models_load_back_identically(tmp_path):
    net = MultiTaskNet([DEPTH, SEG], preset("small", neck=8), inject=[NORMAL], seed=7, grad_scale=True)
    x, extra = torch.rand(2, 3, 16, 16), torch.rand(2, 4, 16, 16)
    net(x, extra)  # move the BatchNorm statistics away from their initial values
    net.eval()
    from raytaskaff.models import load_model, save_model

    save_model(net, tmp_path / "m.pt", seed=7)
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.task_names == ["depth_zbuffer", "segment_semantic"] and loaded.inject_names == ["normal"]
    assert loaded.grad_scale == net.grad_scale
    for a, b in zip(net(x, extra).values(), loaded(x, extra).values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("device", [
    "cpu", "meta",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]),
])
def test_loaded_models_live_on_the_map_location(tmp_path, device):
    """Every parameter and buffer where it was asked for (a scorer actor on a GPU feeds it CUDA
    images): map_location alone moves the loaded tensors, not the network they are copied into."""
    from raytaskaff.models import load_model, save_model

    save_model(MultiTaskNet([DEPTH, SEG], preset("small", neck=8), inject=[NORMAL], seed=7), tmp_path / "m.pt", seed=7)
    loaded = load_model(tmp_path / "m.pt", map_location=device)
    tensors = dict(loaded.named_parameters()) | dict(loaded.named_buffers())
    assert tensors and {name: t.device.type for name, t in tensors.items()} == dict.fromkeys(tensors, device)
    assert not loaded.training
