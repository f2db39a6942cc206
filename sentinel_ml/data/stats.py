"""``sentinel data stats``: what a ratings table holds (users, items, ratings, sparsity, scale, how
ratings spread over users and items, the time range), from a ``RawRatings`` of any source.

Everything is Arrow compute over record batches (``StatsAccumulator``): a batch adds its per-user and
per-item counts (a group-by, merged into running tables whose size is users and items, not ratings)
and its rating and timestamp sums and extremes. ``describe`` feeds it a whole table; a caller that
streams (a Parquet dataset's batches) feeds it batch by batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sentinel_ml.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

    from sentinel_ml.data.raw import RawRatings

_MERGE_EVERY = 16  # partial count tables kept before they are merged


@dataclass(frozen=True)
class Spread:
    """How many ratings each user (or item) has."""

    min: int
    median: float
    max: int


@dataclass(frozen=True)
class DataStats:
    origin: str
    dataset: str
    users: int
    items: int
    ratings: int
    sparsity: float  # 1 - ratings / (users × items)
    scale: tuple[float, float]  # the declared or read rating scale
    rating_min: float
    rating_max: float
    rating_mean: float
    ratings_per_user: Spread
    ratings_per_item: Spread
    timestamp_min: int | None  # seconds; None when the source has no timestamps
    timestamp_max: int | None

    def rows(self) -> list[tuple[str, object]]:
        """(label, value) pairs for a table meant for people."""
        def spread(s: Spread) -> str:
            return f"{s.min:,} / {s.median:,.1f} / {s.max:,}"

        def when(ts: int | None) -> str:
            import datetime as dt

            return "-" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

        return [
            ("source", self.origin), ("dataset", self.dataset), ("users", f"{self.users:,}"),
            ("items", f"{self.items:,}"), ("ratings", f"{self.ratings:,}"), ("sparsity", f"{self.sparsity:.6f}"),
            ("scale", f"{self.scale[0]:g}:{self.scale[1]:g}"),
            ("ratings seen", f"{self.rating_min:g} to {self.rating_max:g}, mean {self.rating_mean:.4f}"),
            ("per user (min/median/max)", spread(self.ratings_per_user)),
            ("per item (min/median/max)", spread(self.ratings_per_item)),
            ("first rating", when(self.timestamp_min)), ("last rating", when(self.timestamp_max)),
        ]


class StatsAccumulator:
    """Stats over record batches with the columns of ``RawRatings.ratings`` (``user``, ``item``,
    ``rating``, ``timestamp``), in any number of batches."""

    def __init__(self) -> None:
        self._counts: dict[str, list[pa.Table]] = {"user": [], "item": []}
        self.ratings = 0
        self._rating_sum = 0.0
        self._rating_min: float | None = None
        self._rating_max: float | None = None
        self._ts_min: int | None = None
        self._ts_max: int | None = None

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if table.num_rows == 0:
            return
        self.ratings += table.num_rows
        for role, parts in self._counts.items():
            parts.append(table.group_by(role).aggregate([([], "count_all")]).rename_columns([role, "n"]))
            if len(parts) >= _MERGE_EVERY:
                self._counts[role] = [_merge(parts, role)]
        rating = table.column("rating")
        self._rating_sum += pc.sum(rating, min_count=0).as_py() or 0.0
        low, high = _min_max(rating)
        self._rating_min = low if self._rating_min is None else min(self._rating_min, low)
        self._rating_max = high if self._rating_max is None else max(self._rating_max, high)
        if "timestamp" in table.column_names:
            low, high = _min_max(table.column("timestamp"))
            if low is not None:
                self._ts_min = low if self._ts_min is None else min(self._ts_min, low)
                self._ts_max = high if self._ts_max is None else max(self._ts_max, high)

    def result(self, *, origin: str, dataset: str, scale: tuple[float, float]) -> DataStats:
        if self.ratings == 0:
            raise DataError(f"{origin} holds no ratings", hint="check the path, or the --columns it was read with")
        per = {role: _merge(parts, role).column("n") for role, parts in self._counts.items()}
        users, items = len(per["user"]), len(per["item"])
        return DataStats(
            origin=origin, dataset=dataset, users=users, items=items, ratings=self.ratings,
            sparsity=round(1.0 - self.ratings / (users * items), 8), scale=(float(scale[0]), float(scale[1])),
            rating_min=float(self._rating_min), rating_max=float(self._rating_max),
            rating_mean=round(self._rating_sum / self.ratings, 6),
            ratings_per_user=_spread(per["user"]), ratings_per_item=_spread(per["item"]),
            timestamp_min=self._ts_min, timestamp_max=self._ts_max)


def describe(raw: RawRatings) -> DataStats:
    """The stats of ``raw.ratings``, batch by batch (duplicate (user, item) pairs count as ratings:
    preparing drops them later)."""
    acc = StatsAccumulator()
    for batch in raw.ratings.to_batches():
        acc.add(batch)
    return acc.result(origin=raw.origin, dataset=raw.dataset, scale=raw.scale)


def _merge(parts: list[pa.Table], role: str) -> pa.Table:
    import pyarrow as pa

    if len(parts) == 1:
        return parts[0]
    return pa.concat_tables(parts).group_by(role).aggregate([("n", "sum")]).rename_columns([role, "n"])


def _min_max(column: pa.ChunkedArray) -> tuple:
    import pyarrow.compute as pc

    found = pc.min_max(column)
    return found["min"].as_py(), found["max"].as_py()


def _spread(counts: pa.ChunkedArray) -> Spread:
    import pyarrow.compute as pc

    low, high = _min_max(counts)
    median = pc.quantile(counts, q=0.5, interpolation="midpoint")[0].as_py()
    return Spread(min=int(low), median=float(median), max=int(high))
