"""Train / validation / test splits of prepared ratings, and the numpy arrays training holds.

The split functions take Arrow tables whose ``user`` and ``item`` are already dense indices
(``sentinel_ml.data.prepared`` maps the ids first) and return Arrow tables with the same columns.
They are vectorised (numpy masks and sorts over whole columns, no Python per-row work) so that they
hold up at 25M ratings, and seeded, so a cached preparation and a fresh one agree.

The rules (``docs/data.md``):

- ``u1``: ml-100k's own u1.base / u1.test (``RawRatings.fixed_splits["u1"]``); refused elsewhere.
- ``random``: a seeded 90/10 split of every rating, the protocol published ML-1M/10M results use.
- ``temporal``: for each user with n >= 2 ratings, the latest ``max(1, floor(n / 10))`` by timestamp
  are the test part (ties broken by row order: a later row counts as later); a user with one rating
  keeps it in training, so every test user has been seen in training. Needs a timestamp on every rating.
- then validation: a seeded 5% (``val_fraction``) of the training part, so model selection never sees test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sentinel_ml.data import SPLITS
from sentinel_ml.errors import DataError

TEST_FRACTION = 0.1  # random: 90/10; temporal: the latest 10% of each user's ratings
# Independent random streams per step, so changing the test rule never moves the validation draw.
_TEST_STREAM, _VAL_STREAM = 0, 1
_KEEP = ["user", "item", "rating"]  # the columns of a prepared part


@dataclass(frozen=True)
class Ratings:
    """Parallel arrays: user indices, item indices (int64), ratings (float32)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray

    def __len__(self) -> int:
        return len(self.ratings)

    def take(self, index: np.ndarray) -> Ratings:
        return Ratings(self.users[index], self.items[index], self.ratings[index])

    @classmethod
    def empty(cls) -> Ratings:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))

    @classmethod
    def from_table(cls, table: pa.Table) -> Ratings:
        return cls(
            table.column("user").to_numpy().astype(np.int64),
            table.column("item").to_numpy().astype(np.int64),
            table.column("rating").to_numpy().astype(np.float32),  # a copy: Arrow's buffers are read-only
        )


@dataclass(frozen=True)
class Split:
    """A prepared split in memory: indices are dense (0..num_users-1, 0..num_items-1), so the
    embedding tables have exactly ``num_users`` and ``num_items`` rows. ``name`` is the split whose
    test RMSE a run reports; ``scale`` the rating scale (low, high) predictions are clipped to."""

    train: Ratings
    val: Ratings
    test: Ratings
    num_users: int
    num_items: int
    scale: tuple[float, float]
    name: str
    mean: float | None = None  # the training part's mean, where the part is not held (``train=False``)

    @property
    def global_mean(self) -> float:
        return self.mean if self.mean is not None else float(self.train.ratings.mean())


def check_split_name(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}", hint=f"choose one of: {', '.join(SPLITS)}")


def u1_refusal(origin: str) -> DataError:
    return DataError(f"{origin} has no u1 split: u1 is ml-100k's own split",
                     hint="use --split random or temporal")


def random_split(table: pa.Table, seed: int, *, test_fraction: float = TEST_FRACTION) -> tuple[pa.Table, pa.Table]:
    """(base, test): a seeded ``test_fraction`` of all rows as test; both keep the rows' order."""
    return _seeded_cut(table, test_fraction, np.random.default_rng([seed, _TEST_STREAM]))


def holdout(base: pa.Table, seed: int, *, val_fraction: float) -> tuple[pa.Table, pa.Table]:
    """(train, val): a seeded ``val_fraction`` of the training part as validation."""
    return _seeded_cut(base, val_fraction, np.random.default_rng([seed, _VAL_STREAM]))


def _seeded_cut(table: pa.Table, fraction: float, rng: np.random.Generator) -> tuple[pa.Table, pa.Table]:
    n = table.num_rows
    chosen = np.zeros(n, dtype=bool)
    chosen[rng.permutation(n)[: round(fraction * n)]] = True
    return table.filter(pa.array(~chosen)), table.filter(pa.array(chosen))


def temporal_split(table: pa.Table, origin: str = "the data", *,
                   test_fraction: float = TEST_FRACTION) -> tuple[pa.Table, pa.Table]:
    """(base, test): each user's latest ``max(1, floor(n * test_fraction))`` ratings as test, for
    users with n >= 2 ratings (module docstring). Refused when any rating lacks a timestamp."""
    if "timestamp" not in table.column_names or table.column("timestamp").null_count == table.num_rows:
        raise DataError(f"{origin} has no timestamps: the temporal split needs them",
                        hint="use --split random, or map a timestamp column with --columns ...,timestamp=COLUMN")
    stamps = table.column("timestamp")
    if stamps.null_count:
        raise DataError(f"{origin}: {stamps.null_count} ratings have no timestamp; the temporal split needs one on each",
                        hint="use --split random")
    users = table.column("user").to_numpy()
    order = _by_user_then_time(users, stamps.to_numpy())
    per_user = np.bincount(users, minlength=int(users.max()) + 1 if len(users) else 0)
    starts = np.cumsum(per_user) - per_user  # each user's first position in ``order``
    rank = np.arange(len(order)) - np.repeat(starts, per_user)  # position within the user, 0 = earliest
    n = np.repeat(per_user, per_user)
    held = np.where(n >= 2, np.maximum(1, np.floor(n * test_fraction).astype(np.int64)), 0)
    test = np.zeros(len(order), dtype=bool)
    test[order[rank >= n - held]] = True
    return table.filter(pa.array(~test)), table.filter(pa.array(test))


def _by_user_then_time(users: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """Row order sorted by (user, timestamp), stable: equal timestamps keep row order, so a later row
    counts as later. Where the times span under 2^32 (136 years of seconds) both fit one int64 key,
    whose single sort is about 2.5x faster than ``np.lexsort`` at 10M rows."""
    low = int(stamps.min())
    if int(stamps.max()) - low < 1 << 32:
        key = (users.astype(np.int64) << 32) | (stamps - low)
        return np.argsort(key, kind="stable")
    return np.lexsort((stamps, users))


def split_table(table: pa.Table, split: str, seed: int, *, val_fraction: float, origin: str = "the data",
                fixed: tuple[pa.Table, pa.Table] | None = None) -> dict[str, pa.Table]:
    """{"train", "val", "test"} for ``split``, each with the columns user, item, rating. ``fixed`` is the publisher's own (base, test) pair,
    already mapped to the same indices; ``u1`` needs it."""
    check_split_name(split)
    if split == "u1":
        if fixed is None:
            raise u1_refusal(origin)
        base, test = fixed
    elif split == "random":
        base, test = random_split(table, seed)
    else:
        base, test = temporal_split(table, origin)
    base, test = base.select(_KEEP), test.select(_KEEP)  # timestamps are not copied through the holdout
    train, val = holdout(base, seed, val_fraction=val_fraction)
    return {"train": train, "val": val, "test": test}
