"""td and li against hand-computed values."""

import itertools

import numpy as np
import pytest

from raytaskaff.scorers import Artifacts, SeedRuns, scorer
from raytaskaff.scorers.base import Scorer, ScorerError
from raytaskaff.scorers.td import TASKONOMY_FIVE, tree_distances

FIVE = ("segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal")


def _table(score):
    return {(r.target, r.partner): r.value for r in score.table.itertuples()}


def test_td_default_is_the_taskonomy_tree():
    table = _table(scorer("td").score(Artifacts(FIVE)))
    assert table["segment_semantic", "normal"] == -5 and table["normal", "segment_semantic"] == -5
    assert table["keypoints2d", "depth_zbuffer"] == -12
    assert all(table[a, b] == -TASKONOMY_FIVE.get((a, b), TASKONOMY_FIVE.get((b, a))) for a, b in itertools.permutations(FIVE, 2))


def test_td_from_a_tree_and_from_distances():
    parent = {"depth_zbuffer": "3d", "normal": "3d", "3d": "root", "edge_texture": "2d", "2d": "root"}
    assert tree_distances(parent)["depth_zbuffer", "edge_texture"] == 4
    tasks = ("depth_zbuffer", "normal", "edge_texture")
    table = _table(scorer("td").score(Artifacts(tasks), taxonomy={"parent": parent}))
    assert table["depth_zbuffer", "normal"] == -2 and table["normal", "edge_texture"] == -4
    listed = _table(scorer("td").score(Artifacts(tasks), taxonomy=[["depth_zbuffer", "normal", 1], ["normal", "edge_texture", 2],
                                                                  ["depth_zbuffer", "edge_texture", 3]]))
    assert listed["edge_texture", "depth_zbuffer"] == -3
    reordered = _table(scorer("td").score(Artifacts(tasks[::-1]), taxonomy={"parent": parent}))
    assert reordered == table


@pytest.mark.parametrize("taxonomy,match", [
    ({"depth_zbuffer": {"normal": 1}}, "no distance between"),
    ([["depth_zbuffer", "normal", 1], ["normal", "depth_zbuffer", 2]], "one way"),
    ({"depth_zbuffer": {"normal": -1}}, "non-negative"),
    ("tree", "cannot read"),
])
def test_td_bad_taxonomies(taxonomy, match):
    with pytest.raises(ScorerError, match=match):
        scorer("td").score(Artifacts(("depth_zbuffer", "normal", "edge_texture")), taxonomy=taxonomy)


def test_li_is_the_relative_loss_change_averaged_over_seeds(result):
    tasks = ("depth_zbuffer", "normal")
    seeds = []
    for seed, (stl_d, stl_n, li_dn, li_nd) in enumerate([(2.0, 4.0, 1.0, 5.0), (1.0, 2.0, 0.9, 2.0)]):
        seeds.append(SeedRuns(seed, stl={"depth_zbuffer": result(["depth_zbuffer"], {"depth_zbuffer": stl_d}),
                                         "normal": result(["normal"], {"normal": stl_n})},
                              li={("depth_zbuffer", "normal"): result(["depth_zbuffer"], {"depth_zbuffer": li_dn}, inject=["normal"]),
                                  ("normal", "depth_zbuffer"): result(["normal"], {"normal": li_nd}, inject=["depth_zbuffer"])}))
    table = _table(scorer("li").score(Artifacts(tasks, seeds)))
    assert table["depth_zbuffer", "normal"] == pytest.approx((50.0 + 10.0) / 2)
    assert table["normal", "depth_zbuffer"] == pytest.approx((-25.0 + 0.0) / 2)


def test_li_without_runs_is_an_error():
    with pytest.raises(ScorerError, match="no seed has the runs"):
        scorer("li").score(Artifacts(("depth_zbuffer", "normal"), [SeedRuns(0)]))


def test_per_seed_tables_are_kept_for_seeded_scorers_and_absent_for_td(result):
    tasks = ("depth_zbuffer", "normal")
    seeds = []
    for seed, (stl_d, stl_n, li_dn, li_nd) in zip((3, 7), [(2.0, 4.0, 1.0, 5.0), (1.0, 2.0, 0.9, 2.0)]):
        seeds.append(SeedRuns(seed, stl={"depth_zbuffer": result(["depth_zbuffer"], {"depth_zbuffer": stl_d}),
                                         "normal": result(["normal"], {"normal": stl_n})},
                              li={("depth_zbuffer", "normal"): result(["depth_zbuffer"], {"depth_zbuffer": li_dn}, inject=["normal"]),
                                  ("normal", "depth_zbuffer"): result(["normal"], {"normal": li_nd}, inject=["depth_zbuffer"])}))
    score = scorer("li").score(Artifacts(tasks, seeds))
    rows = {(r.seed, r.target, r.partner): r.value for r in score.per_seed.itertuples()}
    assert rows == pytest.approx({(3, "depth_zbuffer", "normal"): 50.0, (3, "normal", "depth_zbuffer"): -25.0,
                                  (7, "depth_zbuffer", "normal"): 10.0, (7, "normal", "depth_zbuffer"): 0.0})
    assert list(score.per_seed.columns) == ["seed", "target", "partner", "value"]
    assert scorer("td").score(Artifacts(FIVE)).per_seed is None


# Label injection on a budget (tests/scorers/test_li_choice.py plans it): the pairs not run are
# missing from the table, not scored 0.
LI_TASKS = ("depth_zbuffer", "normal", "edge_texture", "keypoints2d")


def li_seed(result, seed, stl, li):
    """SeedRuns with STL test losses {task: loss} and LI losses {(target, partner): loss}."""
    return SeedRuns(seed, stl={t: result([t], {t: v}) for t, v in stl.items()},
                    li={(t, p): result([t], {t: v}, inject=[p]) for (t, p), v in li.items()})


def test_li_scores_only_the_pairs_it_ran(result):
    stl = {"depth_zbuffer": 2.0, "normal": 4.0, "edge_texture": 1.0, "keypoints2d": 5.0}
    seeds = [li_seed(result, 0, stl, {("depth_zbuffer", "normal"): 1.0, ("normal", "edge_texture"): 5.0}),
             li_seed(result, 1, stl, {("depth_zbuffer", "normal"): 1.5, ("keypoints2d", "normal"): 4.0})]
    score = scorer("li").score(Artifacts(LI_TASKS, seeds))
    table = {(r.target, r.partner): r.value for r in score.table.itertuples()}
    assert table == pytest.approx({("depth_zbuffer", "normal"): (50.0 + 25.0) / 2, ("normal", "edge_texture"): -25.0,
                                   ("keypoints2d", "normal"): 20.0})
    matrix = score.matrix(LI_TASKS)
    assert np.isnan(matrix).sum() == 16 - 3 and matrix[0, 1] == pytest.approx(37.5)  # missing: NaN, not 0
    assert sorted(zip(score.per_seed.seed, score.per_seed.target, score.per_seed.partner)) == [
        (0, "depth_zbuffer", "normal"), (0, "normal", "edge_texture"), (1, "depth_zbuffer", "normal"), (1, "keypoints2d", "normal")]
    assert score.details == {"pairs": 3, "of": 12}


def test_other_scorers_still_score_every_pair():
    class Half(Scorer):
        name = "half"

        def compute(self, artifacts):
            return {pair: 1.0 for pair in artifacts.ordered_pairs()[:3]}

    with pytest.raises(ScorerError, match="half: no value for 9 pairs"):
        Half().score(Artifacts(LI_TASKS))
