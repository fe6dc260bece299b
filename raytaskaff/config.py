"""The sweep config: typed, frozen, parsed once from YAML; an unknown key or a bad value is a
one-line `ConfigError` naming it.

    name: default
    data: {kind: synthetic, path: data/synthetic-32, n: 5000, size: 32, seed: 0}
    tasks: [segment_semantic, keypoints2d, edge_texture, depth_zbuffer, normal]   # Taskonomy presets
    # or tasks of your own, a family applied to a field of the dataset (see raytaskaff/tasks.py):
    # tasks: [{name: smiling, family: binary, field: attributes, index: 31}, ...]
    seeds: [0, 1, 2]
    model: {preset: small}
    training: {epochs: 2, batch_size: 64, lr: 0.002}
    probes: {lookahead_every: 10, variant: corrected}
    scorers: {td: {}, ias: {images: 2048}, rsa: {}, li: {seeds: [0]}, gs: {}, gt: {}, etap: {}}
    # a scorer of your own: {mine: {module: path/to/mine.py, class: Mine, ...its options}}
    resources: {cpus_per_run: 1, gpus_per_run: 0}
    ground_truth: {pairs: 20}       # or 0.25: train that many pairs per seed, predict the rest (default: every pair)
    tracking: {tensorboard: true}   # and mlflow: {tracking_uri: ..., experiment: ...}, wandb: {project: ..., mode: offline}

Parsing runs no user code: a scorer of the user's own file is found here and run (once per path
and content) by the preflight, `preflight.check_scorers`, which checks its options.

Why the checks are written here rather than left to a validation library such as pydantic v2:
- every error is one line, the dotted key, what was given and what is expected (the command line
  prints it as one `error:` line; tests pin the wording). A pydantic `ValidationError` spans
  several lines per error (location, its own message, type, input, a link); getting these lines
  back takes a custom validator or error mapping per field, i.e. these checks again, on top of it;
- pydantic is no dependency of raytaskaff, only of Ray's extras (`ray[default]`, `ray[tune]`,
  `ray[train]` require pydantic>=2.5,<3), and the pure core (config, plan, preflight) must not
  need Ray's environment: it would need a pin of its own for no gain in what users read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from itertools import combinations, permutations
from pathlib import Path

import yaml

from raytaskaff.errors import RaytaskaffError
from raytaskaff.settings import (
    ConfigError,
    ProbeConfig,
    Training,
    check_at_least,
    check_choice,
    TaskSpec,
    check_range,
    preset,
    task_preset,
)

__all__ = ["ConfigError", "SweepConfig", "load_config"]


READERS = ("auto", "object_store", "mmap", "streaming")
#: Keys of a scorer's section that say where its class is, not how it scores.
SCORER_SOURCE_KEYS = ("module", "class")
SYNTH_SPLITS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class DataConfig:
    """kind "synthetic": rendered into `path` if absent (n views of size px from seed, whole
    buildings assigned to train, val and test by the fractions `splits`);
    kind "shards": an existing dataset at `path`, a directory (e.g. converted Taskonomy) or a URI
    (s3://bucket/taskonomy-256, any pyarrow.fs URI).
    reader: how trials get the splits (engine/data.py `share_splits`):
      "object_store": the driver puts each split in Ray's object store once (small data, one node);
      "mmap": each trial memory-maps the Arrow shards on a path every node sees (NVMe copy, NFS);
      "streaming": each trial reads the shards from `path` in turn (object storage);
      "auto": streaming for a URI, object_store on a local Ray, mmap on a cluster.
    shuffle_window: shards shuffled together per epoch (data/order.py); 0 shuffles every row as
    one permutation, which streaming cannot do. readahead: shard groups a streaming trial reads
    ahead (its memory is (1 + readahead) x shuffle_window shards). input: the image field the
    networks see (and ias and rsa attribute to). gather_threads: threads per trial that gather
    batches into page-locked memory ahead of a GPU (default: the trial's CPUs on a GPU, none on
    a CPU trial, whose cores train); batches are bit-identical for any number."""

    kind: str = "synthetic"
    path: str = "data/synthetic-32"
    n: int = 5000
    size: int = 32
    seed: int = 0
    splits: tuple[float, ...] = SYNTH_SPLITS
    workers: int = 2
    normalisation: str = "dataset"
    reader: str = "auto"
    shuffle_window: int = 0
    readahead: int = 1
    input: str = "rgb"
    gather_threads: int | None = None

    def __post_init__(self) -> None:
        check_choice("data.kind", self.kind, ("synthetic", "shards"))
        if not self.input.strip():
            raise ConfigError("data.input: the name of the dataset's image field, got an empty name")
        check_choice("data.reader", self.reader, READERS)
        check_choice("data.normalisation", self.normalisation, ("dataset", "taskonomy"))
        check_at_least("data.n", self.n, 1)
        check_at_least("data.size", self.size, 8)
        if self.size > 512:
            raise ConfigError(f"data.size: at most 512 (Taskonomy's own resolution), got {self.size}")
        check_at_least("data.workers", self.workers, 1)
        if len(self.splits) != 3 or min(self.splits) <= 0 or abs(sum(self.splits) - 1) > 1e-6:
            raise ConfigError(f"data.splits: three positive fractions (train, val, test) summing to 1, got {list(self.splits)}")
        if self.kind == "shards" and self.splits != SYNTH_SPLITS:
            raise ConfigError("data.splits: only synthetic data is split by the config; shards hold their own splits")
        check_at_least("data.shuffle_window", self.shuffle_window, 0)
        check_at_least("data.readahead", self.readahead, 0)
        if self.gather_threads is not None:
            check_at_least("data.gather_threads", self.gather_threads, 0)
        uri = "://" in self.path
        if uri and self.kind == "synthetic":
            raise ConfigError(f"data.path: synthetic data is rendered to a local directory, got the URI {self.path!r}")
        if uri and self.reader in ("object_store", "mmap"):
            raise ConfigError(f"data.reader: {self.reader!r} reads local shards; {self.path!r} is a URI (use 'streaming')")
        if (self.reader == "streaming" or (uri and self.reader == "auto")) and self.shuffle_window == 0:
            raise ConfigError("data.shuffle_window: streaming reads shards in turn and needs a window of at least 1 "
                              "shard (0 shuffles every row at once)")

    def resolved_reader(self, on_cluster: bool) -> str:
        """The reader trials use: `reader`, or for "auto" the one that suits the path and the cluster."""
        if self.reader != "auto":
            return self.reader
        if "://" in self.path:
            return "streaming"
        return "mmap" if on_cluster else "object_store"


@dataclass(frozen=True)
class ModelSection:
    """preset: small, medium, large, resnet18 or tag_celeba; other keys override the preset."""

    preset: str = "small"
    widths: tuple[int, ...] | None = None
    blocks: int | None = None
    decoder_width: int | None = None
    neck: int | None = None

    def build(self):
        overrides = {k: v for k, v in dataclasses.asdict(self).items() if k != "preset" and v is not None}
        if "widths" in overrides:
            overrides["widths"] = tuple(overrides["widths"])
        try:
            return preset(self.preset, **overrides)
        except ValueError as e:
            raise ConfigError(f"model: {e}") from None


#: Networks per trial under `resources.bundle: auto`.
AUTO_BUNDLE = 32


@dataclass(frozen=True)
class ResourcesSection:
    """cpus_per_run / gpus_per_run: Ray resources of one run (fractions pack several runs per
    GPU); max_concurrent: runs at once (None: as many as resources allow); workers: >0 trains
    each run with Ray Train's TorchTrainer and that many DDP workers; scorer_actors: actors of
    the STL-based scorers; bundle: networks trained together in one trial (`plan.bundles`:
    "auto" the networks of a seed and input, at most `AUTO_BUNDLE`, on GPUs, one per trial on
    CPUs; N at most N; 1 one network per trial), on GPUs also cut so that a trial's predicted
    peak (`training.memory`) stays within `memory_fraction` of its share of a GPU
    (`gpus_per_run` x `gpu_memory_gb`) and so that there are at least as many trials as GPU slots;
    fuse: stack the networks of a bundle into one vmapped module ("auto": on a GPU, where it
    pays; on a CPU the networks of a bundle step one after another on each shared batch);
    gpu_memory_gb: memory of one GPU of the nodes the runs train on, in GB (10^9 bytes; None:
    read from the cluster's GPU type, `training.memory.gpu_memory_gb`; a GPU sweep on a cluster
    that does not tell needs it); memory_fraction: the share of a trial's GPU memory a bundle's
    predicted peak may use (the rest: the CUDA context, cuDNN workspaces, the allocator's
    rounding, which the model does not count)."""

    def trial_memory(self, gpu_memory_gb: float | None = None) -> float | None:
        """Bytes a trial's bundle may be predicted to use: `memory_fraction` of its GPU share, the
        GPU's memory from this config or else `gpu_memory_gb` (the cluster's); None without GPUs
        or without a known GPU memory."""
        gb = self.gpu_memory_gb if self.gpu_memory_gb is not None else gpu_memory_gb
        if not self.gpus_per_run or gb is None:
            return None
        return self.memory_fraction * min(self.gpus_per_run, 1.0) * gb * 1e9

    @property
    def bundle_limit(self) -> int:
        """Most networks per trial. "auto": `AUTO_BUNDLE` on GPUs (a seed's 16 networks of five
        tasks stay whole; a 40-task seed's 821 are cut, so that a trial's activations fit its
        share of a device), and one on CPUs, where a bundle's networks compute one after another
        anyway and fewer, longer trials leave cores idle (the default's training stage: 677 s
        bundled against 557 s, docs/benchmarks.md). DDP runs (`workers`) train one per trial."""
        if self.workers:
            return 1
        if self.bundle == "auto":
            return AUTO_BUNDLE if self.gpus_per_run > 0 else 1
        return self.bundle

    def fuses(self, device_type: str) -> bool:
        """Whether a bundle trained on `device_type` ("cuda", "cpu") stacks its networks."""
        return device_type == "cuda" if self.fuse == "auto" else bool(self.fuse)

    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_concurrent: int | None = None
    workers: int = 0
    scorer_actors: int = 2
    num_cpus: int | None = None
    bundle: str | int = "auto"
    fuse: str | bool = "auto"
    gpu_memory_gb: float | None = None
    memory_fraction: float = 0.8

    def __post_init__(self) -> None:
        if self.bundle != "auto" and (not isinstance(self.bundle, int) or isinstance(self.bundle, bool) or self.bundle < 1):
            raise ConfigError(f"resources.bundle: expected auto or an integer >= 1, got {self.bundle!r}")
        if self.fuse != "auto" and not isinstance(self.fuse, bool):
            raise ConfigError(f"resources.fuse: expected auto, true or false, got {self.fuse!r}")
        check_range("resources.cpus_per_run", self.cpus_per_run, 0, above=True)
        check_range("resources.gpus_per_run", self.gpus_per_run, 0)
        if self.max_concurrent is not None:
            check_at_least("resources.max_concurrent", self.max_concurrent, 1)
        check_at_least("resources.workers", self.workers, 0)
        check_at_least("resources.scorer_actors", self.scorer_actors, 1)
        if self.gpu_memory_gb is not None:
            check_range("resources.gpu_memory_gb", self.gpu_memory_gb, 0, above=True)
        check_range("resources.memory_fraction", self.memory_fraction, 0, 1, above=True)


@dataclass(frozen=True)
class GroupingSection:
    """Validation of groupings by training. For each number of groups in `groups`, every scorer's
    TAG grouping (and the ground truth's, and HOA's from the pairwise losses) is trained on `seeds`
    (default: all the sweep's seeds) and scored on test, next to the STL networks, the all-task
    network and the best selection over every trained network. `exhaustive` also trains every group
    of three or more tasks, so that best selection is the true optimum."""

    groups: tuple[int, ...] = ()
    seeds: tuple[int, ...] | None = None
    exhaustive: bool = False

    def __post_init__(self) -> None:
        for k in self.groups:
            check_at_least("grouping.groups[]", k, 1)


#: The seed of the one random order of a sweep's pairs that a budget takes a prefix of (the same
#: pairs on every seed, and a larger budget a superset of a smaller one's).
PAIRS_SEED = 0
#: Fewest pairs a budget may train: calibrating on fewer, with one held out, fits nothing.
FEWEST_PAIRS = 3


@dataclass(frozen=True)
class GroundTruthSection:
    """The pairwise ground truth. pairs: train only this many pairs per seed (an integer), or this
    fraction of them (a number in (0, 1], rounded up), chosen as a prefix of one fixed random
    order of the pairs (`SweepConfig.trained_pairs`), and predict the others from the scorers
    calibrated on them (`evaluation.budget`); None (the default): every pair."""

    pairs: int | float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.pairs, float):
            check_range("ground_truth.pairs", self.pairs, 0, 1, above=True)
        elif self.pairs is not None:
            check_at_least("ground_truth.pairs", self.pairs, 1)


def _check_installed(key: str, package: str) -> None:
    """A tracker the config asks for must be importable, said before Ray starts (and without importing it)."""
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise ConfigError(f"{key}: needs the {package} package, which is not installed: pip install 'raytaskaff[{package}]'")


def _check_name(key: str, value: str | None) -> None:
    if value is not None and not value.strip():
        raise ConfigError(f"{key}: must not be empty (leave it out for the default)")


#: The tracking URI schemes MLflow accepts (a database scheme may name its driver: postgresql+psycopg2).
MLFLOW_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc")


@dataclass(frozen=True)
class MlflowSection:
    """MLflow, through Ray's MLflowLoggerCallback on the driver: one MLflow run per sweep run.
    tracking_uri: a server (http://...), sqlite:///path or file:///path (default: MLflow's own,
    MLFLOW_TRACKING_URI or its local default); on a cluster a file store is the driver's disk.
    experiment: default the sweep's name."""

    tracking_uri: str | None = None
    experiment: str | None = None

    def __post_init__(self) -> None:
        _check_name("tracking.mlflow.tracking_uri", self.tracking_uri)
        _check_name("tracking.mlflow.experiment", self.experiment)
        scheme = self.scheme
        if scheme is not None and scheme.split("+")[0] not in MLFLOW_SCHEMES:
            raise ConfigError(f"tracking.mlflow.tracking_uri: {self.tracking_uri!r} has the scheme {scheme!r}, which MLflow "
                              f"does not know (one of {', '.join(MLFLOW_SCHEMES)}, or a plain path)")
        _check_installed("tracking.mlflow", "mlflow")

    @property
    def scheme(self) -> str | None:
        """The URI's scheme, lower case; None for a plain path (or no URI)."""
        if self.tracking_uri is None or "://" not in self.tracking_uri and not self.tracking_uri.startswith("file:"):
            return None
        return self.tracking_uri.split(":", 1)[0].lower()


@dataclass(frozen=True)
class WandbSection:
    """Weights & Biases, through Ray's WandbLoggerCallback: one W&B run per sweep run, grouped
    by Tune experiment. project: default the sweep's name; entity: default W&B's (your user);
    mode: online, offline (written under the trial's directory, `wandb sync` later) or disabled."""

    project: str | None = None
    entity: str | None = None
    mode: str = "online"

    def __post_init__(self) -> None:
        _check_name("tracking.wandb.project", self.project)
        _check_name("tracking.wandb.entity", self.entity)
        check_choice("tracking.wandb.mode", self.mode, ("online", "offline", "disabled"))
        _check_installed("tracking.wandb", "wandb")


@dataclass(frozen=True)
class TrackingSection:
    """Per-epoch train and val losses of every run, per task (engine/tracking.py). tensorboard:
    event files under OUT/tensorboard/, one TensorBoard run per sweep run; mlflow, wandb: off
    unless given (`mlflow: {}` for every default), each needing its pip extra."""

    tensorboard: bool = True
    mlflow: MlflowSection | None = None
    wandb: WandbSection | None = None


@dataclass(frozen=True)
class SweepConfig:
    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    tasks: tuple[str, ...] = ("segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal")
    seeds: tuple[int, ...] = (0, 1, 2)
    model: ModelSection = field(default_factory=ModelSection)
    training: Training = field(default_factory=Training)
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    scorers: dict = field(default_factory=lambda: {name: {} for name in ("td", "ias", "rsa", "li", "gs", "gt", "etap")})
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    grouping: GroupingSection = field(default_factory=GroupingSection)
    ground_truth: GroundTruthSection = field(default_factory=GroundTruthSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)
    retries: int = 1
    out: str = "out/default"
    storage: str | None = None
    bootstrap: int = 2000
    #: The tasks the config declares ({name, family, field, ...} entries of `tasks`), as read by
    #: `from_dict`; `tasks` holds every task's name.
    declared_tasks: tuple[TaskSpec, ...] = field(default=(), metadata={"yaml": False})

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ConfigError(f"name: letters, digits, '.', '_' and '-' only (it names directories), got {self.name!r}")
        if len(self.tasks) < 2 or len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"tasks: need at least two distinct tasks, got {list(self.tasks)}")
        declared = {t.name for t in self.declared_tasks}
        if len(declared) != len(self.declared_tasks) or not declared <= set(self.tasks):
            raise ConfigError("tasks: every declared task has one entry")
        for name in self.tasks:
            if name in declared:
                continue
            try:
                task_preset(name)
            except RaytaskaffError as e:
                raise ConfigError(f"tasks: {e}") from None
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: need at least one seed, all distinct, got {list(self.seeds)}")
        for name, options in self.scorers.items():
            if not isinstance(options, dict):
                raise ConfigError(f"scorers.{name}: options must be a mapping, got {options!r}")
            seeds = options.get("seeds")
            if "seeds" in options and (not isinstance(seeds, list) or not set(seeds) <= set(self.seeds)):
                raise ConfigError(f"scorers.{name}.seeds: must be a list of the sweep's seeds {list(self.seeds)}, got {seeds!r}")
            if "module" in options:  # found, not run: parsing runs no user code (see `check_scorer`)
                self._find_scorer_file(name)
            else:
                self.check_scorer(name)
                variant = getattr(self.scorer(name), "variant", "")  # gt/faithful reads what probes.variants computes
                if variant and variant not in self.probes.variants:
                    raise ConfigError(f"scorers.{name}: reads the lookahead variant {variant!r}, which the runs compute only when "
                                      f"probes.variants lists it (it lists {list(self.probes.variants)})")
        if any(k > len(self.tasks) for k in self.grouping.groups):
            raise ConfigError(f"grouping.groups: at most {len(self.tasks)} groups for {len(self.tasks)} tasks, got {list(self.grouping.groups)}")
        if self.grouping.seeds is not None and (not self.grouping.seeds or not set(self.grouping.seeds) <= set(self.seeds)):
            raise ConfigError(f"grouping.seeds: must be some of the sweep's seeds {list(self.seeds)}, got {list(self.grouping.seeds)}")
        check_at_least("retries", self.retries, 0)
        check_at_least("bootstrap", self.bootstrap, 0)
        self.model.build()
        self._check_budget()

    def _check_budget(self) -> None:
        """A budget of pairs fits the sweep's pairs and leaves every scorer a value on the pairs
        it does not train (a scorer of the pairwise networks would have none there)."""
        pairs = self.ground_truth.pairs
        if pairs is None:
            return
        total = len(self.tasks) * (len(self.tasks) - 1) // 2
        if isinstance(pairs, int) and pairs > total:
            raise ConfigError(f"ground_truth.pairs: at most {total} (the pairs of {len(self.tasks)} tasks), got {pairs}")
        k = self.budget_pairs
        if k < min(FEWEST_PAIRS, total):
            given = f"{pairs} of {total} pairs is {k}" if isinstance(pairs, float) else f"got {k}"
            raise ConfigError(f"ground_truth.pairs: at least {FEWEST_PAIRS} pairs to calibrate the scorers on, {given}")
        if k < total:
            for name in self.scorers:
                if "module" not in self.scorers[name] and self.scorer(name).requirements(**self.scorer_options(name)).mtl == "pairs":
                    raise ConfigError(f"scorers.{name}: reads the pairwise networks (source: pairs), of which ground_truth.pairs "
                                      f"trains {k} of {total}: it would score no untrained pair (use source: all)")

    @property
    def budget_pairs(self) -> int:
        """Pairs per seed the ground truth trains: every pair, or `ground_truth.pairs` of them."""
        total = len(self.tasks) * (len(self.tasks) - 1) // 2
        pairs = self.ground_truth.pairs
        if pairs is None:
            return total
        return min(total, math.ceil(pairs * total - 1e-9)) if isinstance(pairs, float) else pairs

    @property
    def budgeted(self) -> bool:
        """Whether the ground truth trains fewer than every pair (and predicts the rest)."""
        return self.budget_pairs < len(self.tasks) * (len(self.tasks) - 1) // 2

    def pair_order(self) -> list[tuple[str, str]]:
        """Every pair of tasks (in the sweep's task order within a pair) in the one random order a
        budget takes a prefix of (seed `PAIRS_SEED`), drawn over the pairs sorted by name, so that
        the order of `tasks` in the config does not change which pairs a budget trains."""
        import numpy as np

        order = {t: i for i, t in enumerate(self.tasks)}
        by_name = sorted(tuple(sorted(pair)) for pair in combinations(self.tasks, 2))
        drawn = [by_name[i] for i in np.random.default_rng(PAIRS_SEED).permutation(len(by_name))]
        return [tuple(sorted(pair, key=order.__getitem__)) for pair in drawn]

    def trained_pairs(self) -> list[tuple[str, str]]:
        """The pairs the ground truth trains, in `pair_order`: the first `budget_pairs` of it."""
        return self.pair_order()[:self.budget_pairs]

    @property
    def task_specs(self) -> dict[str, TaskSpec]:
        """{name: TaskSpec} of every task of the sweep: declared in the config, or a Taskonomy preset."""
        declared = {t.name: t for t in self.declared_tasks}
        return {name: declared.get(name) or task_preset(name) for name in self.tasks}

    @property
    def grouping_seeds(self) -> tuple[int, ...]:
        """The seeds on which chosen groups are trained."""
        return self.grouping.seeds if self.grouping.seeds is not None else self.seeds

    def _find_scorer_file(self, name: str) -> None:
        """The `module` file of a user's scorer exists and `class`, if given, is a name: what can be
        told without running the file."""
        from raytaskaff.scorers.base import scorer_file

        options = self.scorers[name]
        if "class" in options and not isinstance(options["class"], str):
            raise ConfigError(f"scorers.{name}.class: the name of a class of the `module` file, got {options['class']!r}")
        try:
            scorer_file(name, options["module"])
        except RaytaskaffError as e:
            raise ConfigError(f"scorers: {e}") from None

    def check_scorer(self, name: str) -> None:
        """Scorer `name` loaded and its options checked against the types it declares
        (`Scorer.options`), its needs and the tasks; ConfigError (one line) naming what is wrong. For
        a scorer of the user's file this runs the file (once per path and content): parsing a config
        checks the built-in scorers, the preflight (`preflight.check_scorers`) the users'."""
        options = self.scorer_options(name)
        try:
            s = self.scorer(name)
            s.check_options(options)
            self.li_pairs(s.requirements(**options))
            s.skip_reason(self.tasks, **options)
        except ConfigError:
            raise
        except RaytaskaffError as e:
            raise ConfigError(f"scorers: {e}") from None

    def li_pairs(self, needs) -> list[tuple[str, str]]:
        """The (target, partner) pairs whose label-injection runs `needs` (a scorer's `Needs`) asks
        for, in plan order: every ordered pair, or its `li_choice`, whose partners are ranked, where
        it asks, by a scorer that needs no runs (td), computed here from the config alone. A
        ranking by a scorer of trained networks (rsa, ias) would need a plan in two phases, after the
        STL networks: not done, so such a scorer is refused. ScorerError (one line) for a choice that
        names no task of the sweep or a ranking scorer that cannot rank these tasks."""
        choice = needs.li_choice
        if choice is None:
            return list(permutations(self.tasks, 2))
        return choice.choose(self.tasks, self._ranking(choice.rank_by) if choice.partners is not None else None)

    def _ranking(self, name: str) -> dict[tuple[str, str], float]:
        """{(target, partner): value} of scorer `name` (with its options in this config, if any),
        which must need no runs: what ranks label injection's partners before anything trains."""
        from raytaskaff.scorers.base import Artifacts, ScorerError

        if name in self.user_scorers:  # reading a config runs no user code (see `check_scorer`)
            raise ScorerError(f"li.rank_by: {name} lives in the user's file, which reading a config does not run: "
                              "rank by a built-in scorer that needs no runs, such as td")
        options = self.scorer_options(name)
        try:
            s = self.scorer(name)
            s.check_options(options)
            kinds = s.requirements(**options).run_kinds()
            why = s.skip_reason(self.tasks, **options)
        except RaytaskaffError as e:
            raise ScorerError(f"li.rank_by: {e}") from None
        if kinds:
            raise ScorerError(f"li.rank_by: {name} reads trained networks ({', '.join(sorted(map(str, kinds)))}), and "
                              "partners are ranked before anything trains: name a scorer that needs none, such as td")
        if why:
            raise ScorerError(f"li.rank_by: {name} cannot rank these tasks: {why}")
        table = s.score(Artifacts(self.tasks), **options).table
        return {(r.target, r.partner): r.value for r in table.itertuples()}

    @property
    def user_scorers(self) -> tuple[str, ...]:
        """The configured scorers that live in the user's own files (`module`)."""
        return tuple(name for name, options in self.scorers.items() if "module" in options)

    def scorer(self, name: str):
        """The configured scorer `name`: a built-in one, or the class of the user's `module` file
        (imported on first use, once per path and content)."""
        from raytaskaff.scorers.base import load_scorer, scorer

        options = self.scorers.get(name, {})
        if "module" in options:
            return load_scorer(name, options["module"], options.get("class"))
        if "class" in options:
            raise ConfigError(f"scorers.{name}.class: names a class of a `module` file, and none is given")
        return scorer(name)

    def scorer_options(self, name: str) -> dict:
        """Options passed to scorer `name` (without `module` and `class`, which say where it is)."""
        return {k: v for k, v in self.scorers.get(name, {}).items() if k not in SCORER_SOURCE_KEYS}

    def skipped_scorers(self) -> dict[str, str]:
        """{name: why} of the configured scorers that cannot score these tasks (left out of the sweep)."""
        reasons = {name: self.scorer(name).skip_reason(self.tasks, **self.scorer_options(name)) for name in self.scorers}
        return {name: why for name, why in reasons.items() if why}

    @property
    def active_scorers(self) -> tuple[str, ...]:
        """The configured scorers the sweep runs, in config order."""
        skipped = self.skipped_scorers()
        return tuple(name for name in self.scorers if name not in skipped)

    def scorer_needs(self) -> dict:
        """{name: Needs} of the scorers the sweep runs: what the planner trains for them."""
        return {name: self.scorer(name).requirements(**self.scorer_options(name)) for name in self.active_scorers}


