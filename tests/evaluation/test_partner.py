"""Partner dependence on planted tables, against a least-squares ANOVA and a backfitted two-way fit
computed here independently."""

import math

import numpy as np
import pytest

from raytaskaff.evaluation.partner import TARGET_BOUND, partner_dependence, partner_dependence_all, per_seed_dependence, target_bound

TASKS = [f"t{i}" for i in range(5)]


def _table(values: np.ndarray, drop: tuple = ()) -> dict:
    return {(a, b): float(values[i, j]) for i, a in enumerate(TASKS) for j, b in enumerate(TASKS)
            if i != j and (a, b) not in drop}


def _dummy_r2(values: np.ndarray, mask: np.ndarray, which: str) -> float:
    """R² of the off-diagonal cells regressed on target (row) or partner (column) indicators."""
    i, j = np.nonzero(mask)
    y = values[i, j]
    design = np.eye(len(TASKS))[i if which == "row" else j]
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return 1 - ((y - design @ coef) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def _backfit_r2(values: np.ndarray, mask: np.ndarray, sweeps: int = 2000) -> float:
    """R² of mean + row + column fitted by alternating row and column means of the residual."""
    i, j = np.nonzero(mask)
    y = values[i, j]
    r, c = np.zeros(len(TASKS)), np.zeros(len(TASKS))
    mu = y.mean()
    for _ in range(sweeps):
        for k in range(len(TASKS)):
            r[k] = (y - mu - c[j])[i == k].mean()
        for k in range(len(TASKS)):
            c[k] = (y - mu - r[i])[j == k].mean()
        mu = (y - r[i] - c[j]).mean()
    return 1 - ((y - mu - r[i] - c[j]) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def _mask(drop: tuple = ()) -> np.ndarray:
    mask = ~np.eye(len(TASKS), dtype=bool)
    for a, b in drop:
        mask[TASKS.index(a), TASKS.index(b)] = False
    return mask


def test_pure_target_effect_is_all_target():
    rows = np.array([3.0, -1.0, 0.5, 2.0, -4.0])
    values = np.repeat(rows[:, None], 5, axis=1)
    out = partner_dependence(_table(values))
    assert out["target_share"] == pytest.approx(1.0)
    # with the diagonal missing, a column's mean leaves out its own row: 1/(n-1)² of the variance
    assert out["partner_share"] == pytest.approx(1 / 16)
    assert out["additive_share"] == pytest.approx(1.0) and out["interaction_share"] == pytest.approx(0.0, abs=1e-12)
    assert out["spread_ratio"] == pytest.approx(0.0) and out["cells"] == 20
    assert target_bound(out, {"target_share": 0.5}) and not target_bound(out, {"target_share": 1.0})


def test_pure_partner_effect_is_all_partner():
    cols = np.array([1.0, 2.0, -3.0, 0.0, 0.5])
    values = np.repeat(cols[None, :], 5, axis=0)
    out = partner_dependence(_table(values))
    assert out["partner_share"] == pytest.approx(1.0)
    assert out["target_share"] == pytest.approx(1 / 16)
    # the rows' spread is the partners' (each row leaves one out), their means differ by 1/(n-1)
    within = np.mean([np.delete(cols, k).std() for k in range(5)])
    between = np.array([np.delete(cols, k).mean() for k in range(5)]).std()
    assert out["spread_ratio"] == pytest.approx(within / between) and out["spread_ratio"] > 3
    assert not target_bound(out, None)


@pytest.mark.parametrize("drop", [(), (("t0", "t1"), ("t3", "t2"), ("t4", "t0"))])
def test_a_mix_matches_anova_by_least_squares_and_backfitting(drop):
    rng = np.random.default_rng(3)
    values = rng.normal(size=5)[:, None] * 2 + rng.normal(size=5)[None, :] + rng.normal(scale=0.5, size=(5, 5))
    mask = _mask(drop)
    out = partner_dependence(_table(values, drop))
    assert out["cells"] == mask.sum()
    assert out["target_share"] == pytest.approx(_dummy_r2(values, mask, "row"))
    assert out["partner_share"] == pytest.approx(_dummy_r2(values, mask, "col"))
    assert out["additive_share"] == pytest.approx(_backfit_r2(values, mask), abs=1e-8)
    assert 0 < out["interaction_share"] < 1
    i, j = np.nonzero(mask)
    rows = [values[k, mask[k]] for k in range(5)]
    assert out["spread_ratio"] == pytest.approx(np.mean([r.std() for r in rows]) / np.std([r.mean() for r in rows]))


def test_known_mix_of_row_and_column_contrasts():
    # an additive table whose rows and columns carry planted, equal-sized contrasts
    r = np.array([1.0, -1.0, 1.0, -1.0, 0.0])
    values = r[:, None] + r[None, :]
    out = partner_dependence(_table(values))
    assert out["additive_share"] == pytest.approx(1.0)
    assert out["target_share"] == pytest.approx(out["partner_share"])  # the table is symmetric
    assert out["target_share"] == pytest.approx(_dummy_r2(values, _mask(), "row"))


def test_diagonal_nan_and_missing_cells_are_left_out():
    values = np.arange(25, dtype=float).reshape(5, 5)
    table = _table(values)
    table.update({(t, t): 1e9 for t in TASKS})
    table[("t0", "t1")] = math.nan
    table[("t1", "t0")] = None
    out = partner_dependence(table)
    mask = _mask((("t0", "t1"), ("t1", "t0")))
    assert out["cells"] == 18 and out["target_share"] == pytest.approx(_dummy_r2(values, mask, "row"))


def test_constant_or_tiny_tables_say_nothing():
    assert partner_dependence(_table(np.ones((5, 5))))["target_share"] is None
    assert partner_dependence({("a", "b"): 1.0, ("b", "a"): 2.0})["target_share"] is None


def test_every_scorer_is_read_against_the_truth():
    rng = np.random.default_rng(1)
    truth = _table(rng.normal(size=(5, 5)))
    rows = _table(np.repeat(rng.normal(size=5)[:, None], 5, axis=1) + 0.01 * rng.normal(size=(5, 5)))
    out = partner_dependence_all({"flat": rows, "truthlike": truth}, truth)
    assert set(out) == {"ground_truth", "flat", "truthlike"}
    assert out["flat"]["target_share"] > TARGET_BOUND and out["flat"]["target_bound"]
    assert out["truthlike"]["target_share"] == pytest.approx(out["ground_truth"]["target_share"])
    assert not out["truthlike"]["target_bound"] and not out["ground_truth"]["target_bound"]


def test_the_truth_per_seed_pure_target_seeds_and_a_noisy_seed():
    """Two seeds planted as pure row effects (target share 1) and one as a row effect plus pair
    noise: each seed's shares are its own table's ANOVA, the spread is over the three."""
    rng = np.random.default_rng(5)
    rows = rng.normal(size=5)
    pure = np.repeat(rows[:, None], 5, axis=1)
    noisy = pure + rng.normal(scale=1.0, size=(5, 5))
    out = per_seed_dependence({2: _table(noisy), 0: _table(pure), 1: _table(2 * pure)})
    assert out["seeds"] == 3 and list(out["tables"]) == ["0", "1", "2"]
    shares = [1.0, 1.0, _dummy_r2(noisy, _mask(), "row")]
    assert [out["tables"][s]["target_share"] for s in ("0", "1", "2")] == pytest.approx(shares)
    assert shares[2] < 0.9  # the noise is a pair effect: it lowers the seed's target share
    assert out["target_share"]["mean"] == pytest.approx(np.mean(shares))
    assert out["target_share"]["std"] == pytest.approx(np.std(shares, ddof=1))
    assert (out["target_share"]["min"], out["target_share"]["max"]) == pytest.approx((shares[2], 1.0))
    partner = [1 / 16, 1 / 16, _dummy_r2(noisy, _mask(), "col")]
    assert out["partner_share"]["mean"] == pytest.approx(np.mean(partner))
    # a pure row effect's rows are flat: the spread ratio is 0 on those seeds
    assert out["spread_ratio"]["min"] == pytest.approx(0.0)


def test_the_truth_per_seed_one_seed_and_a_constant_seed():
    rng = np.random.default_rng(6)
    one = per_seed_dependence({0: _table(rng.normal(size=(5, 5)))})
    assert one["seeds"] == 1 and one["target_share"]["std"] is None
    assert one["target_share"]["mean"] == one["target_share"]["min"] == one["tables"]["0"]["target_share"]
    # a constant seed says nothing: the spread is over the seeds that say something
    flat = per_seed_dependence({0: _table(np.ones((5, 5))), 1: _table(np.ones((5, 5)))})
    assert flat["target_share"] is None and flat["tables"]["0"]["target_share"] is None


def test_the_truth_per_seed_is_in_the_ground_truth_entry_only():
    rng = np.random.default_rng(7)
    seeds = {s: _table(rng.normal(size=(5, 5))) for s in range(3)}
    mean = {k: float(np.mean([t[k] for t in seeds.values()])) for k in seeds[0]}
    out = partner_dependence_all({"flat": mean}, mean, seeds)
    assert out["ground_truth"]["per_seed"] == per_seed_dependence(seeds)
    assert "per_seed" not in out["flat"] and "per_seed" not in partner_dependence_all({}, mean)["ground_truth"]
    assert out["ground_truth"]["target_share"] == pytest.approx(partner_dependence(mean)["target_share"])
