"""A scorer from the user's own file: found by the config, run and checked by the preflight before
Ray (never by parsing), planned from its declared needs; td without a taxonomy is left out with its
reason."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from raytaskaff.config import ConfigError, load_config
from raytaskaff.plan import plan, summary
from raytaskaff.preflight import check_scorers
from raytaskaff.scorers import Artifacts, SeedRuns
from raytaskaff.sweep import describe

ROOT = Path(__file__).resolve().parents[2]

MINE = '''
from raytaskaff.scorers.base import Needs, Scorer


class LossRatio(Scorer):
    """value(t, p) = scale * L_STL(p) / L_STL(t), from the STL runs of every seed (seed 0 here)."""

    needs = Needs(stl=True, mtl="{mtl}")

    def compute(self, artifacts, scale: int = 1):
        runs = artifacts.seeds[0]
        loss = {{t: runs.stl[t].test_losses[t] for t in artifacts.tasks}}
        return {{(t, p): scale * loss[p] / loss[t] for t, p in artifacts.ordered_pairs()}}
'''


def _config(tmp_path, scorers: str, tasks="[depth_zbuffer, normal, edge_texture]"):
    path = tmp_path / "sweep.yaml"
    path.write_text(f"name: t\ntasks: {tasks}\nseeds: [0, 1]\nscorers: {scorers}\n")
    return path


def _checked(path):
    """The config at `path` as a sweep reads it: parsed, then its users' scorers run and checked."""
    config = load_config(path)
    check_scorers(config, path)
    return config


def _mine(tmp_path, mtl="pairs", text=None, name="mine.py"):
    path = tmp_path / name
    path.write_text(text if text is not None else MINE.format(mtl=mtl))
    return path


def test_a_user_scorer_scores_and_its_needs_decide_the_plan(tmp_path, result):
    mine = _mine(tmp_path)
    config = load_config(_config(tmp_path, f"{{mine: {{module: {mine}, scale: 3}}}}"))
    runs = plan(config)
    # pairs are instrumented because the scorer reads them; no scorer reads an all-task network or LI
    assert summary(runs) == {"stl": 6, "pair": 6} and all(r.probes for r in runs if r.kind == "pair")
    s = config.scorer("mine")
    assert s.name == "mine" and config.scorer_options("mine") == {"scale": 3}
    seed = SeedRuns(0, stl={t: result([t], {t: loss}) for t, loss in (("depth_zbuffer", 2.0), ("normal", 4.0), ("edge_texture", 1.0))})
    score = s.score(Artifacts(tuple(config.tasks), [seed]), **config.scorer_options("mine"))
    values = {(r.target, r.partner): r.value for r in score.table.itertuples()}
    assert values[("depth_zbuffer", "normal")] == pytest.approx(3 * 4.0 / 2.0) and values[("normal", "edge_texture")] == pytest.approx(3 / 4)
    assert score.name == "mine" and len(values) == 6

    all_tasks = load_config(_config(tmp_path, f"{{mine: {{module: {_mine(tmp_path, 'all', name='all.py')}}}}}"))
    assert summary(plan(all_tasks)) == {"stl": 6, "pair": 6, "all": 2} and not any(r.probes for r in plan(all_tasks) if r.kind == "pair")


def test_li_seeds_are_the_needs_of_li(tmp_path):
    config = load_config(_config(tmp_path, "{li: {seeds: [1]}}"))
    assert config.scorer_needs()["li"].seeds == (1,)
    runs = plan(config)
    assert {r.seed for r in runs if r.kind == "li"} == {1} and summary(runs)["li"] == 6


