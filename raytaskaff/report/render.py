"""The sweep report: report.md and a self-contained index.html, from OUT/results alone.

Both come from one document (`report_blocks`: a list of `Section`s and the blocks around them,
built once from the results) rendered twice by `document.to_markdown` and `document.to_html`; the
figures are in the HTML only, and report.md points to them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import yaml

from raytaskaff.atomic import write_text
from raytaskaff.evaluation.partner import TARGET_BOUND
from raytaskaff.evaluation.summary import headline
from raytaskaff.report.document import (Block, Code, Gallery, Heading, Image, Only, Paragraph, Section, Warnings, fmt,
                                        to_html, to_markdown)
from raytaskaff.report.figures import (CLUSTER_FROM, FENCE, UNIT_NAMES, cluster_order, colour_scale, cost_caption, cost_plot,
                                       cost_unit, frontier_plot, grouping_plot, heatmap, matrix, scale_caption)

#: A target's true order of partners is shown whole up to this many partners; beyond, its first
#: ORDER_HEAD and its last (a line of 39 names per target made a table 6,000 px tall).
ORDER_IN_FULL, ORDER_HEAD = 9, 5


def _ci(e: dict, kind: str) -> str:
    ci = e.get(f"{kind}_ci")
    return f"{fmt(e.get(kind))} [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else fmt(e.get(kind))


def _hits(e: dict) -> str:
    text = f"{e['hits']}/{e['targets']}"
    return text + (f" ({e['undecidable']} undecidable)" if e.get("undecidable") else "")


def _coverage(e: dict) -> str:
    c = e.get("coverage")
    return f"{c['pairs']}/{c['pairs_known']} / {c['targets']}/{c['targets_known']}" if c else "-"


def _ceiling_text(ceiling: dict | None) -> str:
    if not ceiling:
        return "not measured (one seed)"
    one = (ceiling.get("single_seed") or {}).get("spearman")
    half = (ceiling.get("split_half") or {}).get("spearman")
    return f"Spearman {fmt(one)} one seed vs another, {fmt(half)} split-half"


def _diff(c: dict, kind: str, digits: int = 2) -> str:
    ci = c.get(f"{kind}_ci")
    value = c.get(f"{kind}_diff")
    return f"{fmt(value, digits)} [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]" if ci else fmt(value, digits)


def _verdict(significant: bool | None) -> str:
    return {True: "significant", False: "within noise", None: "-"}[significant]


def _target_name(target: str, learned: dict) -> str:
    """A target as the tables name it: marked when its STL networks did not beat chance."""
    return f"{target} (did not learn)" if (learned.get(target) or {}).get("learned") is False else target


def _ceiling_section(ceiling: dict | None, seeds: list) -> Section:
    """The ground truth's agreement with itself, on every level a scorer is judged on."""
    if not ceiling:
        return Section("Noise ceiling of the ground truth", [], [],
                       f"Not measured: it needs at least two seeds, the sweep has {len(seeds)}. Without it, no scorer's "
                       "agreement with the ground truth can be put in proportion.")
    one, half = ceiling["single_seed"], ceiling.get("split_half") or {}
    rows = [[level, fmt(one.get(k)), fmt(half.get(k))]
            for level, k in (("Pearson", "pearson"), ("Spearman", "spearman"), ("Kendall", "kendall"),
                             ("partner ranking (Kendall)", "ranking_kendall"))]
    rows.append(["best-partner hit rate", fmt(one.get("hit_rate")), "-"])
    rows.append(["best-partner regret (gain points)", fmt(one.get("regret")), fmt(half.get("regret"))])
    return Section("Noise ceiling of the ground truth", ["level", "one seed vs another", "split-half (seed means)"], rows,
                   f"{ceiling['seeds']} seeds. No scorer can be judged better than the ground truth agrees with itself.")


def _learning_section(learned: dict) -> Section:
    from raytaskaff.evaluation.learning import LEARNED_BELOW

    verdict = {True: "learned", False: "did not learn", None: "not measured"}
    rows = [[t, fmt(c["stl_loss"], 4), fmt(c["chance_loss"], 4), fmt(c["ratio"]), verdict[c["learned"]]]
            for t, c in learned.items()]
    note = (f"Each target's single-task test loss (mean over seeds) against its family's trivial predictor, fitted on the "
            f"train split: the training mean for regression, the class prior for classes, each entry's rate for binary "
            f"labels. A target whose ratio is not below {LEARNED_BELOW} did not learn: its gains compare networks that "
            "learned nothing and judge the scorers against noise.")
    return Section("Did the single-task networks learn?", ["target", "STL test loss", "chance loss", "ratio", "verdict"], rows, note)


