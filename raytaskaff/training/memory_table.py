"""A network's memory without torch: the recorded table of measured parts (`memory.json`,
written by `training.memory.record`, `python -m bench.memory --record`), a network as the sum of
its parts (`predict`, `predict_bundle`), and the planning helpers that price a sweep's runs
against their trial's share of a GPU (`sized_bundles`, `fitter`, `describe_bundles`,
`gpu_memory_gb`) for the planner, the dry run and the preflight. Importing this module loads no
torch; `training.memory` measures what the table holds.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from raytaskaff.settings import ModelConfig

PRECISIONS = ("fp32", "bf16")
GIB = 2**30


@dataclass(frozen=True)
class Network:
    """One network of a bundle as the memory model sees it: its heads ((out_channels, dense) per
    task), injected label channels, and whether it trains alone (a probed network: a plain unit)."""

    heads: tuple[tuple[int, bool], ...]
    inject_channels: int = 0
    alone: bool = False


# -- the recorded table ------------------------------------------------
#: Measured parts of every shipped preset (`python -m bench.memory --record`), read by the
#: planner and the dry run, which load no torch.
TABLE = Path(__file__).with_name("memory.json")
#: The head sets a preset is measured with to split a network into parts (see `parts_of`).
PROBES = {"one": ((1, True),), "two": ((1, True), (1, True)), "wide": ((9, True),), "pooled": ((1, False),)}
#: Injected channels of the measurement that prices injected label channels.
PROBE_INJECT = 8


@dataclass(frozen=True)
class Part:
    """Bytes of a part of a network (its trunk, a head, injected channels), at the table's size:
    state; line, the (fixed, per sample) of the training step's activations at large batches
    (the start of the backward pass); scratch, the largest transient that does not grow with the
    batch (a weight gradient's, the optimizer step's); evaluation, (fixed, per sample) of an
    evaluation forward."""

    state: float
    line: tuple[float, float]
    scratch: float
    evaluation: tuple[float, float]

    def __add__(self, other: Part) -> Part:
        return Part(self.state + other.state, (self.line[0] + other.line[0], self.line[1] + other.line[1]),
                    max(self.scratch, other.scratch),
                    (self.evaluation[0] + other.evaluation[0], self.evaluation[1] + other.evaluation[1]))

    def __sub__(self, other: Part) -> Part:
        """The part `self` has beyond `other` (never below zero)."""
        pos = lambda v: max(v, 0.0)  # noqa: E731
        return Part(pos(self.state - other.state), (pos(self.line[0] - other.line[0]), pos(self.line[1] - other.line[1])),
                    0.0, (pos(self.evaluation[0] - other.evaluation[0]), pos(self.evaluation[1] - other.evaluation[1])))

    def scaled(self, k: float) -> Part:
        return Part(self.state * k, (self.line[0] * k, self.line[1] * k), self.scratch,
                    (self.evaluation[0] * k, self.evaluation[1] * k))


def table_size(config: ModelConfig) -> int:
    """The image size a preset's parts are measured at: 16 px, or its stride when larger."""
    stride = 32 if config.backbone == "resnet18" else 2 if config.backbone == "residual" else 2 ** len(config.widths)
    return max(16, stride)


@functools.lru_cache(maxsize=4)
def load_table(path: str) -> dict:
    return json.loads(Path(path).read_text())


def predict(preset: str, heads: Sequence[tuple[int, bool]], size: int, precision: str = "fp32", fused: bool = False,
            inject_channels: int = 0, path: str | Path = TABLE) -> Part:
    """A network's `Part` at `size` px (its lines per sample already scaled by area) from the
    recorded table, without torch; KeyError when the preset is not in the table."""
    entry = load_table(str(path))["presets"][preset]
    parts = {k: Part(v["state"], tuple(v["line"]), v["scratch"], tuple(v["evaluation"]))
             for k, v in entry[f"{'fused' if fused else 'plain'}-{precision}"].items()}
    total = parts["trunk"]
    for channels, dense in heads:
        total = total + (parts["dense"] + parts["channel"].scaled(channels - 1) if dense else parts["pooled"])
    if inject_channels:
        total = total + parts["inject"].scaled(inject_channels)
    area = (size / entry["size"]) ** 2
    return Part(total.state, (total.line[0], total.line[1] * area), total.scratch,
                (total.evaluation[0], total.evaluation[1] * area))


