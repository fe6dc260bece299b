"""The protocol every affinity scorer follows, and the registry that names them.

A scorer declares which runs it needs (`Needs`) and turns their artifacts into an affinity table:
one value per ordered pair (target, partner), target != partner (a `partial` scorer, li on the
pairs it ran, leaves the others out: unknown, never 0), higher meaning more affinity,
oriented as everywhere in raytaskaff: "how much the target gains from the partner". Adding one is
one file:

    from raytaskaff.scorers.base import Needs, Scorer, register

    @register
    class Random(Scorer):
        '''Random affinities: a baseline every scorer should beat.'''
        name = "random"
        needs = Needs()

        def compute(self, artifacts, seed: int = 1):
            rng = np.random.default_rng(seed)
            return {(t, p): rng.normal() for t, p in artifacts.ordered_pairs()}

The keyword parameters of `compute` are the scorer's options, typed by their annotations and
defaulting to their defaults (`Scorer.options`); a sweep config's `scorers: {random: {seed: 3}}`
is checked against them before anything trains (`check_option`: an `int` is a count, >= 1).

`Scorer.score` times `compute` and returns a `Score`: the table and the scorer's own cost. A
scorer computed per seed (the STL- and MTL-based ones) passes its per-seed tables through
`self.seed_mean`, which keeps them (`Score.per_seed`) and returns their mean; a seed-free scorer
(`td`) has none. Whole-run costs (training the models it reads) are added by `cost_of`, total and marginal.

A scorer can also live outside the package, in the user's own file, named by the sweep config
(`scorers: {mine: {module: path/to/mine.py}}`, see `load_scorer`): the same protocol, no
registration needed. Parsing a config only finds the file (`scorer_file`); the file is run once,
by the preflight (`raytaskaff.preflight.check_scorers`) or whatever first needs the scorer. The
planner trains what the configured scorers' `requirements` ask for.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import sys
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from raytaskaff.errors import RaytaskaffError
from raytaskaff.settings import VARIANTS, RunKind, RunResult

if typing.TYPE_CHECKING:
    from raytaskaff.scorers.li import LiChoice


class ScorerError(RaytaskaffError):
    """A scorer cannot compute its table from what it was given."""


@dataclass(frozen=True)
class Needs:
    """Runs a scorer reads: STL models, label-injection models, and an MTL run ("all": the
    instrumented all-task network; "pairs": the instrumented pairwise networks); seeds: the
    seeds whose runs it reads (None: every seed of the sweep); li_choice: which (target, partner)
    pairs get a label-injection run (`scorers.li.LiChoice`, resolved against the sweep's tasks by
    `SweepConfig.li_pairs`; None: every ordered pair)."""

    stl: bool = False
    li: bool = False
    mtl: str | None = None
    seeds: tuple[int, ...] | None = None
    li_choice: LiChoice | None = None

    def __post_init__(self) -> None:
        if self.mtl not in (None, "all", "pairs"):
            raise ScorerError(f"needs.mtl: {self.mtl!r} is not one of all, pairs (or None)")

    def run_kinds(self) -> set[RunKind]:
        kinds = set()
        if self.stl or self.li:
            kinds.add(RunKind.STL)
        if self.li:
            kinds.add(RunKind.LI)
        if self.mtl == "all":
            kinds.add(RunKind.ALL)
        if self.mtl == "pairs":
            kinds.add(RunKind.PAIR)
        return kinds


@dataclass
class SeedRuns:
    """The finished runs of one seed. li is keyed (target, partner); pairs by the sorted pair."""

    seed: int
    stl: dict[str, RunResult] = field(default_factory=dict)
    li: dict[tuple[str, str], RunResult] = field(default_factory=dict)
    pairs: dict[tuple[str, str], RunResult] = field(default_factory=dict)
    all_tasks: RunResult | None = None


@dataclass
class Artifacts:
    """What scorers read: the task list, the runs of each seed, and test images.

    test_images: a callable n -> (n, 3, H, W) float tensor of the first n test images in [0, 1]
    (lazy: scorers that need none never read them).
    map_models: how to apply a per-model function to saved networks: a callable
    (fn, {key: model path}, n_images) -> {key: fn(model, images)}. The default runs here, one
    model after another; the engine passes one that runs Ray actors next to the data and returns
    ({key: result}, (CPU core-seconds, GPU-seconds) spent there), which `remote` accumulates.
    """

    tasks: tuple[str, ...]
    seeds: list[SeedRuns] = field(default_factory=list)
    test_images: Callable | None = None
    map_models: Callable | None = None
    remote: tuple[float, float] = (0.0, 0.0)  # (CPU core-seconds, GPU-seconds) spent by `map_models`

    def ordered_pairs(self) -> list[tuple[str, str]]:
        return list(permutations(self.tasks, 2))

    def apply_to_models(self, fn: Callable, paths: dict, n_images: int) -> dict:
        if self.map_models is not None:
            results, (cpu, gpu) = self.map_models(fn, paths, n_images)
            self.remote = (self.remote[0] + cpu, self.remote[1] + gpu)
            return results
        if self.test_images is None:
            raise ScorerError("this scorer needs test images, and none were given")
        from raytaskaff.models import load_model  # torch, only once a model is read
        from raytaskaff.store import local_model

        images = self.test_images(n_images)
        return {key: fn(load_model(local_model(path)), images) for key, path in paths.items()}

    def stl_model_paths(self, runs: SeedRuns) -> dict[str, str]:
        """{task: saved STL network} of one seed, for every task of the sweep."""
        missing = [t for t in self.tasks if t not in runs.stl or not runs.stl[t].model_path]
        if missing:
            raise ScorerError(f"seed {runs.seed} has no saved STL network for {missing[0]}")
        return {t: runs.stl[t].model_path for t in self.tasks}


@dataclass(frozen=True)
class Cost:
    """Seconds of wall-clock, of CPU (core-seconds: process CPU time) and of GPU (wall time on a
    GPU times the fraction of it held), kept apart: a CPU second and a GPU second are not one unit."""

    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.wall_seconds + other.wall_seconds, self.cpu_seconds + other.cpu_seconds,
                    self.gpu_seconds + other.gpu_seconds)


@dataclass
class Score:
    """A scorer's affinity table (columns target, partner, value) and its own compute cost.

    per_seed: the tables it averaged (columns seed, target, partner, value), None for a scorer
    that does not depend on the seed.
    """

    name: str
    table: pd.DataFrame
    compute: Cost
    details: dict = field(default_factory=dict)
    per_seed: pd.DataFrame | None = None

    def matrix(self, tasks: Iterable[str]) -> np.ndarray:
        """[target][partner] matrix in the order of `tasks` (NaN on the diagonal)."""
        tasks = list(tasks)
        index = {t: i for i, t in enumerate(tasks)}
        out = np.full((len(tasks), len(tasks)), np.nan)
        for row in self.table.itertuples():
            out[index[row.target], index[row.partner]] = row.value
        return out


@dataclass(frozen=True)
class Option:
    """One option of a scorer: its type (an annotation: `int`, `float`, `str`, `bool`,
    `Literal["a", "b"]`, `list[int]`, `dict`, `X | None`, ...; `typing.Any` takes anything) and
    its default (`inspect.Parameter.empty`: none)."""

    kind: object
    default: object


def declared_options(name: str, compute: Callable) -> dict[str, Option]:
    """{option: Option} of a scorer's `compute`: its parameters after `artifacts`, typed by their
    annotations; an unannotated one by its default's type, or `Any` with a default of None or none.
    Annotations written as strings (`from __future__ import annotations`) are read in the module
    that defines `compute`; ScorerError (one line) for one that cannot be read."""
    out = {}
    for key, p in inspect.signature(compute).parameters.items():
        if key in ("self", "artifacts") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        kind = p.annotation
        if isinstance(kind, str):
            try:  # what typing.get_type_hints does, for this parameter alone
                kind = eval(kind, getattr(compute, "__globals__", {}))
            except Exception as e:  # noqa: BLE001 (the scorer's own annotation: any error is its author's to read)
                raise ScorerError(f"{name}.{key}: the annotation {p.annotation!r} cannot be read "
                                  f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        if kind is p.empty:
            kind = typing.Any if p.default in (p.empty, None) else type(p.default)
        out[key] = Option(kind, p.default)
    return out


#: Plural words for the items of a list option ("a list of integers").
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings", dict: "mappings"}
_LISTS = (list, tuple, Sequence)


def _expected(kind, top: bool = True) -> str:
    """What a value of type `kind` is, in words: "an integer >= 1", "a list of integers", ..."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        words = " or ".join(_expected(a, top) for a in args if a is not type(None))
        return words + (" (or null)" if type(None) in args else "")
    if origin is typing.Literal:
        return f"one of {', '.join(map(str, args))}"
    if origin in _LISTS and args:
        return f"a list of {_PLURALS[args[0]]}" if args[0] in _PLURALS else f"a list, each item {_expected(args[0], False)}"
    words = {bool: "true or false", int: "an integer >= 1" if top else "an integer", float: "a finite number",
             str: "a string", list: "a list", tuple: "a list", Sequence: "a list", dict: "a mapping", Mapping: "a mapping"}
    origin = origin or kind
    return words.get(origin) or f"a {getattr(origin, '__name__', origin)}"