def _convert(key: str, kind, value):
    """Check and convert one value to the annotated type `kind` (types of this module only)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(kind) if o is not type(None)]
        if value is None and len(options) < len(typing.get_args(kind)):
            return None
        for option in options[:-1]:  # the first type that takes the value; the last one says why not
            try:
                return _convert(key, option, value)
            except ConfigError:
                continue
        return _convert(key, options[-1], value)
    if dataclasses.is_dataclass(kind):
        return from_dict(kind, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item = typing.get_args(kind)[0]
        return tuple(_convert(f"{key}[{i}]", item, v) for i, v in enumerate(value))
    if kind is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): ({} if v is None else v) for k, v in value.items()}
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise AssertionError(f"unsupported config type {kind}")


def _task_entries(value) -> dict:
    """`tasks` as YAML gives it (preset names, or {name, family, field, ...} mappings) -> the
    SweepConfig keys `tasks` (names) and `declared_tasks` (TaskSpecs)."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"tasks: expected a list, got {value!r}")
    names, declared = [], []
    known = [f.name for f in dataclasses.fields(TaskSpec)]
    for i, entry in enumerate(value):
        if isinstance(entry, str):
            names.append(entry)
            continue
        if not isinstance(entry, dict):
            raise ConfigError(f"tasks[{i}]: a preset's name or a mapping {{name, family, field, ...}}, got {entry!r}")
        unknown = [k for k in entry if k not in known]
        if unknown:
            raise ConfigError(f"tasks[{i}].{unknown[0]}: unknown key (known: {', '.join(known)})")
        missing = [k for k in ("name", "family", "field") if k not in entry]
        if missing:
            raise ConfigError(f"tasks[{i}]: needs {', '.join(missing)}")
        options = dict(entry)
        if "metrics" in options:
            options["metrics"] = tuple(_convert(f"tasks[{i}].metrics", tuple[str, ...], options["metrics"]))
        if "masked" in options:
            options["masked"] = _convert(f"tasks[{i}].masked", bool, options["masked"])
        declared.append(TaskSpec(**options))
        names.append(declared[-1].name)
    return {"tasks": tuple(names), "declared_tasks": tuple(declared)}


