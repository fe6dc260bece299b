"""Bundles: the networks of a seed trained together equal their separate runs.

Fused (stacked, vmapped) networks reorder floating-point reductions, so they are compared within
tolerances; unfused bundles run the separate runs' very operations and must match bit for bit.
"""

import contextlib
from itertools import combinations
from unittest import mock

import pytest
import torch

from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.data.transforms import rgb_input
from raytaskaff.models import MultiTaskNet, preset
from raytaskaff.tasks import task
from raytaskaff.settings import RunResult
from raytaskaff.training import bundle as bundle_module
from raytaskaff.training.bundle import Member, StackingFailed, TrainingDiverged, train_bundle
from raytaskaff.training.chance import chance_losses
from raytaskaff.training.fused import FusedNets
from raytaskaff.training.loop import DataSplits, RunSpec, TrainConfig, train
from raytaskaff.training.probes import ProbeConfig

MODEL = preset("small")
FAST = TrainConfig(epochs=2, batch_size=32, lr=3e-3)
TASKS = ("depth_zbuffer", "normal", "edge_texture")
SEED_RUNS = [RunSpec((t,)) for t in TASKS] + [RunSpec(p) for p in combinations(TASKS, 2)] + [RunSpec(TASKS)]


@pytest.fixture(scope="module")
def splits(train_dataset):
    return DataSplits(*(SplitData.open(train_dataset, s) for s in ("train", "val", "test")), stats=Manifest.load(train_dataset).stats)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(splits, specs):
    names = sorted({f for s in specs for n in (*s.tasks, *s.inject) for f in task(n).fields() if f in splits.train.domains} | {"rgb"})
    raw = next(iter(splits.train.batches(16, names, shuffle=True, seed=1, drop_last=True)))
    # the standard layout, as the fused module computes in (a separate network's own gradient
    # moves by about 5e-4 between a channels-last and a standard input on a CPU)
    x = rgb_input(raw["rgb"]).contiguous()
    targets = {n: task(n).target(raw, splits.stats) for s in specs for n in (*s.tasks, *s.inject)}
    return x, targets


def _extra(spec, targets, size):
    return torch.cat([task(n).encode_input(targets[n], size) for n in spec.inject], dim=1) if spec.inject else None