@pytest.mark.parametrize("text,name,message", [
    (None, "missing.py", "scorers: mine.module: no such file"),
    ("def broken(:\n", "broken.py", "scorers: mine.module: {p} failed to import: SyntaxError"),
    ("raise RuntimeError('no GPU here')\n", "raises.py", "failed to import: RuntimeError: no GPU here"),
    ("x = 1\n", "empty.py", "must define one Scorer subclass, it defines none"),
    (MINE.format(mtl="all") + "\nclass Other(LossRatio):\n    pass\n", "two.py", "it defines several (LossRatio, Other): name one with class"),
    ("from raytaskaff.scorers.base import Scorer\nclass Lazy(Scorer):\n    pass\n", "lazy.py", "Lazy in {p} does not implement compute"),
    (MINE.format(mtl="every"), "needs.py", "needs.mtl: 'every' is not one of all, pairs"),
])
def test_a_bad_user_scorer_is_one_line_before_ray(tmp_path, text, name, message):
    path = tmp_path / name if text is None else _mine(tmp_path, text=text, name=name)
    with pytest.raises(ConfigError) as e:
        _checked(_config(tmp_path, f"{{mine: {{module: {path}}}}}"))
    assert message.format(p=path) in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith(f"{tmp_path / 'sweep.yaml'}: scorers: ")


@pytest.mark.parametrize("options,message", [
    ("scal: 2", "scorers: mine: unknown option 'scal' (known: scale)"),
    ("scale: 0", "scorers: mine.scale: must be an integer >= 1, got 0"),
    ("class: Nope", "scorers: mine.class: {p} defines no 'Nope'"),
    ("class: Needs", "scorers: mine.class: Needs in {p} is not a Scorer subclass"),
])
def test_user_scorer_options_are_checked(tmp_path, options, message):
    mine = _mine(tmp_path)
    with pytest.raises(ConfigError) as e:
        _checked(_config(tmp_path, f"{{mine: {{module: {mine}, {options}}}}}"))
    assert message.format(p=mine) in str(e.value)


def test_the_cli_refuses_a_bad_module_with_exit_2(tmp_path):
    config = _config(tmp_path, "{mine: {module: nowhere/mine.py}}")
    done = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(config), "--dry-run"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {config}: scorers: mine.module: no such file 'nowhere/mine.py'"]


def test_the_cli_runs_the_preflight_on_a_file_that_raises(tmp_path):
    """The file exists, so parsing accepts it; `main` imports it in the preflight and refuses it."""
    mine = _mine(tmp_path, text="raise RuntimeError('boom')\n", name="bad.py")
    config = _config(tmp_path, f"{{mine: {{module: {mine}}}}}")
    done = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(config), "--dry-run"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {config}: scorers: mine.module: {mine} failed to import: RuntimeError: boom"]


def test_class_needs_a_module(tmp_path):
    with pytest.raises(ConfigError, match="scorers.gs.class: names a class of a `module` file"):
        load_config(_config(tmp_path, "{gs: {class: Gs}}"))


def test_td_without_a_taxonomy_is_skipped_on_other_tasks(tmp_path):
    config = load_config(_config(tmp_path, "{td: {}, li: {}}", tasks="[reshading, autoencoding]"))
    assert config.active_scorers == ("li",) and list(config.skipped_scorers()) == ["td"]
    why = config.skipped_scorers()["td"]
    assert why.startswith("no taxonomy given (scorers.td.taxonomy)") and "not reshading-autoencoding" in why
    assert f"scorer td skipped: {why}" in describe(config).splitlines()
    # the Taskonomy five keep their built-in tree; a given taxonomy that misses a pair is an error
    assert load_config(_config(tmp_path, "{td: {}}", tasks="[normal, depth_zbuffer]")).active_scorers == ("td",)
    with pytest.raises(ConfigError, match="scorers: td: the taxonomy has no distance between reshading and autoencoding"):
        load_config(_config(tmp_path, "{td: {taxonomy: {reshading: {normal: 2}}}}", tasks="[reshading, autoencoding]"))


COUNTED = MINE.format(mtl="pairs") + """
import os
with open(os.environ["RAYTASKAFF_TEST_IMPORTS"], "a") as log:
    log.write("imported\\n")
"""


