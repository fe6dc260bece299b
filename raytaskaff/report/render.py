"""The sweep report: report.md and a self-contained index.html, from OUT/results alone."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from raytaskaff.atomic import write_text  # noqa: E402
from raytaskaff.evaluation.summary import headline  # noqa: E402


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        text = f"{value:.{digits}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text  # never "-0.00"
    return str(value)


def _ci(e: dict, kind: str) -> str:
    ci = e.get(f"{kind}_ci")
    return f"{_fmt(e.get(kind))} [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else _fmt(e.get(kind))


def _hits(e: dict) -> str:
    text = f"{e['hits']}/{e['targets']}"
    return text + (f" ({e['undecidable']} undecidable)" if e.get("undecidable") else "")


def _coverage(e: dict) -> str:
    c = e.get("coverage")
    return f"{c['pairs']}/{c['pairs_known']} / {c['targets']}/{c['targets_known']}" if c else "-"


def _ceiling_rows(ceiling: dict | None) -> list[list[str]]:
    """The noise ceiling as rows of the scorers' table (same columns)."""
    if not ceiling:
        return [["noise ceiling", "not measured (one seed)", "-", "-", "-", "-", "-", "-"]]
    rows = []
    for label, key in (("noise ceiling: one seed vs another", "single_seed"), ("noise ceiling: split-half", "split_half")):
        c = ceiling.get(key) or {}
        hit_rate = c.get("hit_rate")
        rows.append([label, _fmt(c.get("pearson")), _fmt(c.get("spearman")), _fmt(c.get("kendall")), _fmt(c.get("ranking_kendall")),
                     "-" if hit_rate is None else f"rate {_fmt(hit_rate)}", _fmt(c.get("regret")), "-"])
    return rows


def _ceiling_text(ceiling: dict | None) -> str:
    if not ceiling:
        return "not measured (one seed)"
    one = (ceiling.get("single_seed") or {}).get("spearman")
    half = (ceiling.get("split_half") or {}).get("spearman")
    return f"Spearman {_fmt(one)} one seed vs another, {_fmt(half)} split-half"


def _diff(c: dict, kind: str, digits: int = 2) -> str:
    ci = c.get(f"{kind}_ci")
    value = c.get(f"{kind}_diff")
    return f"{_fmt(value, digits)} [{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]" if ci else _fmt(value, digits)


def _verdict(significant: bool | None) -> str:
    return {True: "significant", False: "within noise", None: "-"}[significant]


def _matrix(frame: pd.DataFrame, value: str, tasks: list[str]) -> np.ndarray:
    index = {t: i for i, t in enumerate(tasks)}
    out = np.full((len(tasks), len(tasks)), np.nan)
    for row in frame.itertuples():
        if row.target in index and row.partner in index:
            out[index[row.target], index[row.partner]] = getattr(row, value)
    return out


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def heatmap(matrix: np.ndarray, tasks: list[str], title: str) -> str:
    """A [target][partner] heatmap as base64 PNG; diverging colours centred on 0."""
    n = len(tasks)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    finite = matrix[np.isfinite(matrix)]
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    image = ax.imshow(matrix, cmap="RdBu", vmin=-bound or -1, vmax=bound or 1)
    ax.set_xticks(range(n), tasks, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), tasks, fontsize=8)
    ax.set_xlabel("partner")
    ax.set_ylabel("target")
    ax.set_title(title, fontsize=10)
    if n <= 12:
        # two significant digits of the largest value, the same decimals in every cell
        decimals = max(0, 1 - int(np.floor(np.log10(bound)))) if bound > 0 else 0
        for i in range(n):
            for j in range(n):
                if np.isfinite(matrix[i, j]):
                    ax.text(j, i, _fmt(float(matrix[i, j]), decimals), ha="center", va="center", fontsize=7 if n <= 6 else 6,
                            color="white" if abs(matrix[i, j]) > 0.6 * bound else "black")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _png(fig)


def cost_unit(costs: pd.DataFrame) -> str:
    """The unit the sweep's costs are compared in ("gpu_seconds" or "cpu_seconds")."""
    units = costs["fraction_unit"].dropna() if "fraction_unit" in costs else []
    return units.iloc[0] if len(units) else "cpu_seconds"


UNIT_NAMES = {"gpu_seconds": "GPU-seconds", "cpu_seconds": "CPU core-seconds"}


#: A cost below this many seconds (a table look-up such as td's) is drawn as free, at 0 in a strip
#: of its own beside the log axis, which has no zero.
FREE_BELOW = 0.01

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display pixels (y up)
#: Pixels from a point's centre to its label's nearest edge in the first ring of places: half a
#: marker of 40 pt^2 at 110 dpi, and air.
LABEL_NEAR = 9.0


