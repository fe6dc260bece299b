"""Sweep configs: every shipped config loads; bad keys and values are one-line errors naming them."""

import subprocess
import sys
from pathlib import Path

import pytest

from raytaskaff.config import ConfigError, load_config

SWEEPS = sorted(Path(__file__).resolve().parent.parent.joinpath("sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config.name == path.stem


def _write(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,message", [
    ("tasks: [depth_zbuffer, normal]\ncolour: blue\n", "colour: unknown key"),
    ("training: {epochs: 2, lr: 0.1, momentun: 0.9}\n", "training.momentun: unknown key"),
    ("training: {epochs: two}\n", "training.epochs: expected an integer, got 'two'"),
    ("training: {epochs: 0}\n", "training.epochs: must be an integer >= 1"),
    ("training: {lr: -1}\n", "training.lr: must be positive"),
    ("tasks: [depth_zbuffer, normals]\n", "tasks: unknown task 'normals'"),
    ("tasks: [depth_zbuffer]\n", "tasks: need at least two distinct tasks"),
    ("scorers: {td: {}, tag: {}}\n", "scorers: unknown scorer 'tag'"),
    ("scorers: {li: {seeds: [7]}}\n", "scorers.li.seeds: must be a list of the sweep's seeds"),
    ("data: {kind: lmdb}\n", "data.kind: 'lmdb' is not one of synthetic, shards"),
    ("model: {preset: huge}\n", "model: unknown model preset 'huge'"),
    ("resources: {cpus_per_run: 0}\n", "resources: cpus_per_run must be positive"),
    ("seeds: []\n", "seeds: need at least one seed"),
    ("probes: {variant: exact}\n", "probes.variant: 'exact' is not one of faithful, corrected"),
    ("grouping: {groups: [2, 9]}\n", "grouping.groups: at most 5 groups for 5 tasks"),
    ("grouping: {groups: [0]}\n", "grouping.groups[]: must be an integer >= 1, got 0"),
    ("grouping: {groups: [2], seeds: [5]}\n", "grouping.seeds: must be some of the sweep's seeds"),
    ("grouping: {groups: [2], exhaustive: yes please}\n", "grouping.exhaustive: expected true or false"),
    ("- a\n- b\n", "config: expected a mapping"),
    ("tasks: [a, b\n", "not valid YAML"),
])
def test_bad_configs_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(tmp_path / "sweep.yaml") in str(e.value)


def test_cli_exits_2_before_ray_starts(tmp_path):
    result = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(_write(tmp_path, "epochs: 3\n"))],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'sweep.yaml'}: epochs: unknown key (known: bootstrap, data, "
                                                  "grouping, model, name, out, probes, resources, retries, scorers, seeds, storage, tasks, training)"]
    assert "Ray" not in result.stdout + result.stderr.split("error:")[0]
    missing = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no such config file" in missing.stderr


def test_out_overrides_the_config(tmp_path):
    assert load_config(SWEEPS[0], out=str(tmp_path)).out == str(tmp_path)
