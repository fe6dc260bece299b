"""The report's figures for index.html: heatmaps of [target][partner] tables (inline SVG, in one
clustered order, on a colour scale robust to outliers), and as base64 PNG the cost of each scorer
against its agreement with the ground truth and the trained groupings."""

from __future__ import annotations

import base64
import io
import math
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import Normalize, TwoSlopeNorm  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from raytaskaff.report.document import fmt  # noqa: E402


def matrix(frame: pd.DataFrame, value: str, tasks: list[str]) -> np.ndarray:
    """A long table's column `value` as a [target][partner] array over `tasks` (NaN where absent)."""
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


#: From this many tasks on, heatmaps are drawn in the order `cluster_order` finds; below it in the
#: config's (a reader finds five tasks at a glance, and a clustering of so few is mostly noise).
CLUSTER_FROM = 8
#: Tukey's far-out fences: a value more than this many interquartile ranges beyond the quartiles
#: is outside the colour scale (drawn in the end colour and marked).
FENCE = 3.0
#: On a scale centred at 0, the shorter side reaches at least this fraction of the longer, so that
#: a few values just across 0 do not take the darkest colour.
SHORT_SIDE = 0.1
#: Heatmap geometry in inches: a task's cell is SPAN / tasks, at most CELL_MAX and at least
#: CELL_MIN, the height of a label at LABEL_PT points and its spacing (a map of 10 or of 20 tasks
#: is about 500 px wide, two to a row; one of 40, 830 px). Cells of at least NUMBERS_FROM hold
#: their value.
CELL_MAX, CELL_MIN, SPAN, NUMBERS_FROM = 0.5, 0.15, 3.0, 0.3
LABEL_PT = 8.0


class Scale(NamedTuple):
    """A heatmap's colour scale: the values from `low` to `high` take the colours; `centred`: a
    diverging map with white at 0 (each side spans its own range), else a sequential one;
    `below`/`above`: how many finite values lie outside it (drawn in the end colour and marked)."""
    low: float
    high: float
    centred: bool
    below: int
    above: int


def colour_scale(values: np.ndarray, centred: bool | None = None) -> Scale:
    """The colour scale of a table's values (any shape; NaN ignored): the range of the values
    inside Tukey's far-out fences (quartiles -/+ FENCE x IQR), so that a few outliers (a -170 %
    gain of a target that learned nothing) do not wash out every other cell. centred: a diverging
    scale at 0 (None: when the values straddle 0)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return Scale(-1.0, 1.0, True, 0, 0)
    q1, q3 = np.percentile(finite, [25, 75])
    spread = q3 - q1
    inside = finite[(finite >= q1 - FENCE * spread) & (finite <= q3 + FENCE * spread)] if spread > 0 else finite
    low, high = float(inside.min()), float(inside.max())
    centred = bool(low < 0 < high) if centred is None else centred
    if centred:
        side = max(-low, high) or 1.0
        low, high = min(low, -SHORT_SIDE * side), max(high, SHORT_SIDE * side)
    elif low == high:
        low, high = low - 0.5, high + 0.5
    return Scale(low, high, centred, int((finite < low).sum()), int((finite > high).sum()))


def _decimals(bound: float) -> int:
    """Decimals that give `bound` two significant digits."""
    return max(0, 1 - int(np.floor(np.log10(bound)))) if bound > 0 else 0


def scale_caption(scale: Scale) -> str:
    """What a heatmap's colours cover (two significant digits) and which cells are outside, in words."""
    digits = _decimals(max(abs(scale.low), abs(scale.high)))
    span = f"{fmt(scale.low, digits)} to {fmt(scale.high, digits)}"
    text = f"colours span {span}" + (", white at 0" if scale.centred else "")
    outside = [f"{n} cell(s) {where} marked {mark}" for n, where, mark in
               ((scale.below, "below", "▼"), (scale.above, "above", "▲")) if n]
    return text + ("; clipped beyond Tukey's far-out fences: " + ", ".join(outside) if outside else "; nothing clipped")


