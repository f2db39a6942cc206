"""Serving artifacts for the serving unit tests: small hand-made ones, ml-100k's built from the shared
copy's u.data and u.item independently of ``Prepared.serving_artifact()`` (dense indices = MovieLens
id - 1: a reference to check it against), and a copy of an artifact with string ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def csr(num_users: int, users: np.ndarray, items: np.ndarray) -> tuple[Any, Any]:
    """``seen_indptr`` (int64 [users + 1]) and ``seen_indices`` (int32, sorted by user, then item)
    of (user index, item index) pairs, as torch tensors."""
    import torch

    order = np.lexsort((items, users))
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=num_users), out=indptr[1:])
    return torch.from_numpy(indptr), torch.from_numpy(items[order].astype(np.int32))


def artifact(user_ids: list, item_ids: list, users: np.ndarray, items: np.ndarray, *, titles: list | None = None,
             scale: tuple[float, float] = (1.0, 5.0), dataset: str = "test", split: str = "random") -> dict:
    """A format-1 serving artifact of (user index, item index) rating pairs."""
    import torch

    id_type = "string" if user_ids and isinstance(user_ids[0], str) else "int"
    indptr, indices = csr(len(user_ids), np.asarray(users), np.asarray(items))
    return {"format": 1, "dataset": dataset, "split": split, "scale": list(scale), "id_type": id_type,
            "user_ids": list(user_ids), "item_ids": list(item_ids),
            "titles": list(titles) if titles is not None else [None] * len(item_ids),
            "popularity": torch.from_numpy(np.bincount(items, minlength=len(item_ids)).astype(np.int64)),
            "seen_indptr": indptr, "seen_indices": indices}


def movielens_artifact(dataset_dir: Path) -> dict:
    """ml-100k's artifact: every rating of u.data is a seen item, titles from u.item."""
    from tests.support.movielens_ref import NUM_ITEMS, NUM_USERS, read_ratings, read_titles

    ratings = read_ratings(dataset_dir / "u.data")
    names = read_titles(dataset_dir)
    item_ids = list(range(1, NUM_ITEMS + 1))
    return artifact(list(range(1, NUM_USERS + 1)), item_ids, ratings.users - 1, ratings.items - 1,
                    titles=[names.get(i) for i in item_ids], dataset="ml-100k", split="u1")


def with_string_ids(data: dict, user_prefix: str = "u-", item_prefix: str = "m-") -> dict:
    """The same artifact with string ids: user 42 is ``"u-42"``, movie 1 ``"m-1"``."""
    return {**data, "id_type": "string", "user_ids": [f"{user_prefix}{i}" for i in data["user_ids"]],
            "item_ids": [f"{item_prefix}{i}" for i in data["item_ids"]]}
