"""MovieLens 100k parsing and splits, as plain numpy arrays.

Ids stay MovieLens ids (1-based), so the embedding tables are indexed by id directly and the serving
API takes the ids users see in the dataset. Row 0 of each table is unused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentinel_ml.data import SPLITS
from sentinel_ml.errors import DataError

NUM_USERS = 943
NUM_ITEMS = 1682
RATING_MIN = 1.0
RATING_MAX = 5.0


@dataclass(frozen=True)
class Ratings:
    """Parallel arrays: user ids, item ids, ratings (float32)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray

    def __len__(self) -> int:
        return len(self.ratings)

    def take(self, index: np.ndarray) -> Ratings:
        return Ratings(self.users[index], self.items[index], self.ratings[index])


@dataclass(frozen=True)
class Split:
    train: Ratings
    val: Ratings
    test: Ratings
    num_users: int
    num_items: int

    @property
    def global_mean(self) -> float:
        return float(self.train.ratings.mean())


def read_ratings(path: Path) -> Ratings:
    """Parse a tab-separated ``user item rating timestamp`` file (u.data, u1.base, u1.test)."""
    try:
        values = np.array(path.read_bytes().split(), dtype=np.int64)
        table = values.reshape(-1, 4)
    except (ValueError, OSError) as e:
        raise DataError(f"cannot parse ratings file {path}: {e}") from None
    ratings = table[:, 2].astype(np.float32)
    if len(table) and (ratings.min() < RATING_MIN or ratings.max() > RATING_MAX):
        raise DataError(f"ratings in {path} fall outside {RATING_MIN:g}-{RATING_MAX:g}")
    return Ratings(table[:, 0], table[:, 1], ratings)


def read_titles(dataset_dir: Path) -> dict[int, str]:
    """Movie id → title, from the pipe-separated, latin-1 encoded ``u.item``."""
    titles: dict[int, str] = {}
    for line in (dataset_dir / "u.item").read_text(encoding="latin-1").splitlines():
        if line:
            movie_id, title, *_ = line.split("|")
            titles[int(movie_id)] = title
    return titles


def read_users(dataset_dir: Path) -> dict[int, dict[str, str | int]]:
    """User id → age, gender, occupation, zip code, from ``u.user``."""
    users: dict[int, dict[str, str | int]] = {}
    for line in (dataset_dir / "u.user").read_text(encoding="latin-1").splitlines():
        if line:
            user_id, age, gender, occupation, zip_code = line.split("|")
            users[int(user_id)] = {
                "age": int(age),
                "gender": gender,
                "occupation": occupation,
                "zip": zip_code,
            }
    return users


def load_split(
    dataset_dir: Path, split: str = "u1", *, val_fraction: float = 0.05, seed: int = 42
) -> Split:
    """Train/val/test for ``split``.

    ``u1``: the canonical u1.base / u1.test; validation is a seeded holdout of u1.base, so model
    selection never sees u1.test. ``random``: a seeded 80/20 split of u.data, then the same holdout.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}", hint=f"choose one of: {', '.join(SPLITS)}")
    rng = np.random.default_rng(seed)
    if split == "u1":
        base = read_ratings(dataset_dir / "u1.base")
        test = read_ratings(dataset_dir / "u1.test")
    else:
        everything = read_ratings(dataset_dir / "u.data")
        order = rng.permutation(len(everything))
        cut = int(0.8 * len(everything))
        base, test = everything.take(order[:cut]), everything.take(order[cut:])
    order = rng.permutation(len(base))
    n_val = int(round(val_fraction * len(base)))
    return Split(
        train=base.take(order[n_val:]),
        val=base.take(order[:n_val]),
        test=test,
        num_users=NUM_USERS + 1,
        num_items=NUM_ITEMS + 1,
    )
