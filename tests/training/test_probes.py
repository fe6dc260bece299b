"""Gradient probes against brute force on a tiny model: gs, the lookahead (both variants), etap,
and the live model left bit-identical."""

import copy

import numpy as np
import pytest
import torch

from raytaskaff.data.transforms import Target
from raytaskaff.models import MultiTaskNet, preset
from raytaskaff.tasks import task
from raytaskaff.training.optim import make_optimizer
from raytaskaff.training.probes import GradientProbe, ProbeConfig

TASKS = [task("depth_zbuffer"), task("normal"), task("edge_texture")]
CONFIG = preset("small", widths=(8, 8), decoder_width=8, neck=6)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(6, 3, 16, 16, generator=g)
    mask = torch.rand(6, 1, 16, 16, generator=g) > 0.2
    targets = {
        "depth_zbuffer": Target(torch.randn(6, 1, 16, 16, generator=g), mask),
        "normal": Target(torch.randn(6, 3, 16, 16, generator=g), mask),
        "edge_texture": Target(torch.randn(6, 1, 16, 16, generator=g)),
    }
    return x, targets


def _setup(optimizer="adam", variant="corrected", weight_decay=0.0, lr=0.01, warm=2, variants=()):
    torch.manual_seed(0)
    model = MultiTaskNet(TASKS, CONFIG, seed=1)
    opt = make_optimizer(optimizer, model.parameters(), lr, weight_decay, 0.9)
    for s in range(warm):  # give the optimizer momentum and moments
        x, targets = _batch(100 + s)
        opt.zero_grad()
        preds = model(x)
        sum(t.loss_value(preds[t.name], targets[t.name]) for t in TASKS).backward()
        opt.step()
    opt.zero_grad()
    return model, opt, GradientProbe(model, TASKS, opt, ProbeConfig(lookahead_every=1, variant=variant, variants=variants))


def _task_grads(model, x, targets):
    """Brute force: each task's loss alone, its own backward, the shared gradient flattened."""
    rows, losses = [], []
    for t in TASKS:
        m = copy.deepcopy(model)
        loss = t.loss_value(m(x)[t.name], targets[t.name])
        loss.backward()
        rows.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in m.shared_parameters()]))
        losses.append(loss.item())
    return torch.stack(rows), losses


def _state(model, opt):
    return ({k: v.clone() for k, v in model.state_dict().items()}, copy.deepcopy(opt.state_dict()))


