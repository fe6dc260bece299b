"""Ray's token authentication, as a cluster from cluster.yaml runs it: a head started with
RAY_AUTH_MODE=token takes the sweep through `ray job submit` with the token and refuses it without.
The head is this test's own (`ray start --head --block` in its own session and temp dir), and only
its processes are stopped: never `ray stop`, which ends every Ray of the machine."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parent.parent
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def token_head(own_ray_head):
    dashboard = _free_port()
    args = [f"--port={_free_port()}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
            "--num-cpus=2"]
    with own_ray_head(args) as (base, token, env):
        url = f"http://127.0.0.1:{dashboard}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:  # 401: up, and asking for the token
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the head's dashboard never answered: {(base / 'head.log').read_text()[-2000:]}")
        yield {"url": url, "token": token, "base": base, "env": env}


@pytest.fixture(scope="module")
def job_dir(token_head, tmp_path_factory):
    """A working directory holding a three-run sweep over a small dataset."""
    from raytaskaff.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("job")
    generate(root / "data", SynthConfig(n=96, size=16, seed=3))
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    raw.update({"data": {"kind": "shards", "path": str(root / "data")}, "tasks": ["depth_zbuffer", "normal"], "seeds": [0],
                "scorers": {"td": raw["scorers"]["td"]}, "grouping": {"groups": []}, "out": str(root / "out")})
    work = root / "work"
    work.mkdir()
    (work / "sweep.yaml").write_text(yaml.safe_dump(raw))
    return root


def _submit(head, work: Path, env: dict) -> subprocess.CompletedProcess:
    for _ in range(30):  # a fresh head's job agent takes a few seconds to register
        done = subprocess.run([*RAY, "job", "submit", "--address", head["url"], "--working-dir", str(work), "--",
                               "python", "-m", "raytaskaff.sweep", "--config", "sweep.yaml", "--address", "auto"],
                              env=env, capture_output=True, text=True, timeout=300)
        if "No available agent to submit job" not in done.stderr:
            return done
        time.sleep(2)
    return done


def _client_env(head, tmp_path, **auth) -> dict:
    """A user's shell: no cluster token unless given (HOME without ~/.ray/auth_token)."""
    env = {k: v for k, v in head["env"].items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")}
    env["HOME"] = str(tmp_path)
    env.update(auth)
    return env


def test_without_the_token_the_job_is_refused(token_head, job_dir, tmp_path):
    for auth in ({}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"}):
        done = _submit(token_head, job_dir / "work", _client_env(token_head, tmp_path, **auth))
        assert done.returncode != 0, done.stdout[-2000:]
        text = (done.stdout + done.stderr).lower()
        assert "auth" in text or "401" in text or "token" in text, text[-2000:]
    assert not (job_dir / "out").exists()


def test_with_the_token_the_sweep_runs_through_ray_job_submit(token_head, job_dir, tmp_path):
    env = _client_env(token_head, tmp_path, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_head["token"]))
    done = _submit(token_head, job_dir / "work", env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "report:" in done.stdout and "trials read the data by mmap" in done.stdout
    assert (job_dir / "out" / "report" / "index.html").is_file()
    import pandas as pd

    runs = pd.read_parquet(job_dir / "out" / "results" / "runs.parquet")
    assert len(runs) == 3 and (runs.status == "done").all()


@pytest.mark.parametrize("mode", [pytest.param("disabled", marks=pytest.mark.slow), "token"])
def test_the_local_sweep_runs_with_token_auth_off_or_on(job_dir, tmp_path, mode):
    """The embedded local Ray follows the user's RAY_AUTH_MODE (token when unset, as Ray 2.59+ does)."""
    raw = yaml.safe_load((job_dir / "work" / "sweep.yaml").read_text())
    raw["out"] = str(tmp_path / "out")
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE=mode, HOME=str(tmp_path))  # a token, when on, is generated in this HOME
    done = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(config)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert (tmp_path / "out" / "report" / "index.html").is_file()
    assert (tmp_path / ".ray" / "auth_token").is_file() == (mode == "token")