def _overlap(a: Box, b: Box) -> float:
    """The area two boxes share (0 when they only touch or are apart)."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _candidates(w: float, h: float, near: float) -> list[tuple[float, float]]:
    """Lower-left corners of a w x h label relative to its point, nearest first: the eight places
    around the point `near` pixels away, then the same directions farther out (drawn with a leader
    line)."""
    out = []
    for reach in (near, 2.5 * near, 4 * near, 6 * near):
        out += [(reach, reach / 2), (reach, -h - reach / 2), (-w - reach, reach / 2), (-w - reach, -h - reach / 2),
                (reach, -h / 2), (-w - reach, -h / 2), (-w / 2, reach), (-w / 2, -h - reach)]
    return out


def _distance(point: tuple[float, float], box: Box) -> float:
    """From a point to the nearest edge of a box (0 inside it)."""
    x, y = point
    return math.hypot(max(box[0] - x, 0.0, x - box[2]), max(box[1] - y, 0.0, y - box[3]))


def place_labels(points: list[tuple[float, float]], sizes: list[tuple[float, float]], bounds: list[Box],
                 marker: float = 6.0, gap: float = LABEL_NEAR - 6.0) -> list[tuple[float, float]]:
    """Where to put each point's label so that no two labels overlap and no label covers a point.

    points: (x, y) of each point, sizes: (width, height) of its label, bounds: the box each label
    must stay inside (its axes), all in display pixels; marker: half the width of a point's marker.
    Returns each label's lower-left corner as an offset (dx, dy) from its point. Labels are placed
    one after another, each at its first candidate place (`_candidates`) that is inside its bounds
    and free; when none is, at the candidate with the least overlap."""
    markers = [(x - marker, y - marker, x + marker, y + marker) for x, y in points]
    placed: list[Box] = []
    offsets = []
    for i, ((x, y), (w, h)) in enumerate(zip(points, sizes)):
        best, best_cost = None, math.inf
        for dx, dy in _candidates(w, h, marker + gap):
            box = (x + dx, y + dy, x + dx + w, y + dy + h)
            b = bounds[i]
            outside = (max(0.0, b[0] - box[0]) + max(0.0, box[2] - b[2]) + max(0.0, b[1] - box[1]) + max(0.0, box[3] - b[3])) * h
            cost = outside + sum(_overlap(box, o) for o in placed) + sum(_overlap(box, m) for m in markers)
            if cost < best_cost:
                best, best_cost = (dx, dy), cost
            if cost == 0:
                break
        offsets.append(best)
        placed.append((x + best[0], y + best[1], x + best[0] + w, y + best[1] + h))
    return offsets


def cost_figure(costs: pd.DataFrame, evaluation: dict, ceiling: dict | None):
    """Each scorer's total cost (in the unit the fraction of the ground truth uses, log scale)
    against its Spearman with the ground truth. A scorer that costs less than FREE_BELOW seconds is
    drawn at 0 in a "free" strip left of an axis break; labels are placed so that none overlaps
    another or a point (`place_labels`); the legend sits outside the axes.

    Returns (figure, layout): layout holds the drawn points ({name: (x, y)} in display pixels),
    the labels' boxes, the scorers drawn as free, and the axes' and legend's boxes."""
    unit = cost_unit(costs)
    points = [(r.name, float(getattr(r, unit) or 0.0), evaluation[r.name]["spearman"]) for r in costs.itertuples()
              if r.name in evaluation and evaluation[r.name].get("spearman") is not None]
    free = [p for p in points if p[1] < FREE_BELOW]
    paid = [p for p in points if p[1] >= FREE_BELOW]
    truth = costs[costs.name == "ground_truth"]
    truth_cost = float(truth[unit].iloc[0]) if len(truth) and truth[unit].iloc[0] else None
    fig = plt.figure(figsize=(7.5, 4.2), dpi=110)
    ratio = 9  # the log axis is this many times as wide as the free strip
    if free:
        grid = fig.add_gridspec(1, 2, width_ratios=[1, ratio], wspace=0.06)
        strip = fig.add_subplot(grid[0])
        ax = fig.add_subplot(grid[1], sharey=strip)
    else:
        strip, ax = None, fig.add_subplot()
    colours = {name: f"C{i % 10}" for i, (name, _, _) in enumerate(points)}
    for name, x, y in paid:
        ax.scatter(x, y, s=40, color=colours[name], zorder=3)
    if strip is not None:
        for name, x, y in free:
            strip.scatter(0, y, s=40, color=colours[name], marker="D", zorder=3)
        strip.set_xlim(-1, 1)
        strip.set_xticks([0], ["0\n(free)"])
        strip.set_ylabel("Spearman with the ground truth")
        strip.spines["right"].set_visible(False)
        ax.spines["left"].set_visible(False)
        ax.tick_params(axis="y", left=False, labelleft=False)
        # the axis break: a slash at both ends of the gap, top and bottom, alike on the narrow and the wide axis
        for a, x, width in ((strip, 1.0, 0.015 * ratio), (ax, 0.0, 0.015)):
            for y in (0.0, 1.0):
                a.plot([x - width, x + width], [y - 0.02, y + 0.02], transform=a.transAxes, color="black", linewidth=0.8,
                       clip_on=False)
    else:
        ax.set_ylabel("Spearman with the ground truth")
    xs = [x for _, x, _ in paid] + ([truth_cost] if truth_cost else [])
    ax.set_xscale("log")
    if xs:
        ax.set_xlim(min(xs) / 3, max(xs) * 3)
    else:
        ax.set_xlim(FREE_BELOW, 1.0)
    if truth_cost:
        ax.axvline(truth_cost, color="grey", linestyle="--", label="ground truth's cost")
    for a in [a for a in (strip, ax) if a is not None]:
        a.axhline(0, color="grey", linewidth=0.5)
        if ceiling and (ceiling.get("single_seed") or {}).get("spearman") is not None:
            a.axhline(ceiling["single_seed"]["spearman"], color="black", linestyle=":",
                      label="noise ceiling, one seed vs another" if a is ax else None)
        if ceiling and (ceiling.get("split_half") or {}).get("spearman") is not None:
            a.axhline(ceiling["split_half"]["spearman"], color="black", linestyle="-.", label="noise ceiling, split-half" if a is ax else None)
    ys = [y for _, _, y in points] + [v for v in ((ceiling or {}).get("single_seed", {}).get("spearman"),
                                                  ((ceiling or {}).get("split_half") or {}).get("spearman")) if v is not None]
    low, high = min(ys + [0.0]), max(ys + [0.0])
    span = max(high - low, 0.2)
    ax.set_ylim(low - 0.12 * span, high + 0.12 * span)
    ax.set_xlabel(f"{UNIT_NAMES[unit]} (total, log scale)")
    legend = ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0) \
        if ax.get_legend_handles_labels()[0] else None

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    drawn = [(name, (strip if x < FREE_BELOW else ax), (0.0 if x < FREE_BELOW else x), y) for name, x, y in points]
    where = [tuple(a.transData.transform((x, y))) for _, a, x, y in drawn]
    sizes = []
    for name, *_ in drawn:
        probe = fig.text(0, 0, name, fontsize=8)
        extent = probe.get_window_extent(renderer)
        sizes.append((extent.width + 4, extent.height + 2))  # a little air around each
        probe.remove()
    right = ax.get_window_extent(renderer).x1  # a free point's label may reach into the log axis
    bounds = [(box.x0, box.y0, right, box.y1) for box in (a.get_window_extent(renderer) for _, a, _, _ in drawn)]
    offsets = place_labels(where, sizes, bounds)
    to_points = 72.0 / fig.dpi
    annotations = {}
    for (name, a, x, y), (px, py), (w, h), (dx, dy) in zip(drawn, where, sizes, offsets):
        far = _distance((px, py), (px + dx, py + dy, px + dx + w, py + dy + h)) > 2 * LABEL_NEAR  # a leader line says whose
        annotations[name] = a.annotate(
            name, (x, y), xytext=((dx + 2) * to_points, (dy + 1) * to_points), textcoords="offset points", fontsize=8,
            ha="left", va="bottom", annotation_clip=False, zorder=2, color=colours[name],  # leader lines pass under markers
            arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 4} if far else None)
    fig.canvas.draw()  # the boxes as drawn, not as planned
    layout = {"points": {name: xy for (name, *_), xy in zip(drawn, where)},
              # the text alone (an annotation's own extent takes in its leader line)
              "labels": {name: tuple(Text.get_window_extent(t, renderer).extents) for name, t in annotations.items()},
              "free": [n for n, _, _ in free], "axes": tuple(ax.get_window_extent(renderer).extents),
              "legend": tuple(legend.get_window_extent(renderer).extents) if legend else None}
    return fig, layout


