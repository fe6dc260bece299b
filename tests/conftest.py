"""Shared fixtures: small synthetic datasets rendered once per session (read-only for tests)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from raytaskaff.data.synth import SynthConfig, generate

# verification stamps (data/verify.py) of this session's datasets, never the user's cache
os.environ["RAYTASKAFF_CACHE"] = tempfile.mkdtemp(prefix="raytaskaff-test-cache-")


CHECKOUT = Path(__file__).resolve().parents[1]
#: The checkout's folders that the configs under sweeps/ name by relative paths (data/..., out/...):
#: a test that runs one of them as it is writes there.
WATCHED = ("data", "out")


def _checkout_entries() -> set[str]:
    return {f"{folder}/{name}" for folder in WATCHED if (CHECKOUT / folder).is_dir() for name in os.listdir(CHECKOUT / folder)}


@pytest.fixture(autouse=True)
def _nothing_written_into_the_checkout():
    """Every test writes under its temporary directories: one that leaves a new entry in the
    checkout's data/ or out/ fails, naming it."""
    before = _checkout_entries()
    yield
    added = sorted(_checkout_entries() - before)
    if added:
        pytest.fail(f"wrote {', '.join(added)} into the checkout {CHECKOUT}: give it a path under tmp_path", pytrace=False)


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


def ray_processes_of(token: Path) -> list[int]:
    """Every process of a head started by `own_ray_head`: all inherit its token path (Ray retitles
    its processes, so their command lines cannot tell)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                pairs = Path(f"/proc/{entry}/environ").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if f"RAY_AUTH_TOKEN_PATH={token}" in pairs:
                pids.append(int(entry))
    return pids


@contextlib.contextmanager
def _own_ray_head(args: list[str], extra_env: dict | None = None):
    """A Ray head of the test's own, with token authentication: `ray start --head --block ARGS` in
    its own session, temp dir (short: Ray's socket paths must fit) and token file. On exit it and
    every process that inherits its token path are stopped; never `ray stop`, which ends every Ray
    of the machine. Yields (base directory, token file, the head's environment)."""
    base = Path(tempfile.mkdtemp(prefix="rt-head-", dir="/tmp"))
    token = base / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), RAY_USAGE_STATS_ENABLED="0", **(extra_env or {}))
    log = open(base / "head.log", "w")
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                             f"--temp-dir={base / 'ray'}", *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        yield base, token, env
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        try:  # `ray start --block` outlives its SIGTERM: what is left is killed below
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        for pid in ray_processes_of(token):  # what the head left, and the nodes it started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def own_ray_head():
    """`_own_ray_head`, for module fixtures that start a head of their own."""
    return _own_ray_head
