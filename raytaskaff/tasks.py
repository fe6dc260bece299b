"""The task registry: one definition per task, named as in Taskonomy.

A task knows its source domain, output channels, loss, metrics, and how its label is encoded when
it is injected as extra input channels (label injection). Its plain data is a `settings.TaskSpec`
(the presets are `settings.TASK_PRESETS`, which a config is checked against without torch); this
module adds the torch side. Adding a task is one `register(Task(...))`.

Losses follow the reference setup (tstandley/taskgrouping `taskonomy_losses.py`, reference
section 8.2): masked L1 for depth and normals, where masked pixels count as zero but stay in the
denominator; plain L1 for keypoints and edges; cross-entropy over 18 logits ignoring id 0 for
semantic segmentation. The test loss is the primary measure; metrics are reported beside it.

Shapes: predictions (B, C, H, W); targets as `raytaskaff.data.transforms.Target`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from raytaskaff.data.domains import SEGMENT_CLASSES, SEGMENT_UNCERTAIN
from raytaskaff.data.domains import DEPTH_UNITS_PER_METRE
from raytaskaff.data.transforms import Target, channels, denormalise, normalise
from raytaskaff.settings import TASK_PRESETS, TaskSpec, UnknownTask  # noqa: F401  (UnknownTask: re-exported)


@dataclass(frozen=True)
class Task(TaskSpec):
    """A `settings.TaskSpec` with its loss, metrics and label-injection encoding."""

    @property
    def out_channels(self) -> int:
        return channels(self.domain)

    @property
    def inject_channels(self) -> int:
        if self.inject == "one_hot":
            return SEGMENT_CLASSES - 1  # id 0 (uncertain) is the all-zero vector
        return self.out_channels + (1 if self.masked else 0)

    def target(self, batch: dict[str, torch.Tensor], stats: dict | None = None) -> Target:
        """The normalised target from a raw batch ({domain: (B, H, W, C)})."""
        return normalise(self.domain, batch[self.domain], depth_raw=batch.get("depth_zbuffer"), stats=stats)

    def loss_value(self, pred: torch.Tensor, target: Target) -> torch.Tensor:
        """Scalar loss of a batch (mean over pixels and samples)."""
        if self.loss == "cross_entropy":
            return F.cross_entropy(pred.float(), target.value, ignore_index=SEGMENT_UNCERTAIN)
        error = (pred.float() - target.value).abs()
        if self.loss == "masked_l1" and target.mask is not None:
            error = error * target.mask  # masked pixels count as 0 but stay in the denominator
        return error.mean()

    def encode_input(self, target: Target) -> torch.Tensor:
        """(B, inject_channels, H, W) float: the label as extra input channels."""
        if self.inject == "one_hot":
            one_hot = F.one_hot(target.value, SEGMENT_CLASSES).permute(0, 3, 1, 2).float()
            return one_hot[:, 1:]
        value = target.value.float()
        if not self.masked:
            return value
        mask = target.mask if target.mask is not None else torch.ones_like(value[:, :1], dtype=torch.bool)
        return torch.cat([value * mask, mask.float()], dim=1)

    def metric_sums(self, pred: torch.Tensor, target: Target, stats: dict | None = None) -> dict[str, torch.Tensor]:
        """Additive statistics of a batch; `metrics_from_sums` turns their totals into metrics.

        stats: the normalisation statistics the targets were made with (see `target`).
        """
        pred = pred.detach().float()
        sums: dict[str, torch.Tensor] = {}
        if self.loss == "cross_entropy":
            labels = pred.argmax(dim=1)
            valid = target.value != SEGMENT_UNCERTAIN
            index = target.value[valid] * SEGMENT_CLASSES + labels[valid]
            sums["confusion"] = torch.bincount(index, minlength=SEGMENT_CLASSES**2).double()
            return sums
        mask = target.mask if target.mask is not None else torch.ones_like(pred[:, :1], dtype=torch.bool)
        m = mask.expand_as(pred).double()
        sums["abs_error"] = ((pred - target.value).abs().double() * m).sum()
        sums["values"] = m.sum()
        if "angular_error" in self.metrics:
            cosine = F.cosine_similarity(pred, target.value, dim=1, eps=1e-6).clamp(-1, 1)
            angle = torch.rad2deg(torch.acos(cosine))
            sums["angle"] = (angle.double() * mask[:, 0]).sum()
            sums["pixels"] = mask.double().sum()
        if "abs_rel" in self.metrics:
            sums["abs_rel"], sums["delta1"], sums["pixels"] = _depth_sums(
                denormalise(self.domain, pred, stats), denormalise(self.domain, target.value, stats), mask)
        return sums

    def metrics_from_sums(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        if self.loss == "cross_entropy":
            confusion = sums["confusion"].view(SEGMENT_CLASSES, SEGMENT_CLASSES)[1:, 1:]
            union = confusion.sum(0) + confusion.sum(1) - confusion.diag()
            present = confusion.sum(1) > 0
            iou = confusion.diag()[present] / union[present].clamp(min=1)
            total = confusion.sum()
            return {"miou": float(iou.mean()) if present.any() else math.nan,
                    "pixel_accuracy": float(confusion.diag().sum() / total) if total > 0 else math.nan}
        out = {"mae": _ratio(sums["abs_error"], sums["values"])}
        if "angle" in sums:
            out["angular_error"] = _ratio(sums["angle"], sums["pixels"])
        if "abs_rel" in sums:
            out["abs_rel"] = _ratio(sums["abs_rel"], sums["pixels"])
            out["delta1"] = _ratio(sums["delta1"], sums["pixels"])
        return out


def _ratio(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a / b) if float(b) > 0 else math.nan


def _depth_sums(pred_raw: torch.Tensor, truth_raw: torch.Tensor, mask: torch.Tensor):
    """Sums of abs-rel and of delta < 1.25 over valid pixels, from raw depth units (1/512 m)."""
    truth = (truth_raw / DEPTH_UNITS_PER_METRE).clamp(min=1e-3)
    guess = (pred_raw / DEPTH_UNITS_PER_METRE).clamp(min=1e-3)
    valid = mask.double()
    abs_rel = ((guess - truth).abs() / truth).double() * valid
    ratio = torch.maximum(guess / truth, truth / guess)
    return abs_rel.sum(), ((ratio < 1.25).double() * valid).sum(), valid.sum()


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


def task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTask(f"unknown task {name!r} (known: {', '.join(TASKS)})") from None


for _spec in TASK_PRESETS.values():
    register(Task(**asdict(_spec)))
