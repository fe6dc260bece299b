"""The heatmaps: a colour scale that outliers do not wash out, the cells beyond it marked, one
clustered order that groups planted clusters, and labels that keep their size at any task count."""

import re

import numpy as np
import pandas as pd
import pytest

from raytaskaff.report.figures import (CLUSTER_FROM, LABEL_PT, Scale, cluster_order, colour_scale, heatmap,
                                       heatmap_figure, scale_caption)


def _fences(values):
    q1, q3 = np.percentile(values, [25, 75])
    return q1 - 3 * (q3 - q1), q3 + 3 * (q3 - q1)


def test_the_scale_spans_the_values_inside_the_far_out_fences():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(2.0, 3.0, 400), [-170.0, -165.0, 90.0], [np.nan] * 5])
    low, high = _fences(values[np.isfinite(values)])
    inside = values[(values >= low) & (values <= high)]
    assert inside.size == 400  # the planted outliers, and only they, are beyond the fences
    scale = colour_scale(values)
    assert scale == Scale(float(inside.min()), float(inside.max()), True, 2, 1)
    assert scale_caption(scale).endswith("clipped beyond Tukey's far-out fences: 2 cell(s) below marked ▼, 1 cell(s) above marked ▲")


def test_without_outliers_nothing_is_clipped_and_one_signed_values_are_not_centred():
    values = np.array([[np.nan, -4.0, -12.0], [-6.0, np.nan, -5.0], [-8.0, -9.0, np.nan]])  # td: minus a distance
    assert colour_scale(values) == Scale(-12.0, -4.0, False, 0, 0)
    assert scale_caption(colour_scale(values)) == "colours span -12 to -4; nothing clipped"
    # a gain table is centred at 0 even when every gain is positive; the empty side is a tenth of the other
    assert colour_scale(np.array([0.5, 2.0, 3.0]), centred=True) == pytest.approx(Scale(-0.3, 3.0, True, 0, 0))
    # a side just across 0 does not take the darkest colour
    assert colour_scale(np.array([-0.01, 1.0, 5.0, 6.0])) == pytest.approx(Scale(-0.6, 6.0, True, 0, 0))
    assert colour_scale(np.full((2, 2), np.nan)) == Scale(-1.0, 1.0, True, 0, 0)


def _planted(n: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A [target][partner] matrix of n tasks in `clusters` clusters, tasks shuffled: +4 within a
    cluster, -2 across, noise 0.5, NaN on the diagonal; and each task's cluster."""
    rng = np.random.default_rng(seed)
    label = rng.permutation(np.arange(n) % clusters)
    m = np.where(label[:, None] == label[None, :], 4.0, -2.0) + rng.normal(scale=0.5, size=(n, n))
    np.fill_diagonal(m, np.nan)
    return m, label


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_clustered_order_puts_each_planted_cluster_together(seed):
    m, label = _planted(40, 4, seed)
    m[3, 7], m[11, 2] = -170.0, 400.0  # outliers do not decide the order
    order = cluster_order(m)
    assert sorted(order) == list(range(40))
    runs = [label[order][i] for i in range(40) if i == 0 or label[order][i] != label[order][i - 1]]
    assert sorted(runs) == [0, 1, 2, 3]  # each cluster one run of neighbours
    # the given order does not: a shuffled planted matrix is not already clustered
    assert len([i for i in range(1, 40) if label[i] != label[i - 1]]) > 3


def test_small_or_empty_tables_keep_their_order():
    assert cluster_order(np.full((5, 5), np.nan)) == list(range(5))
    assert cluster_order(np.zeros((2, 2))) == [0, 1]
    assert CLUSTER_FROM > 5  # the reference study's five tasks stay in the config's order


def test_cells_beyond_the_scale_are_marked_where_they_are_drawn():
    m, _ = _planted(20, 2, 0)
    m[3, 7], m[11, 2], m[5, 6] = -170.0, -150.0, 400.0
    order = list(range(19, -1, -1))  # reversed: the marks follow the order
    tasks = [f"t{i}" for i in range(20)]
    fig = heatmap_figure(m, tasks, "planted", order)
    ax = fig.axes[0]
    where = {tuple(map(tuple, c.get_offsets().data.tolist())) for c in ax.collections}
    position = {t: i for i, t in enumerate(order)}  # task index -> row/column drawn
    below = {(float(position[7]), float(position[3])), (float(position[2]), float(position[11]))}  # (x: partner, y: target)
    above = {(float(position[6]), float(position[5]))}
    assert {frozenset(w) for w in where} == {frozenset(below), frozenset(above)}
    assert [t.get_text() for t in ax.get_yticklabels()] == [tasks[i] for i in order]
    assert fig.axes[1].get_ylabel() == "▼ 2 below, ▲ 1 above the scale"


@pytest.mark.parametrize("n", [5, 12, 40, 80])
def test_labels_keep_their_size_and_rows_their_height(n):
    """However many tasks, a label is LABEL_PT points and a row at least a label's line high."""
    tasks = [f"task_{i}" for i in range(n)]
    fig = heatmap_figure(np.random.default_rng(n).normal(size=(n, n)), tasks, "t")
    ax = fig.axes[0]
    assert {t.get_fontsize() for t in ax.get_yticklabels() + ax.get_xticklabels()} == {LABEL_PT}
    row_pt = ax.get_position().height * fig.get_figheight() * 72 / n
    assert row_pt >= 1.2 * LABEL_PT
    svg = heatmap(np.random.default_rng(n).normal(size=(n, n)), tasks, "t")
    assert svg.startswith("<svg ") and re.findall(r">(task_\d+)<", svg).count("task_1") == 2  # text, not glyph paths
    assert svg.count("data:image/png;base64,") == 1  # the cells; the colour bar is vector


def test_the_forty_task_report_draws_every_map_in_the_ground_truths_clustered_order(forty_report):
    out, summary, cluster = forty_report
    page = (out / "report" / "index.html").read_text()
    maps = re.findall(r"<figure class='svg'>(.*?)</figure>", page, flags=re.S)
    assert len(maps) == 1 + len(summary["scorers"])
    orders = []
    for svg in maps:
        names = [n for n in re.findall(r">([^<>]+)</text>", svg) if n in cluster]
        orders.append(names[40:] if len(names) == 80 else None)  # x labels, then y labels
    assert orders[0] is not None and all(o == orders[0] for o in orders)  # one order for every map
    learned = [cluster[t] for t in orders[0] if cluster[t] < 4]
    assert sorted(c for i, c in enumerate(learned) if i == 0 or c != learned[i - 1]) == [0, 1, 2, 3]
    assert orders[0] != summary["tasks"]
    # the targets that did not learn (the planted coin flips) in grey italics, in every map
    italic = {n.strip() for n in re.findall(r'<text style="font-style: italic;[^>]*>([^<]+)</text>', maps[0])}
    assert italic == {t for t, c in cluster.items() if c == 4} == {t for t, v in summary["learning"].items() if not v["learned"]}
    gains = pd.read_csv(out / "results" / "ground_truth.csv").gain.to_numpy()
    low, high = _fences(gains)
    assert (gains < -150).sum() == 4 and low > -150  # the four planted -170 % gains are beyond the fences
    caption = re.findall(r"<figcaption>(.*?)</figcaption>", maps[0])[0]
    assert f"{(gains < low).sum()} cell(s) below marked ▼, {(gains > high).sum()} cell(s) above marked ▲" in caption
