"""``stats.describe``: the numbers of a tiny table worked out by hand, and the same numbers however
the table is split into batches."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sentinel_ml.data.raw import RawRatings
from sentinel_ml.data.stats import DataStats, Spread, StatsAccumulator, describe
from sentinel_ml.errors import DataError

# 3 users, 4 items, 7 ratings: user a rates 3, b 3, c 1; item x 3, y 2, z 1, w 1.
USERS = ["a", "a", "a", "b", "b", "b", "c"]
ITEMS = ["x", "y", "z", "x", "y", "w", "x"]
RATINGS = [1.0, 2.0, 3.0, 4.0, 5.0, 4.5, 3.5]
TIMES = [100, 50, None, 400, 300, 200, 250]


def raw(timestamps=TIMES, users=USERS, items=ITEMS, ratings=RATINGS, chunks: int = 1) -> RawRatings:
    table = pa.table({
        "user": pa.array(users, pa.string()), "item": pa.array(items, pa.string()),
        "rating": pa.array(ratings, pa.float32()), "timestamp": pa.array(timestamps, pa.int64()),
    })
    if chunks > 1:
        table = pa.Table.from_batches(table.to_batches(max_chunksize=max(1, len(users) // chunks)))
    return RawRatings(ratings=table, origin="hand", fingerprint="f", scale=(0.5, 5.0), dataset="table")


def test_describe_counts_a_hand_made_table() -> None:
    stats = describe(raw())
    assert stats == DataStats(
        origin="hand", dataset="table", users=3, items=4, ratings=7, sparsity=round(1 - 7 / 12, 8),
        scale=(0.5, 5.0), rating_min=1.0, rating_max=5.0, rating_mean=round(23.0 / 7, 6),
        ratings_per_user=Spread(min=1, median=3.0, max=3), ratings_per_item=Spread(min=1, median=1.5, max=3),
        timestamp_min=50, timestamp_max=400)


def test_batches_give_the_same_stats() -> None:
    assert describe(raw(chunks=7)) == describe(raw())
    acc = StatsAccumulator()  # more batches than the merge threshold, with integer ids
    for start in range(40):
        acc.add(pa.table({"user": pa.array([start % 5], pa.int64()), "item": pa.array([start], pa.int64()),
                          "rating": pa.array([2.0], pa.float32()), "timestamp": pa.array([None], pa.int64())}))
    stats = acc.result(origin="o", dataset="table", scale=(1.0, 5.0))
    assert (stats.users, stats.items, stats.ratings) == (5, 40, 40)
    assert stats.ratings_per_user == Spread(8, 8.0, 8) and stats.ratings_per_item == Spread(1, 1.0, 1)
    assert stats.timestamp_min is None and stats.timestamp_max is None


def test_no_timestamps_and_the_people_table() -> None:
    stats = describe(raw(timestamps=[None] * 7))
    assert stats.timestamp_min is None
    rows = dict(stats.rows())
    assert rows["users"] == "3" and rows["scale"] == "0.5:5" and rows["first rating"] == "-"
    assert rows["per item (min/median/max)"] == "1 / 1.5 / 3"


def test_an_empty_table_is_a_data_error() -> None:
    with pytest.raises(DataError, match="holds no ratings"):
        describe(raw(timestamps=[], users=[], items=[], ratings=[]))
