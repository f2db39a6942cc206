"""The split rules on small Arrow tables of dense indices: seeded, disjoint, and each rule's holdout."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from sentinel_ml.data import splits
from sentinel_ml.errors import DataError


def table(users, items, stamps=None) -> pa.Table:
    n = len(users)
    columns = {"user": pa.array(users, pa.int32()), "item": pa.array(items, pa.int32()),
               "rating": pa.array(np.arange(n) % 5 + 1, pa.float32())}
    if stamps is not None:
        columns["timestamp"] = pa.array(stamps, pa.int64())
    return pa.table(columns)


def pairs(t: pa.Table) -> set[tuple[int, int]]:
    return set(zip(t.column("user").to_pylist(), t.column("item").to_pylist(), strict=True))


def many(n: int = 2000, seed: int = 0) -> pa.Table:
    """n distinct (user, item) pairs over 50 users."""
    rng = np.random.default_rng(seed)
    flat = rng.choice(50 * 400, size=n, replace=False)
    return table(flat // 400, flat % 400, rng.integers(0, 10_000, n))


def test_random_is_a_seeded_disjoint_90_10_split() -> None:
    data = many()
    base, test = splits.random_split(data, seed=3)
    again, _ = splits.random_split(data, seed=3)
    other, _ = splits.random_split(data, seed=4)
    assert (base.num_rows, test.num_rows) == (1800, 200)
    assert pairs(base).isdisjoint(pairs(test)) and pairs(base) | pairs(test) == pairs(data)
    assert base.equals(again) and not base.equals(other)


def test_validation_is_a_seeded_5_percent_of_training_and_test_is_untouched() -> None:
    data = many()
    parts = splits.split_table(data, "random", 3, val_fraction=0.05)
    base, test = splits.random_split(data, seed=3)
    assert parts["test"].equals(test.select(["user", "item", "rating"]))
    assert (parts["train"].num_rows, parts["val"].num_rows) == (1710, 90)
    assert pairs(parts["train"]) | pairs(parts["val"]) == pairs(base)
    assert pairs(parts["train"]).isdisjoint(pairs(parts["val"]))
    # Seeded: preparing again draws the same validation rows.
    assert splits.split_table(data, "random", 3, val_fraction=0.05)["val"].equals(parts["val"])


def test_temporal_holds_out_each_users_latest_tenth_at_least_one() -> None:
    # user 0: 25 ratings -> 2 held out; user 1: 3 -> 1; user 2: 1 -> stays in training.
    users = [0] * 25 + [1] * 3 + [2]
    items = list(range(25)) + [0, 1, 2] + [0]
    stamps = list(np.random.default_rng(1).permutation(25) * 10) + [30, 10, 20] + [5]
    base, test = splits.temporal_split(table(users, items, stamps))
    assert pairs(test) == {(0, stamps.index(240)), (0, stamps.index(230)), (1, 0)}
    assert base.num_rows == 29 - 3 and (2, 0) in pairs(base)


@pytest.mark.parametrize("unit", [1, 10**12])  # one int64 key, or lexsort where times span >= 2^32
def test_temporal_breaks_ties_by_row_order(unit: int) -> None:
    stamps = [t * unit for t in (1, 9, 9, 2, 3, 1)]
    _, test = splits.temporal_split(table([1, 1, 1, 1, 0, 0], [5, 6, 7, 8, 1, 2], stamps))
    assert pairs(test) == {(1, 7), (0, 1)}  # rows 1 and 2 share the latest time: the later row is later


def test_temporal_needs_timestamps() -> None:
    with pytest.raises(DataError, match="no timestamps"):
        splits.split_table(table([0, 0], [1, 2]), "temporal", 0, val_fraction=0.05, origin="r.csv")
    with pytest.raises(DataError, match="no timestamps"):
        splits.temporal_split(table([0, 0], [1, 2], [None, None]))
    with pytest.raises(DataError, match="1 ratings have no timestamp"):
        splits.temporal_split(table([0, 0], [1, 2], [3, None]))


def test_u1_is_refused_without_the_publishers_split() -> None:
    with pytest.raises(DataError, match="ml-1m has no u1 split") as caught:
        splits.split_table(many(), "u1", 0, val_fraction=0.05, origin="ml-1m")
    assert "--split random or temporal" in str(caught.value)


def test_u1_uses_the_fixed_parts_and_holds_validation_out_of_base() -> None:
    base, test = table([0, 1, 1], [0, 0, 1]), table([0], [1])
    parts = splits.split_table(base, "u1", 0, val_fraction=0.34, fixed=(base, test))
    assert parts["test"].equals(test) and parts["val"].num_rows == 1 and parts["train"].num_rows == 2


def test_unknown_split() -> None:
    with pytest.raises(DataError, match="unknown split 'k-fold'"):
        splits.split_table(many(), "k-fold", 0, val_fraction=0.05)