def _ceiling_rows(ceiling: dict | None) -> list[list[str]]:
    """The noise ceiling as rows of the scorers' table (same columns)."""
    if not ceiling:
        return [["noise ceiling", "not measured (one seed)", "-", "-", "-", "-", "-", "-"]]
    rows = []
    for label, key in (("noise ceiling: one seed vs another", "single_seed"), ("noise ceiling: split-half", "split_half")):
        c = ceiling.get(key) or {}
        hit_rate = c.get("hit_rate")
        rows.append([label, fmt(c.get("pearson")), fmt(c.get("spearman")), fmt(c.get("kendall")), fmt(c.get("ranking_kendall")),
                     "-" if hit_rate is None else f"rate {fmt(hit_rate)}", fmt(c.get("regret")), "-"])
    return rows


def _scorers_section(evaluation: dict, ceiling: dict | None) -> Section:
    """Every scorer on the four levels, with intervals and coverage; the noise ceiling below them."""
    rows = [[name, _ci(e, "pearson"), _ci(e, "spearman"), _ci(e, "kendall"), fmt(e.get("ranking_kendall")),
             _hits(e), fmt(e.get("regret")), _coverage(e)] for name, e in evaluation.items()]
    header = ["scorer", "Pearson [95% CI]", "Spearman [95% CI]", "Kendall [95% CI]", "partner ranking", "best partner hits",
              "regret (gain points)", "pairs / targets scored"]
    return Section("Scorers against the ground truth", header, rows + _ceiling_rows(ceiling),
                   "Correlations over all ordered pairs; intervals from a bootstrap over pairs. The last rows are the ground "
                   "truth's noise ceiling on the same levels: no scorer can be judged better than it. Hits count decidable "
                   "targets only (a target whose known partners all tie is undecidable).")


def _orientation_section(evaluation: dict) -> Section | None:
    """Each asymmetric scorer read as given and transposed; None when no scorer is asymmetric."""
    verdict = {True: "transposed agrees better", False: "as given", None: "not tested (no bootstrap)"}
    rows = []
    for name, e in evaluation.items():
        found = e.get("orientation")
        if found:
            ci = found.get("difference_ci")
            diff = (found["transposed_spearman"] - found["spearman"]
                    if found["spearman"] is not None and found["transposed_spearman"] is not None else None)
            rows.append([name, fmt(found["spearman"]), fmt(found["transposed_spearman"]),
                         fmt(diff) + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""), verdict[found["transposed_better"]]])
    if not rows:
        return None
    note = ("Spearman with the ground truth of each asymmetric scorer as given, value(target, partner), and transposed, "
            "value(partner, target), with the 95% bootstrap interval of the difference. A scorer whose transpose agrees "
            "significantly better holds the opposite view of which task helps which: a finding about the scorer (the "
            "orientation from the probes to these tables is tested end to end), not a swap to be undone.")
    return Section("Which way round?", ["scorer", "Spearman as given", "Spearman transposed", "difference [95% CI]", "verdict"], rows, note)


def _over_seeds(spread: dict | None) -> str:
    """'mean ± sd' over seeds ('mean' with one seed; '-' when unknown)."""
    if not spread:
        return "-"
    return fmt(spread["mean"]) + (f" ± {fmt(spread['std'])}" if spread.get("std") is not None else "")


def partner_section(dependence: dict | None) -> Section | None:
    """Each table's variance split by target and by partner, the ground truth first (then its
    seeds' tables, mean ± sd); None when the summary has none (a sweep evaluated before it was
    measured). The report's section and the evaluate command's alike."""
    if not dependence:
        return None
    names = ["ground_truth"] + [n for n in dependence if n != "ground_truth"]
    rows = [[n, fmt(d.get("target_share")), fmt(d.get("partner_share")), fmt(d.get("interaction_share")),
             fmt(d.get("spread_ratio")), "mostly a property of the target: it cannot rank partners" if d.get("target_bound") else ""]
            for n in names if (d := dependence.get(n)) is not None]
    seeds = (dependence.get("ground_truth") or {}).get("per_seed")
    seed_note = ""
    if seeds and seeds["seeds"] >= 2:
        share = seeds["target_share"] or {}
        rows.insert(1, [f"ground_truth, one seed ({seeds['seeds']} seeds: mean ± sd)",
                        *(_over_seeds(seeds[k]) for k in ("target_share", "partner_share", "interaction_share", "spread_ratio")),
                        f"target share {fmt(share.get('min'))} to {fmt(share.get('max'))} over seeds" if share else ""])
        seed_note = ("The ground truth's row below it splits each seed's own table (mean ± sd over seeds): a seed's noise is "
                     "a pair effect, so one seed's target share is lower than the seed mean's; its spread says whether the "
                     "truth's own partner dependence is stable. ")
    flagged = [n for n in names if (dependence.get(n) or {}).get("target_bound")]
    note = ("Share of each table's variance over its off-diagonal cells explained by the target alone (row means) and by the "
            "partner alone (column means), what only the pair explains (beyond target + partner), and the mean spread of a "
            "target's row over the spread of the row means. " + seed_note + "A scorer is flagged when the target alone "
            f"explains at least {TARGET_BOUND:g} of it and more than of the ground truth: its value barely changes with the "
            "partner, so it cannot pick one. " + (f"Flagged: {', '.join(flagged)}." if flagged else "None is flagged."))
    return Section("Partner dependence", ["table", "target share", "partner share", "pair only", "within / between spread", "reading"],
                   rows, note)