def test_parsing_and_replacing_run_no_user_code_and_the_preflight_runs_it_once(tmp_path, monkeypatch):
    log = tmp_path / "imports.log"
    monkeypatch.setenv("RAYTASKAFF_TEST_IMPORTS", str(log))
    mine = _mine(tmp_path, text=COUNTED, name="counted.py")
    config = load_config(_config(tmp_path, f"{{mine: {{module: {mine}, scale: 2}}}}"))
    config = dataclasses.replace(dataclasses.replace(config, seeds=(0,)), name="again")
    assert not log.exists()  # parsed and replaced twice: the file never ran
    check_scorers(config)
    check_scorers(config)
    assert summary(plan(config)) == {"stl": 3, "pair": 3} and config.scorer("mine").name == "mine"
    assert log.read_text() == "imported\n"  # once, for the preflight, the planner and the scorer alike
    mine.write_text(COUNTED.replace("scale * loss", "2 * scale * loss"))  # new content: a new module
    check_scorers(config)
    assert log.read_text() == "imported\n" * 2


def test_a_failing_file_is_run_once_and_says_the_same_each_time(tmp_path, monkeypatch):
    log = tmp_path / "imports.log"
    monkeypatch.setenv("RAYTASKAFF_TEST_IMPORTS", str(log))
    mine = _mine(tmp_path, text=COUNTED + "raise RuntimeError('no GPU here')\n", name="fails.py")
    config = load_config(_config(tmp_path, f"{{mine: {{module: {mine}}}}}"))
    messages = []
    for _ in range(2):
        with pytest.raises(ConfigError) as e:
            check_scorers(config)
        messages.append(str(e.value))
    assert messages[0] == messages[1] == f"scorers: mine.module: {mine} failed to import: RuntimeError: no GPU here"
    assert log.read_text() == "imported\n"


TYPED = '''
from typing import Literal

from raytaskaff.scorers.base import Needs, Scorer


class Typed(Scorer):
    needs = Needs(stl=True)

    def compute(self, artifacts, images: int = 8, weight: float = 0.5, mode: Literal["mean", "max"] = "mean",
                ids: list[int] | None = None, label: str = "x", signed: bool = False, table: dict | None = None):
        return {pair: weight for pair in artifacts.ordered_pairs()}
'''


@pytest.mark.parametrize("options,message", [
    ("weight: fast", "scorers: typed.weight: expected a finite number, got 'fast'"),
    ("weight: .nan", "scorers: typed.weight: expected a finite number, got nan"),
    ("mode: median", "scorers: typed.mode: 'median' is not one of mean, max"),
    ("mode: 1", "scorers: typed.mode: expected a string, got 1"),
    ("ids: 3", "scorers: typed.ids: expected a list of integers, got 3"),
    ("ids: [0, a]", "scorers: typed.ids[1]: expected an integer, got 'a'"),
    ("label: [a]", "scorers: typed.label: expected a string, got ['a']"),
    ("signed: 1", "scorers: typed.signed: expected true or false, got 1"),
    ("images: 2.5", "scorers: typed.images: expected an integer >= 1, got 2.5"),
    ("images: true", "scorers: typed.images: expected an integer >= 1, got True"),
    ("table: [1]", "scorers: typed.table: expected a mapping, got [1]"),
])
def test_user_scorer_options_are_checked_against_their_declared_types(tmp_path, options, message):
    mine = _mine(tmp_path, text=TYPED, name="typed.py")
    with pytest.raises(ConfigError) as e:
        _checked(_config(tmp_path, f"{{typed: {{module: {mine}, {options}}}}}"))
    assert str(e.value) == f"{tmp_path / 'sweep.yaml'}: {message}"


def test_options_of_the_declared_types_pass(tmp_path):
    mine = _mine(tmp_path, text=TYPED, name="typed.py")
    options = "images: 3, weight: 2, mode: max, ids: [0, -3], label: y, signed: true, table: {a: 1}"
    config = _checked(_config(tmp_path, f"{{typed: {{module: {mine}, {options}}}}}"))
    assert config.scorer("typed").options()["mode"].default == "mean"
    assert config.scorer_options("typed")["weight"] == 2
