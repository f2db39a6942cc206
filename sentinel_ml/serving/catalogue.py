"""What a replica knows of the data, read from the checkpoint's serving artifact (``saved["data"]``,
written by training from ``Prepared.serving_artifact()``): the dataset's user and item ids and their
dense indices (the network's rows), the item catalogue (titles where known, ratings per item) and
every user's seen items. A replica never reads the raw dataset, so it serves the same in any
environment, and the ids it takes and answers with are the dataset's own.

Ids. A dataset's ids are all integers (``id_type`` "int") or all strings ("string"); requests carry
JSON integers or strings (BYTES tensors in OIP), and both are accepted for either kind:

- an int dataset takes ``42`` and its decimal string ``"42"`` (what a path segment, a BYTES tensor or
  a client that quotes every id sends); any other string is an unknown id (404), never a 400;
- a string dataset takes ``"u42"``, and an integer ``42`` as the string ``"42"``.

Lookups are a dict per side. Measured at ML-25M's shape (162,541 users; 2 shared cores): building it
takes 20-27 ms, one lookup 50-60 ns, 1,000 lookups 45 µs; ``numpy.searchsorted`` on the sorted ids
took 1.4 µs per single id and 50 µs (ints) to 385 µs (strings) per 1,000, for 1-8 MiB instead of the
dict's 4-5 MiB. The dict is faster everywhere that matters and needs no conversion of the request.

Seen items are a CSR structure (``seen_indptr`` [users + 1], ``seen_indices`` [ratings]): one user's
items are a slice; a dense users x items matrix would take 9.6 GB at ML-25M's shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sentinel_ml.errors import ConfigError
from sentinel_ml.serving.api import ApiError

ARTIFACT_FORMAT = 1
ID_TYPES = ("int", "string")
Id = int | str
_DECIMAL = re.compile(r"[+-]?[0-9]{1,19}")  # at most int64's digits: no huge int() conversions
_SHOWN_IDS = 10
_SHOWN_CHARS = 64


class UnknownId(ApiError):
    """Ids the model does not know: a 404 naming them and whether they are users or items."""

    def __init__(self, kind: str, ids: Sequence[Any], known: int) -> None:
        self.kind = kind
        self.ids = list(ids)
        shown = ", ".join(_show(i) for i in self.ids[:_SHOWN_IDS]) + (", …" if len(self.ids) > _SHOWN_IDS else "")
        noun = kind if len(self.ids) == 1 else f"{kind}s"
        super().__init__(404, f"unknown {noun} {shown}: not among this model's {known} {kind}s")


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS - 1] + "…"


def normalize(value: Any, id_type: str) -> Id | None:
    """The dataset's id a request's ``value`` stands for (see the module docstring); None where it
    can be no id of this dataset (a boolean, a fraction, a non-decimal string for int ids)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    if id_type == "string":
        return value if isinstance(value, str) else str(value) if isinstance(value, int) else None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    return None


class IdMap:
    """One side's ids: index → the dataset's id (``ids``), and the dataset's id → index."""

    def __init__(self, kind: str, ids: Sequence[Id], id_type: str) -> None:
        self.kind = kind
        self.id_type = id_type
        self.ids = list(ids)
        expected = int if id_type == "int" else str
        wrong = next((i for i in self.ids if type(i) is not expected), None)
        if wrong is not None:
            raise ConfigError(f"the serving artifact's {kind} ids are {id_type}s, but one is {wrong!r}",
                              hint="retrain with `sentinel train`: the checkpoint's data is damaged")
        self._index = {value: index for index, value in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            raise ConfigError(f"the serving artifact lists {len(self.ids) - len(self._index)} {kind} ids twice",
                              hint="retrain with `sentinel train`: the checkpoint's data is damaged")

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, value: Any) -> int:
        """The index of one id; ``UnknownId`` (404) if the model does not know it."""
        index = self._index.get(normalize(value, self.id_type))
        if index is None:
            raise UnknownId(self.kind, [value], len(self))
        return index

    def indices(self, values: Sequence[Any]) -> np.ndarray:
        """int64 indices of ``values``, in order; one ``UnknownId`` naming every unknown one."""
        get, id_type = self._index.get, self.id_type
        found = [get(normalize(v, id_type)) for v in values]
        if None in found:
            unknown = list(dict.fromkeys(v for v, i in zip(values, found) if i is None))
            raise UnknownId(self.kind, unknown, len(self))
        return np.fromiter(found, dtype=np.int64, count=len(found))

    def id(self, index: int) -> Id:
        return self.ids[index]