def _comparison_section(comparisons: list[dict], ceiling: dict | None) -> Section:
    """Every two scorers' differences with their paired-bootstrap intervals."""
    rows = [[c["a"], c["b"], _diff(c, "spearman"), _verdict(c.get("spearman_significant")), _diff(c, "hits", 0),
             _verdict(c.get("hits_significant"))] for c in comparisons]
    seeds = max((c.get("seeds", 1) for c in comparisons), default=1)
    note = (f"Difference a - b of the Spearman correlation with the ground truth, and of best-partner hits, with 95% "
            f"intervals from a paired bootstrap ({max(c.get('replicates', 0) for c in comparisons)} replicates) over "
            f"target-partner pairs (targets for hits) and over the {seeds} seed(s): each replicate averages the ground "
            "truth and every per-seed scorer over the same drawn seeds. Significant: the interval excludes 0. "
            f"For scale, the ground truth's noise ceiling: {_ceiling_text(ceiling)}.")
    return Section("Scorer against scorer", ["a", "b", "Spearman a - b [95% CI]", "Spearman", "hits a - b [95% CI]", "hits"],
                   rows, note)


def _stability_section(stability: dict, ceiling: dict | None) -> Section:
    """One line per table: the mean, lowest and highest Spearman between two of its seeds (every two
    seeds are in evaluation.json and the per-seed CSVs, not in the report)."""
    rows = []
    for name, st in stability.items():
        pairs = [(p["spearman"], p["seeds"]) for p in st.get("pairwise", []) if p.get("spearman") is not None]
        low = min(pairs, key=lambda p: p[0]) if pairs else None
        high = max(pairs, key=lambda p: p[0]) if pairs else None
        rows.append([name, str(st.get("seeds") or "seed-free"), fmt(st.get("mean_spearman")),
                     f"{fmt(low[0])} (seeds {low[1][0]}, {low[1][1]})" if low else "-",
                     f"{fmt(high[0])} (seeds {high[1][0]}, {high[1][1]})" if high else "-"])
    note = ("Spearman correlation of a table from one seed with the same table from another, over every two seeds: their mean, "
            "the lowest and the highest (every two seeds in results/evaluation.json, the tables in "
            "results/affinity_per_seed.csv and gains_per_seed.csv). The ground truth's row is its single-seed noise ceiling "
            f"({_ceiling_text(ceiling)}); a seed-free scorer does not vary.")
    return Section("Seed-to-seed stability", ["table", "seeds", "mean Spearman between seeds", "lowest", "highest"], rows, note)


def _best_partner_section(truth: pd.DataFrame, evaluation: dict, tasks: list[str], learned: dict) -> Section:
    """A row per target (the table grows downward with the tasks): its true best partner(s), then
    each scorer's choice and whether it hits."""
    truth_best = {}
    for target in tasks:
        known = truth[truth.target == target]
        if len(known):
            top = known.gain.max()
            tied_all = (known.gain == top).all()  # every partner is a best one: undecidable
            truth_best[target] = (", ".join(sorted(known[known.gain == top].partner)) + (" (undecidable)" if tied_all else ""), top)
    rows = []
    for target in tasks:
        best, gain = truth_best.get(target, ("-", None))
        row = [_target_name(target, learned), f"{best} ({fmt(gain, 1)})"]
        for e in evaluation.values():
            b = e["best_partner"].get(target, {})
            mark = "undecidable" if b.get("undecidable") else {True: "hit", False: "miss", None: "-"}[b.get("hit")]
            row.append(f"{', '.join(b.get('chosen', [])) or '-'} ({fmt(b.get('chosen_gain'), 1)}, {mark})")
        rows.append(row)
    note = ("A row per target: its true best partner with the gain % it brings, then each scorer's choice with the gain % it "
            "realises (mean over ties) and whether it is a true best one; beside a scorer's name, its best-partner hits.")
    header = ["target", "ground truth: true best partner"] + [f"{name} ({_hits(e)})" for name, e in evaluation.items()]
    return Section("Best partner per target", header, rows, note)


