"""STL-based scorers on Ray: actors next to the test split, one saved network at a time.

Each actor opens the test split through the sweep's `SharedData` (a table in shared memory, or
memory-mapped or streamed shards, reading only the first rows it needs), builds its N input images once, and applies a scorer's per-network function (`ias.attribution_maps`,
`rsa.ranked_upper_triangle`) to the networks it is handed; the driver combines the results into
pairwise tables. `ModelMappers` is the callable `Artifacts.map_models` expects, so the scorer
code is the same with and without Ray; the CPU time the actors spend (and on a GPU their wall time
times the GPU fraction they hold) is reported back so the scorers' costs include it.

No configuration waits forever for its actors: `ModelMappers` starts only as many as the cluster
holds at once (`preflight.actors_that_fit`: four actors of 0.5 GPU on a one-GPU machine are two,
said in one line), hands work only to actors that have started, and fails in one line when none
has started within `START_TIMEOUT_S` (a node the autoscaler adds included).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import ray
import torch

from raytaskaff.data.reader import SplitData
from raytaskaff.data.stream import StreamingSplit
from raytaskaff.data.transforms import rgb_input
from raytaskaff.engine.cluster import capacity
from raytaskaff.engine.data import SharedData
from raytaskaff.errors import RaytaskaffError
from raytaskaff.models import load_model
from raytaskaff.preflight import _shape, actors_that_fit
from raytaskaff.store import local_model

#: Seconds the first scorer actor has to start (long enough for the autoscaler to add a GPU node).
START_TIMEOUT_S = 600.0


class ScorerActorsError(RaytaskaffError):
    """No scorer actor can start on the cluster."""


def first_images(data: SplitData | StreamingSplit, n: int, input: str = "rgb") -> torch.Tensor:
    """(min(n, rows), C, H, W) float images in [0, 1]: the first n rows of a split's `input` field."""
    head = data.head(n)
    return rgb_input(torch.from_numpy(head.gather(input, torch.arange(len(head)).numpy()))).contiguous()


@ray.remote
class ModelMapper:
    """Holds the test split and applies per-network functions to saved networks."""

    def __init__(self, shared: SharedData, input: str = "rgb", num_gpus: float = 0) -> None:
        self.input = input
        self.data = shared.open("test", [input])
        self.images: dict[int, torch.Tensor] = {}
        self.device = torch.device("cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu")
        self.gpus = num_gpus if self.device.type == "cuda" else 0.0

    def ready(self) -> bool:
        """Answers once the actor has started (its constructor ran)."""
        return True

    def apply(self, fn: Callable, key, path: str, n: int):
        """(key, fn(network, images), CPU seconds and GPU-seconds this call used in the actor)."""
        cpu, wall = time.process_time(), time.perf_counter()
        if n not in self.images:
            self.images[n] = first_images(self.data, n, self.input).to(self.device)
        model = load_model(local_model(path), map_location=self.device)  # fetched by key where it is read
        out = fn(model, self.images[n])
        return key, out, time.process_time() - cpu, (time.perf_counter() - wall) * self.gpus


class ModelMappers:
    """A `map_models` callable backed by ModelMapper actors; `close()` (or `with`) ends them.

    Call: (fn, {key: model path}, n_images) -> ({key: fn(network, images)}, (actor CPU-seconds, GPU-seconds));
    input: the image field the networks see (the sweep's `data.input`); actors: how many to start
    at most (fewer when fewer fit the cluster at once; `say` gets one line saying so);
    start_timeout: seconds the first actor has to start once work comes, else `ScorerActorsError`.
    """

    def __init__(self, shared: SharedData, actors: int = 2, num_cpus: float = 1, num_gpus: float = 0, input: str = "rgb",
                 say: Callable[[str], None] | None = None, start_timeout: float = START_TIMEOUT_S) -> None:
        self.request = {"CPU": num_cpus, "GPU": num_gpus}
        cluster = capacity()
        fit = actors_that_fit(cluster, self.request, actors)
        if not fit:  # the preflight refuses this before training (check_resources); the cluster changed since
            raise ScorerActorsError(f"no node of the cluster holds a scorer actor: each asks for {_shape(self.request)}, "
                                    f"the largest node has {cluster.largest()}")
        if fit < actors and say is not None:
            say(f"scorer actors: {fit} of the {actors} asked for (resources.scorer_actors) fit on the cluster at once, at "
                f"{_shape(self.request)} each: starting {fit}")
        self.actors = [ModelMapper.options(num_cpus=num_cpus, num_gpus=num_gpus).remote(shared, input, num_gpus)
                       for _ in range(fit)]
        self.pending = {actor.ready.remote(): actor for actor in self.actors}  # not started yet
        self.idle: list = []  # started, free for a job
        self.started, self.start_timeout = 0, start_timeout

    def __call__(self, fn: Callable, paths: dict, n_images: int) -> tuple[dict, tuple[float, float]]:
        """Each job goes to a started actor as soon as one is free; an actor that starts meanwhile
        takes jobs too. Nothing waits on an actor that never starts: with none started, the wait
        is bounded by `start_timeout`."""
        jobs, running, done = list(paths.items()), {}, []
        deadline = time.monotonic() + self.start_timeout
        while jobs or running:
            while jobs and self.idle:
                key, path = jobs.pop()
                actor = self.idle.pop()
                running[actor.apply.remote(fn, key, path, n_images)] = actor
            left = None if running else max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait([*running, *self.pending], num_returns=1, timeout=left)
            if not ready:
                self._none_started()
            for ref in ready:
                if ref in self.pending:
                    actor = self.pending.pop(ref)
                    ray.get(ref)  # an actor whose constructor failed raises here, with its error
                    self.started += 1
                else:
                    actor = running.pop(ref)
                    done.append(ray.get(ref))
                self.idle.append(actor)
        return {key: value for key, value, *_ in done}, (sum(d[2] for d in done), sum(d[3] for d in done))

    def _none_started(self) -> None:
        self.close()
        free = ray.available_resources()
        raise ScorerActorsError(f"no scorer actor started within {self.start_timeout:g} s: each asks for {_shape(self.request)}, "
                                f"the cluster has {_shape(free)} free (resources.scorer_actors, cpus_per_run, gpus_per_run)")

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors, self.pending, self.idle = [], {}, []

    def __enter__(self) -> ModelMappers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

