"""STL-based scorers on Ray: actors next to the test split, one saved network at a time.

Each actor opens the test split through the sweep's `SharedData` (a table in shared memory, or
memory-mapped or streamed shards, reading only the first rows it needs), builds its N input images once, and applies a scorer's per-network function (`ias.attribution_maps`,
`rsa.ranked_upper_triangle`) to the networks it is handed; the driver combines the results into
pairwise tables. `ModelMappers` is the callable `Artifacts.map_models` expects, so the scorer
code is the same with and without Ray; the CPU time the actors spend (and on a GPU their wall time
times the GPU fraction they hold) is reported back so the scorers' costs include it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import ray
import torch
from ray.util import ActorPool

from raytaskaff.data.reader import SplitData
from raytaskaff.data.stream import StreamingSplit
from raytaskaff.data.transforms import rgb_input
from raytaskaff.engine.data import SharedData
from raytaskaff.models import load_model
from raytaskaff.store import local_model


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
    input: the image field the networks see (the sweep's `data.input`).
    """

    def __init__(self, shared: SharedData, actors: int = 2, num_cpus: float = 1, num_gpus: float = 0, input: str = "rgb") -> None:
        self.actors = [ModelMapper.options(num_cpus=num_cpus, num_gpus=num_gpus).remote(shared, input, num_gpus) for _ in range(actors)]
        self.pool = ActorPool(self.actors)

    def __call__(self, fn: Callable, paths: dict, n_images: int) -> tuple[dict, tuple[float, float]]:
        jobs = list(paths.items())
        done = list(self.pool.map_unordered(lambda actor, job: actor.apply.remote(fn, job[0], job[1], n_images), jobs))
        return {key: value for key, value, *_ in done}, (sum(d[2] for d in done), sum(d[3] for d in done))

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

    def __enter__(self) -> ModelMappers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