@dataclass(frozen=True)
class Catalogue:
    """The serving artifact, checked and indexed. Indices are dense, 0 .. n-1, the network's rows."""

    dataset: str
    split: str
    scale: tuple[float, float]  # the rating scale: predictions are clipped to it
    id_type: str
    users: IdMap
    items: IdMap
    titles: list[str | None]  # per item index
    popularity: np.ndarray  # int64 [items]: ratings of each item in the whole dataset
    seen_indptr: np.ndarray  # int64 [users + 1]
    seen_indices: np.ndarray  # int32 [ratings]: user u's items are seen_indices[indptr[u]:indptr[u + 1]]

    @classmethod
    def from_artifact(cls, data: Mapping[str, Any]) -> Catalogue:
        """The catalogue of ``Prepared.serving_artifact()``'s dict; ``ConfigError`` for one this
        Sentinel cannot read or whose parts do not fit together."""
        if data.get("format") != ARTIFACT_FORMAT:
            raise ConfigError(f"the checkpoint's serving data has format {data.get('format')!r}; this Sentinel "
                              f"reads format {ARTIFACT_FORMAT}",
                              hint="serve it with the Sentinel that trained it, or retrain with `sentinel train`")
        id_type = data["id_type"]
        if id_type not in ID_TYPES:
            raise ConfigError(f"the serving artifact's id_type is {id_type!r}, not one of {', '.join(ID_TYPES)}")
        lo, hi = (float(v) for v in data["scale"])
        catalogue = cls(
            dataset=str(data["dataset"]), split=str(data["split"]), scale=(lo, hi), id_type=id_type,
            users=IdMap("user", data["user_ids"], id_type), items=IdMap("item", data["item_ids"], id_type),
            titles=list(data["titles"]), popularity=_array(data["popularity"], np.int64),
            seen_indptr=_array(data["seen_indptr"], np.int64), seen_indices=_array(data["seen_indices"], np.int32))
        catalogue._check()
        return catalogue

    def _check(self) -> None:
        users, items = len(self.users), len(self.items)
        problems = []
        if not self.scale[0] < self.scale[1]:
            problems.append(f"scale {list(self.scale)} is empty")
        if len(self.titles) != items:
            problems.append(f"{len(self.titles)} titles for {items} items")
        if self.popularity.shape != (items,):
            problems.append(f"popularity of shape {list(self.popularity.shape)} for {items} items")
        indptr, indices = self.seen_indptr, self.seen_indices
        if indptr.shape != (users + 1,) or indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
            problems.append(f"seen_indptr is no CSR row pointer for {users} users and {len(indices)} items")
        elif len(indices) and (indices.min() < 0 or indices.max() >= items):
            problems.append(f"seen_indices outside 0-{items - 1}")
        if problems:
            raise ConfigError(f"the checkpoint's serving data does not fit together: {'; '.join(problems)}",
                              hint="retrain with `sentinel train`: the checkpoint's data is damaged")

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

    def user_index(self, value: Any) -> int:
        return self.users.index(value)

    def item_index(self, value: Any) -> int:
        return self.items.index(value)

    def seen(self, user_index: int) -> np.ndarray:
        """The item indices ``user_index`` rated (a view of the CSR structure, no copy)."""
        return self.seen_indices[self.seen_indptr[user_index]:self.seen_indptr[user_index + 1]]


def _array(value: Any, dtype: type) -> np.ndarray:
    """A 1-D numpy array of a torch tensor or a list (no torch import here)."""
    array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    return np.ascontiguousarray(array.reshape(-1), dtype=dtype)
