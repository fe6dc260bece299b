"""What a sweep can be refused for before it trains: checks on what the config, the users' scorer
files, the manifest and the cluster's resources already tell. Pure functions; the engine gathers
the cluster's side (`engine.cluster`). Each failure is one line naming what is wrong, raised before
anything is written or trained. Importing this module loads neither torch nor Ray.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from raytaskaff.config import ConfigError, SweepConfig
from raytaskaff.sections import MLFLOW_SCHEMES
from raytaskaff.errors import DataError, RaytaskaffError


def check_scorers(config: SweepConfig, where: str | os.PathLike | None = None) -> None:
    """Every scorer of the user's own files (`scorers: {NAME: {module: FILE, ...}}`) imported and
    its options checked against the types its `compute` declares: the first time a sweep runs the
    user's code, each file once per path and content (parsing the config only finds the file).
    ConfigError, one line, with `where` (the config file) in front as `load_config` puts it."""
    for name in config.user_scorers:
        try:
            config.check_scorer(name)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}" if where is not None else str(e)) from None


#: Seconds an MLflow server has to answer the preflight's one request (name lookup included).
TRACKING_TIMEOUT_S = 5.0


class TrackingError(RaytaskaffError):
    """A tracking server the config names does not answer."""


def check_tracking(config: SweepConfig, timeout: float = TRACKING_TIMEOUT_S) -> None:
    """An MLflow server (http or https tracking URI) must answer one request within `timeout`
    seconds (any HTTP status counts: the server is there); otherwise Ray's callback would retry
    for minutes and fail after training started. Other URIs (files, databases) need no server.
    With `tracking.mlflow.tracking_uri` unset, MLflow reads MLFLOW_TRACKING_URI: that one is checked
    the same way (its scheme too, which the config could not see)."""
    mlflow = config.tracking.mlflow
    if mlflow is None:
        return
    uri, key = mlflow.tracking_uri, "tracking.mlflow.tracking_uri"
    if uri is None:
        uri, key = os.environ.get("MLFLOW_TRACKING_URI"), "MLFLOW_TRACKING_URI (tracking.mlflow.tracking_uri is unset)"
        if not uri:
            return
    scheme = uri.split(":", 1)[0].lower() if "://" in uri or uri.startswith("file:") else None
    if scheme is not None and scheme.split("+")[0] not in MLFLOW_SCHEMES:
        raise TrackingError(f"{key}: {uri!r} has the scheme {scheme!r}, which MLflow does not know "
                            f"(one of {', '.join(MLFLOW_SCHEMES)}, or a plain path)")
    if scheme not in ("http", "https"):
        return
    why = _unanswered(uri.rstrip("/") + "/health", timeout)
    if why is not None:
        raise TrackingError(f"{key}: no MLflow server answers at {uri} within {timeout:g} s ({why})")


def _unanswered(url: str, timeout: float) -> str | None:
    """None when a server answers an HTTP GET of `url` (any status) within `timeout` seconds, else
    why not. The request runs in a daemon thread joined with a deadline: urllib's own timeout
    covers each socket operation but not the name lookup, which a dead DNS server holds for tens of
    seconds; and the waiting main thread still answers Ctrl-C and SIGTERM."""
    import urllib.error
    import urllib.request

    outcome: dict[str, str | None] = {}

    def ask() -> None:
        try:
            urllib.request.urlopen(url, timeout=timeout).close()
            outcome["why"] = None
        except urllib.error.HTTPError:
            outcome["why"] = None
        except (urllib.error.URLError, OSError, ValueError) as e:
            outcome["why"] = str(getattr(e, "reason", None) or e)

    worker = threading.Thread(target=ask, name=f"preflight request to {url}", daemon=True)
    worker.start()
    worker.join(timeout)
    return outcome.get("why", "timed out")


class ResourceError(RaytaskaffError):
    """A run asks for more than any node of the cluster, or any node its autoscaler can add, holds."""


def check_data(config: SweepConfig, manifest, where: str) -> None:
    """The dataset holds the input and every field the tasks read, of kinds their families take
    (and indices within them), and each split can feed the training."""
    needed = {config.data.input: "the input (data.input)"}
    specs = config.task_specs
    for name in config.tasks:
        needed.setdefault(specs[name].field, f"task {name}")
    missing = [(domain, who) for domain, who in needed.items() if domain not in manifest.domains]
    if missing:
        domain, who = missing[0]
        raise DataError(f"{where}: {who} needs the domain {domain!r}, which the dataset does not hold "
                        f"(it has: {', '.join(manifest.domains)})")
    image = manifest.field(config.data.input)
    if image.kind != "image" or image.shape[-1] != 3:
        raise DataError(f"{where}: the input (data.input) {config.data.input!r} is a {image.kind} field of shape "
                        f"{list(image.shape)}, not a 3-channel image")
    # torch: building a task checks its field (loaded here, not on import: the engine has torch already)
    from raytaskaff.tasks import resolve

    fields = manifest.all_fields() if manifest.declared else None
    for name in config.tasks:
        try:
            resolve(name, specs, fields, manifest.size)
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
    counts = {split: info.get("count", 0) for split, info in manifest.splits.items()}
    batch = config.training.batch_size
    if counts.get("train", 0) < batch:
        raise DataError(f"{where}: the train split holds {counts.get('train', 0)} views, fewer than one batch of {batch} "
                        "(training.batch_size)")
    for split in ("val", "test"):
        if counts.get(split, 0) < 1:
            raise DataError(f"{where}: the {split} split is empty (model selection and the ground truth need it)")


@dataclass(frozen=True)
class Capacity:
    """What the cluster can hold: its live nodes' resources, and the node types its autoscaler can
    add ({name: resources}), each a {resource: amount} mapping ("CPU", "GPU", custom ones)."""

    nodes: tuple[dict, ...]
    node_types: dict

    def holds(self, request: dict) -> bool:
        shapes = [*self.nodes, *self.node_types.values()]
        return any(all(shape.get(k, 0) >= v for k, v in request.items() if v) for shape in shapes)

    def largest(self) -> str:
        shapes = [*self.nodes, *self.node_types.values()]
        if not shapes:
            return "no node"
        best = max(shapes, key=lambda s: (s.get("GPU", 0), s.get("CPU", 0)))
        return _shape(best)


def actors_that_fit(capacity: Capacity, request: dict, wanted: int) -> int:
    """How many of `wanted` actors (or tasks) asking for `request` each the cluster holds at once:
    on each live node as many as its resources hold (a 1-GPU node holds two actors of 0.5 GPU),
    summed over the nodes; all `wanted` when the autoscaler can add a node type that holds one
    (it adds nodes for those that wait). 0: none fits anywhere."""
    asks = {k: v for k, v in request.items() if v}
    if any(all(t.get(k, 0) >= v for k, v in asks.items()) for t in capacity.node_types.values()):
        return wanted
    # Ray counts resources in units of 1e-4: 1 / 0.1 is 10 actors, not 9.999...
    room = sum(min((int(node.get(k, 0) / v + 1e-6) for k, v in asks.items()), default=wanted) for node in capacity.nodes)
    return min(wanted, room)


def _shape(resources: dict) -> str:
    return ", ".join(f"{resources.get(k, 0):g} {k}" for k in ("CPU", "GPU"))


def run_requests(config: SweepConfig) -> dict[str, dict]:
    """{what asks: the resources one of it needs}: a run (or one Ray Train worker of a run), and a
    scorer actor."""
    r = config.resources
    run = {"CPU": r.cpus_per_run, "GPU": r.gpus_per_run}
    what = "run" if not r.workers else "Ray Train worker of a run"
    return {what: run, "scorer actor": {"CPU": min(1.0, r.cpus_per_run), "GPU": min(r.gpus_per_run, 1.0)}}


def check_resources(config: SweepConfig, capacity: Capacity, kinds: list[str]) -> None:
    """Every request fits some node, or some node type the autoscaler can add; else a ResourceError
    naming the run kinds, the request and the largest node."""
    for what, request in run_requests(config).items():
        if not capacity.holds(request):
            who = f"every {what} ({', '.join(kinds)})" if what != "scorer actor" else "a scorer actor (ias, rsa)"
            types = ", ".join(f"{n} ({_shape(t)})" for n, t in capacity.node_types.items()) or "none"
            raise ResourceError(f"resources: {who} asks for {_shape(request)}, more than any node holds: the largest has "
                                f"{capacity.largest()}; node types the autoscaler can add: {types}")


class PathError(RaytaskaffError):
    """A path the sweep would write is longer than its file system allows."""


def _existing(path: Path) -> Path:
    """The nearest folder of `path` (itself included) that exists: the file system it will be on."""
    for candidate in (path, *path.parents):
        try:
            if os.path.isdir(candidate):
                return candidate
        except (OSError, ValueError):  # too long to ask about
            continue
    return Path(path.anchor or ".")


def _limit(folder: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(folder, name)
    except (OSError, ValueError, AttributeError):  # not known there (or not POSIX): the usual limit
        return default


def check_path_lengths(paths: dict[str, str | os.PathLike]) -> None:
    """Every path ({what: path}, `names.longest_paths`) within its file system's limits, asked of
    the nearest existing folder on its way: each name at most PC_NAME_MAX bytes and the whole path
    under PC_PATH_MAX; else a PathError naming the path, the name and the limit."""
    for what, path in paths.items():
        path = Path(path)
        folder = _existing(path)
        name_max, path_max = _limit(folder, "PC_NAME_MAX", 255), _limit(folder, "PC_PATH_MAX", 4096)
        for part in path.parts[1:]:
            size = len(os.fsencode(part))
            if size > name_max:
                raise PathError(f"{what}: the name {part[:40]}... ({size} bytes) is longer than the {name_max} bytes "
                                f"a name may have on the file system of {folder}: shorten the output folder's path, "
                                f"the sweep's name or the host name")
        size = len(os.fsencode(str(path)))
        if size >= path_max:
            raise PathError(f"{what}: paths such as {str(path)[:60]}... are {size} bytes, more than the {path_max - 1} "
                            f"the file system of {folder} allows: choose an output folder with a shorter path")


def gpu_memory(config: SweepConfig, capacity: Capacity) -> float | None:
    """GB of memory of one GPU the runs train on: `resources.gpu_memory_gb`, else what the
    cluster's GPU nodes and node types report (`training.memory_table.gpu_memory_gb`), else None."""
    if config.resources.gpu_memory_gb is not None:
        return config.resources.gpu_memory_gb
    from raytaskaff.training.memory_table import gpu_memory_gb

    shapes = [s for s in (*capacity.nodes, *capacity.node_types.values()) if s.get("GPU", 0) > 0]
    return gpu_memory_gb({k: 1 for s in shapes for k in s}) if shapes else None


