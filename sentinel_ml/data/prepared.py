"""A source prepared once: duplicates dropped, ids mapped to dense indices, split, written as Parquet
and cached, so that training (in memory or as Ray Data shards) and serving never parse the raw data again.

Layout of a prepared directory (``docs/data.md``)::

    train.parquet, val.parquet, test.parquet   user int32, item int32, rating float32 (dense indices)
    users.parquet                              index int32, id (the source's own: int64 or string)
    items.parquet                              index int32, id, title (null where unknown), count int64
    seen.parquet                               user int32, item int32: every rated pair, sorted by (user, item)
    meta.json                                  what it is (PreparedMeta), written last

The cache key is the sha256 of (format version, the source's fingerprint, split, seed, val_fraction,
column mapping, declared scale, item table): a hit is a complete directory and is returned without
reading the source. A directory is built beside its final name and renamed into place, so a failure
anywhere (a ``DataError`` from reading, a full disk) leaves no entry, and two processes preparing the
same key at once both end with the one complete copy.

Everything is whole-column work (Arrow hashing, numpy sorts), never Python per row: 25M ratings
prepare in seconds. Items that appear only in the item table (never rated) get no index: the model
cannot score them, so they are not part of the catalogue.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sentinel_ml.data import splits
from sentinel_ml.data.raw import RawRatings
from sentinel_ml.data.splits import Ratings, Split
from sentinel_ml.errors import ConfigError, DataError

if TYPE_CHECKING:
    from sentinel_ml.data.source import DataSource

FORMAT = 1  # bump when the layout or a rule changes: old cache entries are then never hit
PARTS = ("train", "val", "test")
DEFAULT_VAL_FRACTION = 0.05
ROW_GROUP = 1 << 20  # rows per Parquet row group: the unit Ray Data reads and shards
META = "meta.json"
STALE_BUILD_S = 6 * 3600  # a building directory untouched this long belongs to a dead process

Notify = Callable[[str], None]


@dataclass(frozen=True)
class PreparedMeta:
    """meta.json: what was prepared, from what, and its sizes."""

    format: int
    key: str
    dataset: str
    origin: str
    fingerprint: str
    split: str
    seed: int
    val_fraction: float
    num_users: int
    num_items: int
    num_ratings: int  # after dropping duplicates
    counts: dict[str, int]  # rows per part: train, val, test
    duplicates_dropped: int
    global_mean: float  # of the training part
    scale: tuple[float, float]
    id_types: dict[str, str]  # {"user": "int"|"string", "item": "int"|"string"}
    seconds: float  # how long preparing took

    @classmethod
    def from_json(cls, text: str) -> PreparedMeta:
        values = json.loads(text)
        values["scale"] = tuple(values["scale"])
        return cls(**values)


@dataclass(frozen=True)
class Prepared:
    """A complete prepared directory."""

    directory: Path
    meta: PreparedMeta

    @classmethod
    def open(cls, directory: Path) -> Prepared:
        return cls(directory, PreparedMeta.from_json((directory / META).read_text()))

    def part(self, name: str) -> Path:
        """The Parquet file of a part: train, val, test, users, items or seen."""
        if name not in (*PARTS, "users", "items", "seen"):
            raise ValueError(f"no part {name!r} in a prepared directory")
        return self.directory / f"{name}.parquet"

    def load_split(self, *, train: bool = True) -> Split:
        """The parts in memory as numpy arrays (int64 indices, float32 ratings). ``train=False`` leaves the
        training part out (empty), for a worker that streams it as Ray Data shards (``data.shards``)."""
        names = PARTS if train else tuple(p for p in PARTS if p != "train")
        parts = {name: Ratings.from_table(pq.read_table(self.part(name))) for name in names}
        parts.setdefault("train", Ratings.empty())
        m = self.meta
        return Split(**parts, num_users=m.num_users, num_items=m.num_items, scale=m.scale, name=m.split,
                     mean=m.global_mean)

    def summary(self) -> dict[str, Any]:
        """What a run record says about its data: which split its test RMSE is on, and the sizes."""
        m = self.meta
        return {"dataset": m.dataset, "origin": m.origin, "split": m.split, "seed": m.seed,
                "users": m.num_users, "items": m.num_items, "ratings": m.num_ratings, **m.counts,
                "duplicates_dropped": m.duplicates_dropped, "scale": list(m.scale)}

    def serving_artifact(self) -> dict[str, Any]:
        """The id maps, catalogue and seen items a checkpoint carries (``sentinel_ml.data.artifact``)."""
        from sentinel_ml.data.artifact import build_artifact

        return build_artifact(self)


def cache_key(source: DataSource, split: str, seed: int, val_fraction: float, fingerprint: str) -> str:
    """Everything that changes the prepared bytes. ``fingerprint`` (``sources.source_fingerprint``)
    stands for the source's content; the rest are the choices made on top of it."""
    parts = [FORMAT, fingerprint, split, int(seed), float(val_fraction), source.columns.as_text(),
             list(source.rating_scale) if source.rating_scale else None, source.items]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _complete(directory: Path) -> Prepared | None:
    try:
        prepared = Prepared.open(directory)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return prepared if prepared.meta.format == FORMAT else None