def cluster_order(matrix: np.ndarray) -> list[int]:
    """An order of the tasks of a [target][partner] matrix (n x n, NaN where unknown) that puts
    tasks with alike rows and columns side by side: average-linkage hierarchical clustering
    (scipy) with optimal leaf ordering, of each task's row (what it gains as target) and column
    (what it gives as partner). Values are first clipped to `colour_scale`'s range, so that an
    outlier does not decide the order; unknown cells count as the median."""
    from scipy.cluster.hierarchy import leaves_list, linkage

    n = len(matrix)
    if n < 3 or not np.isfinite(matrix).any():
        return list(range(n))
    scale = colour_scale(matrix)
    clipped = np.clip(matrix, scale.low, scale.high)
    clipped = np.where(np.isfinite(clipped), clipped, float(np.nanmedian(clipped)))
    features = np.hstack([clipped, clipped.T])
    return [int(i) for i in leaves_list(linkage(features, method="average", metric="euclidean", optimal_ordering=True))]


def _svg(fig, salt: str) -> str:
    """The figure as SVG markup to inline in a page: text kept as text (it scales, it can be
    found and measured), no XML prolog, ids salted per figure so that two figures in one page
    share none."""
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):].strip()


def heatmap(matrix: np.ndarray, tasks: list[str], title: str, order: list[int] | None = None,
            centred: bool | None = None, muted: frozenset[str] = frozenset()) -> str:
    """`heatmap_figure` as SVG markup."""
    return _svg(heatmap_figure(matrix, tasks, title, order, centred, muted), title)


def heatmap_figure(matrix: np.ndarray, tasks: list[str], title: str, order: list[int] | None = None,
                   centred: bool | None = None, muted: frozenset[str] = frozenset()):
    """A [target][partner] heatmap (a matplotlib figure); the targets in `muted` (those that did
    not learn: their rows are noise) are labelled in grey italics.

    order: the rows' and columns' order (indices into tasks; one order for every heatmap of a
    report keeps each task in one place). Colours: `colour_scale` (diverging at 0 when `centred`,
    or when the values straddle 0); a cell outside the scale takes the end colour and a ▲ (above)
    or ▼ (below), and the colour bar grows a pointed end on that side. The figure grows with the
    task count so that labels stay at LABEL_PT points (a cell is never lower than a label); up to
    about 45 tasks it fits a page 1,100 px wide."""
    n = len(tasks)
    order = list(range(n)) if order is None else list(order)
    shown = matrix[np.ix_(order, order)] if n else matrix
    names = [tasks[i] for i in order]
    scale = colour_scale(shown, centred)
    cell = min(CELL_MAX, max(CELL_MIN, SPAN / max(n, 1)))
    side = cell * max(n, 1)
    # axes and colour bar placed in inches; the labels around them are taken in by the tight crop
    fig = plt.figure(figsize=(side + 0.8, side + 0.4))
    ax = fig.add_axes((0.0, 0.0, side / (side + 0.8), side / (side + 0.4)))
    bar_axes = fig.add_axes(((side + 0.25) / (side + 0.8), 0.1 * side / (side + 0.4), 0.15 / (side + 0.8), 0.8 * side / (side + 0.4)))
    if scale.centred:
        norm, cmap = TwoSlopeNorm(0.0, scale.low, scale.high), "RdBu"
    else:
        norm, cmap = Normalize(scale.low, scale.high), "Blues"
    # unknown cells (the diagonal) grey, apart from the white of 0; 64 levels: more than an eye
    # tells apart, and a colour bar of 64 vector steps
    image = ax.imshow(shown, cmap=plt.get_cmap(cmap, 64).with_extremes(bad="#d9d9d9"), norm=norm, interpolation="none")
    ax.set_xticks(range(n), names, rotation=45 if n <= 12 else 90, ha="right" if n <= 12 else "center", fontsize=LABEL_PT)
    ax.set_yticks(range(n), names, fontsize=LABEL_PT)
    for label in ax.get_yticklabels():
        if label.get_text() in muted:
            label.set(color="#888888", fontstyle="italic")
    ax.set_xlabel("partner")
    ax.set_ylabel("target")
    ax.set_title(title, fontsize=10)
    annotated = cell >= NUMBERS_FROM
    if annotated:
        bound = float(np.nanmax(np.abs(shown))) if np.isfinite(shown).any() else 0.0
        decimals = _decimals(bound)  # two significant digits of the largest value, the same decimals in every cell
        for i in range(n):
            for j in range(n):
                if np.isfinite(shown[i, j]):
                    dark = abs(norm(shown[i, j]) - 0.5) > 0.3 if scale.centred else norm(shown[i, j]) > 0.6
                    ax.text(j, i, fmt(float(shown[i, j]), decimals), ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")
    for marker, outside in (("^", shown > scale.high), ("v", shown < scale.low)):
        rows, columns = np.nonzero(outside)
        if len(rows):
            # in the cell's corner where a number is printed, else in its middle
            shift = -0.3 if annotated else 0.0
            ax.scatter(columns + shift, rows + shift, marker=marker, s=(cell * 72 * 0.45) ** 2 if not annotated else 16,
                       color="white", edgecolors="black", linewidths=0.4, zorder=3)
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}
    bar = fig.colorbar(image, cax=bar_axes, extend=extend[scale.below > 0, scale.above > 0])
    bar.solids.set(rasterized=False, edgecolor="face")  # vector like the rest (one embedded image per map: the cells), seamless
    bar.ax.tick_params(labelsize=LABEL_PT)
    if scale.below or scale.above:
        bar.set_label(f"▼ {scale.below} below, ▲ {scale.above} above the scale", fontsize=LABEL_PT)
    return fig


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


