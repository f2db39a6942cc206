"""The serving artifact: what a checkpoint carries so that a replica never reads the raw dataset.

A plain dict that ``torch.load(..., weights_only=True)`` loads (only tensors, lists, dicts, str, int,
float, bool and None)::

    format        1
    dataset       "ml-1m", "table", ...
    split         the split the model was trained on
    scale         [low, high]: predictions are clipped to it
    id_type       "int" when both users' and items' ids are integers, else "string"
    user_id_type  "int" | "string"   (each side exactly; ids of one side keep their own type)
    item_id_type  "int" | "string"
    user_ids      list: index -> the dataset's own user id (ints or strs)
    item_ids      list: index -> item id
    titles        list[str | None] per item index (None where the item table has no name)
    popularity    torch.int64 [num_items]: ratings per item over all (deduplicated) data
    seen_indptr   torch.int64 [num_users + 1]   CSR, rows = users: user u has rated
    seen_indices  torch.int32 [nnz]             seen_indices[seen_indptr[u]:seen_indptr[u+1]] (sorted)

"Seen" is every (user, item) of the deduplicated data, train, validation and test together: what a
user has already rated, so recommendations leave it out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from sentinel_ml.data.prepared import Prepared

ARTIFACT_FORMAT = 1
KEYS = ("format", "dataset", "split", "scale", "id_type", "user_id_type", "item_id_type", "user_ids", "item_ids",
        "titles", "popularity", "seen_indptr", "seen_indices")


def build_artifact(prepared: Prepared) -> dict[str, Any]:
    import torch

    meta = prepared.meta
    users = pq.read_table(prepared.part("users"), columns=["id"]).column("id")
    items = pq.read_table(prepared.part("items"), columns=["id", "title", "count"])
    seen = pq.read_table(prepared.part("seen"))
    seen_users = seen.column("user").to_numpy()
    indptr = np.zeros(meta.num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(seen_users, minlength=meta.num_users), out=indptr[1:])
    return {
        "format": ARTIFACT_FORMAT,
        "dataset": meta.dataset,
        "split": meta.split,
        "scale": [float(meta.scale[0]), float(meta.scale[1])],
        "id_type": "int" if set(meta.id_types.values()) == {"int"} else "string",
        "user_id_type": meta.id_types["user"],
        "item_id_type": meta.id_types["item"],
        "user_ids": users.to_pylist(),
        "item_ids": items.column("id").to_pylist(),
        "titles": items.column("title").to_pylist(),
        "popularity": torch.from_numpy(items.column("count").to_numpy().astype(np.int64)),
        "seen_indptr": torch.from_numpy(indptr),
        "seen_indices": torch.from_numpy(seen.column("item").to_numpy().astype(np.int32)),
    }


def check_artifact(artifact: dict[str, Any]) -> None:
    """Raise ValueError where ``artifact`` is not this format (a replica's first check on load)."""
    missing = [key for key in KEYS if key not in artifact]
    if missing or artifact["format"] != ARTIFACT_FORMAT:
        raise ValueError(f"not a format-{ARTIFACT_FORMAT} serving artifact (missing: {', '.join(missing) or 'none'}, "
                         f"format: {artifact.get('format')!r})")
    num_users, num_items = len(artifact["user_ids"]), len(artifact["item_ids"])
    if (len(artifact["titles"]) != num_items or tuple(artifact["popularity"].shape) != (num_items,)
            or tuple(artifact["seen_indptr"].shape) != (num_users + 1,)
            or int(artifact["seen_indptr"][-1]) != len(artifact["seen_indices"])):
        raise ValueError("serving artifact: sizes of ids, titles, popularity and seen items disagree")
