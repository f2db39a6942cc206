"""Reading users' own ratings tables from real local files: formats, column mapping, id and timestamp
types, the scale, the item table and the fingerprint."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from sentinel_ml.data.raw import RAW_COLUMNS
from sentinel_ml.data.source import Columns
from sentinel_ml.data.tables import read_table, table_fingerprint
from tests.data.conftest import write_parquet


def _text(path: Path, *lines: str) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _rows(raw) -> list[tuple]:
    return list(zip(*(raw.ratings.column(name).to_pylist() for name in RAW_COLUMNS), strict=True))


def test_csv_with_string_ids_keeps_them_as_text(tmp_path: Path) -> None:
    path = _text(tmp_path / "r.csv", "user_id,item_id,rating,timestamp",
                 "alice,tt0111161,4.5,1700000000", "bob,tt0068646,3,1700000100", "alice,007,5,1700000200")
    raw = read_table(path)
    assert raw.ratings.schema == pa.schema([("user", pa.string()), ("item", pa.string()),
                                            ("rating", pa.float32()), ("timestamp", pa.int64())])
    assert _rows(raw) == [("alice", "tt0111161", 4.5, 1700000000), ("bob", "tt0068646", 3.0, 1700000100),
                          ("alice", "007", 5.0, 1700000200)]  # "007" is not the integer 7
    assert (raw.dataset, raw.origin, raw.scale, raw.items) == ("table", path, (3.0, 5.0), None)


def test_tsv_with_integer_ids_and_no_timestamp_column(tmp_path: Path) -> None:
    path = _text(tmp_path / "r.tsv", "user_id\titem_id\trating", "10\t200\t1", "-3\t9000000000\t2")
    raw = read_table(path)
    assert raw.ratings.schema.field("user").type == pa.int64()
    assert _rows(raw) == [(10, 200, 1.0, None), (-3, 9000000000, 2.0, None)]


@pytest.mark.parametrize("name, separator", [("r.txt", "\t"), ("r.txt", ";"), ("r.csv", "\t")])
def test_the_separator_is_sniffed_from_the_header(tmp_path: Path, name: str, separator: str) -> None:
    path = _text(tmp_path / name, separator.join(["user_id", "item_id", "rating"]), separator.join(["1", "2", "3"]))
    assert _rows(read_table(path)) == [(1, 2, 3.0, None)]


def test_spaces_around_fields_and_a_byte_order_mark_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("\ufeffuser_id, item_id, rating\n 1, a , 4\n", encoding="utf-8")
    assert _rows(read_table(str(path))) == [(1, "a", 4.0, None)]


def test_columns_map_the_users_names(tmp_path: Path) -> None:
    path = _text(tmp_path / "r.csv", "uid,movie,stars,ts,extra", "1,2,4,100,x", "1,3,2,,y")
    raw = read_table(path, Columns.parse("user=uid,item=movie,rating=stars,timestamp=ts"))
    assert raw.ratings.column_names == list(RAW_COLUMNS)
    assert _rows(raw) == [(1, 2, 4.0, 100), (1, 3, 2.0, None)]


def test_a_parquet_file_with_typed_columns(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "r.parquet", {
        "user_id": pa.array([1, 2], pa.int32()), "item_id": [10.0, 20.0],  # integral floats: int64 ids
        "rating": pa.array([4, 5], pa.int8()),
        "timestamp": pa.array([1_700_000_000_000, None], pa.timestamp("ms", tz="UTC"))})
    raw = read_table(f"file://{path}")
    assert raw.ratings.schema.field("item").type == pa.int64()
    assert _rows(raw) == [(1, 10, 4.0, 1_700_000_000), (2, 20, 5.0, None)]


def test_fractional_float_ids_become_text(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "r.pq", {"user_id": [1.5, 2.0], "item_id": ["a", "b"], "rating": [1.0, 2.0]})
    assert read_table(str(path)).ratings.column("user").to_pylist() == ["1.5", "2"]  # shortest text


def test_a_directory_of_parquet_files_is_one_table_in_file_order(tmp_path: Path) -> None:
    table = tmp_path / "ratings"
    write_parquet(table / "part-0.parquet", {"user_id": ["u1", "u2"], "item_id": [1, 2], "rating": [1.0, 2.0]})
    write_parquet(table / "sub" / "part-1.parquet", {"user_id": ["u3"], "item_id": [3], "rating": [3.0]})
    (table / "_SUCCESS").write_text("")
    (table / ".part-0.parquet.crc").write_text("not parquet")
    raw = read_table(str(table))
    assert _rows(raw) == [("u1", 1, 1.0, None), ("u2", 2, 2.0, None), ("u3", 3, 3.0, None)]


def test_iso_timestamps_in_text_become_unix_seconds(tmp_path: Path) -> None:
    path = _text(tmp_path / "r.csv", "user_id,item_id,rating,timestamp", "1,2,3,1970-01-02T00:00:00", "1,3,3,")
    assert raw_timestamps(read_table(path)) == [86400, None]


def raw_timestamps(raw) -> list:
    return raw.ratings.column("timestamp").to_pylist()


def test_the_scale_is_declared_or_read_from_the_data(tmp_path: Path) -> None:
    path = _text(tmp_path / "r.csv", "user_id,item_id,rating", "1,2,1.5", "1,3,4")
    assert read_table(path).scale == (1.5, 4.0)
    assert read_table(path, rating_scale=(0.5, 5.0)).scale == (0.5, 5.0)


def test_items_table_names_the_items_typed_like_the_ratings(tmp_path: Path) -> None:
    ratings = _text(tmp_path / "r.csv", "user,movie,stars", "u1,1,4", "u2,2,3")
    columns = Columns.parse("user=user,item=movie,rating=stars")
    by_role_name = _text(tmp_path / "movies.csv", "movie,title,genres", '1,"Toy Story (1995)",Animation', "2,,Drama")
    items = read_table(ratings, columns, items=by_role_name).items
    assert items.schema == pa.schema([("item", pa.int64()), ("title", pa.string())])
    assert items.to_pylist() == [{"item": 1, "title": "Toy Story (1995)"}, {"item": 2, "title": None}]
    by_default_name = write_parquet(tmp_path / "items.parquet", {"item_id": [1, 2], "title": ["A", "B"]})
    assert read_table(ratings, columns, items=str(by_default_name)).items.column("item").to_pylist() == [1, 2]


def test_integer_item_ids_name_text_item_ids(tmp_path: Path) -> None:
    ratings = _text(tmp_path / "r.csv", "user_id,item_id,rating", "u1,x9,4", "u2,7,3")
    items = _text(tmp_path / "items.tsv", "item_id\ttitle", "7\tSeven")
    assert read_table(ratings, items=items).items.to_pylist() == [{"item": "7", "title": "Seven"}]


def test_fingerprint_is_cheap_stable_and_follows_content_mapping_and_scale(tmp_path: Path) -> None:
    table = tmp_path / "ratings"
    write_parquet(table / "a.parquet", {"user_id": [1], "item_id": [2], "rating": [3.0]})
    raw = read_table(str(table))
    assert table_fingerprint(str(table)) == raw.fingerprint == read_table(str(table)).fingerprint
    moved = shutil.copytree(table, tmp_path / "elsewhere", copy_function=shutil.copy2)
    assert table_fingerprint(str(moved)) == raw.fingerprint  # same names, sizes, mtimes: same entry
    assert table_fingerprint(str(table), rating_scale=(1.0, 5.0)) != raw.fingerprint
    assert table_fingerprint(str(table), Columns(timestamp="ts")) != raw.fingerprint
    stat = (table / "a.parquet").stat()
    os.utime(table / "a.parquet", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert table_fingerprint(str(table)) != raw.fingerprint
    write_parquet(table / "b.parquet", {"user_id": [1], "item_id": [3], "rating": [3.0]})
    assert len({table_fingerprint(str(table)), raw.fingerprint}) == 2
