"""Task families: what a task does with its dataset field. A task is a family applied to a field
(`settings.TaskSpec` + `data.fields.Field`); the family owns its head, loss, additive metrics and
its encoding for label injection:

| family | field kinds | head | loss | metrics | injected as |
|---|---|---|---|---|---|
| `dense_regression` | dense_regression, dense_vector, image | dense decoder, C outputs | L1 (masked) | mae | the normalised value (+ a validity channel when masked) |
| `dense_classes` | class_map | dense decoder, one logit per class | cross-entropy, ignored id skipped | miou, pixel_accuracy | one-hot planes (the ignored id all zero) |
| `classification` | class_label | pooled linear, one logit per class | cross-entropy | accuracy | constant one-hot planes |
| `binary` | multi_label | pooled linear, one logit per entry | binary cross-entropy (sigmoid) | accuracy | constant 0/1 planes |
| `image_regression` | scalar | pooled linear, one output per entry | L1 | mae | constant planes of the normalised value |

Taskonomy's tasks are presets (`settings.TASK_PRESETS`): losses as in the reference setup
(tstandley/taskgrouping `taskonomy_losses.py`, reference section 8.2): masked L1 for depth and
normals, where masked pixels count as zero but stay in the denominator; plain L1 for keypoints and
edges; cross-entropy over 18 logits ignoring id 0 for semantic segmentation. Their targets come
from the reference transform (`data.transforms.normalise`). The test loss is the primary measure;
metrics are reported beside it.

Shapes: dense predictions (B, C, H, W), image-level ones (B, C); targets as
`raytaskaff.data.transforms.Target` ((B, C, H, W) values or (B, H, W) class maps; (B, C) values
or (B,) class ids image-level).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from raytaskaff.data.domains import DEPTH_UNITS_PER_METRE, domain
from raytaskaff.data.fields import Field, taskonomy_field
from raytaskaff.data.transforms import Target, channels, channels_first, denormalise, normalise
from raytaskaff.errors import DataError
from raytaskaff.settings import TASK_PRESETS, TaskSpec, UnknownTask  # noqa: F401  (UnknownTask: re-exported)


class Task:
    """A family applied to a field. Subclasses (one per family) implement the `_`-methods; the
    public ones are what the training loop, the models and the scorers call."""

    family = ""
    kinds: tuple[str, ...] = ()
    dense = True  # a dense decoder (else a pooled linear head)

    def __init__(self, spec: TaskSpec, field: Field, mask_field: Field | None = None) -> None:
        if spec.family != self.family:
            raise ValueError(f"a {type(self).__name__} task needs family {self.family}, got {spec.family}")
        if field.kind not in self.kinds:
            raise DataError(f"task {spec.name}: a {spec.family} task reads a field of kind {' or '.join(self.kinds)}; "
                            f"{field.name} is a {field.kind} field")
        self.spec, self.field, self.mask_field = spec, field, mask_field
        self.positions = None if spec.entries is None else tuple(self._position(i) for i in spec.entries)

    def _position(self, entry: int | str) -> int:
        """The position of a vector entry given by position or by name."""
        field = self.field
        if isinstance(entry, str):
            if entry not in field.names:
                known = f"its entries are {', '.join(field.names)}" if field.names else "its entries have no names"
                raise DataError(f"task {self.name}: {field.name} has no entry {entry!r} ({known})")
            return field.names.index(entry)
        if entry >= field.shape[-1]:
            raise DataError(f"task {self.name}: index {entry} is past the {field.shape[-1]} entries of {field.name}")
        return entry

    name = property(lambda self: self.spec.name)
    masked = property(lambda self: self.spec.masked)
    metrics = property(lambda self: self.spec.metrics)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r} on {self.field.name!r})"

    @property
    def out_channels(self) -> int:
        raise NotImplementedError

    @property
    def inject_channels(self) -> int:
        raise NotImplementedError

    def fields(self) -> tuple[str, ...]:
        """The fields a batch must hold to make this task's target."""
        return (self.field.name,) + ((self.field.mask,) if self.field.mask and self.masked and self.field.mask != self.field.name else ())

    def target(self, batch: dict[str, torch.Tensor], stats: dict | None = None) -> Target:
        """The normalised target from a raw batch ({field: (B, *shape)})."""
        return self._target(batch, stats or {})

    def loss_value(self, pred: torch.Tensor, target: Target) -> torch.Tensor:
        """Scalar loss of a batch (a mean over the batch, and pixels or entries)."""
        return self._loss(pred.float(), target)

    def encode_input(self, target: Target, size: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, inject_channels, H, W) float: the label as extra input channels (an image-level
        label as constant planes of `size` (H, W))."""
        planes = self._encode(target)
        if planes.dim() == 2:
            if size is None:
                raise ValueError(f"{self.name}: an image-level label is injected as planes of a size; none given")
            planes = planes[:, :, None, None].expand(-1, -1, *size)
        return planes

    def metric_sums(self, pred: torch.Tensor, target: Target, stats: dict | None = None) -> dict[str, torch.Tensor]:
        """Additive statistics of a batch; `metrics_from_sums` turns their totals into metrics.

        stats: the normalisation statistics the targets were made with (see `target`).
        """
        return self._sums(pred.detach().float(), target, stats or {})

    def metrics_from_sums(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        return self._metrics(sums)

    def prior_sums(self, target: Target) -> dict[str, torch.Tensor]:
        """Additive statistics of a batch's labels from which `chance_prediction` makes the
        trivial predictor of the family: per-channel sums and counts of the valid values
        (regression), class counts (classes), positives and counts per entry (binary)."""
        return {k: v.double().cpu() for k, v in self._prior(target).items()}

    def chance_prediction(self, sums: dict[str, torch.Tensor], target: Target) -> torch.Tensor:
        """The trivial predictor's output for a batch, shaped as the head's (B, C, H, W) or
        (B, C): the training mean for regression, the log training prior for classes (logits),
        the training rate's log-odds for binary entries; from `prior_sums` totals."""
        return self._chance(sums, target)