def _free_strip(strip, ax, ratio: int) -> None:
    """Style the "free" strip left of the log axis and draw the axis break between them: a slash
    at both ends of the gap, top and bottom, alike on the narrow and the wide axis."""
    strip.set_xlim(-1, 1)
    strip.set_xticks([0], ["0\n(free)"])
    strip.set_ylabel("Spearman with the ground truth")
    strip.spines["right"].set_visible(False)
    ax.spines["left"].set_visible(False)
    ax.tick_params(axis="y", left=False, labelleft=False)
    for a, x, width in ((strip, 1.0, 0.015 * ratio), (ax, 0.0, 0.015)):
        for y in (0.0, 1.0):
            a.plot([x - width, x + width], [y - 0.02, y + 0.02], transform=a.transAxes, color="black", linewidth=0.8,
                   clip_on=False)


def _cost_axes(fig, points: list, colours: dict):
    """The axes (the free strip, None without free scorers, and the log axis) with the points drawn."""
    free = [p for p in points if p[1] < FREE_BELOW]
    ratio = 9  # the log axis is this many times as wide as the free strip
    if free:
        grid = fig.add_gridspec(1, 2, width_ratios=[1, ratio], wspace=0.06)
        strip = fig.add_subplot(grid[0])
        ax = fig.add_subplot(grid[1], sharey=strip)
    else:
        strip, ax = None, fig.add_subplot()
    for name, x, y in points:
        if x >= FREE_BELOW:
            ax.scatter(x, y, s=40, color=colours[name], zorder=3)
    if strip is not None:
        for name, x, y in free:
            strip.scatter(0, y, s=40, color=colours[name], marker="D", zorder=3)
        _free_strip(strip, ax, ratio)
    else:
        ax.set_ylabel("Spearman with the ground truth")
    return strip, ax


def _cost_scales(strip, ax, points: list, truth_cost: float | None, ceiling: dict | None, unit: str):
    """The log x axis, the ground truth's cost, the noise ceilings, the y range and the legend
    (returned; None when nothing is in it)."""
    xs = [x for _, x, _ in points if x >= FREE_BELOW] + ([truth_cost] if truth_cost else [])
    ax.set_xscale("log")
    if xs:
        ax.set_xlim(min(xs) / 3, max(xs) * 3)
    else:
        ax.set_xlim(FREE_BELOW, 1.0)
    if truth_cost:
        ax.axvline(truth_cost, color="grey", linestyle="--", label="ground truth's cost")
    one = ((ceiling or {}).get("single_seed") or {}).get("spearman")
    half = ((ceiling or {}).get("split_half") or {}).get("spearman")
    for a in [a for a in (strip, ax) if a is not None]:
        a.axhline(0, color="grey", linewidth=0.5)
        if one is not None:
            a.axhline(one, color="black", linestyle=":", label="noise ceiling, one seed vs another" if a is ax else None)
        if half is not None:
            a.axhline(half, color="black", linestyle="-.", label="noise ceiling, split-half" if a is ax else None)
    ys = [y for _, _, y in points] + [v for v in (one, half) if v is not None]
    low, high = min(ys + [0.0]), max(ys + [0.0])
    span = max(high - low, 0.2)
    ax.set_ylim(low - 0.12 * span, high + 0.12 * span)
    ax.set_xlabel(f"{UNIT_NAMES[unit]} (total, log scale)")
    return ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0) \
        if ax.get_legend_handles_labels()[0] else None


