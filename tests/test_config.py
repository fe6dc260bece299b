"""Sweep configs: every shipped config loads; bad keys and values are one-line errors naming them."""

import dataclasses
import math
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from raytaskaff.config import ConfigError, SweepConfig, from_dict, load_config, to_dict
from raytaskaff.plan import plan

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
    ("training: {lr: -1}\n", "training.lr: must be a finite number > 0, got -1.0"),
    ("tasks: [depth_zbuffer, normals]\n", "tasks: unknown task 'normals'"),
    ("tasks: [depth_zbuffer]\n", "tasks: need at least two distinct tasks"),
    ("scorers: {td: {}, tag: {}}\n", "scorers: unknown scorer 'tag'"),
    ("scorers: {li: {seeds: [7]}}\n", "scorers.li.seeds: must be a list of the sweep's seeds"),
    ("data: {kind: lmdb}\n", "data.kind: 'lmdb' is not one of synthetic, shards"),
    ("model: {preset: huge}\n", "model: unknown model preset 'huge'"),
    ("resources: {cpus_per_run: 0}\n", "resources.cpus_per_run: must be a finite number > 0, got 0.0"),
    ("seeds: []\n", "seeds: need at least one seed"),
    ("probes: {variant: exact}\n", "probes.variant: 'exact' is not one of faithful, corrected"),
    ("grouping: {groups: [2, 9]}\n", "grouping.groups: at most 5 groups for 5 tasks"),
    ("grouping: {groups: [0]}\n", "grouping.groups[]: must be an integer >= 1, got 0"),
    ("grouping: {groups: [2], seeds: [5]}\n", "grouping.seeds: must be some of the sweep's seeds"),
    ("grouping: {groups: [2], exhaustive: yes please}\n", "grouping.exhaustive: expected true or false"),
    ("training: {lr: .inf}\n", "training.lr: must be a finite number > 0, got inf"),
    ("training: {lr: .nan}\n", "training.lr: must be a finite number > 0, got nan"),
    ("training: {momentum: 2}\n", "training.momentum: must be a finite number >= 0 and <= 1, got 2.0"),
    ("training: {weight_decay: -0.1}\n", "training.weight_decay: must be a finite number >= 0, got -0.1"),
    ("training: {epochs: 1.0e+30}\n", "training.epochs: expected an integer, got 1e+30"),
    ("resources: {gpus_per_run: .nan}\n", "resources.gpus_per_run: must be a finite number >= 0, got nan"),
    ("resources: {cpus_per_run: .inf}\n", "resources.cpus_per_run: must be a finite number > 0, got inf"),
    ("data: {size: 100000}\n", "data.size: at most 512"),
    ("data: {reader: ray_data}\n", "data.reader: 'ray_data' is not one of auto, object_store, mmap, streaming"),
    ("data: {reader: nfs}\n", "data.reader: 'nfs' is not one of auto, object_store, mmap, streaming"),
    ("data: {kind: shards, path: 's3://b/t', reader: mmap, shuffle_window: 2}\n", "data.reader: 'mmap' reads local shards"),
    ("data: {kind: shards, path: 's3://b/t'}\n", "data.shuffle_window: streaming reads shards in turn"),
    ("data: {reader: streaming}\n", "data.shuffle_window: streaming reads shards in turn"),
    ("data: {path: 's3://b/t'}\n", "data.path: synthetic data is rendered to a local directory"),
    ("data: {shuffle_window: -1}\n", "data.shuffle_window: must be an integer >= 0"),
    ("data: {readahead: 1.5}\n", "data.readahead: expected an integer"),
    ("data: {splits: [0.5, 0.5]}\n", "data.splits: three positive fractions (train, val, test) summing to 1, got [0.5, 0.5]"),
    ("data: {splits: [0.8, 0.2, 0.0]}\n", "data.splits: three positive fractions"),
    ("data: {splits: [0.5, 0.3, 0.3]}\n", "data.splits: three positive fractions"),
    ("data: {kind: shards, path: d, splits: [0.4, 0.1, 0.5]}\n", "data.splits: only synthetic data is split by the config"),
    ("scorers: {ias: {imagez: 5}}\n", "scorers: ias: unknown option 'imagez' (known: images)"),
    ("scorers: {rsa: {images: 0}}\n", "scorers: rsa.images: must be an integer >= 1, got 0"),
    ("scorers: {li: {seeds: [0], images: 3}}\n", "scorers: li: unknown option 'images' (known: seeds, pairs, targets, partners, rank_by, budget)"),
    ("scorers: {gs: {source: pair}}\n", "scorers: gs.source: 'pair' is not one of all, pairs"),
    ("scorers: {etap: {source: 3}}\n", "scorers: etap.source: expected a string, got 3"),
    ("name: ../../etc\n", "name: letters, digits"),
    ("- a\n- b\n", "config: expected a mapping"),
    ("tasks: [a, b\n", "not valid YAML at line 2, column 1 (expected ',' or ']'"),
    ("name: x\n  bad: : :\n", "not valid YAML at line 2, column 6 (mapping values are not allowed here)"),
    ("scorers: {li: {seeds: null}}\n", "scorers.li.seeds: must be a list of the sweep's seeds"),
    ("data: {\"\\n\": 1}\n", "data.'\\n': unknown key"),
    ("resources: {bundle: 0}\n", "resources.bundle: expected auto or an integer >= 1, got 0"),
    ("resources: {bundle: all}\n", "resources.bundle: expected auto or an integer >= 1, got 'all'"),
    ("resources: {bundle: 2.5}\n", "resources.bundle: expected an integer, got 2.5"),
    ("resources: {fuse: sometimes}\n", "resources.fuse: expected auto, true or false, got 'sometimes'"),
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
                                                  "ground_truth, grouping, model, name, out, probes, resources, retries, scorers, seeds, storage, tasks, tracking, training)"]
    assert "Ray" not in result.stdout + result.stderr.split("error:")[0]
    missing = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no such config file" in missing.stderr


