"""Lookahead variants computed side by side change the keys of the instrumented runs that compute
them, and no other key: the default without its variants has the keys it had before variants
existed, and with them (as sweeps/default.yaml computes them) only its all-task runs' keys differ."""

import dataclasses
from pathlib import Path

import pytest

from raytaskaff.config import load_config
from raytaskaff.plan import plan
from raytaskaff.settings import ConfigError, ProbeConfig

ROOT = Path(__file__).resolve().parents[1]

#: The default's instrumented (all-task) runs, keyed before `probes.variants` existed.
DEFAULT_PROBED = ["c257d8c909ca5319c760", "2a0e455c3c521e22b52b", "1294d89d7015d8f01daa", "6072f301bd89110240ee",
                  "1403bbab5925fd2a370c", "501a090338c1b328f626"]
#: The same runs computing the variants faithful and raw beside corrected, as sweeps/default.yaml does.
DEFAULT_VARIANTS = ["90d970a2cfef27b93915", "aaeab0ed981377acc863", "f739de1d1e2d63aa41c4", "a358da258afae523410b",
                    "8a350008813e89ff7bb2", "b459d10956546a9691a6"]


def test_default_keys_are_those_before_variants_and_variants_key_only_the_probed_runs():
    default = load_config(ROOT / "sweeps" / "default.yaml")
    assert default.probes.variants == ("faithful", "raw")
    assert [r.key for r in plan(default) if r.probes] == DEFAULT_VARIANTS
    config = dataclasses.replace(default, probes=dataclasses.replace(default.probes, variants=()),
                                 scorers={k: v for k, v in default.scorers.items() if "/" not in k})
    before = plan(config)
    assert [r.key for r in before if r.probes] == DEFAULT_PROBED
    assert [(r.label, r.key) for r in before if not r.probes] == [(r.label, r.key) for r in plan(default) if not r.probes]
    every = dataclasses.replace(config, probes=dataclasses.replace(config.probes, variants=("faithful", "corrected", "raw")))
    after = plan(every)
    assert [r.label for r in after] == [r.label for r in before]
    for old, new in zip(before, after):
        assert (old.key != new.key) == old.probes, old.label
    assert ProbeConfig().identity() == {"lookahead_every": 10, "variant": "corrected", "gradients_every": 1}
    assert ProbeConfig(variants=("raw",)).identity()["variants"] == ("raw",)


def test_variants_in_yaml_are_checked(tmp_path):
    text = (ROOT / "sweeps" / "default.yaml").read_text()
    line = "probes: {lookahead_every: 10, variant: corrected, gradients_every: 1, variants: [faithful, raw]}"
    assert line in text
    path = tmp_path / "v.yaml"
    bare = "".join(x for x in text.splitlines(keepends=True) if not x.lstrip().startswith(("gt/faithful", "etap/faithful")))
    path.write_text(bare.replace(line, line.replace("[faithful, raw]", "[raw]")))
    assert load_config(path).probes.variants == ("raw",)
    path.write_text(text.replace(line, line.replace("[faithful, raw]", "[sideways]")))
    with pytest.raises(ConfigError, match=r"probes.variants\[0\]: 'sideways' is not one of faithful, corrected, raw"):
        load_config(path)


def test_a_variant_scorer_needs_its_variant_computed(tmp_path):
    text = (ROOT / "sweeps" / "default.yaml").read_text()
    line = "probes: {lookahead_every: 10, variant: corrected, gradients_every: 1, variants: [faithful, raw]}"
    assert line in text and "\n  etap: {source: all}\n" in text
    path = tmp_path / "v.yaml"
    bare = "".join(x for x in text.splitlines(keepends=True) if not x.lstrip().startswith(("gt/", "etap/")))  # no variant scorer
    variants = bare.replace(line, line.replace("[faithful, raw]", "[faithful]"))
    path.write_text(variants.replace("\n  etap: {source: all}\n", "\n  etap: {source: all}\n  gt/faithful: {}\n"))
    assert "gt/faithful" in load_config(path).active_scorers
    path.write_text(variants.replace("\n  etap: {source: all}\n", "\n  etap: {source: all}\n  etap/raw: {}\n"))
    with pytest.raises(ConfigError, match=r"scorers.etap/raw: reads the lookahead variant 'raw', which the runs compute only when "
                                          r"probes.variants lists it \(it lists \['faithful'\]\)"):
        load_config(path)
