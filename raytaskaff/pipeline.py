"""The driver's stages as plain functions over the config and the result store: no Ray.

`engine.sweep.run_sweep` calls them in order, around the two stages that need Ray (training the
runs and mapping the scorers' networks):

    open_data -> [train on Ray] -> Results -> collect -> score -> judge -> price
              -> validate_groupings ([train on Ray]) -> summarise -> write_outputs

Each stored result is read once (`Results`), the ground truth is computed once (`judge`), and the
costs of the scorers and of the ground truth are set against each other in one place (`price`).
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from raytaskaff.atomic import write_text
from raytaskaff.config import SweepConfig, to_dict
from raytaskaff.data.shards import Manifest
from raytaskaff.data.verify import verify_once
from raytaskaff.errors import DataError
from raytaskaff.evaluation import evaluate_all, gains_per_seed, ground_truth
from raytaskaff.evaluation.budget import predict
from raytaskaff.evaluation.summary import evaluation_frontier
from raytaskaff.evaluation.learning import learning, learning_clause, learning_warnings
from raytaskaff.evaluation.tables import pair_table, seed_tables
from raytaskaff.grouping import GroupingError
from raytaskaff.grouping.validation import affinity_choices, baseline_choices, best_choices, hoa_choices, mean_losses, realise
from raytaskaff.plan import Run, group_runs, plan
from raytaskaff.scorers import Artifacts, SeedRuns, cost_of
from raytaskaff.scorers.base import Cost, ScorerError, cost_dict, fraction_unit, run_cost
from raytaskaff.settings import RunKind
from raytaskaff.store import ResultStore


class Stages:
    """Wall-clock seconds of each stage of a sweep, in the order they ran, and the total."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = self._mark = time.perf_counter()

    def done(self, name: str) -> None:
        """Stage `name` ended now: it took the time since the previous stage ended."""
        now = time.perf_counter()
        self.seconds[name] = round(now - self._mark, 2)
        self._mark = now

    def close(self) -> dict[str, float]:
        self.seconds["total"] = round(time.perf_counter() - self._start, 2)
        return self.seconds


def prepare_data(config: SweepConfig, say=print) -> tuple[str, Manifest]:
    """The dataset's path or URI and its manifest, rendered first when the config asks for synthetic
    data not yet there."""
    root = config.data.path
    if config.data.kind == "synthetic" and not (Path(root) / "manifest.json").exists():
        from raytaskaff.data.synth import SynthConfig, generate

        say(f"rendering {config.data.n} synthetic views of {config.data.size} px into {root} ...")
        generate(root, SynthConfig(n=config.data.n, size=config.data.size, seed=config.data.seed,
                                   split_fractions=config.data.splits), workers=config.data.workers)
    manifest = Manifest.load(root)
    if config.data.kind == "synthetic":
        params = manifest.producer.get("params", {})
        wanted = {"n": config.data.n, "size": config.data.size, "seed": config.data.seed, "split_fractions": list(config.data.splits)}
        if any(params.get(k) != v for k, v in wanted.items()):
            raise DataError(f"{root}: holds synthetic data {({k: params.get(k) for k in wanted})}, the config asks for {wanted}")
    return root, manifest


def open_data(config: SweepConfig, say=print) -> tuple[str, Manifest]:
    """The dataset (rendered first if it is synthetic and absent) and its manifest, every shard
    checked against the manifest (size, checksum, columns, class ids) once: shards unchanged since
    an earlier check of the same dataset are trusted (`data.verify`)."""
    root, manifest = prepare_data(config, say)
    verification = verify_once(root, manifest)
    if verification.checked and verification.trusted:
        say(f"checked {verification.checked} changed shards of {root} ({verification.trusted} unchanged since their last check)")
    return root, manifest


class Results:
    """The stored records of a sweep's runs, each result.json read once (`refresh` reads again the
    runs trained since)."""

    def __init__(self, store: ResultStore, runs: list[Run]) -> None:
        self.store = store
        self.records: dict[str, dict | None] = {}
        self._results: dict = {}
        self.refresh(runs)

    def refresh(self, runs: list[Run]) -> None:
        for run in runs:
            self.records[run.key] = self.store.record(run.key)
            self._results.pop(run.key, None)

    def find(self, key: str):
        """The run's `RunResult` (its network's path made local), or None (a diverged network too:
        it has no test losses for a score or the ground truth to read)."""
        if key not in self._results:
            record = self.records.get(key)
            usable = record and not record["result"].get("diverged")
            self._results[key] = self.store.result_of(key, record) if usable else None
        return self._results[key]


