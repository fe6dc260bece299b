"""The planner: runs of each kind, stable content keys."""

import dataclasses
from pathlib import Path

from raytaskaff.config import load_config
from raytaskaff.plan import plan, summary
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