def check_option(key: str, kind, value, top: bool = True) -> None:
    """ScorerError "KEY: expected <what>, got <value>" unless `value` is of type `kind`. An option
    typed `int` is a count: an integer >= 1 (the integers in a list may be any); a `float` is
    finite; a `Literal` of strings takes a string, one of them; a list's items are checked as
    `KEY[i]`; a class not named here by `isinstance`."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is typing.Any or (value is None and type(None) in args):
        return
    if origin in (typing.Union, types.UnionType):
        choices = [a for a in args if a is not type(None)]
        if len(choices) == 1:  # `X | None`: what X is expected to be, said precisely
            return check_option(key, choices[0], value, top)
        if not any(_fits(key, a, value, top) for a in choices):
            raise ScorerError(f"{key}: expected {_expected(kind, top)}, got {value!r}")
        return
    if origin is typing.Literal:
        if all(isinstance(a, str) for a in args) and not isinstance(value, str):
            raise ScorerError(f"{key}: expected a string, got {value!r}")
        if not any(value == a and type(value) is type(a) for a in args):  # True is not 1
            raise ScorerError(f"{key}: {value!r} is not one of {', '.join(map(str, args))}")
        return
    base = origin or kind
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is int and top and number and isinstance(value, int) and value < 1:
        raise ScorerError(f"{key}: must be an integer >= 1, got {value!r}")
    fits = {bool: isinstance(value, bool), int: number and isinstance(value, int), float: number and math.isfinite(value),
            **dict.fromkeys(_LISTS, isinstance(value, (list, tuple)))}.get(base)
    if fits is None:
        fits = isinstance(value, base) if isinstance(base, type) else True
    if not fits:
        raise ScorerError(f"{key}: expected {_expected(kind, top)}, got {value!r}")
    if base in _LISTS and args:
        for i, item in enumerate(value):
            check_option(f"{key}[{i}]", args[0], item, top=False)


def _fits(key: str, kind, value, top: bool) -> bool:
    try:
        check_option(key, kind, value, top)
    except ScorerError:
        return False
    return True


class Scorer:
    """Base class: subclasses set `name`, `needs` and implement `compute`."""

    name: str = ""
    needs: Needs = Needs()
    #: True for a scorer whose table may leave pairs out (li on the pairs it chose to run): a
    #: missing pair is unknown, never 0; the others must score every ordered pair.
    partial: bool = False

    def requirements(self, **options) -> Needs:
        """The runs this scorer reads with these options (default: `needs`)."""
        return self.needs

    def skip_reason(self, tasks: tuple[str, ...], **options) -> str | None:
        """Why this scorer cannot score a sweep of `tasks` with these options, or None. A sweep
        leaves such a scorer out and says why in one line (td without a taxonomy on tasks that
        are not Taskonomy's); an error in the options themselves raises ScorerError instead."""
        return None

    def compute(self, artifacts: Artifacts, **options) -> dict[tuple[str, str], float]:
        """{(target, partner): value} for every ordered pair; may fill `self.details`."""
        raise NotImplementedError

    def seed_mean(self, per_seed: dict[int, dict[tuple[str, str], float]]) -> dict[tuple[str, str], float]:
        """The mean over seeds of {seed: table}; the tables are kept for `Score.per_seed`."""
        self.per_seed = dict(per_seed)
        return mean_over_seeds(list(per_seed.values()))

    def options(self) -> dict[str, Option]:
        """The options this scorer takes: the keyword parameters of its `compute`, each with its
        declared type and default (see `declared_options`)."""
        return declared_options(self.name, self.compute)

    def check_options(self, options: dict) -> None:
        """ScorerError (one line) unless every option is one `compute` declares, with a value of
        its declared type (`check_option`), so that a sweep config is checked before training."""
        declared = self.options()
        open_ended = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(self.compute).parameters.values())
        for key, value in options.items():
            if key in declared:
                check_option(f"{self.name}.{key}", declared[key].kind, value)
            elif not open_ended:
                raise ScorerError(f"{self.name}: unknown option {key!r} (known: {', '.join(declared) or 'none'})")

    def score(self, artifacts: Artifacts, **options) -> Score:
        self.details: dict = {}
        self.per_seed: dict[int, dict[tuple[str, str], float]] = {}
        wall, cpu, remote = time.perf_counter(), time.process_time(), artifacts.remote
        values = self.compute(artifacts, **options)
        compute = Cost(time.perf_counter() - wall, time.process_time() - cpu + artifacts.remote[0] - remote[0],
                       artifacts.remote[1] - remote[1])
        checked = checked_table(self.name, values, artifacts.ordered_pairs(), partial=self.partial)
        rows = [(t, p, value) for (t, p), value in checked.items()]
        per_seed = None
        if self.per_seed:
            seed_rows = [(seed, t, p, float(table[t, p])) for seed, table in sorted(self.per_seed.items())
                         for t, p in artifacts.ordered_pairs() if (t, p) in table]
            per_seed = pd.DataFrame(seed_rows, columns=["seed", "target", "partner", "value"])
        return Score(self.name, pd.DataFrame(rows, columns=["target", "partner", "value"]), compute, dict(self.details), per_seed)