def collect(runs: list[Run], results: Results, seeds: tuple[int, ...]) -> list[SeedRuns]:
    """Stored results, grouped by seed the way scorers read them."""
    by_seed = {s: SeedRuns(s) for s in seeds}
    for run in runs:
        result = results.find(run.key)
        if result is None:
            continue
        seed = by_seed[run.seed]
        if run.kind == RunKind.STL:
            seed.stl[run.tasks[0]] = result
        elif run.kind == RunKind.LI:
            seed.li[run.tasks[0], run.inject[0]] = result
        elif run.kind == RunKind.PAIR:
            seed.pairs[run.tasks] = result
        elif run.kind == RunKind.ALL:
            seed.all_tasks = result
    return list(by_seed.values())


def network_losses(runs: list[Run], results: Results, seeds: tuple[int, ...]) -> dict:
    """{seed: {tasks: (val losses, test losses)}} of every stored network without injected labels."""
    out: dict = {s: {} for s in seeds}
    for run in runs:
        if run.seed in out and not run.inject and (result := results.find(run.key)) is not None:
            out[run.seed][run.tasks] = (result.val_losses, result.test_losses)
    return out


def scorer_failure(name: str, error: Exception, out: Path) -> str:
    """One line saying why scorer `name` failed. A ScorerError is its own message; anything else
    (a bug in a scorer, the user's code) is its type and first line, its traceback kept in
    OUT/logs/scorer-NAME.txt."""
    if isinstance(error, ScorerError):
        return " ".join(str(error).split())
    log = out / "logs" / f"scorer-{name}.txt"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        write_text(log, "".join(traceback.format_exception(error)))
        where = f" (traceback in {log})"
    except OSError:  # a traceback that cannot be kept (`atomic.NotDurable` included): the scorer's line says the rest
        where = ""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first}{where}" if first else f"{type(error).__name__}{where}"


@dataclass
class Scored:
    """Every active scorer's score and cost, or why it failed."""

    scores: dict = field(default_factory=dict)
    costs: dict = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def tables(self) -> dict[str, dict]:
        """{scorer: {(target, partner): value}}."""
        return {name: pair_table(s.table, "value") for name, s in self.scores.items()}


def score(config: SweepConfig, artifacts: Artifacts, out: Path, say=print, before: Callable = lambda scorer: None) -> Scored:
    """Run every active scorer on the artifacts; `before(scorer)` readies each first (the engine
    ships a user's scorer to its actors). A scorer's failure (the user's code included) is kept as
    one line and leaves the others."""
    scored = Scored()
    for name in config.active_scorers:
        options = config.scorer_options(name)
        try:
            s = config.scorer(name)
            before(s)
            scored.scores[name] = s.score(artifacts, **options)
            scored.costs[name] = cost_of(scored.scores[name], s.requirements(**options), artifacts)
        except Exception as e:  # noqa: BLE001 (a scorer's failure, the user's code included, leaves the others)
            scored.errors[name] = scorer_failure(name, e, out)
            say(f"scorer {name} failed: {scored.errors[name]}")
    return scored


@dataclass
class Judged:
    """The ground truth (per seed and over seeds), the evaluation of every scorer against it, and
    whether each target's single-task networks learned."""

    per_seed: pd.DataFrame
    truth: pd.DataFrame
    evaluation: dict
    learning: dict
    stl_share: float | None = None  # the STL runs' share of the ground truth's cost (the frontier's)
    combined_share: float | None = None  # every scorer's together, as a fraction of the ground truth's
    predicted: dict | None = None  # a budgeted sweep's predicted table (`evaluation.budget.predict`)

    def truth_table(self) -> dict:
        return pair_table(self.truth, "gain")

    def full_table(self) -> dict:
        """The gains of every pair: measured, and under a budget predicted where not trained."""
        if self.predicted is None:
            return self.truth_table()
        return {(r["target"], r["partner"]): r["gain"] for r in self.predicted["table"]}