def _ratio(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a / b) if float(b) > 0 else math.nan


def _affine(field: Field, stats: dict) -> tuple[list[float], list[float]] | None:
    """(offset, scale) per channel of a declared field's normalisation, or None (as stored)."""
    norm = field.normalisation
    if isinstance(norm, dict):
        return list(norm["offset"]), list(norm["scale"])
    if norm == "dataset" and field.name in stats:
        return stats[field.name]["mean"], [max(s, 1e-6) for s in stats[field.name]["std"]]
    return None


def _standardise(x: torch.Tensor, field: Field, stats: dict, entries=None, dim: int = 1) -> torch.Tensor:
    """(x - offset) / scale per channel along `dim` (the channels picked by `entries`)."""
    affine = _affine(field, stats)
    if affine is None:
        return x
    offset, scale = (torch.tensor(v, dtype=x.dtype, device=x.device) for v in affine)
    if entries is not None:
        offset, scale = offset[list(entries)], scale[list(entries)]
    shape = [1] * x.dim()
    shape[dim] = -1
    return (x - offset.view(shape)) / scale.view(shape)


def _valid(raw: torch.Tensor, field: Field) -> torch.Tensor | None:
    """(B, ..., 1) bool: where a raw (B, ..., C) batch is not the field's invalid encoding."""
    if field.invalid is None:
        return None
    return (raw != field.invalid).any(dim=-1, keepdim=True)