def _reference_section(reference: list[dict]) -> Section:
    from raytaskaff.evaluation.reference import SOURCE

    rows = [[r["target"], f"{', '.join(r['best']) or '-'} ({fmt(r['best_gain'], 1)})", r["reference_partner"],
             "not available" if r.get("reference_gain") is None else fmt(r["reference_gain"], 1),
             fmt(r.get("gain_of_reference_partner"), 1), {True: "agree", False: "disagree", None: "cannot say"}[r["agree"]]]
            for r in reference]
    agreed = sum(r["agree"] is True for r in reference)
    decided = sum(r["agree"] is not None for r in reference)
    return Section("Against the reference study", ["target", "best partner here (gain %)", "reference best partner",
                                                   "reference gain %", "gain % here of the reference partner", "partners"], rows,
                   f"Best partners of the reference study ({SOURCE}) on Taskonomy beside this sweep's ground truth: "
                   f"{agreed} of {decided} agree. The study's relative gains are not available here and are not guessed.")


def _partner_order(partners: list[str]) -> str:
    """A target's partners best first; beyond ORDER_IN_FULL, the first ORDER_HEAD, how many are
    left out, and the last."""
    if len(partners) <= ORDER_IN_FULL:
        return " > ".join(partners) or "-"
    return " > ".join(partners[:ORDER_HEAD]) + f" > … {len(partners) - ORDER_HEAD - 1} more … > {partners[-1]}"


def _ranking_section(truth: pd.DataFrame, evaluation: dict, ceiling: dict | None, tasks: list[str], learned: dict) -> Section:
    rows = []
    single_ranking = ((ceiling or {}).get("single_seed") or {}).get("ranking_per_target") or {}
    shortened = False
    for target in tasks:
        true_order = truth[truth.target == target].sort_values("gain", ascending=False).partner.tolist()
        shortened |= len(true_order) > ORDER_IN_FULL
        row = [_target_name(target, learned), _partner_order(true_order)]
        row += [fmt((e.get("ranking_per_target") or {}).get(target, {}).get("kendall")) for e in evaluation.values()]
        row.append(fmt(single_ranking.get(target)))
        rows.append(row)
    return Section("Partner ranking per target", ["target", "true order of partners (by gain)"] + list(evaluation)
                   + ["ceiling (one seed)"], rows,
                   "Kendall tau-b between each scorer's ordering of a target's partners and the true one; the last column, "
                   "the same between one seed's ground truth and another's (mean over seed pairs)."
                   + (f" Of more than {ORDER_IN_FULL} partners, the true order shows the first {ORDER_HEAD} and the last (every "
                      "gain is in results/ground_truth.csv)." if shortened else ""))


def _cost_section(costs: pd.DataFrame, runs: pd.DataFrame, stages: dict) -> Section:
    """The cost table. Its wall-clock seconds are sums over runs that ran side by side, so they can
    exceed the wall-clock of the stage that ran them: the header and the note say so."""
    unit = cost_unit(costs)
    rows = [[r.name, fmt(r.wall_seconds, 1), fmt(r.cpu_seconds, 1), fmt(r.gpu_seconds, 1), fmt(getattr(r, f"marginal_{unit}"), 1),
             fmt(r.fraction_of_ground_truth, 3)] for r in costs.itertuples()]
    note = ("Wall s adds up the wall-clock of every run and scorer actor a cost covers; runs train side by side, so a sum "
            "can exceed the wall-clock of the stage they ran in.")
    truth = costs[costs.name == "ground_truth"]
    if len(truth) and "training" in stages:
        trained = int((runs.kind.isin(["stl", "pair"]) & (runs.status == "done")).sum())
        note += (f" The ground truth's {fmt(float(truth.wall_seconds.iloc[0]), 1)} s is the sum over its {trained} STL and pair "
                 f"runs; the training stage, which trained them beside the other runs, took {fmt(float(stages['training']), 1)} s.")
    note += (" CPU core-seconds are process CPU time; GPU-seconds are wall time on a GPU times the fraction of it a run or "
             "actor held. Both sum every attempt of a run (work after its last checkpoint, lost to a crash, is not "
             f"counted). The fraction of the ground truth's cost compares {UNIT_NAMES[unit]}"
             f"{', as its runs used a GPU' if unit == 'gpu_seconds' else ', as its runs used no GPU'}. "
             "Marginal: beyond the STL and pair runs the ground truth trains anyway.")
    header = ["", "wall s, summed over runs", "CPU core-s", "GPU-s", f"marginal {UNIT_NAMES[unit]}", "fraction of ground truth"]
    return Section("Cost", header, rows, note)