def judge(config: SweepConfig, seeds: list[SeedRuns], scored: Scored, say=print) -> Judged:
    """The ground truth over paired seeds, computed once, and every scorer judged against it."""
    stl = {s.seed: {t: r.test_losses[t] for t, r in s.stl.items()} for s in seeds}
    per_seed = gains_per_seed(stl, {s.seed: {k: r.test_losses for k, r in s.pairs.items()} for s in seeds})
    truth = ground_truth(per_seed)
    evaluation = evaluate_all(
        seed_tables(per_seed, "gain"), scored.tables(),
        {name: seed_tables(s.per_seed, "value") for name, s in scored.scores.items() if s.per_seed is not None and len(s.per_seed)},
        bootstrap=config.bootstrap, tasks=list(config.tasks), truth=pair_table(truth, "gain"))
    checked = learning(stl, {s.seed: {t: r.chance_losses[t] for t, r in s.stl.items() if t in r.chance_losses} for s in seeds},
                       list(config.tasks))
    evaluation["warnings"] = learning_warnings(checked) + evaluation["warnings"]
    evaluation["headline"] = learning_clause(checked) + evaluation["headline"]
    predicted = predict_pairs(config, scored, pair_table(truth, "gain"), evaluation) if config.budgeted else None
    for line in terminal_warnings(evaluation["warnings"], Path(config.out) / "report" / "report.md"):
        say(line)
    everything = run_cost(r for s in seeds for r in [*s.stl.values(), *s.pairs.values()])
    unit = fraction_unit(cost_dict(everything))
    share = lambda cost: getattr(cost, unit) / getattr(everything, unit) if getattr(everything, unit) else None  # noqa: E731
    return Judged(per_seed, truth, evaluation, checked, share(run_cost(r for s in seeds for r in s.stl.values())),
                  share(combined_cost(config, seeds, scored)), predicted)


def predict_pairs(config: SweepConfig, scored: Scored, truth: dict, evaluation: dict) -> dict:
    """A budgeted sweep's gain table (evaluation.json's `budget`): measured on the pairs it
    trained (truth: {(target, partner): gain}), predicted from the scorers elsewhere
    (`evaluation.budget.predict`); the first of the evaluation's warnings says so (on the
    terminal and on top of the report)."""
    result = predict(list(config.tasks), truth, scored.tables(), bootstrap=config.bootstrap)
    result["planned_pairs"] = config.budget_pairs
    evaluation["warnings"].insert(0, f"ground truth on a budget: {result['headline']} The scorers are judged on the "
                                     "trained pairs only; every gain, measured or predicted, is in results/ground_truth_predicted.csv.")
    return result


def combined_cost(config: SweepConfig, seeds: list[SeedRuns], scored: Scored) -> Cost:
    """What every scorer together costs (the frontier's combined predictor): each one's own compute
    plus every run any of them reads, once (gs, gt and etap read one all-task run)."""
    runs = {RunKind.STL: [r for s in seeds for r in s.stl.values()], RunKind.LI: [r for s in seeds for r in s.li.values()],
            RunKind.PAIR: [r for s in seeds for r in s.pairs.values()], RunKind.ALL: [s.all_tasks for s in seeds if s.all_tasks]}
    kinds = set().union(*(config.scorer(name).requirements(**config.scorer_options(name)).run_kinds() for name in scored.scores))
    compute = sum((s.compute for s in scored.scores.values()), Cost())
    return compute + run_cost(r for kind in kinds for r in runs.get(kind, []))


#: Most warnings a sweep prints on the terminal; the report lists them all.
TERMINAL_WARNINGS = 5


def terminal_warnings(warnings: list[str], report: Path, limit: int = TERMINAL_WARNINGS) -> list[str]:
    """The terminal's lines for the evaluation's warnings: each in one line up to `limit`; past it
    the first `limit - 1` and one line counting the rest (at 40 tasks that did not learn, 40 lines
    would bury the sweep's progress), which the report lists whole."""
    if len(warnings) <= limit:
        return [f"warning: {w}" for w in warnings]
    rest = len(warnings) - (limit - 1)
    return [f"warning: {w}" for w in warnings[:limit - 1]] + [f"warning: {rest} more warnings, all of them under Warnings in {report}"]


