"""The planner: runs of each kind, stable content keys."""

import dataclasses
from pathlib import Path

from raytaskaff.config import load_config
from raytaskaff.plan import bundles, numerics, plan, summary
from raytaskaff.sweep import describe, main

ROOT = Path(__file__).resolve().parent.parent


def test_ten_tasks_plan():
    config = load_config(ROOT / "sweeps" / "synthetic-10.yaml")
    runs = plan(config)
    per_seed = {k: v // len(config.seeds) for k, v in summary([r for r in runs if r.kind != "li"]).items()}
    assert per_seed == {"stl": 10, "pair": 45, "all": 1}
    li_seeds = config.scorers["li"].get("seeds", list(config.seeds))
    assert summary(runs)["li"] == 90 * len(li_seeds)
    assert len({r.key for r in runs}) == len(runs)


def test_keys_depend_on_content_only():
    config = load_config(ROOT / "sweeps" / "smoke.yaml")
    keys = {r.label: r.key for r in plan(config)}
    renamed = dataclasses.replace(config, name="other", out="elsewhere")
    assert {r.label: r.key for r in plan(renamed)} == keys
    longer = dataclasses.replace(config, training=dataclasses.replace(config.training, epochs=3))
    assert not set(keys.values()) & {r.key for r in plan(longer)}
    probes = dataclasses.replace(config, probes=dataclasses.replace(config.probes, lookahead_every=5))
    changed = {r.label: r.key for r in plan(probes)}
    assert all((changed[label] == key) == ("all " not in label) for label, key in keys.items())


def test_dry_run(capsys):
    assert main(["--config", str(ROOT / "sweeps" / "synthetic-10.yaml"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "runs by kind: stl 30, pair 135, all 3, li 90" in text and "estimated device-hours" in text
    assert "sweep synthetic-10" in describe(load_config(ROOT / "sweeps" / "synthetic-10.yaml"))


def test_stored_runs_of_the_default_keep_their_keys():
    """Keys are what resume relies on: the default's keys are those of the stores users already have
    (since the default was retuned for signal: 1008 training views of 16 px, 16 epochs, decoders of
    width 64, six seeds). Its six all-task runs were keyed anew when they came to compute every
    lookahead variant (probes.variants, issue 35; tests/test_probe_keys.py pins the rest)."""
    runs = plan(load_config(ROOT / "sweeps" / "default.yaml"))
    assert (runs[0].label, runs[0].key) == ("stl segment_semantic seed 0", "3b539f4044ffbaa6cb8d")
    assert runs[-1].key == "b459d10956546a9691a6" and len(runs) == 116


def test_synthetic_splits_are_part_of_the_data_identity():
    """The default split leaves the keys as they were; another split is other data."""
    config = load_config(ROOT / "sweeps" / "smoke.yaml")
    same = dataclasses.replace(config, data=dataclasses.replace(config.data, splits=(0.8, 0.1, 0.1)))
    other = dataclasses.replace(config, data=dataclasses.replace(config.data, splits=(0.4, 0.1, 0.5)))
    keys = [r.key for r in plan(config)]
    assert [r.key for r in plan(same)] == keys
    assert not set(keys) & {r.key for r in plan(other)}


def _shards_config(path, **data):
    config = load_config(ROOT / "sweeps" / "smoke.yaml")
    return dataclasses.replace(config, data=dataclasses.replace(config.data, kind="shards", path=str(path), **data))


def test_shard_datasets_are_keyed_by_content_not_path(tmp_path, tiny_dataset):
    """Moved, copied or spelled with a trailing slash: the same keys. Converted anew from other
    data at the same path: other keys."""
    import shutil

    import pytest

    from raytaskaff.data.shards import Manifest
    from raytaskaff.data.synth import SynthConfig, generate

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    fingerprints = {Manifest.load(p).fingerprint for p in (tiny_dataset, copy, f"{copy}/", f"file://{copy}")}
    assert len(fingerprints) == 1
    content = fingerprints.pop()
    keys = [r.key for r in plan(_shards_config(tiny_dataset), content)]
    assert keys == [r.key for r in plan(_shards_config(f"{copy}/"), content)]
    other = generate(tmp_path / "other", SynthConfig(n=40, size=16, seed=4, points_per_building=2, views_per_point=4)).fingerprint
    assert other != content and not set(keys) & {r.key for r in plan(_shards_config(tiny_dataset), other)}
    windowed = [r.key for r in plan(_shards_config(tiny_dataset, shuffle_window=2), content)]
    assert not set(windowed) & set(keys)  # another data order, another run
    with pytest.raises(ValueError, match="keyed by its content"):
        plan(_shards_config(tiny_dataset))


def test_the_reader_follows_the_path_and_the_cluster():
    from raytaskaff.sections import DataConfig

    assert DataConfig().resolved_reader(on_cluster=False) == "object_store"
    assert DataConfig().resolved_reader(on_cluster=True) == "mmap"
    assert DataConfig(kind="shards", path="s3://bucket/t", shuffle_window=4).resolved_reader(on_cluster=False) == "streaming"
    assert DataConfig(reader="mmap").resolved_reader(on_cluster=False) == "mmap"


def _digest(runs) -> str:
    import hashlib

    return hashlib.sha256(repr([(r.label, r.key) for r in runs]).encode()).hexdigest()[:16]


def test_planned_keys_are_pinned():
    """Every key of smoke and synthetic-10, and of a shard sweep with a fixed fingerprint: the
    stored results of users' sweeps stay found whatever the code around the planner becomes."""
    from raytaskaff.config import SweepConfig, from_dict

    smoke = plan(load_config(ROOT / "sweeps" / "smoke.yaml"))
    assert (smoke[0].label, smoke[0].key) == ("stl depth_zbuffer seed 0", "685c773e3986958f0e21")
    assert _digest(smoke) == "7c6f34fe2ddc6eb5"
    # a GPU sweep: its keys changed when they came to say the runs' numerics (cuda-bf16), and again
    # when they came to say whether each run trains stacked (plan.stacking)
    ten = plan(load_config(ROOT / "sweeps" / "synthetic-10.yaml"))
    assert (ten[0].key, ten[-1].key) == ("ca019ae9adcc444a1f19", "bbb35fcdd668a5d4f404") and _digest(ten) == "6c62eff42b61d2f3"
    # the default (CPUs): the keys it had before GPU keys said how their runs train (its all-task
    # runs keyed anew by probes.variants)
    default = plan(load_config(ROOT / "sweeps" / "default.yaml"))
    assert (len(default), default[0].key, default[-1].key) == (116, "3b539f4044ffbaa6cb8d", "b459d10956546a9691a6")
    assert _digest(default) == "227cc195cfa52048"
    shards = from_dict(SweepConfig, {
        "name": "pinned", "data": {"kind": "shards", "path": "/nowhere", "normalisation": "taskonomy"},
        "tasks": ["segment_semantic", "depth_zbuffer", "normal"], "seeds": [0, 1], "model": {"preset": "large"},
        "scorers": {"td": {}, "li": {}, "gs": {"source": "pairs"}}, "training": {"epochs": 3, "grad_scale": True}})
    runs = plan(shards, "fixed-fingerprint")
    assert (runs[-1].label, runs[-1].key) == ("li normal<-depth_zbuffer seed 1", "dea505cdd2e7bd35a742")
    assert len(runs) == 24 and _digest(runs) == "98e62f4738cff4fc"


def test_run_kinds_are_one_enum():
    from raytaskaff.settings import RunKind, RunSpec

    runs = plan(load_config(ROOT / "sweeps" / "smoke.yaml"))
    assert {r.kind for r in runs} == {RunKind.STL, RunKind.PAIR, RunKind.ALL, RunKind.LI, RunKind.GROUP} - {RunKind.GROUP}
    assert all(isinstance(r.kind, RunKind) for r in runs)
    assert summary(runs) == {"stl": 6, "pair": 6, "all": 2, "li": 6}
    assert RunKind.LI == "li" and {"li": 1}[RunKind.LI] == 1 and f"{RunKind.PAIR}" == "pair"
    assert RunSpec(("normal",), ("depth_zbuffer",)).kind is RunKind.LI


def _with(config, gpus=None, amp=None):
    resources = config.resources if gpus is None else dataclasses.replace(config.resources, gpus_per_run=gpus)
    training = config.training if amp is None else dataclasses.replace(config.training, amp=amp)
    return dataclasses.replace(config, resources=resources, training=training)


def test_numerics_of_a_config():
    config = load_config(ROOT / "sweeps" / "smoke.yaml")
    assert [numerics(_with(config, gpus, amp)) for gpus, amp in [(0, True), (0, False), (0.25, True), (1, True), (1, False)]] == [
        "cpu-fp32", "cpu-fp32", "cuda-bf16", "cuda-bf16", "cuda-fp32"]


def test_keys_say_the_device_kind_and_precision():
    """A GPU run (bf16 autocast, or fp32) computes other numbers than a CPU run: another key. The
    share of a GPU does not change them; CPU keys are the ones stores already hold."""
    config = load_config(ROOT / "sweeps" / "smoke.yaml")
    keys = {(gpus, amp): [r.key for r in plan(_with(config, gpus, amp))] for gpus in (0, 0.25, 1) for amp in (True, False)}
    assert keys[0, True][0] == "685c773e3986958f0e21"  # computed before numerics were part of the key
    assert keys[0, True][-1] == "d7211162e6845112df61"
    assert not set(keys[0, True]) & set(keys[1, True]) and not set(keys[0, False]) & set(keys[1, False])
    assert not set(keys[1, True]) & set(keys[1, False])
    assert keys[0.25, True] == keys[1, True] and keys[0.25, False] == keys[1, False]


def test_gpu_keys_say_whether_a_run_trains_stacked():
    """On CUDA fused and separate networks compute other numbers: two keys. A probed run never
    stacks, so fuse on or off it keeps one key; CPU keys say nothing of stacking."""
    from raytaskaff.plan import stacking

    config = _with(load_config(ROOT / "sweeps" / "smoke.yaml"), gpus=0.5)
    def resources(**changes):
        return dataclasses.replace(config, resources=dataclasses.replace(config.resources, **changes))

    fused, unfused, single = plan(config), plan(resources(fuse=False)), plan(resources(bundle=1))
    assert [stacking(config, r) for r in fused] == ["separate" if r.probes else "fused" for r in fused]
    assert any(r.probes for r in fused) and {stacking(resources(fuse=False), r) for r in unfused} == {"separate"}
    assert [r.key for r in unfused] == [r.key for r in single]  # separate either way: one key
    assert [a.key == b.key for a, b in zip(fused, unfused)] == [a.probes for a in fused]
    cpu = load_config(ROOT / "sweeps" / "smoke.yaml")
    assert {stacking(cpu, r) for r in plan(cpu)} == {None}
    forced = dataclasses.replace(cpu, resources=dataclasses.replace(cpu.resources, fuse=True, bundle=4))
    assert [r.key for r in plan(forced)] == [r.key for r in plan(cpu)]


def test_bundles_group_the_runs_of_a_seed_by_input():
    config = load_config(ROOT / "sweeps" / "default.yaml")
    runs = plan(config)
    auto = bundles(runs)
    assert sorted(r.key for b in auto for r in b.runs) == sorted(r.key for r in runs)  # every run once
    for b in auto:
        assert len({r.seed for r in b.runs}) == 1 and len({bool(r.inject) for r in b.runs}) == 1
    assert [(b.runs[0].seed, len(b.runs)) for b in auto] == [(0, 16), (0, 20), (1, 16), (2, 16), (3, 16), (4, 16), (5, 16)]
    assert auto[0].label == "bundle of 16 seed 0 (5 stl, 10 pair, 1 all)" and auto[1].label == "bundle of 20 seed 0 (20 li)"
    assert [len(b.runs) for b in bundles(runs, 6)][:5] == [6, 6, 4, 6, 6]  # cut in plan order
    assert [b.runs for b in bundles(runs, 1)] == [(r,) for r in runs] and bundles(runs, 1)[0].label == runs[0].label
    assert auto[0].key == bundles(list(reversed(runs)))[-1].key != auto[2].key  # named by its runs, not their order
    assert bundles([]) == []


def test_bundling_is_not_part_of_the_cpu_run_keys():
    config = load_config(ROOT / "sweeps" / "smoke.yaml")
    one = dataclasses.replace(config, resources=dataclasses.replace(config.resources, bundle=1, fuse=False))
    assert [r.key for r in plan(one)] == [r.key for r in plan(config)]
    ddp = dataclasses.replace(config, resources=dataclasses.replace(config.resources, workers=2))
    assert ddp.resources.bundle_limit == 1 and config.resources.bundle_limit == 1  # smoke: CPUs
    gpu = dataclasses.replace(config, resources=dataclasses.replace(config.resources, gpus_per_run=0.25))
    assert gpu.resources.bundle_limit == 32
    four = dataclasses.replace(config, resources=dataclasses.replace(config.resources, bundle=4))
    assert four.resources.bundle_limit == 4
    assert config.resources.fuses("cuda") and not config.resources.fuses("cpu")


def test_the_most_grouping_runs_are_the_largest_groups_no_planned_run_trains():
    """synthetic-10: 9 sources x (2 + 3 + 4) groups on each of 3 seeds, the largest first (9 and 8
    tasks, then 7); none when every group is planned (exhaustive) or none can be new (3 tasks)."""
    from raytaskaff.plan import grouping_sources, most_group_runs

    config = load_config(ROOT / "sweeps" / "synthetic-10.yaml")
    runs = plan(config)
    most = most_group_runs(config, runs)
    assert grouping_sources(config) == (*config.active_scorers, "ground_truth", "hoa") and len(grouping_sources(config)) == 9
    assert len(most) == 9 * 9 * 3 and summary(most) == {"group": 243}
    assert not {r.key for r in most} & {r.key for r in runs} and len({r.key for r in most}) == 243
    sizes = sorted(len(r.tasks) for r in most if r.seed == 0)
    assert sizes == [7] * 26 + [8] * 45 + [9] * 10  # 81 a seed: all C(10, 9) = 10 and C(10, 8) = 45, then 26 of 7
    exhaustive = dataclasses.replace(config, grouping=dataclasses.replace(config.grouping, exhaustive=True), tasks=config.tasks[:5])
    assert most_group_runs(exhaustive, plan(exhaustive)) == []
    assert most_group_runs(load_config(ROOT / "sweeps" / "smoke.yaml"), plan(load_config(ROOT / "sweeps" / "smoke.yaml"))) == []