def checked_table(name: str, values, pairs: list[tuple[str, str]], partial: bool = False) -> dict[tuple[str, str], float]:
    """What `compute` returned as {(target, partner): float} over `pairs`, or ScorerError (one line)
    naming what is wrong: not a mapping, a pair without a value (unless `partial`: then it is left
    out), or a value that is not one finite number (an array, None, a string, NaN)."""
    if not isinstance(values, Mapping):
        raise ScorerError(f"{name}: compute returned {type(values).__name__}, not a dict {{(target, partner): value}}")
    missing = [pair for pair in pairs if pair not in values]
    if missing and not partial:
        raise ScorerError(f"{name}: no value for {len(missing)} pairs, e.g. {missing[0]}")
    table = {}
    for pair in (p for p in pairs if p in values):
        value = values[pair]
        try:
            number = float(value) if np.ndim(value) == 0 and not isinstance(value, (str, bytes)) else None
        except (TypeError, ValueError):
            number = None
        if number is None or not np.isfinite(number):
            shown = f"{type(value).__name__} of shape {np.shape(value)}" if np.ndim(value) else repr(value)[:40]
            raise ScorerError(f"{name}: the value of {pair} is {shown}, not a finite number")
        table[pair] = number
    return table


SCORERS: dict[str, type[Scorer]] = {}