def prepare(source: DataSource, split: str, seed: int, *, val_fraction: float = DEFAULT_VAL_FRACTION,
            cache_dir: Path | None = None, notify: Notify | None = None,
            reader: Callable[[DataSource], RawRatings] | None = None,
            fingerprint: Callable[[DataSource], str] | None = None) -> Prepared:
    """The cached preparation of ``source`` for ``split`` and ``seed``: built on the first call,
    returned as it is afterwards without reading the source. ``reader`` and ``fingerprint`` default to
    ``sources.read_source`` and ``sources.source_fingerprint`` (arguments so tests can count reads)."""
    _check_choices(split, val_fraction)
    if reader is None or fingerprint is None:
        from sentinel_ml.data import sources

        reader = reader or sources.read_source
        fingerprint = fingerprint or sources.source_fingerprint
    if split == "u1":  # known before reading a large archive or table: only ml-100k's own archive has u1
        from sentinel_ml.data.sources import is_table

        if is_table(source.data):
            raise splits.u1_refusal(source.data)
        if source.dataset != "ml-100k":
            raise splits.u1_refusal(source.dataset)
    if cache_dir is None:
        from sentinel_ml.paths import data_cache_dir

        cache_dir = data_cache_dir() / "prepared"
    key = cache_key(source, split, seed, val_fraction, fingerprint(source))
    directory = Path(cache_dir) / key
    _sweep(Path(cache_dir))
    hit = _complete(directory)
    if hit is not None:
        if notify:
            notify(f"prepared data: {hit.meta.origin}, split {split} (cached)")
        return hit
    raw = reader(source)
    return prepare_raw(raw, split, seed, val_fraction=val_fraction, directory=directory, key=key, notify=notify)


def prepare_raw(raw: RawRatings, split: str, seed: int, *, directory: Path,
                val_fraction: float = DEFAULT_VAL_FRACTION, key: str | None = None,
                notify: Notify | None = None) -> Prepared:
    """Prepare ``raw`` into ``directory`` (built beside it, then renamed into place). Where another
    process finished the same directory first, its copy is kept and returned."""
    _check_choices(split, val_fraction)
    started = time.perf_counter()
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{directory.name[:24]}.", suffix=".building", dir=directory.parent))
    try:
        key = key or hashlib.sha256(json.dumps([FORMAT, raw.fingerprint, split, seed, val_fraction]).encode()).hexdigest()
        meta = _build(raw, split, seed, val_fraction, building, key, started)
        _publish(building, directory)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    prepared = _complete(directory)
    if prepared is None:  # the rename lost to something that is not a complete preparation
        raise DataError(f"{directory} exists and is not a complete preparation", hint="remove it and retry")
    if notify:
        notify(f"prepared data: {meta.origin}, split {split}: {meta.num_users:,} users, {meta.num_items:,} items, "
               f"{meta.num_ratings:,} ratings ({meta.duplicates_dropped:,} duplicates dropped) in {meta.seconds:.1f} s")
    return prepared


def _check_choices(split: str, val_fraction: float) -> None:
    splits.check_split_name(split)
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"validation fraction {val_fraction} is not in [0, 1)")


def _sweep(cache_dir: Path, older_than_s: float = STALE_BUILD_S) -> None:
    """Remove building directories that a killed process left behind (a live build takes seconds
    to minutes; one untouched for hours is dead)."""
    if not cache_dir.is_dir():
        return
    cutoff = time.time() - older_than_s
    for leftover in cache_dir.glob(".*.building"):
        try:
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass  # another process swept it first


