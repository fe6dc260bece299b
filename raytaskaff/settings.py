"""What the config, the planner and the store share, declared once and torch-free, so that a
sweep config is checked and planned before anything heavy loads:

- the training and probe settings (`Training`, `ProbeConfig`), read from YAML by the config and
  run by the training loop;
- the model presets as plain data (`ModelConfig`, `MODEL_PRESETS`), built into networks by
  `raytaskaff.models`;
- tasks as plain data (`TaskSpec`: a family applied to a field) and the Taskonomy tasks as named
  presets (`TASK_PRESETS`), given their heads, losses and metrics by `raytaskaff.tasks`;
- the kinds of run (`RunKind`), what one run trains (`RunSpec`) and what it reports (`RunResult`).

A bad value raises `ConfigError` (a `ValueError`) naming the key as a sweep config spells it.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import asdict, dataclass, field, replace

from raytaskaff.errors import RaytaskaffError

#: The TAG lookahead variants (see training/probes.py).
VARIANTS = ("faithful", "corrected", "raw")


class ConfigError(RaytaskaffError, ValueError):
    """A setting is malformed; the message names the key."""


def check_choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")


def check_at_least(key: str, value, low) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{key}: must be an integer >= {low}, got {value!r}")


def check_range(key: str, value, low: float, high: float = math.inf, *, above: bool = False) -> None:
    """A finite number in [low, high] (in (low, high] when `above`)."""
    ok = math.isfinite(value) and (value > low if above else value >= low) and value <= high
    if not ok:
        bounds = f"{'>' if above else '>='} {low:g}" + (f" and <= {high:g}" if math.isfinite(high) else "")
        raise ConfigError(f"{key}: must be a finite number {bounds}, got {value!r}")


@dataclass(frozen=True)
class Training:
    """The hyper-parameters of every run of a sweep: epochs, batch_size, lr (peak), optimizer
    ("adam", "adamw", "sgd"; momentum for sgd), weight_decay, schedule ("cosine" per step, or
    "constant"), grad_scale (1/sqrt(T) at the shared representation), amp (bf16 autocast, CUDA
    only), eval_batch_size."""

    epochs: int = 2
    batch_size: int = 64
    lr: float = 2e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    grad_scale: bool = False
    amp: bool = True
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        check_at_least("training.epochs", self.epochs, 1)
        check_at_least("training.batch_size", self.batch_size, 1)
        check_at_least("training.eval_batch_size", self.eval_batch_size, 1)
        check_range("training.lr", self.lr, 0, above=True)
        check_range("training.momentum", self.momentum, 0, 1)
        check_range("training.weight_decay", self.weight_decay, 0)
        check_choice("training.optimizer", self.optimizer, ("adam", "adamw", "sgd"))
        check_choice("training.schedule", self.schedule, ("cosine", "constant"))


@dataclass(frozen=True)
class ProbeConfig:
    """Gradient probes of an MTL run. lookahead_every: steps between TAG lookaheads (the
    reference uses 10); gradients_every: steps between gs/etap records (1: every step, TAG's
    definition of CS; per-task gradients cost one encoder backward per task, so larger values make
    long all-task runs cheaper); variant: the lookahead step `gt` and `etap` read, "faithful" to the
    reference, "corrected" (the optimizer's step) or "raw" (lr times the raw gradient on every
    shared parameter; see training/probes.py); variants: more steps computed side by side in the
    same run, from the same gradients, recorded as gt/<variant> and etap/<variant> (one more
    forward pass per task and lookahead each, and a tasks x shared-parameters update tensor)."""

    lookahead_every: int = 10
    variant: str = "corrected"
    gradients_every: int = 1
    variants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_at_least("probes.lookahead_every", self.lookahead_every, 1)
        check_at_least("probes.gradients_every", self.gradients_every, 1)
        check_choice("probes.variant", self.variant, VARIANTS)
        if not isinstance(self.variants, tuple):
            raise ConfigError(f"probes.variants: expected a list, got {self.variants!r}")
        for i, v in enumerate(self.variants):
            check_choice(f"probes.variants[{i}]", v, VARIANTS)
        if len(set(self.variants)) != len(self.variants):
            raise ConfigError(f"probes.variants: each variant once, got {list(self.variants)}")

    def identity(self) -> dict:
        """What of the probes decides a run's result, for its key: `variants` only when some are
        asked for, so that runs without them keep the keys they had before variants existed."""
        out = asdict(self)
        if not self.variants:
            del out["variants"]
        return out


class RunKind(str, enum.Enum):
    """The kinds of run a sweep trains (see plan.py). A member is its string ("stl"), in keys,
    tables, messages and dictionaries alike."""

    STL = "stl"      # one task alone
    PAIR = "pair"    # two tasks (the ground truth)
    ALL = "all"      # every task of the sweep, instrumented for the gradient scorers
    LI = "li"        # one task with a partner's label as extra input (label injection)
    GROUP = "group"  # three or more tasks, for validating groupings

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    __hash__ = str.__hash__  # a member and its string are one key of a dict or a set


@dataclass(frozen=True)
class ModelConfig:
    """widths: output channels of the encoder's stages, each halving the resolution;
    blocks: 3x3 conv blocks per stage; decoder_width: channels of the decoders' first stage (halved
    at each later stage, at least 8); neck: channels of the shared 1x1 neck (0: none);
    backbone: "conv" (the stages above), "resnet18" (torchvision, random init, stride 32) or
    "residual" (one conv layer and one residual block of widths[0] channels, stride 2: the size of
    TAG's CelebA network)."""

    widths: tuple[int, ...] = (16, 32, 64)
    blocks: int = 1
    decoder_width: int = 8
    neck: int = 0
    backbone: str = "conv"

    def __post_init__(self) -> None:
        if self.backbone not in ("conv", "resnet18", "residual"):
            raise ValueError(f"unknown backbone {self.backbone!r} (known: conv, resnet18, residual)")
        if not self.widths or min(self.widths) < 1 or self.blocks < 1 or self.decoder_width < 1 or self.neck < 0:
            raise ValueError(f"model sizes must be positive: {self}")


#: "small": trains on 2 CPU cores in seconds at 32-64 px. "large": in the spirit of the reference
#: networks (8x8 to 16x16 representation, decoders of 4-5 up-samplings) for GPUs at 128-256 px.
MODEL_PRESETS = {
    "small": ModelConfig(),
    "medium": ModelConfig(widths=(32, 64, 128), blocks=2, decoder_width=32),
    "large": ModelConfig(widths=(64, 128, 256, 512), blocks=2, decoder_width=128, neck=512),
    "resnet18": ModelConfig(backbone="resnet18", decoder_width=128, neck=512),
    "tag_celeba": ModelConfig(widths=(64,), backbone="residual"),
}


def preset(name: str, **overrides) -> ModelConfig:
    """Model preset `name` with some of its sizes overridden; ValueError for an unknown name."""
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {name!r} (known: {', '.join(MODEL_PRESETS)})")
    return replace(MODEL_PRESETS[name], **overrides)


class UnknownTask(RaytaskaffError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


#: Task families: what a task does with its field (see raytaskaff/tasks.py for heads, losses, metrics).
FAMILIES = ("dense_regression", "dense_classes", "classification", "binary", "image_regression")
#: Metrics a Taskonomy preset adds to its family's own (they read Taskonomy's depth units and normals).
TASKONOMY_METRICS = ("abs_rel", "delta1", "angular_error")


@dataclass(frozen=True)
class TaskSpec:
    """A task as plain data: a `family` applied to a dataset `field`.

    family: "dense_regression" (L1 per pixel; `masked`: only pixels the field's mask says valid
    count, masked ones stay in the denominator as the reference loss does), "dense_classes"
    (cross-entropy per pixel, the field's ignored id skipped), "classification" (softmax over an
    image-level class label), "binary" (sigmoid outputs for entries of an image-level 0/1 vector:
    `index` one entry, a list of entries, or None for all; an entry by its position or by its
    name in the field's `names`, e.g. CelebA's attribute names), "image_regression" (L1 on entries of an
    image-level scalar vector, `index` as for binary). metrics: extra Taskonomy metrics
    (`TASKONOMY_METRICS`) for presets of depth and normals."""

    name: str
    family: str
    field: str
    masked: bool = False
    index: int | str | tuple[int | str, ...] | None = None
    metrics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"tasks.{self.name}"
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ConfigError(f"tasks: a task name is letters, digits, '_', '.' and '-', got {self.name!r}")
        check_choice(f"{where}.family", self.family, FAMILIES)
        if not isinstance(self.field, str) or not self.field:
            raise ConfigError(f"{where}.field: the name of a dataset field, got {self.field!r}")
        if self.masked and self.family != "dense_regression":
            raise ConfigError(f"{where}.masked: only a dense_regression task is masked")
        index = self.index
        if isinstance(index, list):
            index = tuple(index)
            object.__setattr__(self, "index", index)
        if index is not None:
            if self.family not in ("binary", "image_regression"):
                raise ConfigError(f"{where}.index: picks entries of an image-level vector (binary, image_regression), not for {self.family}")
            entries = index if isinstance(index, tuple) else (index,)
            position = lambda i: isinstance(i, int) and not isinstance(i, bool) and i >= 0  # noqa: E731
            named = lambda i: isinstance(i, str) and bool(i.strip())  # noqa: E731
            if not entries or not all(position(i) or named(i) for i in entries) or len(set(entries)) != len(entries):
                raise ConfigError(f"{where}.index: an entry (a position >= 0 or a name) or a list of distinct ones, got {self.index!r}")
        for m in self.metrics:
            check_choice(f"{where}.metrics[]", m, TASKONOMY_METRICS)

    @property
    def entries(self) -> tuple[int | str, ...] | None:
        """The vector entries an image-level task reads, by position or name (None: all of them)."""
        if self.index is None:
            return None
        return self.index if isinstance(self.index, tuple) else (self.index,)


#: The Taskonomy tasks, named as their domains.
TASK_PRESETS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("segment_semantic", "dense_classes", "segment_semantic"),
    TaskSpec("depth_zbuffer", "dense_regression", "depth_zbuffer", masked=True, metrics=("abs_rel", "delta1")),
    TaskSpec("normal", "dense_regression", "normal", masked=True, metrics=("angular_error",)),
    TaskSpec("keypoints2d", "dense_regression", "keypoints2d"),
    TaskSpec("edge_texture", "dense_regression", "edge_texture"),
    TaskSpec("depth_euclidean", "dense_regression", "depth_euclidean", masked=True),
    TaskSpec("reshading", "dense_regression", "reshading"),
    TaskSpec("edge_occlusion", "dense_regression", "edge_occlusion"),
    TaskSpec("principal_curvature", "dense_regression", "principal_curvature"),
    TaskSpec("mask_valid", "dense_regression", "mask_valid"),
    TaskSpec("autoencoding", "dense_regression", "rgb"),
)}