def check_memory(config: SweepConfig, capacity: Capacity, size: int) -> None:
    """A GPU sweep whose bundles are sized by memory (`resources.bundle` above 1) must know its
    GPUs' memory (from the config or the cluster), and one network alone must be predicted to fit
    a trial's share of it at `size` px; else a ConfigError naming the key."""
    r = config.resources
    if not r.gpus_per_run or r.bundle_limit == 1:
        return
    gb = gpu_memory(config, capacity)
    if gb is None:
        raise ConfigError("resources.gpu_memory_gb: the cluster reports no GPU type whose memory is known; say the GB "
                          "of one GPU, so that bundles are sized to a trial's share of it")
    from raytaskaff.plan import plan
    from raytaskaff.training.memory_table import GIB, predict_runs, predictable

    budget = r.trial_memory(gb)
    if not predictable(config):
        return
    runs = {(run.tasks, run.inject, run.probes): run for run in plan(config, "preflight")}.values()
    worst = max(runs, key=lambda run: predict_runs([run], config, size)[0])
    need = predict_runs([worst], config, size)[0]
    if need > budget:
        raise ConfigError(f"resources.gpus_per_run: one network ({worst.label}) is predicted to need {need / GIB:.1f} GiB "
                          f"at {size} px, batch {config.training.batch_size}, more than the {budget / GIB:.1f} GiB a "
                          f"trial may use ({r.memory_fraction:g} of {min(r.gpus_per_run, 1.0):g} x {gb:g} GB): "
                          "give each run more of a GPU or a smaller training.batch_size")
