"""Training one run: STL, label injection, pairwise, all-task and group MTL (no Ray here).

`train(spec, ...)` is a bundle of one network (`training.bundle`, the one loop that trains every
run, alone or with the other networks of its seed): it builds the network for a `RunSpec`,
trains it with a seeded data order, keeps the epoch with the lowest summed validation loss,
evaluates it on test and returns a `RunResult`.
Under a torch.distributed process group of several ranks (Ray Train's TorchTrainer sets one up)
the model is wrapped in DistributedDataParallel and each rank trains on its share of every
global batch; rank 0 writes checkpoints and the saved network.
Runs of one seed share their initial weights (per part, see `models`) and their data order, so
the STL and MTL runs of a seed differ only in what they train on ("paired seeds").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from raytaskaff.data.reader import SplitData
from raytaskaff.models import ModelConfig
from raytaskaff.settings import RunResult, RunSpec, TaskSpec, Training, check_choice  # noqa: F401  (RunResult: re-exported)
from raytaskaff.tasks import Task, resolve
from raytaskaff.training.bundle import Member, TrainingDiverged, resolve_device, train_bundle  # noqa: F401  (re-exported)
from raytaskaff.training.prefetch import Feed
from raytaskaff.training.probes import ProbeConfig


@dataclass(frozen=True)
class TrainConfig(Training):
    """The sweep's hyper-parameters (`settings.Training`) plus what the caller decides: device
    ("auto", "cpu", "cuda", ...), normalisation ("dataset": the manifest's statistics for scalar
    labels; "taskonomy": the reference constants), probes (MTL runs only), prefetch (batches
    gathered ahead on a thread, pinned on CUDA; None: 2 on CUDA, none on CPU, where the thread
    would only compete with the run's own cores), input (the image field the network sees),
    tasks (the sweep's declared tasks; any other name is a Taskonomy preset) and gpu_fraction
    (the share of a GPU the run holds, which scales its GPU-seconds)."""

    device: str = "auto"
    normalisation: str = "dataset"
    probes: ProbeConfig | None = None
    prefetch: int | None = None
    input: str = "rgb"
    tasks: tuple[TaskSpec, ...] = ()
    gpu_fraction: float = 1.0
    gather_threads: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("normalisation", self.normalisation, ("dataset", "taskonomy"))

    def feed(self, device: torch.device) -> Feed:
        """How batches reach `device`: gather threads, batches queued ahead, page-locked or not."""
        cuda = device.type == "cuda"
        depth = self.prefetch if self.prefetch is not None else (2 if cuda else 0)
        threads = self.gather_threads
        if threads is None:  # torch's threads: what Ray (OMP_NUM_THREADS) or the user gave this process
            threads = torch.get_num_threads() if cuda else min(depth, 1)
        return Feed(threads, depth, pin=cuda)


@dataclass
class DataSplits:
    """The train, val and test splits of a dataset, its manifest's statistics and its fields
    ({name: `data.fields.Field`}; empty: Taskonomy domains)."""

    train: SplitData
    val: SplitData
    test: SplitData
    stats: dict = field(default_factory=dict)
    fields: dict = field(default_factory=dict)

    def task(self, name: str, declared: tuple[TaskSpec, ...] = ()) -> Task:
        """Task `name` (declared, or a Taskonomy preset) on this dataset's field."""
        return resolve(name, {t.name: t for t in declared}, self.fields, self.train.size)


def train(spec: RunSpec, model_config: ModelConfig, config: TrainConfig, data: DataSplits, seed: int,
          checkpoint: str | os.PathLike | None = None, on_epoch=None, model_path: str | os.PathLike | None = None) -> RunResult:
    """Train one run; resume from `checkpoint` if it holds a state of this run (written each epoch).

    on_epoch: optional callback(epoch, record) for progress reporting (e.g. to Ray Tune).
    model_path: where to save the selected (best validation) network with `models.save_model`.
    A bundle of one network (`training.bundle`), so that one loop trains every run.
    """
    member = Member(spec, probes=config.probes is not None, checkpoint=checkpoint, model_path=model_path)
    [result] = train_bundle([member], model_config, config, data, seed,
                            on_epoch=None if on_epoch is None else lambda epoch, records: on_epoch(epoch, records[member]))
    if isinstance(result, BaseException):
        raise result
    return result
