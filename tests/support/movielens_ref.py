"""An independent reading of ml-100k's files for tests to check the product against: plain Python,
MovieLens ids as they are in the files (the product's dense index of id ``n`` is ``n - 1``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sentinel_ml.data.splits import Ratings

NUM_USERS = 943
NUM_ITEMS = 1682


def read_ratings(path: Path) -> Ratings:
    """A tab-separated ``user item rating timestamp`` file (u.data, u1.base, u1.test), by MovieLens id."""
    table = np.array(path.read_bytes().split(), dtype=np.int64).reshape(-1, 4)
    return Ratings(table[:, 0], table[:, 1], table[:, 2].astype(np.float32))


def dense(ratings: Ratings) -> Ratings:
    """``ratings`` by the product's dense indices (MovieLens id - 1)."""
    return Ratings(ratings.users - 1, ratings.items - 1, ratings.ratings)


def u1_test(dataset_dir: Path) -> Ratings:
    """u1.test by dense index: the test part of every run on the u1 split."""
    return dense(read_ratings(dataset_dir / "u1.test"))


def read_titles(dataset_dir: Path) -> dict[int, str]:
    """Movie id → title, from the pipe-separated, latin-1 encoded ``u.item``."""
    titles: dict[int, str] = {}
    for line in (dataset_dir / "u.item").read_text(encoding="latin-1").splitlines():
        if line:
            movie_id, title, *_ = line.split("|")
            titles[int(movie_id)] = title
    return titles