def _grouping_section(grouping: dict, unit: str) -> Section:
    """The baselines, then each source's grouping (sorted by realised total within each number of
    groups), then the scorers that could not group."""
    baselines = [r for r in grouping["rows"] if r["source"] in ("stl", "all")]
    chosen = sorted((r for r in grouping["rows"] if r["source"] not in ("stl", "all")),
                    key=lambda r: (r["max_groups"], math.inf if r["test_total"] is None else r["test_total"]))
    rows = [[str(r["max_groups"]) if r["source"] not in ("stl", "all") else "-", r["source"],
             ["every task alone"] if r["source"] == "stl" else
             [f"({i}) " + g.replace("+", " + ") for i, g in enumerate(r["groups"].split(" | "), start=1)],
             str(r["networks"]), f"{fmt(r['test_total'], 3)}" + (f" ± {fmt(r['test_total_sd'], 3)}" if r.get("test_total_sd") else ""),
             fmt(None if r["relative_gain"] is None else 100 * r["relative_gain"], 1), fmt(r.get("score_seconds"), 1)]
            for r in baselines + chosen]
    rows += [["-", name, "not grouped: " + message, "-", "-", "-", "-"] for name, message in grouping.get("errors", {}).items()]
    note = (f"Each scorer's TAG grouping (and the ground truth's, HOA's from the pairs, and the best selection over every "
            f"trained network on validation), trained on seed(s) {', '.join(map(str, grouping['seeds']))}. Each task uses its "
            "chosen network that is best on validation; total = sum of test losses (mean over seeds ± sd); gain = mean over "
            "tasks of the relative loss reduction against training every task alone. Sorted by total within each number of groups."
            + (f" The ground truth's groups were chosen on predicted affinities: {grouping['predicted']['trained']} of "
               f"{grouping['predicted']['pairs']} pairs measured, the others predicted (see \"Ground truth on a budget\")."
               if grouping.get("predicted") else ""))
    header = ["groups at most", "source", "groups", "networks", "total test loss", "gain over STL (%)", f"affinity {UNIT_NAMES[unit]}"]
    return Section("Groupings, trained", header, rows, note)


