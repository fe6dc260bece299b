"""The scorer protocol: registration, a user's own scorer, tables, and costs."""

import typing

import numpy as np
import pytest

from raytaskaff.scorers import SCORERS, Artifacts, Needs, Scorer, SeedRuns, cost_of, register, scorer
from raytaskaff.scorers.base import ScorerError

TASKS = ("depth_zbuffer", "normal", "edge_texture")


def test_builtin_scorers_are_registered():
    assert {"td", "ias", "rsa", "li", "gs", "gt", "etap"} <= set(SCORERS)
    assert scorer("li").requirements() == Needs(stl=True, li=True)
    assert scorer("gt").requirements(source="pairs") == Needs(mtl="pairs")
    with pytest.raises(ScorerError, match="unknown scorer 'tg'"):
        scorer("tg")


def test_a_scorer_in_one_file():
    @register
    class Random(Scorer):
        """Random affinities: a baseline every scorer should beat."""

        name = "random"
        needs = Needs()

        def compute(self, artifacts, seed=0):
            rng = np.random.default_rng(seed)
            return {(t, p): rng.normal() for t, p in artifacts.ordered_pairs()}

    try:
        score = scorer("random").score(Artifacts(TASKS), seed=1)
        assert list(score.table.columns) == ["target", "partner", "value"] and len(score.table) == 6
        assert set(zip(score.table.target, score.table.partner)) == {(t, p) for t in TASKS for p in TASKS if t != p}
        matrix = score.matrix(TASKS)
        assert np.isnan(np.diag(matrix)).all() and np.isfinite(matrix[~np.eye(3, dtype=bool)]).all()
        assert score.compute.wall_seconds >= 0
    finally:
        del SCORERS["random"]


def test_missing_pairs_are_an_error():
    class Partial(Scorer):
        name = "partial"

        def compute(self, artifacts):
            return {("depth_zbuffer", "normal"): 1.0}

    with pytest.raises(ScorerError, match="partial: no value for 5 pairs"):
        Partial().score(Artifacts(TASKS))


def test_total_and_marginal_costs(result):
    seed = SeedRuns(0, stl={t: result([t], wall=10, device=20) for t in TASKS},
                    li={(t, p): result([t], inject=[p], wall=3, device=4) for t in TASKS for p in TASKS if t != p},
                    pairs={("depth_zbuffer", "normal"): result(["depth_zbuffer", "normal"], wall=100, device=200)},
                    all_tasks=result(list(TASKS), wall=50, device=60))
    artifacts = Artifacts(TASKS, [seed])
    li = scorer("li").score(artifacts)
    cost = cost_of(li, scorer("li").requirements(), artifacts)
    assert cost["wall_seconds"] == pytest.approx(30 + 6 * 3 + li.compute.wall_seconds)
    assert cost["cpu_seconds"] == pytest.approx(60 + 6 * 4 + li.compute.cpu_seconds) and cost["gpu_seconds"] == 0
    assert cost["marginal_wall_seconds"] == pytest.approx(6 * 3 + li.compute.wall_seconds)  # STL runs: trained anyway
    td = scorer("td").score(artifacts)
    assert cost_of(td, Needs(), artifacts)["wall_seconds"] == pytest.approx(td.compute.wall_seconds)
    gs_all = cost_of(td, scorer("gs").requirements(), artifacts)
    assert gs_all["marginal_cpu_seconds"] == pytest.approx(60 + td.compute.cpu_seconds)
    gs_pairs = cost_of(td, scorer("gs").requirements(source="pairs"), artifacts)
    assert gs_pairs["cpu_seconds"] == pytest.approx(200 + td.compute.cpu_seconds)
    assert gs_pairs["marginal_cpu_seconds"] == pytest.approx(td.compute.cpu_seconds)


def test_builtin_scorers_declare_typed_options():
    declared = {name: {key: (o.kind, o.default) for key, o in scorer(name).options().items()} for name in sorted(SCORERS)}
    assert declared["ias"] == {"images": (int, 2048)} and declared["rsa"] == {"images": (int, 500)}
    assert declared["li"] == {"seeds": (list[int] | None, None), "pairs": (list[list[str]] | None, None),
                              "targets": (list[str] | None, None), "partners": (int | None, None),
                              "rank_by": (str | None, None), "budget": (int | None, None)}
    assert declared["td"] == {"taxonomy": (dict | list | None, None)}
    assert declared["gs"] == {"source": (typing.Literal["all", "pairs"], "all"), "parameters": (typing.Literal["all", "kernels"], "all")}
    for name in ("gt", "etap", "gt/faithful", "gt/corrected", "gt/raw", "etap/faithful", "etap/corrected", "etap/raw"):
        assert declared[name] == {"source": (typing.Literal["all", "pairs"], "all")}


@pytest.mark.parametrize("name,options,message", [
    ("td", {"taxonomy": 3}, "td.taxonomy: expected a mapping or a list (or null), got 3"),
    ("li", {"seeds": [0, True]}, "li.seeds[1]: expected an integer, got True"),
    ("li", {"seeds": "0"}, "li.seeds: expected a list of integers, got '0'"),
    ("ias", {"images": "many"}, "ias.images: expected an integer >= 1, got 'many'"),
    ("gt", {"source": "pair"}, "gt.source: 'pair' is not one of all, pairs"),
    ("gs", {"sourse": "all"}, "gs: unknown option 'sourse' (known: source, parameters)"),
])
def test_builtin_options_are_checked_against_their_types(name, options, message):
    with pytest.raises(ScorerError) as e:
        scorer(name).check_options(options)
    assert str(e.value) == message
    scorer(name).check_options({k: v for k, v in {"seeds": [0, 2], "images": 1, "source": "pairs", "taxonomy": None}.items()
                                if k in scorer(name).options()})


def test_an_annotation_that_cannot_be_read_is_one_line():
    class Unreadable(Scorer):
        name = "unreadable"

        def compute(self, artifacts, width: "Missing" = 3):  # noqa: F821
            return {}

    with pytest.raises(ScorerError, match=r"^unreadable.width: the annotation 'Missing' cannot be read \(NameError: "):
        Unreadable().check_options({"width": 2})


def test_a_compute_taking_any_keyword_takes_any_option():
    class Open(Scorer):
        name = "open"

        def compute(self, artifacts, size: int = 2, **extra):
            return {}

    Open().check_options({"colour": "red", "size": 3})
    with pytest.raises(ScorerError, match="open.size: must be an integer >= 1, got 0"):
        Open().check_options({"size": 0})
