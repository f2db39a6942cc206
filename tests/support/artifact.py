"""Servable checkpoints before training writes them: the serving artifact of ml-100k, built from the
shared copy's u.data and u.item exactly as ``Prepared.serving_artifact()`` lays it out (dense indices
= MovieLens id - 1), and the session's trained checkpoints rewritten to carry it.

Today's training still indexes its tables by MovieLens id (row 0 unused); ``servable_checkpoint``
drops that row, so index i of the artifact is row i of the network and every prediction stays the
trained model's. Once training writes ``saved["data"]`` itself, the serving fixtures can serve the
trained run directly and this module shrinks to the small artifacts of the unit tests.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
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
    from sentinel_ml.data.movielens import (
        NUM_ITEMS,
        NUM_USERS,
        read_ratings,
        read_titles,
    )

    ratings = read_ratings(dataset_dir / "u.data")
    names = read_titles(dataset_dir)
    item_ids = list(range(1, NUM_ITEMS + 1))
    return artifact(list(range(1, NUM_USERS + 1)), item_ids, ratings.users - 1, ratings.items - 1,
                    titles=[names.get(i) for i in item_ids], dataset="ml-100k", split="u1")


def with_string_ids(data: dict, user_prefix: str = "u-", item_prefix: str = "m-") -> dict:
    """The same artifact with string ids: user 42 is ``"u-42"``, movie 1 ``"m-1"``."""
    return {**data, "id_type": "string", "user_ids": [f"{user_prefix}{i}" for i in data["user_ids"]],
            "item_ids": [f"{item_prefix}{i}" for i in data["item_ids"]]}


def servable_checkpoint(source: str, target: str, data: dict) -> int:
    """``source`` (a checkpoint indexed by MovieLens id) rewritten to ``target`` with dense tables and
    ``data``; its size in bytes."""
    from sentinel_ml.store.checkpoint import load_checkpoint, save_checkpoint

    saved = load_checkpoint(source)
    config = saved["model_config"]
    rows = {config["num_users"]: len(data["user_ids"]), config["num_items"]: len(data["item_ids"])}
    state = {}
    for name, tensor in saved["state_dict"].items():
        dense = rows.get(tensor.shape[0]) if tensor.dim() else None
        state[name] = tensor[tensor.shape[0] - dense:].clone() if dense is not None else tensor
    config = {**config, "num_users": len(data["user_ids"]), "num_items": len(data["item_ids"])}
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(target, state, config, saved.get("metrics", {}), data=data)


def servable_run(trained_run: Any, dataset_dir: Path, root: Path) -> SimpleNamespace:
    """The trained run under a storage root of its own, its checkpoints servable (ml-100k's artifact),
    indexed under the same run id: what `sentinel serve --checkpoint latest` finds there."""
    from sentinel_ml.store import index

    data = movielens_artifact(dataset_dir)
    record = next(r for r in index.read_records(trained_run.storage_root) if r.run_id == trained_run.run_id)
    checkpoints, sizes = {}, {}
    for which, uri in record.checkpoints.items():
        checkpoints[which] = str(root / "runs" / record.run_id / f"{which}.pt")
        sizes[which] = servable_checkpoint(uri, checkpoints[which], data)
    index.write_record(str(root), index.RunRecord(**{**record.__dict__, "checkpoints": checkpoints, "sizes": sizes}))
    return SimpleNamespace(run_id=record.run_id, checkpoints=checkpoints, storage_root=str(root),
                           metrics=record.metrics)