def test_out_overrides_the_config(tmp_path):
    assert load_config(SWEEPS[0], out=str(tmp_path)).out == str(tmp_path)


def _paths(cls, prefix=()):
    """Every settable key path of a config dataclass, nested sections included."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield prefix + (f.name,)
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _paths(hints[f.name], prefix + (f.name,))


PATHS = sorted(set(_paths(SweepConfig)) | {("scorers", name, key) for name in ("ias", "rsa", "gs", "td", "li") for key in ("images", "source", "seeds", "x")})
NEAR_VALID = st.integers(-2, 40) | st.sampled_from([0.0, 0.5, 1e-3, 2.0, 1e30, -1e-9, math.nan, math.inf, -math.inf]) | st.booleans()
ANY = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.integers(-2**64, 2**64) | st.floats() | st.text(max_size=10)
    | st.sampled_from(["small", "adam", "cosine", "all", "pairs", "synthetic", "depth_zbuffer", "normal"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
VALUES = NEAR_VALID | ANY


def _finite_numbers(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite_numbers(v) for v in value)
    return True


def _load_edited(tmp_path, edits):
    """The smoke config with `edits` ([(key path, value)]) applied: (path, config or ConfigError)."""
    data = yaml.safe_load(SWEEPS[[p.name for p in SWEEPS].index("smoke.yaml")].read_text())
    for keys, value in edits:
        node = data
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        return path, load_config(path)
    except ConfigError as e:
        assert "\n" not in str(e) and str(e).startswith(f"{path}: ")
        return path, e


def test_no_key_takes_a_non_finite_or_absurd_number(tmp_path):
    """Every key, set to NaN, an infinity, a negative or an astronomically large number: refused in
    one line, or loaded with every number finite (brute force over all keys)."""
    for keys in PATHS:
        for value in (math.nan, math.inf, -math.inf, -1, -0.5, 10**30, 1e30):
            _, config = _load_edited(tmp_path, [(keys, value)])
            if not isinstance(config, ConfigError):
                assert _finite_numbers(dataclasses.asdict(config)), (keys, value)
                assert config.data.size <= 512 and config.data.n >= 1, (keys, value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=3))
def test_any_edit_of_a_config_loads_sanely_or_is_refused_in_one_line(tmp_path, edits):
    """Whatever a config holds, loading it gives a config that plans a sweep with finite numbers,
    or a one-line ConfigError naming the file; never another exception."""
    path, config = _load_edited(tmp_path, edits)
    if isinstance(config, ConfigError):
        event("refused: " + str(config).split(": ")[1].split(".")[0].split("[")[0])
        return
    event("loaded")
    assert _finite_numbers(dataclasses.asdict(config))
    runs = plan(config)
    assert {r.kind for r in runs} >= {"stl", "pair"} and all(r.seed in config.seeds for r in runs)
    assert config.training.epochs >= 1 and config.training.lr > 0 and config.resources.cpus_per_run > 0


DECLARED = ("data: {kind: shards, path: d}\n"
            "tasks: [{name: smiling, family: binary, field: attributes, index: 31},\n"
            "        {name: hair, family: binary, field: attributes, index: [8, 9, 11]}, normal]\n"
            "scorers: {li: {}}\n")


def test_tasks_declared_in_the_config(tmp_path):
    from raytaskaff.settings import TaskSpec

    config = load_config(_write(tmp_path, DECLARED))
    assert config.tasks == ("smiling", "hair", "normal")
    assert config.task_specs["smiling"] == TaskSpec("smiling", "binary", "attributes", index=31)
    assert config.task_specs["hair"].entries == (8, 9, 11) and config.task_specs["normal"].family == "dense_regression"
    keys = {r.label: r.key for r in plan(config, "content")}
    # a declared task's definition is part of its runs' keys; a preset's runs keep theirs
    other = load_config(_write(tmp_path, DECLARED.replace("index: 31", "index: 30")))
    changed = {r.label: r.key for r in plan(other, "content")}
    assert changed["stl normal seed 0"] == keys["stl normal seed 0"] and changed["stl hair seed 0"] == keys["stl hair seed 0"]
    assert changed["stl smiling seed 0"] != keys["stl smiling seed 0"] and changed["li hair<-smiling seed 0"] != keys["li hair<-smiling seed 0"]
    grey = load_config(_write(tmp_path, DECLARED.replace("path: d}", "path: d, input: grey}")))
    assert not set(keys.values()) & {r.key for r in plan(grey, "content")}  # another input, other runs


@pytest.mark.parametrize("entry,message", [
    ("{name: s, family: sigmoid, field: a}", "tasks.s.family: 'sigmoid' is not one of dense_regression, dense_classes, classification, binary, image_regression"),
    ("{name: s, family: binary}", "tasks[0]: needs field"),
    ("{name: s, family: binary, field: a, colour: red}", "tasks[0].colour: unknown key (known: name, family, field, masked, index, metrics)"),
    ("{name: s, family: binary, field: a, index: -1}", "tasks.s.index: an entry (a position >= 0 or a name) or a list of distinct ones, got -1"),
    ("{name: s, family: binary, field: a, index: [1, 1]}", "tasks.s.index: an entry (a position >= 0 or a name) or a list of distinct ones"),
    ("{name: s, family: dense_classes, field: a, index: 2}", "tasks.s.index: picks entries of an image-level vector"),
    ("{name: s, family: binary, field: a, masked: true}", "tasks.s.masked: only a dense_regression task is masked"),
    ("{name: 's s', family: binary, field: a}", "tasks: a task name is letters, digits"),
    ("[1]", "tasks[0]: a preset's name or a mapping"),
])
def test_bad_declared_tasks_are_one_line(tmp_path, entry, message):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, f"tasks: [{entry}, normal]\nscorers: {{li: {{}}}}\n"))
    assert message in str(e.value) and "\n" not in str(e.value)



@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_a_config_written_back_reads_as_itself(path):
    """to_dict gives what a sweep YAML spells (declared tasks inside `tasks`): evaluation.json's
    config, or a config a test writes, loads again as the same config."""
    config = load_config(path)
    assert from_dict(SweepConfig, yaml.safe_load(yaml.safe_dump(to_dict(config)))) == config