def part_train_bytes(part: Part, batch: int) -> float:
    """A network's training peak above its state, from its `Part` at its size."""
    return max(part.line[0] + batch * part.line[1], part.scratch)


def part_eval_bytes(part: Part, batch: int) -> float:
    return part.evaluation[0] + batch * part.evaluation[1]


def predict_bundle(preset: str, size: int, networks: Sequence[Network], batch: int, precision: str = "fp32",
                   fuse: bool = True, eval_batch: int | None = None, path: str | Path = TABLE) -> tuple[float, float]:
    """(training peak, evaluation peak) in bytes of a bundle, as `bundle_bytes` but from the
    recorded table (no torch): the networks' state summed, and the peak of the unit that needs
    most above it (a fused unit's networks at once, their scratch summed: stacked weights)."""
    eval_batch = batch if eval_batch is None else eval_batch
    units = units_of(networks, fuse)
    state = train = evaluation = 0.0
    for fused, members in units:
        parts = [predict(preset, n.heads, size, precision, fused, n.inject_channels, path) for n in members]
        state += sum(p.state for p in parts)
        line = sum(p.line[0] for p in parts), sum(p.line[1] for p in parts)
        train = max(train, line[0] + batch * line[1], sum(p.scratch for p in parts))
        evaluation = max(evaluation, sum(part_eval_bytes(p, eval_batch) for p in parts))
    return state + train, state + evaluation


def units_of(networks: Sequence[Network], fuse: bool) -> list[tuple[bool, list[Network]]]:
    """The units `training.units.build_units` makes of a bundle: (stacked, networks)."""
    stacks: dict[int, list[Network]] = {}
    units = []
    for n in networks:
        if fuse and not n.alone:
            stacks.setdefault(n.inject_channels, []).append(n)
        else:
            units.append((False, [n]))
    for members in stacks.values():
        units.append((len(members) > 1, members))
    return units


# -- planning: runs of a sweep config against their trial's memory (no torch) --------------------
#: GPU memory in GB (10^9 bytes) by the accelerator type Ray reports (`accelerator_type:<name>`).
GPU_MEMORY_GB = {"H200": 141.0, "H100": 80.0, "B200": 180.0, "L40S": 48.0, "L40": 48.0, "L4": 24.0, "A10G": 24.0,
                 "T4": 16.0, "V100": 16.0, "A100-80G": 80.0, "A100-40G": 40.0, "RTX6000": 24.0}