def to_dict(config: SweepConfig) -> dict:
    """The config as a sweep YAML spells it (plain lists and mappings, declared tasks inside
    `tasks`): `from_dict(SweepConfig, to_dict(c)) == c`."""
    data = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    declared = {t["name"]: t for t in data.pop("declared_tasks")}
    data["tasks"] = [declared.get(name, name) for name in data["tasks"]]
    return data


def from_dict(cls, data, prefix: str = ""):
    """Build dataclass `cls` from a mapping, rejecting unknown keys and mistyped values."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)}
    for key in data:
        if key not in known:
            name = str(key) if re.fullmatch(r"[\w.-]+", str(key)) else repr(key)  # a key of "\n" stays on one line
            where = f"{prefix}.{name}" if prefix else name
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(known))})")
    tasks = cls is SweepConfig and "tasks" in data  # names and mappings: see _task_entries
    values = {key: _convert(f"{prefix}.{key}" if prefix else key, hints[key], value)
              for key, value in data.items() if not (tasks and key == "tasks")}
    if tasks:
        values.update(_task_entries(data["tasks"]))
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"{prefix or 'config'}: {e}") from None


def load_config(path: str | Path, out: str | None = None) -> SweepConfig:
    """Read a sweep config from YAML; `out` overrides its output directory."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where} ({problem})") from None
    if out is not None:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = {**data, "out": out}
    try:
        return from_dict(SweepConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