def price(scored: Scored, seeds: list[SeedRuns]) -> dict:
    """The ground truth's cost (its STL and pair runs) and every scorer's as a fraction of it, in
    GPU-seconds when the ground truth used a GPU, else CPU core-seconds. Sets the fractions on
    `scored.costs` and returns the ground truth's cost."""
    truth = cost_dict(run_cost(r for s in seeds for r in [*s.stl.values(), *s.pairs.values()]))
    unit = fraction_unit(truth)
    for c in [*scored.costs.values(), truth]:
        c["fraction_of_ground_truth"] = c[unit] / truth[unit] if truth[unit] else None
        c["fraction_unit"] = unit
    return truth


def validate_groupings(config: SweepConfig, runs: list[Run], results: Results, tables: dict, costs: dict, train, say=print,
                       content: str | None = None):
    """Choose groups from every affinity table (and HOA), train those not yet trained, and realise
    each grouping on test next to STL, all-in-one and the best selection. Returns (rows, errors,
    the group runs); `train(runs)` trains runs on Ray; content: the dataset's fingerprint."""
    tasks, ks, seeds = tuple(config.tasks), config.grouping.groups, config.grouping_seeds
    choices, errors = affinity_choices(tables, tasks, ks)
    if config.budgeted:  # HOA reads every pair's network, and a budget trains only some
        errors["hoa"] = (f"hoa: needs every pair's network, and ground_truth.pairs trains {config.budget_pairs} of "
                         f"{len(tasks) * (len(tasks) - 1) // 2}")
    else:
        try:
            choices += hoa_choices(mean_losses(network_losses(runs, results, seeds), seeds), tasks, ks)
        except GroupingError as e:
            errors["hoa"] = str(e)
    wanted = [g for c in choices for g in c.groups] + [tuple(tasks)]
    planned = {r.key for r in runs}
    # a pair a budget did not train is trained under its pair run's key (a larger budget reuses it)
    unplanned = [r for r in plan(config, content, every_pair=True) if r.kind == RunKind.PAIR and r.key not in planned] if config.budgeted else []
    extra = list({r.key: r for r in group_runs(config, wanted, runs + unplanned, content) if r.key not in planned}.values())
    say(f"grouping: {len(choices)} choices need {len(extra)} more runs, {sum(results.store.has(r.key) for r in extra)} already stored")
    train(extra)
    results.refresh(extra)
    losses = network_losses(runs + extra, results, seeds)
    try:
        choices += best_choices(mean_losses(losses, seeds), tasks, ks)
    except GroupingError as e:
        errors["best"] = str(e)
    rows = [_grouping_row(choice, realise(choice.groups, losses, tasks, seeds), costs)
            for choice in baseline_choices(tasks) + choices]
    return rows, errors, extra


def _grouping_row(choice, realised: dict, costs: dict) -> dict:
    cost = costs.get(choice.source, {})
    cost = cost.get(cost.get("fraction_unit") or fraction_unit(costs.get("ground_truth", {})))
    return {"max_groups": choice.max_groups, "source": choice.source,
            "groups": " | ".join("+".join(g) for g in choice.groups), "networks": len(choice.groups),
            "test_total": realised["test_total"], "test_total_sd": realised["test_total_sd"],
            "relative_gain": realised["relative_gain"], "seeds": len(realised["seeds"]),
            "missing": " | ".join("+".join(g) for g in realised["missing"]), "score_seconds": cost}


