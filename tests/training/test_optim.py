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
