"""The data order every reader follows: one seeded function of the shards' row counts."""

import numpy as np
import pytest

from raytaskaff.data.order import flat_order, row_order, shard_offsets

ROWS = (7, 7, 3, 7, 5, 1)


@pytest.mark.parametrize("window", [0, 1, 2, 4, 6, 10])
def test_every_row_once_per_pass(window):
    order = flat_order(ROWS, shuffle=True, seed=5, window=window)
    assert sorted(order.tolist()) == list(range(sum(ROWS)))


def test_window_zero_is_one_permutation_of_every_row():
    """The order of the object-store and memory-map readers before windows existed: stored runs
    keep their results."""
    np.testing.assert_array_equal(flat_order(ROWS, shuffle=True, seed=11), np.random.default_rng(11).permutation(sum(ROWS)))


@pytest.mark.parametrize("window", [1, 2, 4])
def test_a_window_holds_whole_shards_and_nothing_else(window):
    offsets = shard_offsets(ROWS)
    groups = row_order(ROWS, shuffle=True, seed=2, window=window)
    assert sorted(np.concatenate([g for g, _ in groups]).tolist()) == list(range(len(ROWS)))
    for group, rows in groups:
        assert len(group) <= window
        expected = np.concatenate([np.arange(offsets[s], offsets[s + 1]) for s in group])
        assert sorted(rows.tolist()) == sorted(expected.tolist())


def test_seeds_decide_the_order_and_nothing_else():
    a, b = flat_order(ROWS, shuffle=True, seed=1, window=2), flat_order(ROWS, shuffle=True, seed=1, window=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, flat_order(ROWS, shuffle=True, seed=2, window=2))
    assert not np.array_equal(a, flat_order(ROWS, shuffle=True, seed=1, window=3))


def test_without_shuffle_rows_come_shard_by_shard():
    groups = row_order(ROWS, shuffle=False)
    assert [g.tolist() for g, _ in groups] == [[s] for s in range(len(ROWS))]
    np.testing.assert_array_equal(flat_order(ROWS, shuffle=False, window=3), np.arange(sum(ROWS)))


def test_negative_window_is_refused():
    with pytest.raises(ValueError, match="window"):
        row_order(ROWS, shuffle=True, window=-1)