def _frontier_section(frontier: dict) -> Section:
    """Affinity on a budget: each predictor's held-out Spearman and cost at a few k (pairs trained),
    and its other levels at the middle one; the headline first."""
    ks = [k for k in frontier["ks"] if k > 0]
    shown = sorted({ks[i] for i in (0, len(ks) // 3, 2 * len(ks) // 3, len(ks) - 1)}) if ks else []
    middle = shown[len(shown) // 2] if shown else None

    def cell(p: dict | None) -> str:
        if p is None or p.get("spearman") is None:
            return "-"
        ci = p.get("spearman_ci")
        spread = f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci and p.get("draws", 1) > 1 else ""
        return f"{fmt(p['spearman'])}{spread} at {fmt(p.get('cost'))}"

    rows = []
    for name, e in frontier["predictors"].items():
        at = {p["k"]: p for p in e["points"]}
        levels = at.get(0 if e["kind"] == "raw" else middle) or {}
        hits = levels.get("hit_rate")
        rows.append([name, *(cell(at.get(k)) for k in [0, *shown]), fmt(levels.get("ranking_kendall")),
                     "-" if hits is None else f"{hits:.0%}", fmt(levels.get("regret")), fmt(levels.get("abs_error"))])
    note = (f"{frontier['headline'][0].upper()}{frontier['headline'][1:]} Each cell: the Spearman correlation with the ground "
            "truth on the cells of the pairs not trained (mean over draws of the k trained pairs, 95% of draws in brackets) "
            "at the cost paid, a fraction of the exhaustive ground truth's: the scorers' own (the combined predictor: all "
            "of theirs, each network once) plus, for k > 0, the STL runs and k of the pair runs, an upper bound where a "
            "scorer reads the STL networks. Raw: the scorer as it is, on every cell; isotonic, affine and spline: a "
            "monotone, linear or B-spline (ETAP's form, fitted by ridge) map from the scorer to gains fitted on the trained "
            "cells; combined: ridge over every scorer, its penalty by leave-one-out. Partner ranking (Kendall per target), "
            "hits, regret and |error| (mean absolute error of predicted gains, gain points) on the held-out cells at "
            f"k = {middle if middle is not None else '-'} (raw: k = 0). {frontier['pairs']} pairs, {frontier['draws']} "
            "draws per k.")
    header = ["predictor", "k = 0 (raw)", *(f"k = {k}" for k in shown), "partner ranking", "hits", "regret", "|error|"]
    return Section("Affinity on a budget", header, rows, note)


def _budget_section(budget: dict, tasks: list[str]) -> Section:
    """A budgeted sweep's gains of every pair, PREDICTED where the pair was not trained: per target,
    its best partner and its partners by gain, each predicted one marked; then how the prediction
    was made and how good it is (`evaluation.budget`)."""
    by_target: dict[str, list[dict]] = {}
    for r in budget["table"]:
        by_target.setdefault(r["target"], []).append(r)
    rows = []
    for target in tasks:
        cells = sorted(by_target.get(target, []), key=lambda r: -r["gain"])
        if not cells:
            continue
        name = lambda r: f"{r['partner']} (predicted)" if r["predicted"] else r["partner"]  # noqa: E731
        best = cells[0]
        gain = fmt(best["gain"], 1) + (f" [{fmt(best['low'], 1)}, {fmt(best['high'], 1)}]" if best["predicted"] and best["low"] is not None else "")
        rows.append([target, name(best), gain, f"{sum(not r['predicted'] for r in cells)} / {sum(r['predicted'] for r in cells)}",
                     _partner_order([name(r) for r in cells])])
    acc, interval = budget["accuracy"], budget["interval"]
    ranked = sorted(((v["spearman"], k) for k, v in (budget.get("choice") or {}).items() if v.get("spearman") is not None), reverse=True)
    others = ", ".join(f"{k} {fmt(v)}" for v, k in ranked[:4])
    note = (f"PREDICTED, not measured: {budget['pairs'] - budget['trained']} of {budget['pairs']} pairs were not trained "
            f"(ground_truth.pairs); their gains come from {budget['predictor']['label']}, fitted on the {budget['trained']} "
            "trained pairs (the same on every seed, drawn at random). The predictor is the one whose predictions of pairs held "
            f"out of the trained ones, fold by fold, reach the highest Spearman with the measured gains ({others or 'none could'}). "
            f"Its accuracy, the whole procedure held out fold by fold (nested): Spearman {fmt(acc.get('spearman'))}"
            + (f" [{fmt(acc['spearman_ci'][0])}, {fmt(acc['spearman_ci'][1])}] (95%, bootstrap over the trained pairs)"
               if acc.get("spearman_ci") else "")
            + f", mean absolute error {fmt(acc.get('abs_error'))} gain points, on {acc.get('cells', 0)} cells. "
            + (f"Each predicted gain's interval: ± {fmt(interval['half_width'])} points, meant to hold {interval['coverage']:.0%} "
               "of the untrained cells' true gains (split-conformal on the held-out errors). " if interval.get("half_width") is not None else
               "Too few trained pairs for an interval. ")
            + "The other tables judge the scorers on the trained pairs only; every gain, measured or predicted, is in "
              "results/ground_truth_predicted.csv.")
    header = ["target", "best partner", "gain % [interval]", "partners measured / predicted", "partners by gain"]
    return Section("Ground truth on a budget: predicted gains", header, rows, note)


def _diverged_section(runs: pd.DataFrame) -> Section | None:
    """The networks whose loss turned non-finite: stored as diverged (not retrained, no result for
    the scores or the ground truth), each with where it diverged."""
    gone = runs[runs.status == "diverged"]
    if gone.empty:
        return None
    rows = [[r.kind, r.tasks, r.inject or "-", str(r.seed), str(getattr(r, "diverged", None) or "-")] for r in gone.itertuples()]
    return Section("Diverged networks", ["kind", "tasks", "injected", "seed", "where"], rows,
                   f"{len(gone)} networks diverged (a loss turned NaN or infinite). They are recorded and not retrained "
                   "(CPU training is deterministic: a retry diverges again); the scores and the ground truth leave them "
                   "out as missing runs. A lower learning rate or gradient scaling is the usual remedy.")


def _failed_section(runs: pd.DataFrame, scorer_errors: dict) -> Section:
    bad = runs[~runs.status.isin(["done", "diverged"])]
    rows = [[r.kind, r.tasks, r.inject or "-", str(r.seed), str(r.error)] for r in bad.itertuples()]
    rows += [["scorer", name, "-", "-", message] for name, message in scorer_errors.items()]
    if not rows:
        gone = int((runs.status == "diverged").sum())
        done = f"the {len(runs) - gone} planned runs that did not diverge are" if gone else f"all {len(runs)} planned runs are"
        return Section("Failed or missing", [], [], f"None: {done} done and every scorer ran.")
    return Section("Failed or missing", ["kind", "tasks", "injected", "seed", "error"], rows,
                   f"{len(runs)} runs planned; {int((runs.status == 'done').sum())} done.")


def sections(summary: dict, truth: pd.DataFrame, costs: pd.DataFrame, runs: pd.DataFrame) -> list[Section]:
    """The report's tables, in order; a section with nothing to say is left out."""
    tasks, evaluation, ceiling = summary["tasks"], summary["scorers"], summary.get("noise_ceiling")
    learned = summary.get("learning") or {}
    comparisons, stability = summary.get("comparisons") or [], summary.get("stability") or {}
    reference, grouping = summary.get("reference") or [], summary.get("grouping")
    stages = summary.get("stages") or {}
    found = [_budget_section(summary["budget"], tasks) if summary.get("budget") else None,
             _ceiling_section(ceiling, summary["seeds"]),
             _learning_section(learned) if learned else None,
             _scorers_section(evaluation, ceiling),
             _orientation_section(evaluation),
             partner_section(summary.get("partner_dependence")),
             _comparison_section(comparisons, ceiling) if comparisons else None,
             _stability_section(stability, ceiling) if stability else None,
             _best_partner_section(truth, evaluation, tasks, learned),
             _reference_section(reference) if reference else None,
             _ranking_section(truth, evaluation, ceiling, tasks, learned),
             _cost_section(costs, runs, stages),
             _frontier_section(summary["frontier"]) if summary.get("frontier") else None,
             _grouping_section(grouping, cost_unit(costs)) if grouping else None,
             _diverged_section(runs),
             _failed_section(runs, summary.get("scorer_errors", {})),
             Section("Stages", ["stage", "seconds"], [[k, fmt(float(v), 1)] for k, v in stages.items()],
                     "Wall-clock of each stage of the sweep, one after another; total: the whole sweep.")]
    return [s for s in found if s is not None]


def _heatmaps(truth: pd.DataFrame, affinity: pd.DataFrame, tasks: list[str], learned: dict) -> list[Block]:
    """The ground truth's and each scorer's heatmap, all in one order: from CLUSTER_FROM tasks on,
    the ground truth's clustering (`cluster_order`), so that a task sits in the same row and
    column of every map and a scorer's blocks can be held against the truth's."""
    gains = matrix(truth, "gain", tasks)
    order = cluster_order(gains) if len(tasks) >= CLUSTER_FROM else None
    tables = [("ground truth: gain % of target from partner", "ground truth gain (%)", gains, True)]
    tables += [(name, name, matrix(affinity[affinity.scorer == name], "value", tasks), None) for name in affinity.scorer.unique()]
    muted = frozenset(t for t in tasks if (learned.get(t) or {}).get("learned") is False)
    maps = [Image(alt, heatmap(values, tasks, title, order, centred, muted), scale_caption(colour_scale(values, centred)), "svg")
            for alt, title, values, centred in tables]
    said = ("in the order of a hierarchical clustering of the ground truth (tasks whose gains, as target and as partner, are "
            "alike side by side; the same order in every map)" if order else "in the config's order")
    note = (f"Rows are targets, columns partners, {said}. Each map has its own colour scale: diverging with white at 0 where "
            "its values straddle 0 (always for the ground truth), each side spanning its own range; a value beyond Tukey's "
            f"far-out fences (more than {FENCE:g} interquartile ranges beyond the quartiles) takes the end colour and a "
            "▲ (above) or ▼ (below), so that a few outliers do not wash out the rest."
            + (" Targets in grey italics did not learn: their rows are noise." if muted else ""))
    return [Heading("Heatmaps ([target][partner])"), Paragraph(note, "note"), Gallery(maps)]


def _figures(summary: dict, truth: pd.DataFrame, affinity: pd.DataFrame, costs: pd.DataFrame) -> list[Block]:
    """The figures (HTML only), and what report.md says in their place."""
    tasks, evaluation, grouping = summary["tasks"], summary["scorers"], summary.get("grouping")
    plot = cost_plot(costs, evaluation, summary.get("noise_ceiling"))
    caption = cost_caption(costs, evaluation)
    html = [Heading("Cost against accuracy"), Paragraph(caption, "note"), Image("cost plot", plot),
            *_frontier_figure(summary.get("frontier")),
            *_heatmaps(truth, affinity, tasks, summary.get("learning") or {})]
    if grouping and any(r["test_total"] is not None for r in grouping["rows"]):
        html = [Heading("Groupings against the baselines"), Image("grouping plot", grouping_plot(grouping["rows"]))] + html
    return [Only("html", html),
            Only("markdown", [Heading("Heatmaps and cost plot"),
                              Paragraph("In index.html (heatmaps: rows are targets, columns partners). The cost plot: " + caption)])]


def _frontier_figure(frontier: dict | None) -> list[Block]:
    if not frontier:
        return []
    caption = ("Held-out Spearman against the cost paid (table \"Affinity on a budget\"): points, the raw scorers; thin "
               "curves, each scorer calibrated on k trained pairs (solid isotonic, dashed affine, dotted spline); thick, every scorer "
               "combined, its band 95% of draws; the star, the exhaustive ground truth at cost 1 on its noise ceiling.")
    return [Heading("Affinity on a budget: cost against accuracy"), Paragraph(caption, "note"),
            Image("frontier plot", frontier_plot(frontier))]


def training_text(runs: pd.DataFrame) -> str:
    """How the done networks were trained, counted by mode and device, with the reasons a network
    trained separate or fell back (runs.parquet's `training`, `training_reason`, `device`; a
    result stored before they were recorded counts as not recorded)."""
    done = runs[runs.status == "done"]
    if not len(done):
        return "Networks trained: none."
    column = lambda name: done[name] if name in done else pd.Series([None] * len(done), index=done.index)  # noqa: E731
    modes, devices, reasons = column("training"), column("device"), column("training_reason")
    parts, why = [], {}
    for (mode, device), n in pd.DataFrame({"m": modes.fillna(""), "d": devices.fillna("")}).value_counts(sort=False).items():
        parts.append(f"{n} {mode or 'of unrecorded mode'}" + (f" on {device}" if device else ""))
    for mode, reason in zip(modes, reasons):
        if mode in ("separate", "fell back") and isinstance(reason, str):
            why[mode, reason] = why.get((mode, reason), 0) + 1
    text = f"Networks trained ({len(done)}): {', '.join(parts)}."
    if why:
        text += " Why: " + "; ".join(f"{n} {mode}: {reason}" for (mode, reason), n in why.items()) + "."
    return text


def _warnings(texts: list[str], top: bool = False) -> list[Block]:
    """The warnings as one block that never pushes the first table down: in HTML collapsed at the
    top (one line with their count); in Markdown, which cannot collapse, a line at the top and the
    list at the end."""
    if not texts:
        return []
    if top:
        return [Only("html", [Warnings(texts)]),
                Only("markdown", [Paragraph(f"{len(texts)} warning(s) limit these numbers: see \"Warnings ({len(texts)})\" at the end.")])]
    return [Only("markdown", [Warnings(texts)])]


def report_blocks(summary: dict, truth: pd.DataFrame, affinity: pd.DataFrame, costs: pd.DataFrame, runs: pd.DataFrame) -> list[Block]:
    """The whole report as one document: title, headline, warnings, the sections, the figures and
    the config."""
    conclusion = summary.get("headline") or headline(summary["scorers"], summary.get("comparisons") or [],
                                                     summary.get("noise_ceiling"))
    versions = ", ".join(f"{k} {v}" for k, v in summary.get("versions", {}).items())
    return [Heading("raytaskaff sweep ", 1, code=summary["sweep"]), Paragraph(conclusion, "strong"),
            Paragraph(f"Tasks: {', '.join(summary['tasks'])}. Seeds: {', '.join(map(str, summary['seeds']))}."),
            *_warnings(summary.get("warnings") or [], top=True),
            *sections(summary, truth, costs, runs), *_figures(summary, truth, affinity, costs), *_warnings(summary.get("warnings") or []),
            Heading("Config"), Paragraph(training_text(runs)), Code(yaml.safe_dump(summary.get("config", {}), sort_keys=False), "yaml"),
            Paragraph(f"Versions: {versions}", "note")]


def build_report(out: str | Path) -> Path:
    """Write OUT/report/report.md and OUT/report/index.html from OUT/results; return the HTML path.

    Both are rendered whole before either is written, and each is written atomically (a temporary
    file beside it, then a rename): a render that fails leaves the previous report as it was."""
    out = Path(out)
    results = out / "results"
    summary = json.loads((results / "evaluation.json").read_text())
    blocks = report_blocks(summary, pd.read_csv(results / "ground_truth.csv"), pd.read_csv(results / "affinity.csv"),
                           pd.read_csv(results / "costs.csv"), pd.read_parquet(results / "runs.parquet"))
    markdown, page = to_markdown(blocks), to_html(blocks, f"raytaskaff {summary['sweep']}")
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    write_text(report / "report.md", markdown)
    write_text(report / "index.html", page)
    return report / "index.html"
