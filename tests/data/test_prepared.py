"""Preparing raw ratings: duplicates, dense ids, the Parquet layout, the cache and the serving artifact,
on small synthetic tables built as RawRatings (real files in a temporary directory)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sentinel_ml.data.artifact import check_artifact
from sentinel_ml.data.prepared import Prepared, prepare, prepare_raw
from sentinel_ml.data.raw import RawRatings
from sentinel_ml.data.source import DataSource
from sentinel_ml.errors import ConfigError, DataError

INT64 = pa.int64()


def raw_ratings(users, items, ratings, stamps=None, *, id_type=INT64, items_table=None,
                fixed=None, dataset="table") -> RawRatings:
    n = len(users)
    ts = pa.array(stamps if stamps is not None else [None] * n, pa.int64())
    t = pa.table({"user": pa.array(users, id_type), "item": pa.array(items, id_type),
                  "rating": pa.array(ratings, pa.float32()), "timestamp": ts})
    return RawRatings(t, origin="synthetic", fingerprint="fp", scale=(1.0, 5.0), dataset=dataset,
                      items=items_table, fixed_splits=fixed or {})


def rows(prepared: Prepared) -> dict[tuple, float]:
    """(user id, item id) -> rating over all three parts, in the source's ids."""
    user_ids = pq.read_table(prepared.part("users")).column("id").to_pylist()
    item_ids = pq.read_table(prepared.part("items")).column("id").to_pylist()
    out = {}
    for name in ("train", "val", "test"):
        part = pq.read_table(prepared.part(name)).to_pydict()
        for u, i, r in zip(part["user"], part["item"], part["rating"], strict=True):
            assert (user_ids[u], item_ids[i]) not in out
            out[user_ids[u], item_ids[i]] = r
    return out


def test_duplicates_keep_the_latest_by_timestamp(tmp_path: Path) -> None:
    raw = raw_ratings([1, 1, 1, 2, 2], [7, 7, 7, 7, 8], [1, 2, 3, 4, 5], [50, 90, 10, 5, 5])
    prepared = prepare_raw(raw, "random", 0, directory=tmp_path / "p")
    assert rows(prepared) == {(1, 7): 2.0, (2, 7): 4.0, (2, 8): 5.0}
    assert prepared.meta.duplicates_dropped == 2 and prepared.meta.num_ratings == 3
    assert prepared.summary()["duplicates_dropped"] == 2


def test_duplicates_without_timestamps_keep_the_last_row(tmp_path: Path) -> None:
    raw = raw_ratings([1, 2, 1, 1], [7, 7, 7, 8], [1, 4, 3, 5])
    prepared = prepare_raw(raw, "random", 0, directory=tmp_path / "p")
    assert rows(prepared) == {(1, 7): 3.0, (2, 7): 4.0, (1, 8): 5.0}
    # Equal timestamps: the last row too.
    raw = raw_ratings([1, 1, 1], [7, 7, 7], [1, 2, 3], [4, 4, 3])
    assert rows(prepare_raw(raw, "random", 0, directory=tmp_path / "q")) == {(1, 7): 2.0}


def test_string_ids_map_densely_and_round_trip(tmp_path: Path) -> None:
    users = ["zoe", "adam", "mia", "adam", "zoe"]
    items = ["m-9", "m-1", "m-1", "m-30", "m-30"]
    raw = raw_ratings(users, items, [1, 2, 3, 4, 5], id_type=pa.string(),
                      items_table=pa.table({"item": ["m-30", "m-9", "never-rated"], "title": ["Thirty", "Nine", "X"]}))
    prepared = prepare_raw(raw, "random", 0, directory=tmp_path / "p")
    assert pq.read_table(prepared.part("users")).to_pydict() == {"index": [0, 1, 2], "id": ["adam", "mia", "zoe"]}
    catalogue = pq.read_table(prepared.part("items")).to_pydict()
    assert catalogue == {"index": [0, 1, 2], "id": ["m-1", "m-30", "m-9"], "title": [None, "Thirty", "Nine"],
                         "count": [2, 2, 1]}  # "never-rated" is not part of the model
    assert rows(prepared) == dict(zip(zip(users, items, strict=True), [1.0, 2.0, 3.0, 4.0, 5.0], strict=True))
    assert prepared.meta.id_types == {"user": "string", "item": "string"}
    split = prepared.load_split()
    assert split.num_users == 3 and split.num_items == 3 and split.name == "random" and split.scale == (1.0, 5.0)
    assert split.train.users.dtype == np.int64 and split.train.ratings.dtype == np.float32
    for name in ("train", "val", "test"):
        schema = pq.read_schema(prepared.part(name))
        assert [(f.name, str(f.type)) for f in schema] == [("user", "int32"), ("item", "int32"), ("rating", "float")]


