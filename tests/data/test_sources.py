"""``--data`` as a table or as a MovieLens archive override (``is_table``), and the dispatch of
``read_source`` / ``source_fingerprint`` to the table reader. The MovieLens side is tested with the
catalog and layouts (other modules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel_ml.data.source import Columns, DataSource
from sentinel_ml.data.sources import is_table, read_source, source_fingerprint
from sentinel_ml.errors import ConfigError, DataError
from tests.data.conftest import write_parquet


@pytest.mark.parametrize("data", [
    None, "", "ml-1m.zip", "/data/ML-25M.ZIP", "file:///data/ml-1m.zip", "https://mirror.example/ml-1m.zip",
    "s3://bucket/archives/ml-10m.zip", "https://mirror.example/ml-1m", "/no/such/archive",
])
def test_archives_and_named_datasets_are_not_tables(data: str | None) -> None:
    assert is_table(data) is False


@pytest.mark.parametrize("data", [
    "r.csv", "/data/R.TSV", "ratings.txt", "file:///data/r.parquet", "r.pq", "s3://bucket/ratings/",
    "s3://bucket/ratings", "s3://bucket/r.csv",
])
def test_tables_by_suffix_or_s3_prefix(data: str) -> None:
    assert is_table(data) is True


def test_directories_are_told_apart_by_what_they_hold(tmp_path: Path) -> None:
    movielens = tmp_path / "ml-1m"
    movielens.mkdir()
    (movielens / "ratings.dat").write_text("1::2::3::4\n")
    assert is_table(str(movielens)) is False
    extracted = tmp_path / "download"
    (extracted / "ml-100k").mkdir(parents=True)
    (extracted / "ml-100k" / "u.data").write_text("1\t2\t3\t4\n")
    assert is_table(f"file://{extracted}") is False
    write_parquet(tmp_path / "table" / "year=2024" / "part-0.parquet", {"user_id": [1]})
    assert is_table(str(tmp_path / "table")) is True
    (tmp_path / "neither").mkdir()
    (tmp_path / "neither" / "notes.md").write_text("")
    with pytest.raises(DataError, match="holds neither a MovieLens dataset's files"):
        is_table(str(tmp_path / "neither"))


@pytest.mark.parametrize("data", ["https://example.com/r.csv", "http://example.com/t/r.parquet?x=1"])
def test_tables_over_http_are_refused_with_the_way_around(data: str) -> None:
    with pytest.raises(ConfigError, match="not read over http") as caught:
        is_table(data)
    assert "s3://" in caught.value.hint


def test_unknown_schemes_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"cannot read gs:// locations"):
        is_table("gs://bucket/r.parquet")


def test_a_table_source_is_read_by_the_table_reader(tmp_path: Path) -> None:
    ratings = tmp_path / "r.csv"
    ratings.write_text("u,i,r\n1,2,3\n")
    items = tmp_path / "items.csv"
    items.write_text("i,title\n2,Two\n")
    source = DataSource(data=str(ratings), columns=Columns.parse("user=u,item=i,rating=r"), items=str(items),
                        rating_scale=(1.0, 5.0))
    raw = read_source(source)
    assert (raw.dataset, raw.scale, raw.ratings.num_rows) == ("table", (1.0, 5.0), 1)
    assert raw.items.column("title").to_pylist() == ["Two"]
    assert source_fingerprint(source) == raw.fingerprint
