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
from raytaskaff.sections import (
    FEWEST_PAIRS,
    PAIRS_SEED,
    SCORER_SOURCE_KEYS,
    DataConfig,
    GroundTruthSection,
    GroupingSection,
    ModelSection,
    ResourcesSection,
    TrackingSection,
)
from raytaskaff.settings import ConfigError, ProbeConfig, Training, TaskSpec, check_at_least, task_preset

__all__ = ["ConfigError", "SweepConfig", "load_config"]


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