class DenseRegression(Task):
    """L1 on a dense field; `masked`: pixels its mask says invalid count as zero but stay in the
    denominator (the reference setup's masked L1)."""

    family = "dense_regression"
    kinds = ("dense_regression", "dense_vector", "image")

    @property
    def out_channels(self) -> int:
        return channels(self.field.name) if self.field.normalisation == "taskonomy" else self.field.shape[-1]

    @property
    def inject_channels(self) -> int:
        return self.out_channels + (1 if self.masked else 0)

    def _target(self, batch, stats):
        raw = batch[self.field.name]
        if self.field.normalisation == "taskonomy":  # the reference transform, masks from depth
            by = domain(self.field.name).mask
            return normalise(self.field.name, raw, depth_raw=batch.get(by) if by else None, stats=stats)
        value = _standardise(channels_first(raw).float(), self.field, stats)
        mask = None
        if self.masked:
            valid = [v for v in (_valid(raw, self.field),) if v is not None]
            if self.mask_field is not None and self.mask_field.name in batch:
                other = _valid(batch[self.mask_field.name], self.mask_field)
                valid += [other] if other is not None else []
            if valid:
                mask = channels_first(torch.stack(valid).all(dim=0))
        return Target(value.contiguous(memory_format=torch.channels_last), mask)

    def _loss(self, pred, target):
        error = (pred - target.value).abs()
        if self.masked and target.mask is not None:
            error = error * target.mask  # masked pixels count as 0 but stay in the denominator
        return error.mean()

    def _encode(self, target):
        value = target.value.float()
        if not self.masked:
            return value
        mask = target.mask if target.mask is not None else torch.ones_like(value[:, :1], dtype=torch.bool)
        return torch.cat([value * mask, mask.float()], dim=1)

    def _prior(self, target):
        value = target.value.float()
        valid = (target.mask if target.mask is not None else torch.ones_like(value[:, :1], dtype=torch.bool)).expand_as(value)
        return {"sum": (value * valid).sum(dim=(0, 2, 3)), "count": valid.sum(dim=(0, 2, 3))}

    def _chance(self, sums, target):
        mean = (sums["sum"] / sums["count"].clamp(min=1)).float().to(target.value.device)
        return mean.view(1, -1, 1, 1).expand_as(target.value)

    def _sums(self, pred, target, stats):
        sums: dict[str, torch.Tensor] = {}
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
                denormalise(self.field.name, pred, stats), denormalise(self.field.name, target.value, stats), mask)
        return sums

    def _metrics(self, sums):
        out = {"mae": _ratio(sums["abs_error"], sums["values"])}
        if "angle" in sums:
            out["angular_error"] = _ratio(sums["angle"], sums["pixels"])
        if "abs_rel" in sums:
            out["abs_rel"] = _ratio(sums["abs_rel"], sums["pixels"])
            out["delta1"] = _ratio(sums["delta1"], sums["pixels"])
        return out


def _depth_sums(pred_raw: torch.Tensor, truth_raw: torch.Tensor, mask: torch.Tensor):
    """Sums of abs-rel and of delta < 1.25 over valid pixels, from raw depth units (1/512 m)."""
    truth = (truth_raw / DEPTH_UNITS_PER_METRE).clamp(min=1e-3)
    guess = (pred_raw / DEPTH_UNITS_PER_METRE).clamp(min=1e-3)
    valid = mask.double()
    abs_rel = ((guess - truth).abs() / truth).double() * valid
    ratio = torch.maximum(guess / truth, truth / guess)
    return abs_rel.sum(), ((ratio < 1.25).double() * valid).sum(), valid.sum()


def _confusion_metrics(confusion: torch.Tensor, prefix: str) -> dict[str, float]:
    union = confusion.sum(0) + confusion.sum(1) - confusion.diag()
    present = confusion.sum(1) > 0
    iou = confusion.diag()[present] / union[present].clamp(min=1)
    total = confusion.sum()
    return {"miou": float(iou.mean()) if present.any() else math.nan,
            prefix: float(confusion.diag().sum() / total) if total > 0 else math.nan}