def test_summed_gradient_is_the_plain_gradient_and_the_model_is_untouched():
    model, opt, probe = _setup()
    plain = copy.deepcopy(model)
    x, targets = _batch()
    preds = plain(x)
    sum(t.loss_value(preds[t.name], targets[t.name]) for t in TASKS).backward()
    params_before, opt_before = _state(model, opt)
    probe.backward(x, None, targets, step=0)  # step 0: the lookahead runs too
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
    # parameters unchanged; BatchNorm statistics bit-identical to one plain forward (no lookahead trace)
    for (name, a), b in zip(model.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name
    for name, p in model.named_parameters():
        assert torch.equal(p, params_before[name]), name
    assert str(opt.state_dict()) == str(opt_before)


def test_gs_is_the_cosine_of_brute_force_task_gradients():
    model, _, probe = _setup()
    x, targets = _batch()
    grads, _ = _task_grads(model, x, targets)
    probe.backward(x, None, targets, step=0)
    probe.end_epoch()
    unit = grads / grads.norm(dim=1, keepdim=True)
    np.testing.assert_allclose(np.array(probe.epochs["gs"][0]), (unit @ unit.T).numpy(), atol=1e-4)


def test_gs_on_kernels_is_the_cosine_over_the_encoder_conv_weights_alone():
    model, _, probe = _setup()
    x, targets = _batch()
    rows = []
    for t in TASKS:  # brute force: each task's own backward, then only the encoder's conv kernels kept
        m = copy.deepcopy(model)
        t.loss_value(m(x)[t.name], targets[t.name]).backward()
        kernels = [mod.weight for mod in m.encoder.modules() if isinstance(mod, torch.nn.Conv2d)]
        rows.append(torch.cat([k.grad.flatten() for k in kernels]))
    grads = torch.stack(rows)
    left_out = [n for n, p in model.named_parameters() if n.startswith("encoder.") and p.dim() == 1]
    assert left_out and any("bias" in n for n in model.state_dict())  # batch-norm weights and biases exist, and are left out
    probe.backward(x, None, targets, step=0)
    probe.end_epoch()
    unit = grads / grads.norm(dim=1, keepdim=True)
    assert probe.kernels.numel() == grads.shape[1] < sum(p.numel() for p in model.shared_parameters())
    np.testing.assert_allclose(np.array(probe.epochs["gs_kernels"][0]), (unit @ unit.T).numpy(), atol=1e-4)
    assert not np.allclose(probe.epochs["gs_kernels"][0], probe.epochs["gs"][0], atol=1e-3)  # a different reading


def _expected_transference(model, x, targets, lr, stepped_copy):
    """Brute-force gt: for each source task, a copy of the model after `stepped_copy(source)`
    has taken a real step on it; then every target's loss before and after, on the same batch."""
    preds = model(x)
    before = {t.name: t.loss_value(preds[t.name], targets[t.name]).item() for t in TASKS}
    expected = np.zeros((3, 3))
    for source, s in enumerate(TASKS):
        stepped = stepped_copy(s)
        with torch.no_grad():
            after = stepped(x)
        for target, t in enumerate(TASKS):
            expected[target, source] = (1 - t.loss_value(after[t.name], targets[t.name]).item() / before[t.name]) / lr
    return expected


def _probe_gt(model, probe, x, targets, state):
    model.load_state_dict(state)  # the probe starts from the state the brute force started from
    probe.backward(x, None, targets, step=0)
    probe.end_epoch()
    return np.array(probe.epochs["gt"][0])


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_corrected_lookahead_equals_a_real_step_by_hand(optimizer):
    model, opt, probe = _setup(optimizer=optimizer, weight_decay=1e-3)
    x, targets = _batch()
    lr = opt.param_groups[0]["lr"]
    model(x)  # move the BatchNorm statistics as the probe's own forward will
    state = copy.deepcopy(model.state_dict())

    def real_step(source):
        m = copy.deepcopy(model)
        o = make_optimizer(optimizer, m.parameters(), lr, 1e-3, 0.9)
        o.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict may share tensors
        o.zero_grad()
        source.loss_value(m(x)[source.name], targets[source.name]).backward()
        shared = {id(p) for p in m.shared_parameters()}
        for p in m.parameters():
            if id(p) not in shared:
                p.grad = None  # a step of the shared parameters only
        o.step()
        return m

    expected = _expected_transference(model, x, targets, lr, real_step)
    np.testing.assert_allclose(_probe_gt(model, probe, x, targets, state), expected, rtol=2e-3, atol=2e-3)


def test_faithful_lookahead_is_plain_sgd_on_the_encoder_only():
    model, opt, probe = _setup(optimizer="adam", variant="faithful", weight_decay=1e-2)
    x, targets = _batch()
    lr, wd = opt.param_groups[0]["lr"], 1e-2
    model(x)
    state = copy.deepcopy(model.state_dict())

    def sgd_on_encoder(source):
        m = copy.deepcopy(model)
        source.loss_value(m(x)[source.name], targets[source.name]).backward()
        with torch.no_grad():
            for p in m.encoder.parameters():  # the neck is not stepped, and momentum is never found
                p -= lr * (p.grad + wd * p)
        return m

    expected = _expected_transference(model, x, targets, lr, sgd_on_encoder)
    np.testing.assert_allclose(_probe_gt(model, probe, x, targets, state), expected, rtol=2e-3, atol=2e-3)


def test_raw_lookahead_is_a_plain_gradient_step_on_every_shared_parameter():
    model, opt, probe = _setup(optimizer="adam", variant="raw", weight_decay=1e-2)
    x, targets = _batch()
    lr = opt.param_groups[0]["lr"]
    model(x)
    state = copy.deepcopy(model.state_dict())

    def raw_step(source):
        m = copy.deepcopy(model)
        source.loss_value(m(x)[source.name], targets[source.name]).backward()
        with torch.no_grad():
            for p in m.shared_parameters():  # the neck too; no momentum, moments or weight decay
                if p.grad is not None:
                    p -= lr * p.grad
        return m

    expected = _expected_transference(model, x, targets, lr, raw_step)
    np.testing.assert_allclose(_probe_gt(model, probe, x, targets, state), expected, rtol=2e-3, atol=2e-3)
    grads, losses = _task_grads(model, x, targets)
    np.testing.assert_allclose(np.array(probe.epochs["etap"][0]), (grads @ grads.T).numpy() / np.array(losses)[:, None], rtol=1e-3)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_variants_side_by_side_equal_each_variant_alone(optimizer):
    """One run computing every variant records, under gt/<variant> and etap/<variant>, what a
    run of that variant alone records (each of which the tests above check by brute force); the
    run's own variant stays under gt and etap, and the model is left as it was."""
    every = ("faithful", "corrected", "raw")
    model, opt, probe = _setup(optimizer=optimizer, weight_decay=1e-3, variants=every)
    x, targets = _batch()
    state, opt_state = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    probe.backward(x, None, targets, step=0)
    probe.end_epoch()
    assert set(probe.epochs) == {"gs", "gs_kernels", "gt", "etap", *(f"{k}/{v}" for v in every for k in ("gt", "etap"))}
    for name, p in model.state_dict().items():
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked")):  # the training forward moved these
            assert torch.equal(p, state[name]), name
    assert str(opt.state_dict()) == str(opt_state)
    for variant in every:
        model.load_state_dict(state)
        opt.load_state_dict(copy.deepcopy(opt_state))
        alone = GradientProbe(model, TASKS, opt, ProbeConfig(lookahead_every=1, variant=variant))
        model.zero_grad()
        alone.backward(x, None, targets, step=0)
        alone.end_epoch()
        for k in ("gt", "etap"):
            np.testing.assert_allclose(probe.epochs[f"{k}/{variant}"], alone.epochs[k], rtol=1e-5, atol=1e-6, err_msg=f"{k}/{variant}")
    assert probe.epochs["gt"] == probe.epochs["gt/corrected"] and probe.epochs["etap"] == probe.epochs["etap/corrected"]
    assert not np.allclose(probe.epochs["gt/faithful"], probe.epochs["gt/raw"], atol=1e-3)  # the variants do differ


def test_etap_is_the_first_order_lookahead():
    model, opt, probe = _setup(optimizer="sgd", variant="faithful", lr=1e-4)
    x, targets = _batch()
    grads, losses = _task_grads(model, x, targets)
    encoder = torch.cat([torch.full((p.numel(),), id(p) in {id(q) for q in model.encoder_parameters()}) for p in model.shared_parameters()])
    probe.backward(x, None, targets, step=0)
    probe.end_epoch()
    etap, gt = np.array(probe.epochs["etap"][0]), np.array(probe.epochs["gt"][0])
    # u_p = lr g_p on the encoder: etap[t][p] = g_t . g_p(encoder) / L_t
    expected = (grads @ (grads * encoder).T).numpy() / np.array(losses)[:, None]
    np.testing.assert_allclose(etap, expected, rtol=1e-3)
    np.testing.assert_allclose(gt, etap, rtol=0.05, atol=0.05 * np.abs(etap).max())  # tiny steps: first order holds


def test_probe_rejects_bad_configs():
    with pytest.raises(ValueError, match="probes.variant: 'exact' is not one of faithful, corrected, raw"):
        ProbeConfig(variant="exact")
    with pytest.raises(ValueError, match=r"probes.variants\[1\]: 'exact' is not one of"):
        ProbeConfig(variants=("raw", "exact"))
    with pytest.raises(ValueError, match="probes.variants: each variant once"):
        ProbeConfig(variants=("raw", "raw"))
    with pytest.raises(ValueError, match="lookahead_every"):
        ProbeConfig(lookahead_every=0)
    with pytest.raises(ValueError, match="gradients_every"):
        ProbeConfig(gradients_every=0)
    model = MultiTaskNet(TASKS[:1], CONFIG)
    with pytest.raises(ValueError, match="multi-task"):
        GradientProbe(model, TASKS[:1], make_optimizer("adam", model.parameters(), 0.1, 0, 0), ProbeConfig())


def test_sparser_gradient_records():
    probe = _setup()[2]
    sparse = GradientProbe(probe.model, TASKS, probe.optimizer, ProbeConfig(lookahead_every=4, gradients_every=3))
    assert [s for s in range(10) if sparse.wants(s)] == [0, 3, 4, 6, 8, 9]
    for step in (3, 4):
        x, targets = _batch(step)
        probe.model.zero_grad()
        sparse.backward(x, None, targets, step=step)
    assert sparse._counts == {"gs": 1, "gs_kernels": 1, "gt": 1, "etap": 1}


@pytest.mark.parametrize("variant", ["corrected", "faithful"])
def test_lookahead_is_fp32_on_both_sides_under_autocast(variant):
    """The training forward under bf16 autocast (here on CPU): gt's baseline L_t(theta) must be the
    fp32 loss, as L_t(theta - u) is, or bf16's rounding of L_t, divided by lr, swamps the gap."""
    model, opt, probe = _setup(variant=variant)
    x, targets = _batch()
    lr = opt.param_groups[0]["lr"]
    start = copy.deepcopy(model)  # train mode: BatchNorm on batch statistics, whatever the probe's forward leaves
    seen, updates_of = [], probe._updates

    def updates(grads, which):  # note the steps the probe takes, for the brute force to take them too
        seen.append(updates_of(grads, which))
        return seen[-1]

    probe._updates = updates
    probe.backward(x, None, targets, step=0, autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    probe.end_epoch()
    gt = np.array(probe.epochs["gt"][0])

    # brute force, fp32: the same steps taken on copies of the model as it was
    with torch.no_grad():
        preds = start(x)
        before = [t.loss_value(preds[t.name], targets[t.name]).item() for t in TASKS]
        expected = np.zeros((3, 3))
        for source in range(3):
            stepped = copy.deepcopy(start)
            flat = seen[0][source]
            for p in stepped.shared_parameters():
                p -= flat[:p.numel()].view_as(p)
                flat = flat[p.numel():]
            after = stepped(x)
            for target, t in enumerate(TASKS):
                expected[target, source] = (1 - t.loss_value(after[t.name], targets[t.name]).item() / before[target]) / lr
    np.testing.assert_allclose(gt, expected, rtol=1e-4, atol=1e-4)  # a bf16 baseline is off by ~1e-2 here