def register(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator: make a scorer available by its name."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in SCORERS and SCORERS[cls.name] is not cls:
        raise ValueError(f"a scorer called {cls.name!r} is already registered")
    SCORERS[cls.name] = cls
    return cls


def scorer(name: str) -> Scorer:
    import raytaskaff.scorers  # noqa: F401  (registers the built-in scorers)

    try:
        return SCORERS[name]()
    except KeyError:
        raise ScorerError(f"unknown scorer {name!r} (known: {', '.join(sorted(SCORERS))})") from None


#: Module names of scorers loaded from users' files (see `load_scorer`).
USER_SCORER_PREFIX = "raytaskaff_user_scorer_"


def scorer_file(name: str, module) -> Path:
    """The user's scorer file `module` of scorer `name` (a path to a .py file, relative to the
    working directory), found without running it; ScorerError (one line) for anything else."""
    where = f"{name}.module"
    if not isinstance(module, str) or not module.endswith(".py"):
        raise ScorerError(f"{where}: a path to a .py file, got {module!r}")
    path = Path(module).expanduser().resolve()
    if not path.is_file():
        raise ScorerError(f"{where}: no such file {module!r}")
    return path


#: {module name: why it failed} of users' files that failed to import: a file is run once per
#: content, even when it fails (it may have done something before failing).
_FAILED_IMPORTS: dict[str, str] = {}


def _import_user_file(name: str, module: str) -> types.ModuleType:
    """The user's file `module`, imported once per path and content (a changed file is a new
    module); ScorerError (one line) for a file that fails to import."""
    path = scorer_file(name, module)
    source = path.read_bytes()
    module_name = f"{USER_SCORER_PREFIX}{hashlib.sha256(str(path).encode() + source).hexdigest()[:12]}"
    if module_name in _FAILED_IMPORTS:
        raise ScorerError(_FAILED_IMPORTS[module_name])
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(module_name, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = loaded  # a class defined there pickles by reference on this process
    try:
        spec.loader.exec_module(loaded)
    except Exception as e:  # the user's code: any error is theirs to read, on one line
        del sys.modules[module_name]
        line = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
        message = str(e).splitlines()[0] if str(e) else ""
        _FAILED_IMPORTS[module_name] = f"{name}.module: {module} failed to import: {type(e).__name__}: {message}{line}"
        raise ScorerError(_FAILED_IMPORTS[module_name]) from None
    return loaded


def load_scorer(name: str, module: str, class_name: str | None = None) -> Scorer:
    """The scorer `name` of a sweep, from the user's file `module` (a path, relative to the
    working directory): its class `class_name`, or the one `Scorer` subclass the file defines.
    The file is imported once per path and content; the instance takes the config's `name`, so
    results are named as the config names them. ScorerError (one line) for a missing file, a file
    that fails to import, no such class or one that is not a scorer."""
    where = f"{name}.module"
    loaded = _import_user_file(name, module)
    if class_name is not None:
        cls = getattr(loaded, class_name, None)
        if cls is None:
            raise ScorerError(f"{name}.class: {module} defines no {class_name!r}")
        if not (isinstance(cls, type) and issubclass(cls, Scorer)):
            raise ScorerError(f"{name}.class: {class_name} in {module} is not a Scorer subclass")
    else:
        found = [c for c in vars(loaded).values()
                 if isinstance(c, type) and issubclass(c, Scorer) and c.__module__ == loaded.__name__]
        if len(found) != 1:
            which = f"several ({', '.join(c.__name__ for c in found)}): name one with class" if found else "none"
            raise ScorerError(f"{where}: {module} must define one Scorer subclass, it defines {which}")
        cls = found[0]
    if cls.compute is Scorer.compute:
        raise ScorerError(f"{where}: {cls.__name__} in {module} does not implement compute")
    instance = cls()
    instance.name = name
    return instance


def mean_over_seeds(per_seed: list[dict[tuple[str, str], float]]) -> dict[tuple[str, str], float]:
    """Mean of per-seed tables over the seeds that have each pair."""
    if not per_seed:
        raise ScorerError("no seed has the runs this scorer needs")
    keys = set().union(*per_seed)
    return {k: float(np.mean([s[k] for s in per_seed if k in s])) for k in keys}


def run_cost(runs: Iterable[RunResult]) -> Cost:
    """The summed costs of runs (each over all its attempts)."""
    total = Cost()
    for r in runs:
        total = total + Cost(r.wall_seconds, r.cpu_seconds, r.gpu_seconds)
    return total


#: The units a cost is kept in, and how the costs tables name them.
UNITS = ("cpu_seconds", "gpu_seconds")


def cost_dict(total: Cost, marginal: Cost | None = None) -> dict:
    """A cost as evaluation.json and costs.csv hold it: wall, CPU and GPU seconds (and marginal)."""
    out = {"wall_seconds": total.wall_seconds, "cpu_seconds": total.cpu_seconds, "gpu_seconds": total.gpu_seconds}
    if marginal is not None:
        out.update(marginal_wall_seconds=marginal.wall_seconds, marginal_cpu_seconds=marginal.cpu_seconds,
                   marginal_gpu_seconds=marginal.gpu_seconds)
    return out


def fraction_unit(ground_truth: dict) -> str:
    """The unit costs are compared in: GPU-seconds when the ground truth's runs used a GPU, else
    CPU core-seconds."""
    return "gpu_seconds" if (ground_truth.get("gpu_seconds") or 0) > 0 else "cpu_seconds"


def cost_of(score: Score, needs: Needs, artifacts: Artifacts,
            ground_truth_kinds: set[str] = frozenset({RunKind.STL, RunKind.PAIR})) -> dict:
    """Total and marginal cost of a score: its own compute plus the runs it reads (total), or
    only the runs the ground truth does not train anyway (marginal)."""
    by_kind: dict[RunKind, list[RunResult]] = {RunKind.STL: [], RunKind.LI: [], RunKind.PAIR: [], RunKind.ALL: []}
    for s in artifacts.seeds:
        by_kind[RunKind.STL] += s.stl.values()
        by_kind[RunKind.LI] += s.li.values()
        by_kind[RunKind.PAIR] += s.pairs.values()
        by_kind[RunKind.ALL] += [s.all_tasks] if s.all_tasks else []
    kinds = needs.run_kinds()
    total = score.compute + run_cost(r for k in kinds for r in by_kind[k])
    marginal = score.compute + run_cost(r for k in kinds - set(ground_truth_kinds) for r in by_kind[k])
    return {**cost_dict(total, marginal), "compute_wall_seconds": score.compute.wall_seconds}


def probe_affinities(artifacts: Artifacts, probe: str, source: str = "all") -> tuple[dict[int, dict[tuple[str, str], float]], set]:
    """A probe's affinities from the instrumented MTL runs of every seed, mean over epochs, as
    {seed: table}; also the probe variants the runs used.

    source: "all" reads the all-task run ([target][partner] over all tasks); "pairs" reads each
    pairwise run's 2 x 2 matrix.
    """
    if source not in ("all", "pairs"):
        raise ScorerError(f"{probe}: source must be 'all' or 'pairs', got {source!r}")
    per_seed, variants = {}, set()
    for runs in artifacts.seeds:
        results = [runs.all_tasks] if source == "all" and runs.all_tasks else list(runs.pairs.values()) if source == "pairs" else []
        table = {}
        for run in results:
            epochs = run.probes.get(probe)
            if not epochs:
                hint = ("its lookahead variant is computed only when listed in probes.variants" if "/" in probe
                        else "stored before it was recorded")
                why = f"has no {probe!r} probe ({hint}; its probes: {', '.join(run.probes)})" if run.probes else "was trained without probes"
                raise ScorerError(f"{probe}: the {run.spec.kind} run of seed {runs.seed} {list(run.spec.tasks)} {why}")
            variants.add(run.probe_variant)
            mean = np.mean(np.array(epochs, dtype=float), axis=0)
            for i, target in enumerate(run.spec.tasks):
                for j, partner in enumerate(run.spec.tasks):
                    if i != j:
                        table[target, partner] = float(mean[i, j])
        if table:
            per_seed[runs.seed] = table
    return per_seed, variants


class ProbeScorer(Scorer):
    """A scorer read from the gradient probes of instrumented MTL runs (`probe` names which)."""

    probe: str = ""
    variant: str = ""  # the lookahead variant read, when it is not the run's own `probes.variant`
    needs = Needs(mtl="all")

    def requirements(self, source: Literal["all", "pairs"] = "all", **options) -> Needs:
        return Needs(mtl=source)

    def compute(self, artifacts: Artifacts, source: Literal["all", "pairs"] = "all") -> dict[tuple[str, str], float]:
        per_seed, variants = probe_affinities(artifacts, self.probe, source)
        self.details = {"source": source, "variant": [self.variant] if self.variant else sorted(v for v in variants if v)}
        return self.seed_mean(per_seed)


def register_variants(cls: type[ProbeScorer]) -> type[ProbeScorer]:
    """Class decorator: register `cls` and, beside it, one scorer per lookahead variant,
    "<name>/<variant>" reading the probe "<probe>/<variant>" that a run computes when the variant
    is in `probes.variants` (gt/faithful, etap/raw, ...): the variants of one run side by side,
    each judged as a scorer of its own. They live in `cls`'s module."""
    register(cls)
    module = sys.modules[cls.__module__]
    for variant in VARIANTS:
        name = f"{cls.__name__}_{variant}"
        sub = type(name, (cls,), {"name": f"{cls.name}/{variant}", "probe": f"{cls.probe}/{variant}", "variant": variant,
                                  "__module__": cls.__module__, "__qualname__": name,
                                  "__doc__": f"{cls.name} under the lookahead variant {variant!r} (`probes.variants`)."})
        setattr(module, name, register(sub))  # importable by name, as a class written out would be (pickle)
    return cls