class _Classes:
    """What the two softmax families share: classes, the ignored id, cross-entropy, one-hot
    injection, confusion sums and metrics (`accuracy`: the name of the accuracy metric)."""

    @property
    def classes(self) -> int:
        return self.field.classes

    @property
    def ignore(self) -> int:
        return self.field.ignore if self.field.ignore is not None else -100  # torch's "ignore nothing"

    @property
    def out_channels(self) -> int:
        return self.classes

    @property
    def inject_channels(self) -> int:
        return self.classes - (1 if self.field.ignore is not None else 0)  # the ignored id is the all-zero vector

    def _one_hot(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, ...) ids -> (B, inject_channels, ...) float."""
        one_hot = F.one_hot(ids, self.classes).movedim(-1, 1).float()
        if self.field.ignore is None:
            return one_hot
        keep = [c for c in range(self.classes) if c != self.field.ignore]
        return one_hot[:, keep]

    def _loss(self, pred, target):
        return F.cross_entropy(pred, target.value, ignore_index=self.ignore)

    def _encode(self, target):
        return self._one_hot(target.value)

    def _prior(self, target):
        ids = target.value[target.value != self.ignore]
        return {"classes": torch.bincount(ids.reshape(-1), minlength=self.classes)[:self.classes]}

    def _chance(self, sums, target):
        counts = sums["classes"].float().to(target.value.device)
        logits = torch.log((counts + 1) / (counts.sum() + self.classes))  # add-one: no class is impossible
        shape = (len(target.value), self.classes) + (1,) * (target.value.dim() - 1)
        return logits.view(1, -1, *shape[2:]).expand(*shape[:2], *target.value.shape[1:])

    def _sums(self, pred, target, stats):
        return {"confusion": self._confusion(pred, target)}

    def _metrics(self, sums):
        return _confusion_metrics(self._kept_confusion(sums), self.accuracy)

    def _confusion(self, pred, target):
        labels = pred.argmax(dim=1)
        valid = target.value != self.ignore
        index = target.value[valid] * self.classes + labels[valid]
        return torch.bincount(index, minlength=self.classes**2).double()

    def _kept_confusion(self, sums):
        confusion = sums["confusion"].view(self.classes, self.classes)
        if self.field.ignore is not None:
            keep = [c for c in range(self.classes) if c != self.field.ignore]
            confusion = confusion[keep][:, keep]
        return confusion


class DenseClasses(_Classes, Task):
    """Cross-entropy per pixel over the field's classes, its ignored id skipped (Taskonomy's
    segmentation: 18 logits, id 0 "uncertain" ignored)."""

    family = "dense_classes"
    kinds = ("class_map",)
    accuracy = "pixel_accuracy"

    def _target(self, batch, stats):
        return Target(batch[self.field.name][..., 0].long(), None)


class Classification(_Classes, Task):
    """Softmax over an image-level class label (a pooled linear head)."""

    family = "classification"
    kinds = ("class_label",)
    dense = False
    accuracy = "accuracy"

    def _target(self, batch, stats):
        return Target(batch[self.field.name][:, 0].long(), None)


class _Entries:
    """Image-level tasks on some entries of a vector field (`TaskSpec.index`)."""

    @property
    def entries(self) -> list[int]:
        return list(self.positions) if self.positions is not None else list(range(self.field.shape[-1]))

    @property
    def out_channels(self) -> int:
        return len(self.entries)

    @property
    def inject_channels(self) -> int:
        return len(self.entries) + (1 if self.field.invalid is not None else 0)

    def _picked(self, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, k) raw entries and their (B, k) validity (None: all valid)."""
        raw = batch[self.field.name][:, self.entries]
        valid = None if self.field.invalid is None else raw != self.field.invalid
        return raw, valid

    def _encode(self, target):
        value = target.value.float()
        if self.field.invalid is None:
            return value
        mask = target.mask if target.mask is not None else torch.ones_like(value, dtype=torch.bool)
        return torch.cat([value * mask, mask.all(dim=1, keepdim=True).float()], dim=1)

    def _prior(self, target):
        value = target.value.float()
        valid = target.mask if target.mask is not None else torch.ones_like(value, dtype=torch.bool)
        return {"sum": (value * valid).sum(dim=0), "count": valid.sum(dim=0)}

    def _constant(self, sums) -> torch.Tensor:
        """(k,) the training mean of each entry."""
        return (sums["sum"] / sums["count"].clamp(min=1)).float()

    def _chance(self, sums, target):
        return self._constant(sums).to(target.value.device).expand_as(target.value)

    def _masked_mean(self, error, target):
        if target.mask is None:
            return error.mean()
        return (error * target.mask).sum() / target.mask.sum().clamp(min=1)