def test_sparse_integer_ids_become_0_to_n(tmp_path: Path) -> None:
    raw = raw_ratings([943, 5, 10**12], [1682, 1, 1], [1, 2, 3])
    prepared = prepare_raw(raw, "random", 0, directory=tmp_path / "p")
    assert pq.read_table(prepared.part("users")).column("id").to_pylist() == [5, 943, 10**12]
    assert pq.read_table(prepared.part("items")).column("id").to_pylist() == [1, 1682]
    assert prepared.meta.id_types == {"user": "int", "item": "int"}


def test_meta_and_parts_on_a_larger_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    flat = rng.choice(300 * 500, size=n, replace=False)
    raw = raw_ratings(flat // 500 + 1, flat % 500 + 1, rng.integers(1, 6, n), rng.integers(0, 10**9, n))
    prepared = prepare_raw(raw, "temporal", 5, directory=tmp_path / "p")
    meta = json.loads((prepared.directory / "meta.json").read_text())
    assert meta["split"] == "temporal" and meta["num_ratings"] == n
    assert sum(meta["counts"].values()) == n and meta["counts"]["val"] == round(0.05 * (n - meta["counts"]["test"]))
    split = prepared.load_split()
    assert abs(split.global_mean - meta["global_mean"]) < 1e-6
    assert len(split.train) == meta["counts"]["train"]
    assert split.train.users.max() < split.num_users and split.train.items.max() < split.num_items


def test_u1_maps_the_fixed_parts_with_the_full_datas_ids(tmp_path: Path) -> None:
    full = raw_ratings([10, 10, 20, 30], [1, 2, 1, 3], [1, 2, 3, 4])
    base, test = full.ratings.slice(0, 3), full.ratings.slice(3, 1)
    raw = raw_ratings([10, 10, 20, 30], [1, 2, 1, 3], [1, 2, 3, 4], fixed={"u1": (base, test)}, dataset="ml-100k")
    prepared = prepare_raw(raw, "u1", 0, directory=tmp_path / "p")
    assert prepared.meta.counts == {"train": 3, "val": 0, "test": 1}
    assert pq.read_table(prepared.part("test")).to_pydict() == {"user": [2], "item": [2], "rating": [4.0]}
    with pytest.raises(DataError, match="has no u1 split"):
        prepare_raw(raw_ratings([1], [1], [1]), "u1", 0, directory=tmp_path / "q")
    assert not (tmp_path / "q").exists()


def test_serving_artifact_loads_with_weights_only_and_its_csr_is_the_seen_pairs(tmp_path: Path) -> None:
    users, items = ["b", "a", "b", "c", "a", "b"], [10, 20, 10, 30, 30, 20]
    t = raw_ratings(users, [str(i) for i in items], [1, 2, 3, 4, 5, 1], [1, 2, 3, 4, 5, 6], id_type=pa.string())
    prepared = prepare_raw(t, "random", 0, directory=tmp_path / "p")
    buffer = io.BytesIO()
    torch.save(prepared.serving_artifact(), buffer)
    buffer.seek(0)
    artifact = torch.load(buffer, weights_only=True)
    check_artifact(artifact)
    assert artifact["user_ids"] == ["a", "b", "c"] and artifact["item_ids"] == ["10", "20", "30"]
    assert artifact["id_type"] == "string" and artifact["split"] == "random" and artifact["scale"] == [1.0, 5.0]
    assert artifact["titles"] == [None, None, None]
    assert artifact["popularity"].dtype == torch.int64 and artifact["popularity"].tolist() == [1, 2, 2]
    indptr, indices = artifact["seen_indptr"], artifact["seen_indices"]
    assert indptr.dtype == torch.int64 and indices.dtype == torch.int32
    seen = {(artifact["user_ids"][u], artifact["item_ids"][int(i)])
            for u in range(3) for i in indices[indptr[u]:indptr[u + 1]]}
    assert seen == {(u, str(i)) for u, i in zip(users, items, strict=True)}
    assert indices[indptr[1]:indptr[2]].tolist() == [0, 1]  # sorted within a user


class CountingReader:
    def __init__(self, raw: RawRatings | None = None, error: Exception | None = None) -> None:
        self.raw, self.error, self.calls = raw, error, 0

    def __call__(self, source: DataSource) -> RawRatings:
        self.calls += 1
        if self.error:
            raise self.error
        return self.raw


def fingerprint(source: DataSource) -> str:
    return f"fingerprint of {source.data}"


def test_prepare_reads_once_then_hits_the_cache(tmp_path: Path) -> None:
    reader = CountingReader(raw_ratings([1, 2, 3, 1], [1, 1, 2, 2], [1, 2, 3, 4]))
    source = DataSource(data="/data/r.csv")
    messages: list[str] = []
    first = prepare(source, "random", 1, cache_dir=tmp_path, reader=reader, fingerprint=fingerprint,
                    notify=messages.append)
    again = prepare(source, "random", 1, cache_dir=tmp_path, reader=reader, fingerprint=fingerprint,
                    notify=messages.append)
    assert reader.calls == 1 and again == first and "(cached)" in messages[-1]
    assert first.directory.parent == tmp_path and first.directory.name == first.meta.key
    prepare(source, "random", 2, cache_dir=tmp_path, reader=reader, fingerprint=fingerprint)
    prepare(source, "random", 1, val_fraction=0.1, cache_dir=tmp_path, reader=reader, fingerprint=fingerprint)
    assert reader.calls == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no building leftovers


def test_a_failed_read_leaves_no_cache_entry(tmp_path: Path) -> None:
    reader = CountingReader(error=DataError("r.csv row 3: rating 'x' is not a number"))
    with pytest.raises(DataError, match="row 3"):
        prepare(DataSource(data="/data/r.csv"), "random", 1, cache_dir=tmp_path / "cache", reader=reader,
                fingerprint=fingerprint)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_failure_while_preparing_removes_the_half_built_directory(tmp_path: Path) -> None:
    reader = CountingReader(raw_ratings([1, 1], [1, 2], [1, 2]))  # no timestamps: temporal refuses
    with pytest.raises(DataError, match="no timestamps"):
        prepare(DataSource(data="/data/r.csv"), "temporal", 1, cache_dir=tmp_path, reader=reader,
                fingerprint=fingerprint)
    assert list(tmp_path.iterdir()) == []


def test_u1_is_refused_for_another_movielens_before_reading(tmp_path: Path) -> None:
    reader = CountingReader(raw_ratings([1], [1], [1]))
    with pytest.raises(DataError, match="--split random or temporal"):
        prepare(DataSource(dataset="ml-1m"), "u1", 1, cache_dir=tmp_path, reader=reader, fingerprint=fingerprint)
    assert reader.calls == 0


def test_u1_is_refused_for_a_table_before_reading(tmp_path: Path) -> None:
    reader = CountingReader(raw_ratings([1], [1], [1]))
    with pytest.raises(DataError, match=r"/data/r.csv has no u1 split.*--split random or temporal"):
        prepare(DataSource(data="/data/r.csv"), "u1", 1, cache_dir=tmp_path, reader=reader, fingerprint=fingerprint)
    assert reader.calls == 0 and list(tmp_path.iterdir()) == []


def test_a_building_directory_left_by_a_dead_process_is_swept(tmp_path: Path) -> None:
    dead, live = tmp_path / ".abc.x1.building", tmp_path / ".abc.x2.building"
    dead.mkdir(), live.mkdir()
    os.utime(dead, (0, 0))
    prepare(DataSource(data="/data/r.csv"), "random", 1, cache_dir=tmp_path,
            reader=CountingReader(raw_ratings([1], [1], [1])), fingerprint=fingerprint)
    assert not dead.exists() and live.exists()


def test_a_validation_fraction_outside_0_1_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="validation fraction 1.5"):
        prepare_raw(raw_ratings([1], [1], [1]), "random", 0, val_fraction=1.5, directory=tmp_path / "p")


def test_a_complete_entry_that_won_the_race_is_kept(tmp_path: Path) -> None:
    first = prepare_raw(raw_ratings([1, 2], [1, 1], [1, 2]), "random", 0, directory=tmp_path / "p")
    second = prepare_raw(raw_ratings([1, 2], [1, 1], [1, 2]), "random", 0, directory=tmp_path / "p")
    assert second.meta == first.meta and sorted(p.name for p in tmp_path.iterdir()) == ["p"]
