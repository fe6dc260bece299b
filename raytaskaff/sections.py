"""The sections of a sweep config (`config.SweepConfig`): data, model, resources, grouping,
ground truth and tracking, each typed, frozen and checked on construction; a bad value is a
one-line `ConfigError` naming its key. `config` parses YAML into them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from raytaskaff.settings import ConfigError, check_at_least, check_choice, check_range, preset


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
    read from the cluster's GPU type, `training.memory_table.gpu_memory_gb`; a GPU sweep on a cluster
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