def _label_points(fig, strip, ax, points: list, colours: dict) -> tuple[dict, dict]:
    """Name every point where its label overlaps no other label and no point (`place_labels`), with
    a leader line when it had to go farther out. Returns the points in display pixels and the
    labels ({name: annotation})."""
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
    return {name: xy for (name, *_), xy in zip(drawn, where)}, annotations


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
    truth = costs[costs.name == "ground_truth"]
    truth_cost = float(truth[unit].iloc[0]) if len(truth) and truth[unit].iloc[0] else None
    fig = plt.figure(figsize=(7.5, 4.2), dpi=110)
    colours = {name: f"C{i % 10}" for i, (name, _, _) in enumerate(points)}
    strip, ax = _cost_axes(fig, points, colours)
    legend = _cost_scales(strip, ax, points, truth_cost, ceiling, unit)
    where, annotations = _label_points(fig, strip, ax, points, colours)
    fig.canvas.draw()  # the boxes as drawn, not as planned
    renderer = fig.canvas.get_renderer()
    layout = {"points": where,
              # the text alone (an annotation's own extent takes in its leader line)
              "labels": {name: tuple(Text.get_window_extent(t, renderer).extents) for name, t in annotations.items()},
              "free": [name for name, x, _ in points if x < FREE_BELOW], "axes": tuple(ax.get_window_extent(renderer).extents),
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



def frontier_figure(frontier: dict):
    """The cost-accuracy frontier (evaluation.json's `frontier`): held-out Spearman with the ground
    truth (mean over draws of the trained pairs) against the cost paid as a fraction of the ground
    truth's. Each raw scorer a point, each calibrated scorer a curve in the scorer's colour
    (isotonic solid, affine dashed, spline dotted), the combined predictor a thick black curve with its 95% band
    over draws, the exhaustive ground truth a star at cost 1 on the noise ceiling, and the ceiling
    (and the share of it the headline asks for) as horizontal lines. Returns the figure."""
    predictors, ceiling = frontier["predictors"], frontier.get("ceiling")
    scorers = [name for name, e in predictors.items() if e["kind"] == "raw"]
    colours = {name: f"C{i % 10}" for i, name in enumerate(scorers)}
    fig, ax = plt.subplots(figsize=(7.5, 4.4), dpi=110)
    for name, e in predictors.items():
        points = [p for p in e["points"] if p.get("cost") is not None and p.get("spearman") is not None]
        if not points:
            continue
        x, y = [p["cost"] for p in points], [p["spearman"] for p in points]
        if e["kind"] == "raw":
            ax.plot(x, y, "o", color=colours[name], markersize=6, label=f"{name} (raw)", zorder=3)
        elif e["kind"] == "ridge":
            ax.plot(x, y, "-", color="black", linewidth=2.2, label=name, zorder=4)
            band = [p for p in points if p.get("spearman_ci")]
            ax.fill_between([p["cost"] for p in band], [p["spearman_ci"][0] for p in band], [p["spearman_ci"][1] for p in band],
                            color="black", alpha=0.12, linewidth=0, label="combined: 95% of draws")
        else:
            scorer = e["scorers"][0]
            ax.plot(x, y, {"isotonic": "-", "affine": "--"}.get(e["kind"], ":"), color=colours.get(scorer, "grey"), linewidth=1.1,
                    alpha=0.85, label=name)
    if ceiling is not None:
        ax.axhline(ceiling, color="black", linestyle=":", linewidth=1, label=f"noise ceiling {ceiling:.2f}")
        ax.axhline(frontier["target_share"] * ceiling, color="grey", linestyle=":", linewidth=0.8,
                   label=f"{frontier['target_share']:.0%} of the ceiling")
        ax.plot([1.0], [ceiling], "*", color="black", markersize=12, label="ground truth, every pair", zorder=5)
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.axvline(1.0, color="grey", linewidth=0.5, linestyle="--")
    ax.set_xlabel("cost paid, fraction of the exhaustive ground truth's")
    ax.set_ylabel("Spearman with the ground truth,\non the untrained pairs")
    ax.set_title(f"{frontier['pairs']} pairs; k trained pairs drawn {frontier['draws']} times per k", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, ncols=1 + len(predictors) // 18)
    return fig


def frontier_plot(frontier: dict) -> str:
    """`frontier_figure` as base64 PNG."""
    return _png(frontier_figure(frontier))