def group(config: SweepConfig, runs: list[Run], results: Results, scored: Scored, judged: Judged, truth_cost: dict, train,
          say=print, content: str | None = None) -> tuple[dict | None, list[Run]]:
    """The grouping stage when the config asks for groups: evaluation.json's `grouping` and the
    runs it added (None and no runs otherwise)."""
    if not config.grouping.groups:
        return None, []
    affinities = {**scored.tables(), "ground_truth": judged.full_table()}  # under a budget: measured and predicted
    costs = {**scored.costs, "ground_truth": dict(truth_cost), "hoa": dict(truth_cost)}
    rows, errors, extra = validate_groupings(config, runs, results, affinities, costs, train, say, content)
    out = {"rows": rows, "errors": errors, "seeds": list(config.grouping_seeds)}
    if judged.predicted is not None:  # the ground truth's groups were chosen on predicted affinities
        out["predicted"] = {"trained": judged.predicted["trained"], "pairs": judged.predicted["pairs"]}
    return out, extra


#: The trial process's memory when its run ended, in MiB (engine.runs.process_memory).
MEMORY_COLUMNS = ("peak_rss_mb", "rss_anon_mb", "rss_file_mb", "rss_shmem_mb")


def runs_table(runs: list[Run], results: Results, trained: set[str] | list[str], failed: dict[str, str]) -> pd.DataFrame:
    """runs.parquet: one row per run, done or failed, with its cost, node, attempts and memory."""
    trained = set(trained)
    return pd.DataFrame([_run_row(run, results.records.get(run.key), run.key in trained, failed.get(run.key)) for run in runs])


def _run_row(run: Run, record: dict | None, trained_now: bool, error: str | None) -> dict:
    result = record["result"] if record else None
    return {
        "key": run.key, "kind": str(run.kind), "tasks": "+".join(run.tasks), "inject": "+".join(run.inject), "seed": run.seed,
        "status": ("diverged" if result.get("diverged") else "done") if record else "failed", "trained_now": trained_now,
        "wall_seconds": result["wall_seconds"] if result else math.nan,
        "cpu_seconds": result.get("cpu_seconds", math.nan) if result else math.nan,
        "gpu_seconds": result.get("gpu_seconds", math.nan) if result else math.nan,
        "node": record.get("node") if record else None, "node_id": record.get("node_id") if record else None,
        "attempts": record.get("attempts") if record else None,
        "retries": (record.get("attempts", 1) - 1) if record else None,
        "best_epoch": result["best_epoch"] if result else None,
        "bundle_size": result.get("bundle_size", 1) if result else None,  # networks trained in its trial
        "training": result.get("training") if result else None,  # fused, separate, fell back (None: not recorded)
        "training_reason": result.get("training_reason") if result else None,
        "device": result.get("device") if result else None,
        **{k: (record or {}).get("memory", {}).get(k, math.nan) for k in MEMORY_COLUMNS},
        "test_losses": str(result["test_losses"]) if result else None,
        "error": error,
        "diverged": (result.get("diverged") or {}).get("message") if result else None,
    }


def budget(config: SweepConfig, scored: Scored, judged: Judged) -> dict:
    """evaluation.json's `frontier` (`evaluation.frontier`): every scorer raw, calibrated on k
    trained pairs and combined, against the cost paid; after `price` (it reads the fractions)."""
    return evaluation_frontier(judged.evaluation, judged.truth_table(), scored.tables(), config.bootstrap,
                               {n: c.get("fraction_of_ground_truth") for n, c in scored.costs.items()},
                               judged.stl_share, judged.combined_share)


def summarise(config: SweepConfig, scored: Scored, judged: Judged, truth_cost: dict, grouping: dict | None, runs: dict,
              versions: dict, stages: dict) -> dict:
    """evaluation.json: everything the sweep found, with its config, versions and stage times."""
    e = judged.evaluation
    return {
        "sweep": config.name, "tasks": list(config.tasks), "seeds": list(config.seeds),
        "headline": e["headline"], "warnings": e["warnings"],
        "scorers": e["scorers"], "noise_ceiling": e["noise_ceiling"], "comparisons": e["comparisons"],
        "stability": e["stability"], "reference": e["reference"], "partner_dependence": e.get("partner_dependence"),
        "learning": judged.learning, "scorer_errors": scored.errors, "frontier": budget(config, scored, judged),
        "budget": judged.predicted,
        "costs": {**scored.costs, "ground_truth": dict(truth_cost)},
        "runs": runs,
        "details": {name: s.details for name, s in scored.scores.items()}, "grouping": grouping,
        "config": to_dict(config), "versions": versions, "stages": stages,
    }