def _publish(building: Path, directory: Path) -> None:
    if directory.exists() and _complete(directory) is None:
        shutil.rmtree(directory, ignore_errors=True)  # a leftover that was never a complete entry
    try:
        os.rename(building, directory)
    except OSError:
        if _complete(directory) is None:
            raise
        shutil.rmtree(building, ignore_errors=True)  # another process won the race: keep its copy


def dense_ids(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(int32 index per row, the sorted distinct ids): index i stands for ids[i], so ml-100k's
    1..943 become 0..942. One Arrow hash pass, then a sort of the distinct ids only."""
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries()
        chunks = encoded.chunks
        dictionary = chunks[0].dictionary if chunks else pa.array([], type=column.type)
        codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in chunks]) if chunks \
            else np.empty(0, np.int32)
    else:
        dictionary, codes = encoded.dictionary, encoded.indices.to_numpy(zero_copy_only=False)
    order = pc.sort_indices(dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return rank[codes], dictionary.take(pa.array(order))


def _map_to(column: pa.ChunkedArray, ids: pa.Array, what: str, origin: str) -> np.ndarray:
    """Indices of ``column``'s values in ``ids`` (a fixed split's rows against the full data's ids)."""
    try:
        column = column.cast(ids.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(f"{origin}: {what} ids of type {column.type} do not match the ratings' {ids.type}") from None
    found = pc.index_in(column, value_set=ids)
    if found.null_count:
        missing = pc.filter(column, pc.is_null(found))[0].as_py()
        raise DataError(f"{origin}: {what} {missing!r} of a fixed split is not in the ratings")
    return found.to_numpy(zero_copy_only=False).astype(np.int32)


def _stamps(table: pa.Table) -> np.ndarray | None:
    """int64 timestamps with nulls as the earliest time, or None where there are none at all."""
    if "timestamp" not in table.column_names or table.column("timestamp").null_count == table.num_rows:
        return None
    stamps = table.column("timestamp")
    if stamps.null_count:
        stamps = pc.fill_null(stamps, np.iinfo(np.int64).min)
    return stamps.to_numpy().astype(np.int64, copy=False)


def dedup(users: np.ndarray, items: np.ndarray, stamps: np.ndarray | None,
          num_items: int) -> tuple[np.ndarray | None, np.ndarray]:
    """(rows kept in source order, or None where every row is kept; the kept rows sorted by
    (user, item)): one row per (user, item),
    the latest by timestamp, ties and missing timestamps going to the last row. One stable sort of a
    combined key does both jobs: groups of duplicates become runs, and the kept rows in that order are
    exactly the seen-items CSR."""
    key = users.astype(np.int64) * num_items + items
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    run_end = np.ones(len(order), dtype=bool)
    np.not_equal(sorted_key[1:], sorted_key[:-1], out=run_end[:-1])
    if run_end.all():
        return None, order
    if stamps is None:
        kept_sorted = order[run_end]  # stable: the last row of each run is the source's last
    else:
        starts = np.flatnonzero(np.concatenate(([True], run_end[:-1])))
        sorted_stamps = stamps[order]
        latest = np.maximum.reduceat(sorted_stamps, starts)
        sizes = np.diff(np.append(starts, len(order)))
        position = np.where(sorted_stamps == np.repeat(latest, sizes), np.arange(len(order)), -1)
        kept_sorted = order[np.maximum.reduceat(position, starts)]  # the last row holding the latest time
    return np.sort(kept_sorted), kept_sorted


def _ratings_table(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, stamps: pa.ChunkedArray | None) -> pa.Table:
    columns = {"user": pa.array(users, pa.int32()), "item": pa.array(items, pa.int32()),
               "rating": pa.array(ratings, pa.float32())}
    if stamps is not None:
        columns["timestamp"] = stamps
    return pa.table(columns)


def _id_type(ids: pa.Array) -> str:
    return "int" if pa.types.is_integer(ids.type) else "string"


def _titles(raw: RawRatings, item_ids: pa.Array) -> pa.Array:
    if raw.items is None or raw.items.num_rows == 0:
        return pa.nulls(len(item_ids), pa.string())
    catalogue_ids = raw.items.column("item")
    try:
        catalogue_ids = catalogue_ids.cast(item_ids.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(f"{raw.origin}: the item table's ids ({catalogue_ids.type}) do not match the ratings' "
                        f"({item_ids.type})", hint="give --items a table whose id column holds the ratings' item ids") from None
    where = pc.index_in(item_ids, value_set=catalogue_ids)  # the first row of a repeated id
    return pc.take(raw.items.column("title").cast(pa.string()), where)


def _build(raw: RawRatings, split: str, seed: int, val_fraction: float, out: Path, key: str, started: float) -> PreparedMeta:
    table = raw.ratings
    if table.num_rows == 0:
        raise DataError(f"{raw.origin} has no ratings")
    users, user_ids = dense_ids(table.column("user"))
    items, item_ids = dense_ids(table.column("item"))
    num_users, num_items = len(user_ids), len(item_ids)
    kept, seen = dedup(users, items, _stamps(table), num_items)
    dropped = 0 if kept is None else table.num_rows - len(kept)
    ratings = table.column("rating").to_numpy().astype(np.float32, copy=False)
    stamps = table.column("timestamp") if "timestamp" in table.column_names else None
    if kept is not None:
        users, items, ratings = users[kept], items[kept], ratings[kept]
        stamps = stamps.take(pa.array(kept)) if stamps is not None else None
    everything = _ratings_table(users, items, ratings, stamps)

    fixed = None
    if split == "u1" and "u1" in raw.fixed_splits:
        fixed = tuple(_fixed_part(part, user_ids, item_ids, raw.origin) for part in raw.fixed_splits["u1"])
    parts = splits.split_table(everything, split, seed, val_fraction=val_fraction, origin=raw.origin, fixed=fixed)

    for name, part in parts.items():
        pq.write_table(part.select(["user", "item", "rating"]), out / f"{name}.parquet", row_group_size=ROW_GROUP)
    pq.write_table(pa.table({"index": pa.array(np.arange(num_users, dtype=np.int32)), "id": user_ids}),
                   out / "users.parquet", row_group_size=ROW_GROUP)
    counts = np.bincount(items, minlength=num_items).astype(np.int64)
    pq.write_table(pa.table({"index": pa.array(np.arange(num_items, dtype=np.int32)), "id": item_ids,
                             "title": _titles(raw, item_ids), "count": pa.array(counts)}),
                   out / "items.parquet", row_group_size=ROW_GROUP)
    # ``seen`` indexes the deduplicated rows (``kept``) by position before the take above: map it.
    seen_users, seen_items = _seen_pairs(seen, kept, users, items, table.num_rows)
    pq.write_table(pa.table({"user": pa.array(seen_users, pa.int32()), "item": pa.array(seen_items, pa.int32())}),
                   out / "seen.parquet", row_group_size=ROW_GROUP)

    train_ratings = parts["train"].column("rating")
    meta = PreparedMeta(
        format=FORMAT, key=key, dataset=raw.dataset, origin=raw.origin, fingerprint=raw.fingerprint,
        split=split, seed=int(seed), val_fraction=float(val_fraction), num_users=num_users, num_items=num_items,
        num_ratings=len(seen), counts={name: part.num_rows for name, part in parts.items()},
        duplicates_dropped=int(dropped),
        global_mean=float(pc.mean(train_ratings).as_py() or 0.0) if len(train_ratings) else 0.0,
        scale=(float(raw.scale[0]), float(raw.scale[1])),
        id_types={"user": _id_type(user_ids), "item": _id_type(item_ids)},
        seconds=round(time.perf_counter() - started, 3),
    )
    (out / META).write_text(json.dumps(asdict(meta), indent=1))
    return meta


def _seen_pairs(seen: np.ndarray, kept: np.ndarray | None, users: np.ndarray, items: np.ndarray,
                num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) of every kept row, sorted by (user, item). ``seen`` holds source rows; after a
    dedup ``users``/``items`` are indexed by position in ``kept`` instead."""
    if kept is None:
        return users[seen], items[seen]
    position = np.empty(num_rows, dtype=np.int64)
    position[kept] = np.arange(len(kept))
    rows = position[seen]
    return users[rows], items[rows]


def _fixed_part(part: pa.Table, user_ids: pa.Array, item_ids: pa.Array, origin: str) -> pa.Table:
    """A publisher's split part (source ids) in the full data's indices, its duplicates dropped too."""
    users = _map_to(part.column("user"), user_ids, "user", origin)
    items = _map_to(part.column("item"), item_ids, "item", origin)
    kept, _ = dedup(users, items, _stamps(part), len(item_ids))
    ratings = part.column("rating").to_numpy().astype(np.float32, copy=False)
    if kept is not None:
        users, items, ratings = users[kept], items[kept], ratings[kept]
    return _ratings_table(users, items, ratings, None)
