"""The cluster a sweep runs on: reaching it, what it can hold, and saying what runs wait for.

- `connect`: a local Ray of this machine, or the cluster at an address; an address where nothing
  answers is a one-line `ClusterError` within seconds (Ray itself would retry for minutes).
- `capacity`: the live nodes' resources plus the node types the cluster's autoscaler can add,
  read from the autoscaling config its monitor runs with (`ray up` writes it to
  ~/ray_bootstrap_config.yaml on the head; the sweep's driver runs there under `ray job submit`).
- `WaitingReporter`: a Tune callback that, while runs are pending and none can start, says every
  `every` seconds what they wait for and for how long.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

import ray
import yaml
from ray import tune

from raytaskaff.errors import RaytaskaffError
from raytaskaff.preflight import Capacity

#: Seconds to wait for a TCP answer at an explicit cluster address.
CONNECT_TIMEOUT_S = 5.0


class ClusterError(RaytaskaffError):
    """The cluster cannot be reached."""


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of an explicit GCS address such as 10.0.0.1:6379, or None for "auto"/"local"."""
    if address in ("auto", "local") or "://" in address:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address}: expected host:port (the head's GCS port, 6379 by default) or auto")
    return host, int(port)


def _resolve_auto() -> str | None:
    """The address "auto" means here (RAY_ADDRESS, the last `ray start`, a running GCS), or None."""
    from ray._private.services import get_ray_address_from_environment

    try:
        found = get_ray_address_from_environment("auto", None)
    except OSError:  # ConnectionError: no running Ray found, which is what None says
        return None
    return None if found in (None, "auto") else found


def probe(address: str) -> None:
    """Fail fast when nothing answers at the address (explicit, or what "auto" resolves to)."""
    if address.startswith(("http://", "https://")):
        raise ClusterError(f"--address {address}: that is a dashboard (job submission) address; the sweep joins a "
                           "cluster at its GCS address (host:6379) or with --address auto on a cluster node")
    if address == "auto":
        resolved = _resolve_auto()
        if resolved is None:
            raise ClusterError("--address auto: no Ray cluster runs on this machine (start one with `ray start --head`, "
                               "or leave out --address for a local Ray)")
        address = resolved
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ClusterError(f"--address {address}: no Ray cluster answers there ({e.strerror or e}); start one with "
                           "`ray start --head` or leave out --address for a local Ray") from None


def connect(address: str | None, num_cpus: int | None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local Ray of this machine (never
    a stray cluster). Works with Ray's token authentication on or off: a local Ray follows
    RAY_AUTH_MODE; a cluster's token is read from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token. The caller's SIGTERM handler survives (Ray's own would abort the process)."""
    if ray.is_initialized():
        return
    on_term = signal.getsignal(signal.SIGTERM)
    try:
        _init(address, num_cpus)
    finally:
        if callable(on_term) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_term)


def _init(address: str | None, num_cpus: int | None) -> None:
    if address is None and "RAY_ADDRESS" not in os.environ:
        # Ray 2.59+ turns token auth on for a local Ray when RAY_AUTH_MODE is unset, and warns that it
        # did on stderr; the sweep keeps the default (RAY_AUTH_MODE=disabled still turns it off) without
        # the warning. (Setting RAY_AUTH_MODE here would come too late: Ray reads it at import.)
        quiet = logging.getLogger("ray._private.authentication.authentication_token_setup")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            ray.init(address="local", num_cpus=num_cpus, log_to_driver=False, configure_logging=False)
        finally:
            quiet.setLevel(level)
        return
    target = address or os.environ["RAY_ADDRESS"]
    probe(target)
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ClusterError(f"--address {target}: cannot join the Ray cluster there ({first})") from None


def _monitor_config() -> Path | None:
    """The autoscaling config of this cluster's monitor process, when it runs on this machine."""
    gcs = ray.get_runtime_context().gcs_address
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(a.endswith("autoscaler/_private/monitor.py") for a in args) or f"--gcs-address={gcs}" not in args:
            continue
        for arg in args:
            if arg.startswith("--autoscaling-config="):
                return Path(os.path.expanduser(arg.split("=", 1)[1]))
    return None


def node_types(path: Path | None = None) -> dict[str, dict]:
    """{node type: resources} of the workers an autoscaler can add (max_workers > 0), from its
    config (default: the monitor's, else ~/ray_bootstrap_config.yaml); {} without an autoscaler.
    A config that is there but unreadable or malformed is a ClusterError naming it: the sweep would
    otherwise judge its runs against the wrong cluster."""
    path = path or _monitor_config() or Path.home() / "ray_bootstrap_config.yaml"
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise ClusterError(f"{path}: the autoscaler's config cannot be read ({e})") from None
    except yaml.YAMLError as e:
        raise ClusterError(f"{path}: the autoscaler's config is not valid YAML ({' '.join(str(e).split())})") from None
    config = config or {}
    types_section = config.get("available_node_types") if isinstance(config, dict) else None
    if not isinstance(config, dict) or not isinstance(types_section or {}, dict):
        raise ClusterError(f"{path}: the autoscaler's config must be a mapping with a mapping available_node_types")
    head = config.get("head_node_type")
    types = {}
    for name, spec in (types_section or {}).items():
        resources = spec.get("resources") or {} if isinstance(spec, dict) else None
        if not isinstance(resources, dict) or not all(isinstance(v, int | float) for v in resources.values()):
            raise ClusterError(f"{path}: available_node_types.{name} needs a mapping of numbers under resources")
        if name != head and spec.get("max_workers", config.get("max_workers", 0)):
            types[name] = dict(resources)
    return types


def capacity() -> Capacity:
    """The live nodes' total resources and the node types the autoscaler can add."""
    nodes = tuple(dict(n["Resources"]) for n in ray.nodes() if n.get("Alive"))
    return Capacity(nodes, node_types())


class WaitingReporter(tune.Callback):
    """Says, every `every` seconds while trials are pending and none runs, what they wait for."""

    def __init__(self, request: dict, say, every: float = 30.0) -> None:
        self.request, self.say, self.every = request, say, every
        self.since: float | None = None
        self.last = 0.0

    def on_step_end(self, iteration, trials, **info) -> None:
        pending = [t for t in trials if t.status == "PENDING"]
        running = [t for t in trials if t.status == "RUNNING"]
        now = time.monotonic()
        if not pending or running:
            self.since = None
            return
        self.since = self.since or now
        if now - self.since >= self.every and now - self.last >= self.every:
            self.last = now
            free = ray.available_resources()
            wanted = ", ".join(f"{v:g} {k}" for k, v in self.request.items() if v)
            have = ", ".join(f"{free.get(k, 0):g} {k}" for k, v in self.request.items() if v)
            self.say(f"waiting {now - self.since:.0f} s: {len(pending)} runs need {wanted} each; free now: {have}"
                     + (" (the autoscaler is adding nodes)" if node_types() else ""))
