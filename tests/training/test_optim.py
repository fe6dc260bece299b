"""virtual_update against a real optimizer step."""

import copy

import pytest
import torch

from raytaskaff.training.optim import make_optimizer, virtual_update


@pytest.mark.parametrize("name,kwargs", [
    ("sgd", {"momentum": 0.0, "weight_decay": 0.0}),
    ("sgd", {"momentum": 0.9, "weight_decay": 1e-2}),
    ("adam", {"momentum": 0.0, "weight_decay": 0.0}),
    ("adam", {"momentum": 0.0, "weight_decay": 1e-2}),
    ("adamw", {"momentum": 0.0, "weight_decay": 1e-2}),
])
@pytest.mark.parametrize("warm_steps", [0, 3])
def test_virtual_update_equals_a_real_step(name, kwargs, warm_steps):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5))]
    opt = make_optimizer(name, params, 0.01, **kwargs)
    for _ in range(warm_steps):  # populate momentum / moments
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    grads = [torch.randn_like(p) for p in params]
    before_state = copy.deepcopy(opt.state_dict())
    before = [p.detach().clone() for p in params]
    updates = virtual_update(opt, params, grads)
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert str(opt.state_dict()) == str(before_state)  # nothing was written
    for p, g in zip(params, grads):
        p.grad = g
    opt.step()
    for p, b, u in zip(params, before, updates):
        torch.testing.assert_close(b - u, p.detach(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,kwargs", [
    ("sgd", {"momentum": 0.9, "weight_decay": 1e-2}),
    ("adam", {"momentum": 0.0, "weight_decay": 0.0}),
    ("adam", {"momentum": 0.0, "weight_decay": 1e-2}),
    ("adamw", {"momentum": 0.0, "weight_decay": 1e-2}),
])
def test_the_foreach_kernels_step_as_the_per_tensor_loop_bit_for_bit(name, kwargs):
    """make_optimizer asks for the foreach kernels; on a CPU torch's default is the per-tensor loop,
    and 20 steps of each over a network's shapes end in the same bits."""
    torch.manual_seed(1)
    shapes = [(16, 3, 3, 3), (16,), (32, 16, 3, 3), (32,), (5, 32, 1, 1), (5,)]
    start = [torch.randn(s) for s in shapes]
    grads = [[torch.randn(s) for s in shapes] for _ in range(20)]
    ends = []
    for kernels in (True, False):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        opt = make_optimizer(name, params, 3e-3, **kwargs)
        assert opt.defaults["foreach"] is True
        if not kernels:
            opt.param_groups[0]["foreach"] = None  # torch's own choice: the loop on a CPU
        for g in grads:
            for p, gi in zip(params, g):
                p.grad = gi.clone()
            opt.step()
        ends.append(params)
    assert all(torch.equal(a, b) for a, b in zip(*ends))
