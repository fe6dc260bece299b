"""Names derived from runs: at most NAME_LIMIT characters at any task count and task-name length,
unique over every run of a 40-task sweep, the same in every invocation, and the short names of
earlier sweeps unchanged. The preflight refuses paths longer than the file system allows."""

import os
import random
import re
import string
from pathlib import Path

import pytest

from raytaskaff.config import load_config
from raytaskaff.names import NAME_LIMIT, bundle_name, experiment_name, longest_paths, run_name, run_title
from raytaskaff.plan import Run, RunKind, bundles, plan
from raytaskaff.preflight import PathError, check_path_lengths

SAFE = re.compile(r"[A-Za-z0-9_.+-]+")


def long_names(n: int, length: int = 40) -> list[str]:
    """`n` task names of exactly `length` characters, alike but for their first characters."""
    return [f"task_{i:02d}_".ljust(length, "x") for i in range(n)]


def forty_task_config(tmp_path, length: int = 40):
    """A sweep of 40 binary tasks with `length`-character names (all 40 CelebA attributes)."""
    from tests.fake_celeba import ATTRIBUTES

    tasks = "".join(f"  - {{name: {name}, family: binary, field: attributes, index: {attribute}}}\n"
                    for name, attribute in zip(long_names(40, length), ATTRIBUTES))
    path = tmp_path / "sweep.yaml"
    path.write_text(f"name: forty\ndata: {{kind: shards, path: {tmp_path / 'data'}}}\ntasks:\n{tasks}seeds: [0]\n"
                    "scorers: {gs: {}, li: {}}\n")
    return load_config(path)


def test_short_names_are_those_of_earlier_sweeps():
    li = Run("li", ("depth_zbuffer",), 0, inject=("normal",), key="0123456789abcdef0123")
    assert run_name(li) == "li_depth_zbuffer_from_normal_seed_0_01234567"
    assert run_name(Run("pair", ("depth_zbuffer", "normal"), 2, key="fedcba98765")) == "pair_depth_zbuffer+normal_seed_2_fedcba98"
    five = ("segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal")
    assert run_name(Run("all", five, 1, key="abcdef0123456789abcd")) == \
        "all_segment_semantic+keypoints2d+edge_texture+depth_zbuffer+normal_seed_1_abcdef01"


def test_a_long_name_keeps_its_kind_first_tasks_seed_and_whole_key():
    tasks = tuple(long_names(40))
    name = run_name(Run(RunKind.ALL, tasks, 3, key="0123456789abcdef0123"))
    assert name == f"all_{tasks[0]}+39_more_seed_3_0123456789abcdef0123" and len(name) <= NAME_LIMIT
    li = run_name(Run(RunKind.LI, tasks[5:6], 0, inject=tasks[7:8], key="k" * 20))
    assert li.startswith("li_task_05_") and "_from_task_07_" in li and li.endswith("_seed_0_" + "k" * 20)
    assert len(li) <= NAME_LIMIT


def test_every_name_is_bounded_and_filesystem_safe():
    """Brute force over task counts, name lengths (1 to 300 characters, any printable character),
    kinds, injected labels and seeds."""
    rng = random.Random(0)
    for _ in range(400):
        n = rng.choice([1, 2, 3, 5, 10, 40, 200])
        tasks = tuple("".join(rng.choices(string.printable, k=rng.randint(1, 300))) for _ in range(n))
        inject = tasks[:rng.randint(0, 2)]
        kind = rng.choice(list(RunKind))
        run = Run(kind, tasks, rng.randint(0, 10**6), inject=inject, key=f"{rng.getrandbits(80):020x}")
        name = run_name(run)
        assert len(name) <= NAME_LIMIT and SAFE.fullmatch(name), (len(name), name)
        assert run_name(run) == name  # a function of the run alone


def test_names_are_unique_and_stable_over_a_forty_task_sweep(tmp_path):
    config = forty_task_config(tmp_path)
    runs = plan(config, "content")
    assert len(runs) == 40 + 780 + 1 + 1560
    names = [run_name(r) for r in runs]
    assert len(set(names)) == len(runs) and max(map(len, names)) <= NAME_LIMIT
    assert [run_name(r) for r in plan(config, "content")] == names  # planned again: the same names
    trials = [bundle_name(list(b.runs), b.key) for b in bundles(runs, 32)]
    assert len(set(trials)) == len(trials) and max(map(len, trials)) <= NAME_LIMIT
    # the very long all-task run says its first task and how many more; its record holds the rest
    [everything] = [r for r in runs if r.kind == RunKind.ALL and r.seed == 0]
    assert run_name(everything).startswith(f"all_{config.tasks[0]}+") and "_more_seed_0_" in run_name(everything)
    # on the terminal too: a run's own label where it is short, else its name
    assert run_title(everything) == run_name(everything)
    pair = Run(RunKind.PAIR, ("depth_zbuffer", "normal"), 0, key="k" * 20)
    assert run_title(pair) == pair.label == "pair depth_zbuffer+normal seed 0"


def test_experiment_names_are_cut_and_safe():
    name = experiment_name("a sweep/with " + "x" * 300, "20260101-000000", "abcdef")
    assert name.startswith("a_sweep_with_x") and len(name) <= 48 + 23 and SAFE.fullmatch(name)


def test_paths_within_the_file_system_pass(tmp_path):
    check_path_lengths(longest_paths(tmp_path / "out", None, "forty"))
    check_path_lengths(longest_paths(tmp_path / "out", "s3://bucket/store", "forty"))


def test_a_path_past_the_file_systems_limit_is_refused_in_one_line(tmp_path):
    deep = tmp_path.joinpath(*["d" * 200] * 20)  # 4,000 characters and more, before any name of the sweep's
    with pytest.raises(PathError) as e:
        check_path_lengths(longest_paths(deep, None, "forty"))
    assert "more than the" in str(e.value) and "shorter path" in str(e.value) and "\n" not in str(e.value)


def test_a_name_past_the_file_systems_limit_is_refused(tmp_path, monkeypatch):
    """A file system whose names hold 100 bytes (eCryptfs holds 143): a trial's folder, a run's name
    and Tune's id, does not fit."""
    real = os.pathconf
    monkeypatch.setattr(os, "pathconf", lambda path, name: 100 if name == "PC_NAME_MAX" else real(path, name))
    with pytest.raises(PathError) as e:
        check_path_lengths(longest_paths(tmp_path / "out", None, "forty"))
    assert str(e.value).startswith("Tune trial: the name nnnn") and "longer than the 100 bytes" in str(e.value)


def test_the_dry_run_refuses_an_output_folder_too_deep(tmp_path, capsys):
    from raytaskaff.sweep import main

    deep = tmp_path.joinpath(*["d" * 200] * 20)
    config = Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml"
    assert main(["--config", str(config), "--out", str(deep), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "shorter path" in err[0]
