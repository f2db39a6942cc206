"""ml-100k prepared from the shared copy (read here with pyarrow, as RawRatings, until the readers
land): u1 keeps its canonical parts, ids 1..943 become 0..942, titles join onto the catalogue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sentinel_ml.data.prepared import Prepared, prepare_raw
from sentinel_ml.data.raw import RawRatings
from tests.support import movielens_ref as movielens


def read_tab(path: Path) -> pa.Table:
    names = ["user", "item", "rating", "timestamp"]
    types = {"user": pa.int64(), "item": pa.int64(), "rating": pa.float32(), "timestamp": pa.int64()}
    return pacsv.read_csv(path, read_options=pacsv.ReadOptions(column_names=names),
                          parse_options=pacsv.ParseOptions(delimiter="\t"),
                          convert_options=pacsv.ConvertOptions(column_types=types))


@pytest.fixture(scope="module")
def ml100k(dataset_dir: Path) -> RawRatings:
    titles = movielens.read_titles(dataset_dir)
    return RawRatings(
        read_tab(dataset_dir / "u.data"), origin="ml-100k (u.data)", fingerprint="ml-100k", scale=(1.0, 5.0),
        dataset="ml-100k", items=pa.table({"item": pa.array(list(titles), pa.int64()), "title": list(titles.values())}),
        fixed_splits={"u1": (read_tab(dataset_dir / "u1.base"), read_tab(dataset_dir / "u1.test"))},
    )


@pytest.fixture(scope="module")
def u1(ml100k: RawRatings, tmp_path_factory) -> Prepared:
    return prepare_raw(ml100k, "u1", 1, directory=tmp_path_factory.mktemp("prepared") / "u1")


def test_u1_keeps_the_canonical_parts_with_ids_shifted_to_zero(u1: Prepared, dataset_dir: Path) -> None:
    meta = u1.meta
    assert (meta.num_users, meta.num_items, meta.num_ratings) == (943, 1682, 100_000)
    assert meta.counts == {"train": 76_000, "val": 4_000, "test": 20_000} and meta.duplicates_dropped == 0
    assert pq.read_table(u1.part("users")).column("id").to_pylist() == list(range(1, 944))
    split = u1.load_split()
    canonical = movielens.read_ratings(dataset_dir / "u1.test")
    assert np.array_equal(split.test.users, canonical.users - 1) and np.array_equal(split.test.items, canonical.items - 1)
    assert np.array_equal(split.test.ratings, canonical.ratings)
    assert split.name == "u1" and split.num_users == 943 and split.num_items == 1682


def test_titles_and_popularity_join_onto_the_catalogue(u1: Prepared) -> None:
    artifact = u1.serving_artifact()
    assert artifact["titles"][0] == "Toy Story (1995)" and artifact["item_ids"][0] == 1
    assert int(artifact["popularity"].sum()) == 100_000 and int(artifact["popularity"][49]) == 583  # Star Wars
    assert int(artifact["seen_indptr"][-1]) == 100_000


def test_random_and_temporal_on_ml100k(ml100k: RawRatings, tmp_path: Path) -> None:
    random = prepare_raw(ml100k, "random", 7, directory=tmp_path / "random").meta
    assert random.counts == {"train": 85_500, "val": 4_500, "test": 10_000}
    temporal = prepare_raw(ml100k, "temporal", 7, directory=tmp_path / "temporal")
    # every ml-100k user has >= 20 ratings: floor(n / 10) of each is held out
    per_user = np.bincount(temporal.load_split().test.users, minlength=943)
    counts = np.bincount(ml100k.ratings.column("user").to_numpy() - 1, minlength=943)
    assert np.array_equal(per_user, counts // 10)
