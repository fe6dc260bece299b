"""The headline's wording: scorers that cannot be told apart come with their widest gap and its
interval, and every scorer's Spearman stands beside the ground truth's noise ceiling."""

from raytaskaff.evaluation.summary import headline

CEILING = {"single_seed": {"spearman": 0.8}, "split_half": {"spearman": 0.9}}


def _comparison(a, b, diff, ci, seeds=3):
    return {"a": a, "b": b, "spearman_diff": diff, "spearman_ci": ci, "spearman_significant": ci[0] > 0 or ci[1] < 0, "seeds": seeds}


def test_a_wide_interval_is_not_read_as_equal_quality():
    """td at -0.06 and gs at 0.45 whose difference is not significant at three seeds."""
    scorers = {"td": {"spearman": -0.06}, "gs": {"spearman": 0.45}}
    said = headline(scorers, [_comparison("td", "gs", -0.51, [-1.10, 0.08])], CEILING)
    assert said == ("gs and td cannot be told apart at 3 seeds (widest gap gs - td = 0.51, 95% interval [-0.08, 1.10]); "
                    "no Spearman difference is significant at 95%; the ground truth's noise ceiling is Spearman 0.80 from one "
                    "seed to another and 0.90 split-half, against gs 0.45 and td -0.06; the highest, gs, is 0.45 below the "
                    "split-half ceiling.")
    assert "indistinguishable" not in said


def test_the_top_group_gives_its_widest_gap_and_the_beaten_follow():
    scorers = {"li": {"spearman": 0.6}, "gs": {"spearman": 0.5}, "rsa": {"spearman": 0.45}, "td": {"spearman": 0.1}}
    comparisons = [_comparison("li", "gs", 0.1, [-0.2, 0.4], 6), _comparison("rsa", "li", -0.15, [-0.5, 0.1], 6),
                   _comparison("gs", "rsa", 0.05, [-0.2, 0.3], 6), _comparison("li", "td", 0.5, [0.2, 0.8], 6),
                   _comparison("gs", "td", 0.4, [0.1, 0.7], 6), _comparison("rsa", "td", 0.35, [0.05, 0.6], 6)]
    said = headline(scorers, comparisons, CEILING)
    assert said.startswith("li, gs and rsa cannot be told apart at 6 seeds (widest gap li - rsa = 0.15, 95% interval "
                           "[-0.10, 0.50]); all of them beat td; other differences are within noise;")
    assert said.endswith("against li 0.60, gs 0.50, rsa 0.45 and td 0.10; the highest, li, is 0.30 below the split-half ceiling.")


def test_scorers_at_the_ceiling_and_without_one():
    scorers = {"li": {"spearman": 0.93}, "td": {"spearman": 0.1}}
    comparisons = [_comparison("li", "td", 0.83, [0.5, 1.1])]
    assert headline(scorers, comparisons, CEILING) == (
        "no scorer beats li; li beats td; other differences are within noise; the ground truth's noise ceiling is Spearman "
        "0.80 from one seed to another and 0.90 split-half, against li 0.93 and td 0.10; li reaches the split-half ceiling.")
    assert headline(scorers, comparisons, None).endswith(
        "; Spearman with the ground truth li 0.93 and td 0.10; the ground truth has fewer than two seeds, so its own noise is "
        "unknown and no scorer can be put in proportion.")
    low = {"single_seed": {"spearman": 0.2}, "split_half": {"spearman": 0.35}}
    assert headline(scorers, comparisons, low).endswith(
        "; Spearman with the ground truth li 0.93 and td 0.10, but the ground truth agrees with itself only at Spearman 0.20 "
        "from one seed to another and 0.35 split-half, too low to judge any scorer firmly.")


def test_without_a_split_half_the_gap_is_to_the_single_seed_ceiling():
    scorers = {"li": {"spearman": 0.5}}
    assert headline(scorers, [], {"single_seed": {"spearman": 0.7}, "split_half": None}).endswith(
        "; the ground truth's noise ceiling is Spearman 0.70 from one seed to another, against li 0.50; the highest, li, is "
        "0.20 below the single-seed ceiling.")