def cost_plot(costs: pd.DataFrame, evaluation: dict, ceiling: dict | None) -> str:
    """`cost_figure` as base64 PNG."""
    return _png(cost_figure(costs, evaluation, ceiling)[0])


def cost_caption(costs: pd.DataFrame, evaluation: dict) -> str:
    """What the cost plot shows, naming the scorers drawn as free with their measured cost."""
    unit = cost_unit(costs)
    free = [(r.name, float(getattr(r, unit) or 0.0)) for r in costs.itertuples()
            if r.name in evaluation and evaluation[r.name].get("spearman") is not None and float(getattr(r, unit) or 0.0) < FREE_BELOW]
    text = (f"Each scorer's total cost in {UNIT_NAMES[unit]} (log scale) against its Spearman correlation with the ground "
            "truth; dashed: the ground truth's own cost; dotted and dash-dotted: its noise ceilings.")
    if free:
        measured = ", ".join(f"{name} {value:.2g}" for name, value in free)
        text += (f" Costs under {FREE_BELOW} s ({measured} {UNIT_NAMES[unit]}) are drawn at 0 in the 'free' strip left of the "
                 "axis break: a log scale has no zero, and no made-up small value stands in for it.")
    return text


def grouping_plot(rows: list[dict]) -> str:
    """Realised total test loss of each source's grouping, one panel per number of groups; STL and
    all-in-one as reference lines."""
    baselines = {r["source"]: r["test_total"] for r in rows if r["source"] in ("stl", "all")}
    ks = sorted({r["max_groups"] for r in rows if r["source"] not in ("stl", "all")})
    fig, axes = plt.subplots(1, len(ks), figsize=(5 * len(ks), 0.6 + 0.32 * max(len(rows) // max(len(ks), 1), 3)), squeeze=False)
    for ax, k in zip(axes[0], ks):
        chosen = [r for r in rows if r["max_groups"] == k and r["source"] not in ("stl", "all") and r["test_total"] is not None]
        chosen.sort(key=lambda r: r["test_total"])
        colours = ["#2a7" if r["source"] == "best" else "#888" if r["source"] in ("ground_truth", "hoa") else "#47a" for r in chosen]
        ax.barh([r["source"] for r in chosen], [r["test_total"] for r in chosen], color=colours)
        ax.invert_yaxis()
        for name, style in (("stl", "--"), ("all", ":")):
            if baselines.get(name) is not None:
                ax.axvline(baselines[name], color="black", linestyle=style, label={"stl": "every task alone", "all": "one network for all"}[name])
        values = [r["test_total"] for r in chosen] + [v for v in baselines.values() if v is not None]
        if values:
            span = max(values) - min(values)
            ax.set_xlim(min(values) - 0.3 * span - 1e-9, max(values) + 0.1 * span + 1e-9)
        ax.set_title(f"at most {k} group(s)", fontsize=10)
        ax.set_xlabel("total test loss (lower is better)")
        # below the axis, where it covers no bar
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2, frameon=False)
    return _png(fig)


def _md_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; a cell given as a list of lines is joined with '; '."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("; ".join(c) if isinstance(c, list) else c for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _breakable(text: str) -> str:
    """Escaped text that may wrap after an underscore (task names such as segment_semantic hold
    no space), so that a narrow column wraps a name instead of widening the table."""
    return html.escape(text).replace("_", "_<wbr>")


def _html_table(header: list[str], rows: list[list]) -> str:
    """An HTML table in a container as wide as the page; a cell given as a list of lines shows one
    per line. The first column (a row's name: a task, a scorer) is never broken inside a name."""
    def cell(c, escape) -> str:
        return "<br>".join(map(escape, c)) if isinstance(c, list) else escape(c)

    head = "".join(f"<th>{_breakable(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c, _breakable if i else html.escape)}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<div class='table'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _target_name(target: str, learned: dict) -> str:
    """A target as the tables name it: marked when its STL networks did not beat chance."""
    return f"{target} (did not learn)" if (learned.get(target) or {}).get("learned") is False else target


def _learning_section(learned: dict) -> tuple[str, list[str], list[list[str]], str]:
    from raytaskaff.evaluation.learning import LEARNED_BELOW

    verdict = {True: "learned", False: "did not learn", None: "not measured"}
    rows = [[t, _fmt(c["stl_loss"], 4), _fmt(c["chance_loss"], 4), _fmt(c["ratio"]), verdict[c["learned"]]]
            for t, c in learned.items()]
    note = (f"Each target's single-task test loss (mean over seeds) against its family's trivial predictor, fitted on the "
            f"train split: the training mean for regression, the class prior for classes, each entry's rate for binary "
            f"labels. A target whose ratio is not below {LEARNED_BELOW} did not learn: its gains compare networks that "
            "learned nothing and judge the scorers against noise.")
    return ("Did the single-task networks learn?", ["target", "STL test loss", "chance loss", "ratio", "verdict"], rows, note)


def _orientation_section(evaluation: dict) -> tuple[str, list[str], list[list[str]], str] | None:
    """Each asymmetric scorer read as given and transposed; None when no scorer is asymmetric."""
    verdict = {True: "transposed agrees better", False: "as given", None: "not tested (no bootstrap)"}
    rows = []
    for name, e in evaluation.items():
        found = e.get("orientation")
        if found:
            ci = found.get("difference_ci")
            diff = (found["transposed_spearman"] - found["spearman"]
                    if found["spearman"] is not None and found["transposed_spearman"] is not None else None)
            rows.append([name, _fmt(found["spearman"]), _fmt(found["transposed_spearman"]),
                         _fmt(diff) + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""), verdict[found["transposed_better"]]])
    if not rows:
        return None
    note = ("Spearman with the ground truth of each asymmetric scorer as given, value(target, partner), and transposed, "
            "value(partner, target), with the 95% bootstrap interval of the difference. A scorer whose transpose agrees "
            "significantly better holds the opposite view of which task helps which: a finding about the scorer (the "
            "orientation from the probes to these tables is tested end to end), not a swap to be undone.")
    return ("Which way round?", ["scorer", "Spearman as given", "Spearman transposed", "difference [95% CI]", "verdict"], rows, note)


def _stability_section(stability: dict, ceiling: dict | None) -> tuple[str, list[str], list[list[str]], str]:
    """One line per table: the mean, lowest and highest Spearman between two of its seeds (every two
    seeds are in evaluation.json and the per-seed CSVs, not in the report)."""
    rows = []
    for name, st in stability.items():
        pairs = [(p["spearman"], p["seeds"]) for p in st.get("pairwise", []) if p.get("spearman") is not None]
        low = min(pairs, key=lambda p: p[0]) if pairs else None
        high = max(pairs, key=lambda p: p[0]) if pairs else None
        rows.append([name, str(st.get("seeds") or "seed-free"), _fmt(st.get("mean_spearman")),
                     f"{_fmt(low[0])} (seeds {low[1][0]}, {low[1][1]})" if low else "-",
                     f"{_fmt(high[0])} (seeds {high[1][0]}, {high[1][1]})" if high else "-"])
    note = ("Spearman correlation of a table from one seed with the same table from another, over every two seeds: their mean, "
            "the lowest and the highest (every two seeds in results/evaluation.json, the tables in "
            "results/affinity_per_seed.csv and gains_per_seed.csv). The ground truth's row is its single-seed noise ceiling "
            f"({_ceiling_text(ceiling)}); a seed-free scorer does not vary.")
    return ("Seed-to-seed stability", ["table", "seeds", "mean Spearman between seeds", "lowest", "highest"], rows, note)


def _cost_section(costs: pd.DataFrame, runs: pd.DataFrame, stages: dict) -> tuple[str, list[str], list[list[str]], str]:
    """The cost table. Its wall-clock seconds are sums over runs that ran side by side, so they can
    exceed the wall-clock of the stage that ran them: the header and the note say so."""
    unit = cost_unit(costs)
    rows = [[r.name, _fmt(r.wall_seconds, 1), _fmt(r.cpu_seconds, 1), _fmt(r.gpu_seconds, 1), _fmt(getattr(r, f"marginal_{unit}"), 1),
             _fmt(r.fraction_of_ground_truth, 3)] for r in costs.itertuples()]
    note = ("Wall s adds up the wall-clock of every run and scorer actor a cost covers; runs train side by side, so a sum "
            "can exceed the wall-clock of the stage they ran in.")
    truth = costs[costs.name == "ground_truth"]
    if len(truth) and "training" in stages:
        trained = int((runs.kind.isin(["stl", "pair"]) & (runs.status == "done")).sum())
        note += (f" The ground truth's {_fmt(float(truth.wall_seconds.iloc[0]), 1)} s is the sum over its {trained} STL and pair "
                 f"runs; the training stage, which trained them beside the other runs, took {_fmt(float(stages['training']), 1)} s.")
    note += (" CPU core-seconds are process CPU time; GPU-seconds are wall time on a GPU times the fraction of it a run or "
             "actor held. Both sum every attempt of a run (work after its last checkpoint, lost to a crash, is not "
             f"counted). The fraction of the ground truth's cost compares {UNIT_NAMES[unit]}"
             f"{', as its runs used a GPU' if unit == 'gpu_seconds' else ', as its runs used no GPU'}. "
             "Marginal: beyond the STL and pair runs the ground truth trains anyway.")
    header = ["", "wall s, summed over runs", "CPU core-s", "GPU-s", f"marginal {UNIT_NAMES[unit]}", "fraction of ground truth"]
    return ("Cost", header, rows, note)


def build_report(out: str | Path) -> Path:
    """Write OUT/report/report.md and OUT/report/index.html from OUT/results; return the HTML path."""
    out = Path(out)
    results = out / "results"
    summary = json.loads((results / "evaluation.json").read_text())
    truth = pd.read_csv(results / "ground_truth.csv")
    affinity = pd.read_csv(results / "affinity.csv")
    costs = pd.read_csv(results / "costs.csv")
    runs = pd.read_parquet(results / "runs.parquet")
    tasks, evaluation, ceiling = summary["tasks"], summary["scorers"], summary.get("noise_ceiling")
    conclusion = summary.get("headline") or headline(evaluation, summary.get("comparisons") or [], ceiling)
    warnings = summary.get("warnings") or []

    sections: list[tuple[str, list[str], list[list[str]], str]] = []  # (title, header, rows, note)
    if not ceiling:
        note = (f"Not measured: it needs at least two seeds, the sweep has {len(summary['seeds'])}. Without it, no scorer's "
                "agreement with the ground truth can be put in proportion.")
        sections.append(("Noise ceiling of the ground truth", [], [], note))
    else:
        rows = [[level, _fmt(ceiling["single_seed"].get(k)), _fmt((ceiling.get("split_half") or {}).get(k))]
                for level, k in (("Pearson", "pearson"), ("Spearman", "spearman"), ("Kendall", "kendall"),
                                 ("partner ranking (Kendall)", "ranking_kendall"))]
        rows.append(["best-partner hit rate", _fmt(ceiling["single_seed"].get("hit_rate")), "-"])
        rows.append(["best-partner regret (gain points)", _fmt(ceiling["single_seed"].get("regret")),
                     _fmt((ceiling.get("split_half") or {}).get("regret"))])
        sections.append(("Noise ceiling of the ground truth", ["level", "one seed vs another", "split-half (seed means)"], rows,
                         f"{ceiling['seeds']} seeds. No scorer can be judged better than the ground truth agrees with itself."))
    learned = summary.get("learning") or {}
    if learned:
        sections.append(_learning_section(learned))
    rows = [[name, _ci(e, "pearson"), _ci(e, "spearman"), _ci(e, "kendall"), _fmt(e.get("ranking_kendall")),
             _hits(e), _fmt(e.get("regret")), _coverage(e)] for name, e in evaluation.items()]
    rows += _ceiling_rows(ceiling)
    sections.append(("Scorers against the ground truth", ["scorer", "Pearson [95% CI]", "Spearman [95% CI]", "Kendall [95% CI]",
                                                          "partner ranking", "best partner hits", "regret (gain points)",
                                                          "pairs / targets scored"], rows,
                     "Correlations over all ordered pairs; intervals from a bootstrap over pairs. The last rows are the ground "
                     "truth's noise ceiling on the same levels: no scorer can be judged better than it. Hits count decidable "
                     "targets only (a target whose known partners all tie is undecidable)."))
    turned = _orientation_section(evaluation)
    if turned:
        sections.append(turned)
    comparisons = summary.get("comparisons") or []
    if comparisons:
        rows = [[c["a"], c["b"], _diff(c, "spearman"), _verdict(c.get("spearman_significant")), _diff(c, "hits", 0),
                 _verdict(c.get("hits_significant"))] for c in comparisons]
        seeds = max((c.get("seeds", 1) for c in comparisons), default=1)
        note = (f"Difference a - b of the Spearman correlation with the ground truth, and of best-partner hits, with 95% "
                f"intervals from a paired bootstrap ({max(c.get('replicates', 0) for c in comparisons)} replicates) over "
                f"target-partner pairs (targets for hits) and over the {seeds} seed(s): each replicate averages the ground "
                "truth and every per-seed scorer over the same drawn seeds. Significant: the interval excludes 0. "
                f"For scale, the ground truth's noise ceiling: {_ceiling_text(ceiling)}.")
        sections.append(("Scorer against scorer", ["a", "b", "Spearman a - b [95% CI]", "Spearman", "hits a - b [95% CI]", "hits"],
                         rows, note))
    stability = summary.get("stability") or {}
    if stability:
        sections.append(_stability_section(stability, ceiling))
    truth_best = {}
    for target in tasks:
        known = truth[truth.target == target]
        if len(known):
            top = known.gain.max()
            tied_all = (known.gain == top).all()  # every partner is a best one: undecidable
            truth_best[target] = (", ".join(sorted(known[known.gain == top].partner)) + (" (undecidable)" if tied_all else ""), top)
    header = ["scorer (best-partner hits)"] + [_target_name(t, learned) for t in tasks]
    rows = [["ground truth: true best partner"] + [f"{best} ({_fmt(gain, 1)})" for best, gain in
                                                   (truth_best.get(t, ("-", None)) for t in tasks)]]
    for name, e in evaluation.items():
        row = [f"{name} ({_hits(e)})"]
        for target in tasks:
            b = e["best_partner"].get(target, {})
            mark = "undecidable" if b.get("undecidable") else {True: "hit", False: "miss", None: "-"}[b.get("hit")]
            row.append(f"{', '.join(b.get('chosen', [])) or '-'} ({_fmt(b.get('chosen_gain'), 1)}, {mark})")
        rows.append(row)
    note = ("A column per target; the first row is its true best partner with the gain % it brings, each other row a "
            "scorer's choice with the gain % it realises (mean over ties) and whether it is a true best one.")
    sections.append(("Best partner per target", header, rows, note))
    reference = summary.get("reference") or []
    if reference:
        from raytaskaff.evaluation.reference import SOURCE

        rows = [[r["target"], f"{', '.join(r['best']) or '-'} ({_fmt(r['best_gain'], 1)})", r["reference_partner"],
                 "not available" if r.get("reference_gain") is None else _fmt(r["reference_gain"], 1),
                 _fmt(r.get("gain_of_reference_partner"), 1), {True: "agree", False: "disagree", None: "cannot say"}[r["agree"]]]
                for r in reference]
        agreed = sum(r["agree"] is True for r in reference)
        decided = sum(r["agree"] is not None for r in reference)
        sections.append(("Against the reference study", ["target", "best partner here (gain %)", "reference best partner",
                                                         "reference gain %", "gain % here of the reference partner", "partners"], rows,
                         f"Best partners of the reference study ({SOURCE}) on Taskonomy beside this sweep's ground truth: "
                         f"{agreed} of {decided} agree. The study's relative gains are not available here and are not guessed."))
    rows = []
    single_ranking = ((ceiling or {}).get("single_seed") or {}).get("ranking_per_target") or {}
    for target in tasks:
        true_order = truth[truth.target == target].sort_values("gain", ascending=False).partner.tolist()
        row = [_target_name(target, learned), " > ".join(true_order) or "-"]
        row += [_fmt((e.get("ranking_per_target") or {}).get(target, {}).get("kendall")) for e in evaluation.values()]
        row.append(_fmt(single_ranking.get(target)))
        rows.append(row)
    sections.append(("Partner ranking per target", ["target", "true order of partners (by gain)"] + list(evaluation)
                     + ["ceiling (one seed)"], rows,
                     "Kendall tau-b between each scorer's ordering of a target's partners and the true one; the last column, "
                     "the same between one seed's ground truth and another's (mean over seed pairs)."))
    unit = cost_unit(costs)
    sections.append(_cost_section(costs, runs, summary.get("stages") or {}))
    grouping = summary.get("grouping")
    if grouping:
        baselines = [r for r in grouping["rows"] if r["source"] in ("stl", "all")]
        chosen = sorted((r for r in grouping["rows"] if r["source"] not in ("stl", "all")),
                        key=lambda r: (r["max_groups"], math.inf if r["test_total"] is None else r["test_total"]))
        rows = [[str(r["max_groups"]) if r["source"] not in ("stl", "all") else "-", r["source"],
                 ["every task alone"] if r["source"] == "stl" else
                 [f"({i}) " + g.replace("+", " + ") for i, g in enumerate(r["groups"].split(" | "), start=1)],
                 str(r["networks"]), f"{_fmt(r['test_total'], 3)}" + (f" ± {_fmt(r['test_total_sd'], 3)}" if r.get("test_total_sd") else ""),
                 _fmt(None if r["relative_gain"] is None else 100 * r["relative_gain"], 1), _fmt(r.get("score_seconds"), 1)]
                for r in baselines + chosen]
        rows += [["-", name, "not grouped: " + message, "-", "-", "-", "-"] for name, message in grouping.get("errors", {}).items()]
        note = (f"Each scorer's TAG grouping (and the ground truth's, HOA's from the pairs, and the best selection over every "
                f"trained network on validation), trained on seed(s) {', '.join(map(str, grouping['seeds']))}. Each task uses its "
                "chosen network that is best on validation; total = sum of test losses (mean over seeds ± sd); gain = mean over "
                "tasks of the relative loss reduction against training every task alone. Sorted by total within each number of groups.")
        header = ["groups at most", "source", "groups", "networks", "total test loss", "gain over STL (%)", f"affinity {UNIT_NAMES[unit]}"]
        sections.append(("Groupings, trained", header, rows, note))
    bad = runs[runs.status != "done"]
    rows = [[r.kind, r.tasks, r.inject or "-", str(r.seed), str(r.error)] for r in bad.itertuples()]
    rows += [["scorer", name, "-", "-", message] for name, message in summary.get("scorer_errors", {}).items()]
    if rows:
        sections.append(("Failed or missing", ["kind", "tasks", "injected", "seed", "error"], rows,
                         f"{len(runs)} runs planned; {int((runs.status == 'done').sum())} done."))
    else:
        sections.append(("Failed or missing", [], [], f"None: all {len(runs)} planned runs are done and every scorer ran."))
    stages = summary.get("stages", {})
    sections.append(("Stages", ["stage", "seconds"], [[k, _fmt(float(v), 1)] for k, v in stages.items()],
                     "Wall-clock of each stage of the sweep, one after another; total: the whole sweep."))

    figures = [("ground truth: gain % of target from partner", heatmap(_matrix(truth, "gain", tasks), tasks, "ground truth gain (%)"))]
    for name in affinity.scorer.unique():
        figures.append((name, heatmap(_matrix(affinity[affinity.scorer == name], "value", tasks), tasks, name)))
    plot = cost_plot(costs, evaluation, ceiling)
    group_plot = grouping_plot(grouping["rows"]) if grouping and any(r["test_total"] is not None for r in grouping["rows"]) else None
    config_text = yaml.safe_dump(summary.get("config", {}), sort_keys=False)
    versions = ", ".join(f"{k} {v}" for k, v in summary.get("versions", {}).items())

    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    md = [f"# raytaskaff sweep `{summary['sweep']}`", "", f"**{conclusion}**", "",
          f"Tasks: {', '.join(tasks)}. Seeds: {', '.join(map(str, summary['seeds']))}.", ""]
    md += [f"> warning: {w}" for w in warnings] + ([""] if warnings else [])
    for title, header, rows, note in sections:
        md += [f"## {title}", ""] + ([note, ""] if note else []) + ([_md_table(header, rows), ""] if header else [])
    md += ["## Heatmaps and cost plot", "", "In index.html (heatmaps: rows are targets, columns partners). The cost plot: "
           + cost_caption(costs, evaluation), "",
           "## Config", "", "```yaml", config_text.rstrip(), "```", "", f"Versions: {versions}", ""]
    write_text(report / "report.md", "\n".join(md))

    css = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
           # a table fits the page: cells wrap (after underscores too, see _breakable); its container
           # scrolls only if a table has more columns than the page can hold at all
           "div.table{max-width:100%;overflow-x:auto;margin:0.5em 0 1.5em}"
           "table{border-collapse:collapse;font-size:0.85em}"
           "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;overflow-wrap:break-word}"
           "th{background:#f2f2f2}.figs{display:flex;flex-wrap:wrap;gap:12px}.figs figure{margin:0}img{max-width:100%;height:auto}"
           "pre{background:#f6f6f6;padding:1em;overflow:auto}p.note{color:#555;font-size:0.9em}p.warn{color:#a40}")
    body = [f"<h1>raytaskaff sweep <code>{html.escape(summary['sweep'])}</code></h1>",
            f"<p><strong>{html.escape(conclusion)}</strong></p>",
            f"<p>Tasks: {html.escape(', '.join(tasks))}. Seeds: {html.escape(', '.join(map(str, summary['seeds'])))}.</p>"]
    body += [f"<p class='warn'>warning: {html.escape(w)}</p>" for w in warnings]
    for title, header, rows, note in sections:
        body += [f"<h2>{html.escape(title)}</h2>", f"<p class='note'>{html.escape(note)}</p>" if note else "",
                 _html_table(header, rows) if header else ""]
    if group_plot:
        body += ["<h2>Groupings against the baselines</h2>", f"<img alt='grouping plot' src='data:image/png;base64,{group_plot}'>"]
    body += ["<h2>Cost against accuracy</h2>", f"<p class='note'>{html.escape(cost_caption(costs, evaluation))}</p>",
             f"<img alt='cost plot' src='data:image/png;base64,{plot}'>",
             "<h2>Heatmaps ([target][partner])</h2>", "<div class='figs'>"]
    body += [f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{p}'></figure>" for t, p in figures]
    body += ["</div>", "<h2>Config</h2>", f"<pre>{html.escape(config_text)}</pre>", f"<p class='note'>Versions: {html.escape(versions)}</p>"]
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>raytaskaff {html.escape(summary['sweep'])}</title><style>{css}</style></head><body>{''.join(body)}</body></html>"
    write_text(report / "index.html", page)
    return report / "index.html"