def _close(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    """|actual - expected| <= rel |expected| in the L2 norm (elementwise relative error is
    meaningless for entries near zero, whose value is all reordering noise)."""
    error = (actual - expected).norm().item()
    assert error <= rel * expected.norm().item() + 1e-30, (error, expected.norm().item())


@pytest.mark.parametrize("specs, grad_scale", [
    (SEED_RUNS, False),
    (SEED_RUNS, True),  # 1/sqrt(T) at the representation, per network
    ([RunSpec(("depth_zbuffer",), ("edge_texture",)), RunSpec(("normal",), ("keypoints2d",)),
      RunSpec(("edge_texture",), ("keypoints2d",))], False),  # label injection, one channel from different partners
])
@pytest.mark.parametrize("loss", ["smooth", "task"])
def test_first_step_losses_and_gradients_equal_the_separate_networks(splits, specs, grad_scale, loss):
    """With a smooth loss the fused gradients equal the separate networks' within 1e-5 relative;
    with the tasks' own losses (L1 terms and masks, whose kinks flip sign under reordering noise)
    within 1e-4, while the separate fp32 gradient itself is 6e-4 to 2e-2 from its fp64 value."""
    x, targets = _batch(splits, specs)
    size = tuple(x.shape[-2:])
    nets = [MultiTaskNet([task(n) for n in s.tasks], MODEL, inject=[task(n) for n in s.inject], seed=4, grad_scale=grad_scale)
            for s in specs]
    fused = FusedNets(nets)  # copies the seeded initial weights
    extras = [_extra(s, targets, size) for s in specs]
    out = fused(x, None if extras[0] is None else torch.stack(extras))
    def value(t, pred):
        return pred.float().square().mean() if loss == "smooth" else task(t).loss_value(pred, targets[t])

    fused_losses = {i: {t: value(t, p) for t, p in fused.predictions(out, i).items()} for i in range(len(specs))}
    sum(sum(v.values()) for v in fused_losses.values()).backward()
    for i, (spec, net) in enumerate(zip(specs, nets)):
        losses = {t: value(t, p) for t, p in net(x, extras[i]).items()}
        sum(losses.values()).backward()
        for t in spec.tasks:
            torch.testing.assert_close(fused_losses[i][t], losses[t], rtol=1e-5, atol=0)
        mine = [fused._locate(i, name) for name, _ in net.named_parameters()]
        _close(torch.cat([part[key].grad[row].reshape(-1) for part, key, row in mine]),
               torch.cat([p.grad.reshape(-1) for p in net.parameters()]), 1e-5 if loss == "smooth" else 1e-4)


def test_fused_batchnorm_statistics_stay_per_network(splits):
    x, _ = _batch(splits, SEED_RUNS[:2])
    nets = [MultiTaskNet([task(s.tasks[0])], MODEL, seed=seed) for seed, s in enumerate(SEED_RUNS[:2])]
    fused = FusedNets(nets)
    fused(x)
    for i, net in enumerate(nets):
        net(x)
        state = fused.state_dict(i)
        for name, buffer in net.named_buffers():
            torch.testing.assert_close(state[name], buffer, rtol=1e-5, atol=1e-6)
    assert not torch.equal(fused.state_dict(0)["encoder.stem_rest.0.running_mean"], fused.state_dict(1)["encoder.stem_rest.0.running_mean"])


def test_a_fused_bundle_trains_each_network_as_its_separate_run(splits):
    separate = [train(s, MODEL, FAST, splits, seed=3) for s in SEED_RUNS]
    bundled = train_bundle([Member(s) for s in SEED_RUNS], MODEL, FAST, splits, seed=3, fuse=True)
    for a, b in zip(separate, bundled):
        assert b.spec == a.spec and b.best_epoch == a.best_epoch and b.bundle_size == len(SEED_RUNS)
        assert (b.training, b.training_reason, b.device) == ("fused", None, "cpu")
        assert (a.training, a.training_reason) == ("separate", "no other network of its architecture in its trial")
        assert b.test_losses == pytest.approx(a.test_losses, rel=0.01)
        assert b.parameters == a.parameters
        for ha, hb in zip(a.history, b.history):
            assert hb["val"] == pytest.approx(ha["val"], rel=0.01)


def test_an_unfused_bundle_is_bit_identical_to_separate_runs(splits):
    config = TrainConfig(epochs=2, batch_size=32, lr=3e-3, probes=ProbeConfig(lookahead_every=2))
    specs = [RunSpec(("depth_zbuffer",)), RunSpec(("depth_zbuffer", "normal"))]
    separate = [train(s, MODEL, config, splits, seed=3) for s in specs]
    bundled = train_bundle([Member(s, probes=True) for s in specs], MODEL, config, splits, seed=3, fuse=False)
    for a, b in zip(separate, bundled):
        assert b.test_losses == a.test_losses and b.history == a.history and b.probes == a.probes
    assert bundled[1].probes["gs"] and bundled[1].probe_variant == config.probes.variant
    assert [(r.training, r.training_reason) for r in bundled] == [
        ("separate", "stacking is off for this device (resources.fuse)"),
        ("separate", "its gradient probes need backward passes of their own")]


def test_probed_networks_train_beside_the_fused_ones(splits):
    config = TrainConfig(epochs=1, batch_size=32, lr=3e-3, probes=ProbeConfig(lookahead_every=2))
    members = [Member(s, probes=len(s.tasks) == 3) for s in SEED_RUNS]
    bundled = train_bundle(members, MODEL, config, splits, seed=3, fuse=True)
    alone = train(SEED_RUNS[-1], MODEL, config, splits, seed=3)
    assert bundled[-1].test_losses == alone.test_losses and bundled[-1].probes == alone.probes  # the plain path
    assert all(not r.probes for r in bundled[:-1])
    assert [r.training for r in bundled] == ["fused"] * (len(SEED_RUNS) - 1) + ["separate"]


def test_label_injection_networks_stack_by_injected_channels(splits):
    specs = [RunSpec(("depth_zbuffer",), ("normal",)), RunSpec(("edge_texture",), ("normal",)),  # 4 channels
             RunSpec(("normal",), ("edge_texture",)), RunSpec(("depth_zbuffer",), ("keypoints2d",))]  # 1 channel
    separate = [train(s, MODEL, FAST, splits, seed=1) for s in specs]
    bundled = train_bundle([Member(s) for s in specs], MODEL, FAST, splits, seed=1, fuse=True)
    for a, b in zip(separate, bundled):
        assert b.test_losses == pytest.approx(a.test_losses, rel=0.01)


def test_a_diverging_network_fails_alone(splits):
    real = FusedNets.predictions

    def poisoned(self, out, i):
        preds = real(self, out, i)
        return {t: p * float("nan") for t, p in preds.items()} if self.task_names[i] == ["depth_zbuffer", "normal"] else preds

    with mock.patch.object(FusedNets, "predictions", poisoned):
        bundled = train_bundle([Member(s) for s in SEED_RUNS], MODEL, FAST, splits, seed=3, fuse=True)
    clean = train_bundle([Member(s) for s in SEED_RUNS], MODEL, FAST, splits, seed=3, fuse=True)
    failed = bundled[SEED_RUNS.index(RunSpec(("depth_zbuffer", "normal")))]
    assert isinstance(failed, TrainingDiverged) and "loss of depth_zbuffer is nan at epoch 0 step 0" in str(failed)
    # what its result records: where it diverged, no test losses, no network
    record = failed.result
    assert record.diverged == {"epoch": 0, "step": 0, "task": "depth_zbuffer", "loss": "nan", "message": str(failed)}
    assert record.test_losses == {} and record.history == [] and record.model_path is None and record.chance_losses == {}
    assert RunResult.from_dict(record.to_dict()).diverged == record.diverged
    for a, b in zip(clean, bundled):
        if b is not failed:
            assert b.test_losses == pytest.approx(a.test_losses, rel=1e-5)


#: What a result may hold differently in another bundle: its costs (split evenly among the bundle's
#: networks) and how many networks shared it.
BOOKKEEPING = ("wall_seconds", "cpu_seconds", "gpu_seconds", "bundle_size")


def test_a_result_is_the_same_whatever_shared_its_bundle(splits):
    """A pair trained alone and beside other networks (unstacked: the same operations) holds the
    same record, chance levels included: they come from the data for its own tasks, not from STL
    siblings in its trial."""
    pair = RunSpec(("depth_zbuffer", "normal"))
    config = TrainConfig(epochs=1, batch_size=32, lr=3e-3)
    [alone] = train_bundle([Member(pair)], MODEL, config, splits, seed=2, fuse=False)
    bundled = train_bundle([Member(RunSpec(("depth_zbuffer",))), Member(pair), Member(RunSpec(("edge_texture",)))],
                           MODEL, config, splits, seed=2, fuse=False)
    a, b = alone.to_dict(), bundled[1].to_dict()
    assert (a["bundle_size"], b["bundle_size"]) == (1, 3)
    assert {k: v for k, v in a.items() if k not in BOOKKEEPING} == {k: v for k, v in b.items() if k not in BOOKKEEPING}
    expected = chance_losses([task("depth_zbuffer"), task("normal")], splits.train, splits.test, splits.stats,
                             torch.device("cpu"), config.eval_batch_size)
    assert alone.chance_losses == expected and set(expected) == {"depth_zbuffer", "normal"}
    assert bundled[2].chance_losses == chance_losses([task("edge_texture")], splits.train, splits.test, splits.stats,
                                                     torch.device("cpu"), config.eval_batch_size)


def test_bundle_checkpoints_resume_as_separate_runs_and_in_passes(splits, tmp_path):
    whole = train_bundle([Member(s) for s in SEED_RUNS], MODEL, FAST, splits, seed=2, fuse=True)
    members = [Member(s, checkpoint=tmp_path / f"{i}.pt", model_path=tmp_path / f"{i}.model") for i, s in enumerate(SEED_RUNS)]

    def crash(epoch, records):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_bundle(members, MODEL, FAST, splits, seed=2, on_epoch=crash, fuse=True)
    assert all(m.checkpoint.exists() for m in members)
    # the first network resumes as a separate run (from the fused optimizer's share of its state)
    alone = train(SEED_RUNS[0], MODEL, FAST, splits, seed=2, checkpoint=members[0].checkpoint)
    assert alone.test_losses == pytest.approx(whole[0].test_losses, rel=1e-4)
    # the others: two of them lose their checkpoint, so the bundle trains in two passes
    members[1].checkpoint.unlink()
    members[2].checkpoint.unlink()
    epochs = []
    resumed = train_bundle(members[1:], MODEL, FAST, splits, seed=2, fuse=True,
                           on_epoch=lambda epoch, records: epochs.append((epoch, len(records))))
    assert epochs == [(0, 2), (1, 2), (1, 4)]
    for a, b in zip(whole[1:], resumed):
        assert b.test_losses == pytest.approx(a.test_losses, rel=1e-4) and len(b.history) == FAST.epochs
        assert b.model_path is not None


def test_a_saved_fused_network_is_its_selected_epoch(splits, tmp_path):
    from raytaskaff.models import load_model
    from raytaskaff.training.evaluation import evaluate_network

    members = [Member(s, model_path=tmp_path / f"{i}.pt") for i, s in enumerate(SEED_RUNS[:4])]
    results = train_bundle(members, MODEL, FAST, splits, seed=0, fuse=True)
    net = load_model(members[3].model_path)
    assert net.task_names == list(SEED_RUNS[3].tasks) and results[3].model_path == str(members[3].model_path)
    tasks = [task(n) for n in SEED_RUNS[3].tasks]
    losses, _ = evaluate_network(net, splits.test, tasks, [], splits.stats, torch.device("cpu"), 256, contextlib.nullcontext)
    assert losses == pytest.approx(results[3].test_losses, rel=1e-5)


def test_an_empty_train_split_is_refused(splits):
    with pytest.raises(ValueError, match="fewer than one batch of 100000"):
        train_bundle([Member(SEED_RUNS[0])], MODEL, TrainConfig(epochs=1, batch_size=100000), splits, seed=0)


@pytest.mark.parametrize("folded", [True, False])  # one batch norm over N x C channels, or plain operations
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_stacked_batchnorm_is_batchnorm_per_network_in_any_activation_dtype(dtype, folded, monkeypatch):
    """The fused module's BatchNorm: per network, nn.BatchNorm2d's output, gradients and running
    statistics (fp32 statistics of bf16 activations, which cuDNN's kernel refuses under vmap)."""
    from torch.func import functional_call, vmap

    from raytaskaff.training.fused import _meta_copy, _StackedBatchNorm

    monkeypatch.setattr(_StackedBatchNorm, "folded", folded)
    torch.manual_seed(0)
    norms = [torch.nn.BatchNorm2d(6) for _ in range(3)]
    for bn in norms:
        torch.nn.init.uniform_(bn.weight)
        torch.nn.init.uniform_(bn.bias)
    template = _meta_copy(norms[0])
    params = {k: torch.stack([dict(bn.named_parameters())[k].detach() for bn in norms]).requires_grad_() for k in ("weight", "bias")}
    buffers = {k: torch.stack([dict(bn.named_buffers())[k] for bn in norms]) for k, _ in norms[0].named_buffers()}
    x = torch.randn(3, 8, 6, 5, 5).to(dtype)
    for training in (True, False):
        template.train(training)
        y = vmap(lambda p, b, x: functional_call(template, (p, b), (x,)))(params, buffers, x)
        assert y.dtype == dtype and buffers["running_mean"].dtype == torch.float32
        expected = []
        for i, bn in enumerate(norms):
            bn.train(training)
            expected.append(bn(x[i].float()))
            tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-2}
            torch.testing.assert_close(y[i].float(), expected[i], **tol)
            torch.testing.assert_close(buffers["running_mean"][i], bn.running_mean, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(buffers["running_var"][i], bn.running_var, rtol=1e-5, atol=1e-6)
            assert int(buffers["num_batches_tracked"][i]) == int(bn.num_batches_tracked) == 1
        if dtype == torch.float32 and training:
            y.square().sum().backward()
            for i, bn in enumerate(norms):
                expected[i].square().sum().backward()
                torch.testing.assert_close(params["weight"].grad[i], bn.weight.grad, rtol=1e-4, atol=1e-5)
                torch.testing.assert_close(params["bias"].grad[i], bn.bias.grad, rtol=1e-4, atol=1e-5)


def test_stacking_that_fails_on_its_first_step_falls_back_to_separate_modules(splits):
    def unsupported(self, x, extra=None):
        raise RuntimeError("NYI: querying is_contiguous inside of vmap for memory_format other than torch.contiguous_format")

    specs = SEED_RUNS[:4]
    with mock.patch.object(FusedNets, "__call__", unsupported), pytest.warns(UserWarning, match="stacked networks failed"):
        fallen = train_bundle([Member(s) for s in specs], MODEL, FAST, splits, seed=3, fuse=True, fall_back=True)
    plain = train_bundle([Member(s) for s in specs], MODEL, FAST, splits, seed=3, fuse=False)
    assert [r.test_losses for r in fallen] == [r.test_losses for r in plain]
    assert {r.training for r in fallen} == {"fell back"} and {r.training for r in plain} == {"separate"}
    assert fallen[0].training_reason == ("stacked first step failed on cpu: NYI: querying is_contiguous inside of vmap "
                                         "for memory_format other than torch.contiguous_format")


def test_stacking_that_fails_without_a_fallback_fails_in_one_line(splits, tmp_path):
    """The default, and the engine's choice on CUDA, where the runs' keys say they stack: nothing
    is trained or written."""
    def refused(self, x, extra=None):
        raise RuntimeError("Expected running_mean to have type BFloat16 but got Float\nmore details")

    members = [Member(s, checkpoint=tmp_path / f"{i}.pt") for i, s in enumerate(SEED_RUNS[:3])]
    with mock.patch.object(FusedNets, "__call__", refused), pytest.raises(StackingFailed) as failed:
        train_bundle(members, MODEL, FAST, splits, seed=3, fuse=True)
    assert str(failed.value) == ("3 stacked networks failed their first step on cpu (Expected running_mean to have type "
                                 "BFloat16 but got Float); nothing was stored: to train them unstacked, under keys of their "
                                 "own, set resources.fuse: false (or resources.bundle: 1)")
    assert not list(tmp_path.iterdir())


def test_the_savings_change_no_bit_of_a_bundles_results(splits, tmp_path, monkeypatch):
    """The savings taken (a validation pass without the metrics the loop throws away, the
    optimizers' foreach kernels) against the paths they replace, in this one process: a short
    fused bundle's losses and histories are the same bits."""
    specs = [RunSpec(("depth_zbuffer",)), RunSpec(("normal",)), RunSpec(("depth_zbuffer", "normal")),
             RunSpec(("depth_zbuffer",), ("normal",))]
    config = TrainConfig(epochs=2, batch_size=32, lr=3e-3, probes=ProbeConfig())

    def trained(folder):
        members = [Member(s, checkpoint=tmp_path / folder / f"{i}.pt") for i, s in enumerate(specs)]
        (tmp_path / folder).mkdir()
        return train_bundle(members, MODEL, config, splits, seed=3, fuse=True)

    saved = trained("saved")
    adam, evaluate, replaced = torch.optim.Adam, bundle_module._evaluate, []

    def loop_adam(*args, foreach=None, **kwargs):
        replaced.append(("adam", foreach))
        return adam(*args, foreach=False, **kwargs)

    def with_metrics(*args, metrics=True, **kwargs):
        replaced.append(("metrics", metrics))
        return evaluate(*args, metrics=True, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", loop_adam)
    monkeypatch.setattr(bundle_module, "_evaluate", with_metrics)
    before = trained("before")
    assert ("adam", True) in replaced and ("metrics", False) in replaced  # both savings were on, and both replaced
    for a, b in zip(saved, before):
        assert a.test_losses == b.test_losses and [h["val"] for h in a.history] == [h["val"] for h in b.history]
        assert [h["train"] for h in a.history] == [h["train"] for h in b.history]