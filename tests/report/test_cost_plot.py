"""The cost-against-accuracy plot: labels that overlap nothing, a legend outside the axes, and a
free scorer drawn at 0 beside an axis break instead of at a made-up value on the log scale."""

import itertools

import pandas as pd

from raytaskaff.report.figures import FREE_BELOW, _overlap, cost_caption, cost_figure, place_labels


def _inside(box, bounds) -> bool:
    return bounds[0] <= box[0] and box[2] <= bounds[2] and bounds[1] <= box[1] and box[3] <= bounds[3]


def test_an_isolated_label_sits_just_right_of_its_point():
    assert place_labels([(100.0, 100.0)], [(20.0, 10.0)], [(0, 0, 400, 400)], marker=6.0, gap=3.0) == [(9.0, 4.5)]


def test_labels_of_points_on_one_spot_overlap_neither_each_other_nor_a_point():
    points = [(200.0, 200.0)] * 4 + [(204.0, 203.0), (260.0, 200.0)]
    sizes = [(18.0, 12.0), (14.0, 12.0), (26.0, 12.0), (10.0, 12.0), (16.0, 12.0), (20.0, 12.0)]
    bounds = [(0.0, 0.0, 400.0, 400.0)] * len(points)
    offsets = place_labels(points, sizes, bounds, marker=6.0, gap=3.0)
    boxes = [(x + dx, y + dy, x + dx + w, y + dy + h) for (x, y), (dx, dy), (w, h) in zip(points, offsets, sizes)]
    assert all(_overlap(a, b) == 0 for a, b in itertools.combinations(boxes, 2))
    assert all(_overlap(box, (x - 6, y - 6, x + 6, y + 6)) == 0 for box in boxes for x, y in points)
    assert all(_inside(box, b) for box, b in zip(boxes, bounds))


def test_a_label_at_the_right_edge_turns_left_to_stay_inside():
    [(dx, dy)] = place_labels([(395.0, 200.0)], [(30.0, 10.0)], [(0.0, 0.0, 400.0, 400.0)], marker=6.0, gap=3.0)
    assert dx == -30.0 - 9.0 and dy == 4.5  # the first place on the left, level with the first on the right


#: The default sweep's numbers (CPU core-seconds, Spearman), crowded where ias, rsa, li and gs
#: meet; "copy" sits exactly on gs.
CROWDED = {"td": (3.56e-05, 0.011), "ias": (178.86, 0.368), "rsa": (175.54, 0.417), "li": (305.22, 0.371),
           "gs": (185.64, 0.390), "gt": (185.64, -0.272), "etap": (185.64, -0.373), "copy": (185.64, 0.390)}
CEILING = {"single_seed": {"spearman": 0.77}, "split_half": {"spearman": 0.90}}


def _crowded() -> tuple[pd.DataFrame, dict]:
    rows = [{"name": n, "wall_seconds": c, "cpu_seconds": c, "gpu_seconds": 0.0, "fraction_unit": "cpu_seconds"} for n, (c, _) in CROWDED.items()]
    rows.append({"name": "ground_truth", "wall_seconds": 974.5, "cpu_seconds": 746.7, "gpu_seconds": 0.0, "fraction_unit": "cpu_seconds"})
    return pd.DataFrame(rows), {n: {"spearman": v} for n, (_, v) in CROWDED.items()}


def test_the_figure_as_drawn():
    costs, evaluation = _crowded()
    fig, layout = cost_figure(costs, evaluation, CEILING)
    assert set(layout["labels"]) == set(CROWDED)
    labels = layout["labels"]
    # no label overlaps another, nor any point (markers of 40 pt^2 at 110 dpi: 4.8 px half-width)
    assert all(_overlap(labels[a], labels[b]) == 0 for a, b in itertools.combinations(labels, 2))
    for name, box in labels.items():
        for x, y in layout["points"].values():
            assert _overlap(box, (x - 4.8, y - 4.8, x + 4.8, y + 4.8)) == 0, name
    assert layout["points"]["copy"] == layout["points"]["gs"]  # on one spot, and both labelled apart
    # the legend sits right of the axes, over no point
    axes, legend = layout["axes"], layout["legend"]
    assert legend[0] >= axes[2]
    assert all(not _inside((x, y, x, y), legend) for x, y in layout["points"].values())
    # td (a table look-up) is drawn as free, left of the log axis, at the strip's 0
    assert layout["free"] == ["td"] and CROWDED["td"][0] < FREE_BELOW
    assert layout["points"]["td"][0] < axes[0]
    strip = fig.axes[0]
    assert strip.get_xticks().tolist() == [0] and strip.get_xticklabels()[0].get_text() == "0\n(free)"
    assert fig.axes[1].get_xscale() == "log" and fig.axes[1].get_xlim()[0] > CROWDED["td"][0]


def test_without_a_free_scorer_there_is_one_axis_and_no_free_caption(default_report):
    out, summary = default_report
    costs = pd.read_csv(out / "results" / "costs.csv")
    paid = costs[costs.name != "td"]
    scorers = {k: v for k, v in summary["scorers"].items() if k != "td"}
    fig, layout = cost_figure(paid, scorers, summary["noise_ceiling"])
    assert layout["free"] == [] and len([a for a in fig.axes if a.get_visible()]) == 1
    assert "free" not in cost_caption(paid, scorers)


def test_the_caption_names_the_free_scorer_with_its_measured_cost(default_report):
    out, summary = default_report
    costs = pd.read_csv(out / "results" / "costs.csv")
    caption = cost_caption(costs, summary["scorers"])
    assert f"Costs under {FREE_BELOW} s (td 3.6e-05 CPU core-seconds) are drawn at 0 in the 'free' strip" in caption
    html = (out / "report" / "index.html").read_text()
    assert "<h2>Cost against accuracy</h2><p class='note'>" + caption.replace("'", "&#x27;") in html


def test_a_gpu_sweeps_zero_gpu_seconds_are_free(default_report):
    """On a GPU sweep the fraction compares GPU-seconds, and td's are exactly 0."""
    out, summary = default_report
    costs = pd.read_csv(out / "results" / "costs.csv")
    costs["gpu_seconds"] = costs.cpu_seconds.where(costs.name != "td", 0.0)
    costs["fraction_unit"] = "gpu_seconds"
    fig, layout = cost_figure(costs, summary["scorers"], summary["noise_ceiling"])
    assert layout["free"] == ["td"] and fig.axes[1].get_xlabel() == "GPU-seconds (total, log scale)"
    assert "(td 0 GPU-seconds)" in cost_caption(costs, summary["scorers"])
