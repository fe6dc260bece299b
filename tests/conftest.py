"""Shared fixtures: small synthetic datasets rendered once per session (read-only for tests)."""

from __future__ import annotations

import os
import tempfile

import pytest

from raytaskaff.data.synth import SynthConfig, generate

# verification stamps (data/verify.py) of this session's datasets, never the user's cache
os.environ["RAYTASKAFF_CACHE"] = tempfile.mkdtemp(prefix="raytaskaff-test-cache-")


@pytest.fixture(scope="session")
def tiny_config() -> SynthConfig:
    return SynthConfig(n=40, size=16, seed=3, points_per_building=2, views_per_point=4)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_config):
    """A 40-view, 16 px arrow dataset with small shards (several per split)."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    generate(out, tiny_config, rows_per_shard=7)
    return out


@pytest.fixture(scope="session")
def train_dataset(tmp_path_factory):
    """192 views of 32 px (about 150 for training): enough for a short training to learn."""
    out = tmp_path_factory.mktemp("data") / "train32"
    generate(out, SynthConfig(n=192, size=32, seed=8, points_per_building=4, views_per_point=4))
    return out