def gpu_memory_gb(resources: dict) -> float | None:
    """The GPU memory of a cluster whose nodes report one accelerator type (Ray's
    `accelerator_type:<name>` resources, from `ray.cluster_resources()` or the autoscaler's node
    types), in GB; None when none is reported, the type is not known here, or types differ
    (then the smallest is not a safe guess either: the config must say, `resources.gpu_memory_gb`)."""
    types = {k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:")}
    known = {GPU_MEMORY_GB.get(t) for t in types}
    return known.pop() if len(known) == 1 and None not in known else None


def _head(name: str, config) -> tuple[int, bool]:
    """(out_channels, dense) of a task of the sweep, from its spec and its field (the manifest's
    fields when the config's data has them, else Taskonomy's domains)."""
    from raytaskaff.data.domains import domain

    spec = config.task_specs[name]
    dense = spec.family in ("dense_regression", "dense_classes")
    field = _fields(config).get(spec.field)
    if field is None:
        return domain(spec.field).target_channels, dense
    if spec.family in ("dense_classes", "classification"):
        return int(field.classes), dense
    if dense:
        return int(field.shape[-1]), dense
    return (len(spec.entries) if spec.entries else int(field.shape[0])), dense


def _inject(name: str, config) -> int:
    """Input channels of a task's injected label (as `tasks.Task.inject_channels`)."""
    channels, dense = _head(name, config)
    spec = config.task_specs[name]
    if spec.family == "dense_classes":
        return channels
    return channels + (1 if spec.masked else 0)


@functools.lru_cache(maxsize=8)
def _manifest_fields(path: str) -> dict:
    from raytaskaff.data.shards import Manifest
    from raytaskaff.errors import RaytaskaffError

    try:
        manifest = Manifest.load(path)
        return {name: manifest.field(name) for name in manifest.fields}
    except (RaytaskaffError, OSError, AttributeError):
        return {}


def _fields(config) -> dict:
    return _manifest_fields(str(config.data.path)) if config.data.kind == "shards" else {}


def network_of(run, config) -> Network:
    """A planned run as the memory model sees it."""
    heads = tuple(_head(t, config) for t in run.tasks)
    inject = sum(_inject(t, config) for t in run.inject)
    return Network(heads, inject, alone=bool(run.probes) and len(run.tasks) > 1)


def precision_of(config) -> str:
    """The precision a sweep's runs compute in (`plan.numerics`): bf16 autocast on GPUs with amp."""
    return "bf16" if config.resources.gpus_per_run and config.training.amp else "fp32"


def predict_runs(runs, config, size: int) -> tuple[float, float]:
    """(training peak, evaluation peak) in bytes of the runs trained as one bundle at `size` px,
    from the recorded table; evaluation in chunks of the training batch (`training.bundle`)."""
    r = config.resources
    fuse = r.fuses("cuda" if r.gpus_per_run else "cpu")
    return predict_bundle(config.model.preset, size, [network_of(run, config) for run in runs],
                          config.training.batch_size, precision_of(config), fuse)


def fitter(config, size: int, budget: float | None):
    """The `fits` test of `plan.bundles`: whether a bundle's predicted training peak stays within
    `budget` bytes (None: everything fits). A preset with overridden sizes, or not in the table,
    is not predicted: everything fits, and `describe` says so."""
    if budget is None or not predictable(config):
        return None
    return lambda runs: predict_runs(runs, config, size)[0] <= budget


def predictable(config) -> bool:
    """Whether the recorded table prices the sweep's networks: a shipped preset with no size
    overridden, and every task's head known (its dataset's fields readable, or Taskonomy's)."""
    from raytaskaff.errors import RaytaskaffError

    m = config.model
    overridden = any(v is not None for v in (m.widths, m.blocks, m.decoder_width, m.neck))
    if overridden or not TABLE.exists() or m.preset not in load_table(str(TABLE))["presets"]:
        return False
    try:
        for name in config.tasks:
            _head(name, config)
    except (RaytaskaffError, KeyError, ValueError):
        return False
    return True


def sized_bundles(runs, config, size: int, slots: int | None = None, gpu_memory: float | None = None):
    """`plan.bundles` for a sweep's runs: at most `resources.bundle_limit` runs, within the trial's
    memory (`ResourcesSection.trial_memory`, the GPU's memory from the config or `gpu_memory`),
    at least `slots` trials when there are enough runs."""
    from raytaskaff.plan import bundles

    limit = config.resources.bundle_limit
    if limit == 1:
        return bundles(runs, 1)
    return bundles(runs, limit, fitter(config, size, config.resources.trial_memory(gpu_memory)), slots)


def describe_bundles(bundled, config, size: int) -> list[str]:
    """Per bundle kind (with or without injected labels), the networks per trial and the
    predicted GiB per trial, in words (the dry run's lines)."""
    if not predictable(config):
        return [f"memory per trial: not predicted (model {config.model.preset!r} with overridden sizes or not in "
                "raytaskaff/training/memory.json, or the dataset's fields not readable yet): trials not sized to memory"]
    r = config.resources
    budget = r.trial_memory()
    lines = []
    for injected, name in ((False, "STL, pair, all-task and group"), (True, "label-injection")):
        kind = [b for b in bundled if bool(b.runs[0].inject) == injected]
        if not kind:
            continue
        sizes = sorted({len(b.runs) for b in kind})
        gib = [predict_runs(b.runs, config, size)[0] / GIB for b in kind]
        where = f"of {budget / GIB:.1f} GiB allowed ({r.memory_fraction:g} of {min(r.gpus_per_run, 1.0):g} x " \
                f"{r.gpu_memory_gb:g} GB)" if budget else "(resources.gpu_memory_gb not set: not sized to memory)"
        span = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        lines.append(f"memory per trial, {name} bundles: {len(kind)} trials of {span} network{'' if span == '1' else 's'}, predicted peak {min(gib):.1f}-{max(gib):.1f} GiB at {size} px, batch "
                     f"{config.training.batch_size}, {precision_of(config)} {where}")
    return lines