def task_preset(name: str) -> TaskSpec:
    try:
        return TASK_PRESETS[name]
    except KeyError:
        raise UnknownTask(f"unknown task {name!r} (known: {', '.join(TASK_PRESETS)})") from None


@dataclass(frozen=True)
class RunSpec:
    """What one run trains: `tasks` (its outputs) and `inject` (partners' labels given as input)."""

    tasks: tuple[str, ...]
    inject: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("a run needs at least one task")
        if len(set(self.tasks)) != len(self.tasks) or set(self.tasks) & set(self.inject):
            raise ValueError(f"tasks must be distinct and not injected: {self}")

    @property
    def kind(self) -> RunKind:
        """What the spec alone tells (an all-task run reads as a group)."""
        if self.inject:
            return RunKind.LI
        return {1: RunKind.STL, 2: RunKind.PAIR}.get(len(self.tasks), RunKind.GROUP)


#: How a network was trained (`RunResult.training`).
TRAINING_MODES = ("fused", "separate", "fell back")


@dataclass
class RunResult:
    """What a finished run reports. Losses and metrics are per task; `history` per epoch;
    `probes` {name: [epoch][target][partner]} in the order of `spec.tasks`.

    Costs, summed over every attempt (a resumed run adds what its checkpoint had spent):
    wall_seconds; cpu_seconds, the process CPU time (core-seconds); gpu_seconds, wall time on a
    GPU times the fraction of it the run held (0 without one).

    How it was trained: `device`, where ("cpu", or "cuda:0 NVIDIA H100 80GB HBM3": index and
    name); `training`, one of `TRAINING_MODES` ("fused": stacked with other networks of its
    bundle, `training.fused`; "separate": its own module; "fell back": planned stacked, trained
    separate after the stacked step failed), and `training_reason`, why (None for "fused"). A
    result stored before these were recorded loads with `training` None: not known.

    A network whose loss turned non-finite is stored with `diverged` (`training.tally.TrainingDiverged.
    as_record`: epoch, step, task, loss) and no test losses: it is not retrained (CPU training
    is deterministic) and no score or ground truth reads it."""

    spec: RunSpec
    seed: int
    test_losses: dict[str, float]
    val_losses: dict[str, float]
    test_metrics: dict[str, dict[str, float]]
    best_epoch: int
    epochs: int
    history: list[dict]
    wall_seconds: float
    cpu_seconds: float
    device: str
    parameters: int
    probes: dict[str, list] = field(default_factory=dict)
    probe_variant: str | None = None
    model_path: str | None = None
    bundle_size: int = 1  # networks trained together in one fused trial (their costs split evenly)
    chance_losses: dict[str, float] = field(default_factory=dict)  # each own task: test loss of the trivial predictor
    gpu_seconds: float = 0.0
    training: str | None = None  # TRAINING_MODES; None: stored before it was recorded
    training_reason: str | None = None
    diverged: dict | None = None  # a loss turned non-finite: {epoch, step, task, loss, message}; no test losses then

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunResult:
        spec = data["spec"]
        data = {**data, "spec": RunSpec(tuple(spec["tasks"]), tuple(spec["inject"]))}
        if "device_seconds" in data:  # stored before costs were split by unit: GPU wall time on CUDA, else CPU time
            seconds = data.pop("device_seconds")
            data["cpu_seconds" if not str(data.get("device", "")).startswith("cuda") else "gpu_seconds"] = seconds
            data.setdefault("cpu_seconds", float("nan"))  # not measured then
        return cls(**data)
