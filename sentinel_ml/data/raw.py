"""One raw ratings table, whatever it was read from: the hand-over between reading a source
(``sentinel_ml.data.sources``) and preparing it (``sentinel_ml.data.prepared``).

Columns of ``ratings`` (a ``pyarrow.Table``):

- ``user``, ``item``: the source's own ids, ``int64`` or ``string`` (never null);
- ``rating``: ``float32`` (never null, inside ``scale``);
- ``timestamp``: ``int64`` seconds, or null where the source has none.

Rows keep the source's order (duplicates are dropped when preparing: the latest by timestamp, or the last).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

RAW_COLUMNS = ("user", "item", "rating", "timestamp")


@dataclass(frozen=True)
class RawRatings:
    ratings: pa.Table
    origin: str  # what it was read from, for messages ("ml-1m (ratings.dat)", "/data/r.csv")
    fingerprint: str  # a stable digest of the source's content or identity: part of the prepared cache's key
    scale: tuple[float, float]  # declared (``--rating-scale``), the dataset's, or read from the data
    dataset: str  # the MovieLens name, or "table" for the user's own ratings
    items: pa.Table | None = None  # ``item`` (same type as ratings' item), ``title`` (string)
    # Splits the publisher made: ml-100k's {"u1": (u1.base, u1.test)}, each a table like ``ratings``.
    fixed_splits: dict[str, tuple[pa.Table, pa.Table]] = field(default_factory=dict)
