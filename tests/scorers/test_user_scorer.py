"""A scorer from the user's own file: loaded by the config, checked before Ray, planned from its
declared needs; td without a taxonomy is left out with its reason."""

import subprocess
import sys
from pathlib import Path

import pytest

from raytaskaff.config import ConfigError, load_config
from raytaskaff.plan import plan, summary
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
        load_config(_config(tmp_path, f"{{mine: {{module: {path}}}}}"))
    assert message.format(p=path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("options,message", [
    ("scal: 2", "scorers: mine: unknown option 'scal' (known: scale)"),
    ("scale: 0", "scorers: mine.scale: must be an integer >= 1, got 0"),
    ("class: Nope", "scorers: mine.class: {p} defines no 'Nope'"),
    ("class: Needs", "scorers: mine.class: Needs in {p} is not a Scorer subclass"),
])
def test_user_scorer_options_are_checked(tmp_path, options, message):
    mine = _mine(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config(_config(tmp_path, f"{{mine: {{module: {mine}, {options}}}}}"))
    assert message.format(p=mine) in str(e.value)


def test_the_cli_refuses_a_bad_module_with_exit_2(tmp_path):
    config = _config(tmp_path, "{mine: {module: nowhere/mine.py}}")
    done = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(config), "--dry-run"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {config}: scorers: mine.module: no such file 'nowhere/mine.py'"]


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