class Binary(_Entries, Task):
    """Sigmoid outputs, one per picked entry of an image-level 0/1 vector (CelebA's attributes:
    TAG's two-way softmax per attribute is the same model); binary cross-entropy, mean over the
    valid entries."""

    family = "binary"
    kinds = ("multi_label",)
    dense = False

    def _target(self, batch, stats):
        raw, valid = self._picked(batch)
        return Target((raw == 1).float(), valid)

    def _loss(self, pred, target):
        return self._masked_mean(F.binary_cross_entropy_with_logits(pred, target.value, reduction="none"), target)

    def _constant(self, sums):
        rate = ((sums["sum"] + 1) / (sums["count"] + 2)).float()  # add-one: no entry is certain
        return torch.log(rate / (1 - rate))

    def _sums(self, pred, target, stats):
        right = ((pred > 0).float() == target.value).double()
        valid = target.mask.double() if target.mask is not None else torch.ones_like(right)
        return {"correct": (right * valid).sum(), "labels": valid.sum()}

    def _metrics(self, sums):
        return {"accuracy": _ratio(sums["correct"], sums["labels"])}


class ImageRegression(_Entries, Task):
    """L1 on picked entries of an image-level scalar vector, normalised as the field says."""

    family = "image_regression"
    kinds = ("scalar",)
    dense = False

    def _target(self, batch, stats):
        raw, valid = self._picked(batch)
        return Target(_standardise(raw.float(), self.field, stats, self.entries), valid)

    def _loss(self, pred, target):
        return self._masked_mean((pred - target.value).abs(), target)

    def _sums(self, pred, target, stats):
        valid = target.mask.double() if target.mask is not None else torch.ones_like(pred, dtype=torch.double)
        return {"abs_error": ((pred - target.value).abs().double() * valid).sum(), "values": valid.sum()}

    def _metrics(self, sums):
        return {"mae": _ratio(sums["abs_error"], sums["values"])}


FAMILIES: dict[str, type[Task]] = {cls.family: cls for cls in (DenseRegression, DenseClasses, Classification, Binary, ImageRegression)}


def build_task(spec: TaskSpec, field: Field, mask_field: Field | None = None) -> Task:
    """The task `spec` on its dataset field (and the field that masks it, for a masked task on a
    declared dataset); DataError when the field does not suit the family."""
    if field.name != spec.field:
        raise ValueError(f"task {spec.name} reads field {spec.field}, got {field.name}")
    return FAMILIES[spec.family](spec, field, mask_field)


def resolve(name: str, declared: dict[str, TaskSpec] | None = None, fields: dict[str, Field] | None = None,
            size: int = 1) -> Task:
    """Task `name`: declared in the sweep (`declared`) or a Taskonomy preset, on its field from
    `fields` (a manifest's) or Taskonomy's domain of that name at `size` px."""
    spec = (declared or {}).get(name) or TASK_PRESETS.get(name)
    if spec is None:
        known = ", ".join([*(declared or {}), *TASK_PRESETS])
        raise UnknownTask(f"unknown task {name!r} (known: {known})")
    if fields and spec.field in fields:
        field = fields[spec.field]
        return build_task(spec, field, fields.get(field.mask) if field.mask else None)
    if fields:
        raise DataError(f"task {name} reads field {spec.field!r}, which the dataset does not hold (it has: {', '.join(fields)})")
    return build_task(spec, taskonomy_field(spec.field, size))


def task(name: str) -> Task:
    """The Taskonomy preset `name` on its domain (`resolve` with nothing declared: the size of a
    dense field does not change a task, so presets are built at 1 px)."""
    return resolve(name)
