"""The one training loop: STL, label injection, pairwise, all-task and group MTL (no Ray here).

`train(spec, ...)` builds the network for a `RunSpec`, trains it with a seeded data order, keeps
the epoch with the lowest summed validation loss, evaluates it on test and returns a `RunResult`.
Under a torch.distributed process group of several ranks (Ray Train's TorchTrainer sets one up)
the model is wrapped in DistributedDataParallel and each rank trains on its share of every
global batch; rank 0 writes checkpoints and the saved network.
Runs of one seed share their initial weights (per part, see `models`) and their data order, so
the STL and MTL runs of a seed differ only in what they train on ("paired seeds").
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from raytaskaff.data.reader import SplitData
from raytaskaff.data.transforms import rgb_input
from raytaskaff.errors import RaytaskaffError
from raytaskaff.models import (
    ModelConfig,
    MultiTaskNet,
    part_seed,
    save_atomic,
    save_model,
)
from raytaskaff.settings import RunResult, RunSpec, TaskSpec, Training, check_choice  # noqa: F401  (RunResult: re-exported)
from raytaskaff.tasks import Task, resolve
from raytaskaff.training.optim import make_optimizer
from raytaskaff.training.prefetch import prefetch
from raytaskaff.training.probes import GradientProbe, ProbeConfig


class TrainingDiverged(RaytaskaffError):
    """A loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig(Training):
    """The sweep's hyper-parameters (`settings.Training`) plus what the caller decides: device
    ("auto", "cpu", "cuda", ...), normalisation ("dataset": the manifest's statistics for scalar
    labels; "taskonomy": the reference constants), probes (MTL runs only), prefetch (batches
    gathered ahead on a thread, pinned on CUDA; None: 2 on CUDA, none on CPU, where the thread
    would only compete with the run's own cores), input (the image field the network sees) and
    tasks (the sweep's declared tasks; any other name is a Taskonomy preset)."""

    device: str = "auto"
    normalisation: str = "dataset"
    probes: ProbeConfig | None = None
    prefetch: int | None = None
    input: str = "rgb"
    tasks: tuple[TaskSpec, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("normalisation", self.normalisation, ("dataset", "taskonomy"))

    def prefetch_depth(self, device: torch.device) -> int:
        return self.prefetch if self.prefetch is not None else (2 if device.type == "cuda" else 0)


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _domains(tasks: list[Task], inject: list[Task], data: SplitData, input: str = "rgb") -> list[str]:
    """The fields a batch holds: the input, every task's label, and the masks the split has."""
    names = [input]
    for t in (*tasks, *inject):
        names += [f for i, f in enumerate(t.fields()) if i == 0 or f in data.domains]
    return list(dict.fromkeys(names))


def _prepare(batch, tasks, inject, stats, device, input: str = "rgb"):
    raw = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    x = rgb_input(raw[input]).contiguous(memory_format=torch.channels_last)
    targets = {t.name: t.target(raw, stats) for t in tasks}
    size = tuple(x.shape[-2:])
    extra = torch.cat([t.encode_input(t.target(raw, stats), size) for t in inject], dim=1) if inject else None
    return x, extra, targets


def _world() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _check_finite(losses: dict[str, torch.Tensor], epoch: int, step: int) -> None:
    for name, value in losses.items():
        if not torch.isfinite(value.detach()):
            raise TrainingDiverged(f"loss of {name} is {float(value.detach())} at epoch {epoch} step {step}: training stopped")


@torch.no_grad()
def evaluate(model: MultiTaskNet, data: SplitData, tasks: list[Task], inject: list[Task], stats: dict,
             device: torch.device, batch_size: int, autocast, ahead: int = 0,
             input: str = "rgb") -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean loss per task over the split (weighted by batch size) and task metrics.

    data: a `SplitData` or any split with its `batches` (`data.stream.StreamingSplit`);
    ahead: batches prefetched on a thread (`training.prefetch`); input: the image field."""
    model.eval()
    totals = {t.name: 0.0 for t in tasks}
    sums: dict[str, dict[str, torch.Tensor]] = {t.name: {} for t in tasks}
    count = 0
    batches = data.batches(batch_size, _domains(tasks, inject, data, input))
    for batch in prefetch(batches, ahead, pin=device.type == "cuda"):
        x, extra, targets = _prepare(batch, tasks, inject, stats, device, input)
        with autocast():
            preds = model(x, extra)
        n = len(x)
        for t in tasks:
            totals[t.name] += float(t.loss_value(preds[t.name], targets[t.name])) * n
            for k, v in t.metric_sums(preds[t.name], targets[t.name], stats).items():
                sums[t.name][k] = sums[t.name].get(k, 0) + v.cpu()
        count += n
    model.train()
    losses = {name: total / max(count, 1) for name, total in totals.items()}
    return losses, {t.name: t.metrics_from_sums(sums[t.name]) for t in tasks}


def _resume_state(path: Path | None, device: torch.device) -> dict | None:
    """The checkpoint at `path`, or None when there is none or it cannot be read safely (tensors and
    plain data only; anything else is refused by weights_only and the run starts afresh)."""
    if path is None or not path.exists():
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # weights_only refusing a pickled object, a truncated or foreign file
        warnings.warn(f"{path}: unreadable checkpoint ignored, training from the start ({str(e).splitlines()[0]})", stacklevel=2)
        return None


def train(spec: RunSpec, model_config: ModelConfig, config: TrainConfig, data: DataSplits, seed: int,
          checkpoint: str | os.PathLike | None = None, on_epoch=None, model_path: str | os.PathLike | None = None) -> RunResult:
    """Train one run; resume from `checkpoint` if it holds a state of this run (written each epoch).

    on_epoch: optional callback(epoch, record) for progress reporting (e.g. to Ray Tune).
    model_path: where to save the selected (best validation) network with `models.save_model`.
    """
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    device = resolve_device(config.device)
    tasks = [data.task(n, config.tasks) for n in spec.tasks]
    inject = [data.task(n, config.tasks) for n in spec.inject]
    stats = data.stats if config.normalisation == "dataset" else {}
    model = MultiTaskNet(tasks, model_config, inject=inject, seed=seed, grad_scale=config.grad_scale)
    model = model.to(device, memory_format=torch.channels_last)
    rank, world = _world()
    net = model  # what the training steps call: DistributedDataParallel under a process group of several ranks
    if world > 1:
        if config.probes:
            raise ValueError("gradient probes need one process per run; train instrumented runs without DDP")
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, config.weight_decay, config.momentum)
    steps_per_epoch = len(data.train) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"the train split has {len(data.train)} views, fewer than one batch of {config.batch_size}")
    total_steps = steps_per_epoch * config.epochs
    lr_at = (lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps))) if config.schedule == "cosine" else (lambda s: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    use_amp = config.amp and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
    probe = GradientProbe(model, tasks, optimizer, config.probes) if config.probes and len(tasks) > 1 else None

    history: list[dict] = []
    best = (math.inf, -1, None)  # (summed val loss, epoch, state dict)
    first_epoch = 0
    path = Path(checkpoint) if checkpoint else None
    saved = _resume_state(path, device)
    if saved is not None:
        if saved.get("spec") == [list(spec.tasks), list(spec.inject)] and saved.get("seed") == seed:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            history, first_epoch = saved["history"], saved["epoch"] + 1
            best = (saved["best_val"], saved["best_epoch"], saved["best_model"])
            if probe is not None:
                probe.epochs = saved["probes"]

    domains = _domains(tasks, inject, data.train, config.input)
    ahead, pin = config.prefetch_depth(device), device.type == "cuda"
    model.train()
    for epoch in range(first_epoch, config.epochs):
        seen, running = 0, {t.name: 0.0 for t in tasks}
        order_seed = part_seed(seed, f"data/{epoch}")  # the same order for every run of this seed
        batches = data.train.batches(config.batch_size, domains, shuffle=True, seed=order_seed, drop_last=True)
        for step, batch in enumerate(prefetch(batches, ahead, pin=pin)):
            if world > 1:  # every rank draws the same global batch and trains on its share of the rows
                batch = {k: v[rank::world] for k, v in batch.items()}
            x, extra, targets = _prepare(batch, tasks, inject, stats, device, config.input)
            optimizer.zero_grad(set_to_none=True)
            if probe is not None and probe.wants(step):
                losses = probe.backward(x, extra, targets, step, autocast if use_amp else None)
            else:
                with autocast():
                    preds = net(x, extra)
                    losses = {t.name: t.loss_value(preds[t.name], targets[t.name]) for t in tasks}
                sum(losses.values()).backward()
            _check_finite(losses, epoch, step)
            optimizer.step()
            scheduler.step()
            for name, value in losses.items():
                running[name] += float(value.detach()) * len(x)
            seen += len(x)
        if probe is not None:
            probe.end_epoch()
        val_losses, _ = evaluate(model, data.val, tasks, inject, stats, device, config.eval_batch_size, autocast, ahead, config.input)
        record = {"epoch": epoch, "train": {k: v / seen for k, v in running.items()}, "val": val_losses}
        history.append(record)
        val_total = sum(val_losses.values())
        if not math.isfinite(val_total):
            raise TrainingDiverged(f"validation loss is {val_total} at epoch {epoch}: training stopped")
        if val_total < best[0]:
            best = (val_total, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        if path is not None and rank == 0:
            save_atomic({"spec": [list(spec.tasks), list(spec.inject)], "seed": seed, "epoch": epoch,
                         "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "history": history, "best_val": best[0],
                         "best_epoch": best[1], "best_model": best[2], "probes": probe.epochs if probe else {}}, path)
        if on_epoch is not None:
            on_epoch(epoch, record)

    model.load_state_dict(best[2])
    if model_path is not None and rank == 0:
        save_model(model, model_path, seed)
    test_losses, test_metrics = evaluate(model, data.test, tasks, inject, stats, device, config.eval_batch_size, autocast, ahead, config.input)
    wall = time.perf_counter() - wall_start
    return RunResult(
        spec=spec, seed=seed, test_losses=test_losses, val_losses=history[best[1]]["val"], test_metrics=test_metrics,
        best_epoch=best[1], epochs=config.epochs, history=history, wall_seconds=wall,
        # GPU-seconds on a GPU; CPU core-seconds (process CPU time) without one
        device_seconds=wall if device.type == "cuda" else time.process_time() - cpu_start,
        device=str(device), parameters=sum(p.numel() for p in model.parameters()),
        probes=dict(probe.epochs) if probe else {}, probe_variant=config.probes.variant if probe else None,
        model_path=str(model_path) if model_path is not None else None,
    )
