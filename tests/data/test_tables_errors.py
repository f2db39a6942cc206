"""Bad tables are refused with the file, the row, the bad value and the fix, as a DataError (exit 2),
and reading them writes nothing: not beside the table, not under $SENTINEL_HOME."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from sentinel_ml.data.source import Columns
from sentinel_ml.data.tables import read_table
from sentinel_ml.entrypoint import exit_code
from sentinel_ml.errors import ConfigError, DataError
from tests.data.conftest import write_parquet

HEADER = "user_id,item_id,rating,timestamp"


def _refused(nothing_written, location: str, **kwargs) -> DataError:
    with nothing_written(), pytest.raises(DataError) as caught:
        read_table(location, **kwargs)
    assert exit_code(caught.value) == 2
    assert caught.value.hint, "every refusal says what to do"
    return caught.value


def _csv(tmp_path: Path, *rows: str, header: str = HEADER, name: str = "r.csv") -> str:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return str(path)


def test_a_missing_column_is_named_with_the_columns_found(tmp_path, nothing_written) -> None:
    error = _refused(nothing_written, _csv(tmp_path, "1,2,3", header="user,item_id,rating"))
    assert "no column 'user_id'" in error.message and "columns found: user, item_id, rating" in error.message
    assert "--columns user=" in error.hint


def test_a_table_without_ratings_is_implicit_feedback_which_is_not_supported(tmp_path, nothing_written) -> None:
    error = _refused(nothing_written, _csv(tmp_path, "1,2,5", header="user_id,item_id,clicks"))
    assert "no rating column 'rating'" in error.message and "clicks" in error.message
    assert "implicit feedback" in error.hint and "not supported" in error.hint


def test_a_non_numeric_rating_names_the_line_and_value(tmp_path, nothing_written) -> None:
    path = _csv(tmp_path, "1,2,4,10", "1,3,4.5,11", "2,3,four,12")
    error = _refused(nothing_written, path)
    assert error.message.startswith(f"{path} line 4: the rating 'four'")  # line 1 is the header
    assert "not a number" in error.message


def test_an_empty_rating_names_the_line(tmp_path, nothing_written) -> None:
    path = _csv(tmp_path, "1,2,4,10", "1,3,,11", name="r.tsv", header=HEADER)
    Path(path).write_text(Path(path).read_text().replace(",", "\t"))
    error = _refused(nothing_written, path)
    assert error.message.startswith(f"{path} line 3: the rating") and "empty" in error.message


@pytest.mark.parametrize("row, role", [(",2,4,10", "user_id"), ("1,,4,10", "item_id")])
def test_an_empty_id_names_the_line(tmp_path, nothing_written, row: str, role: str) -> None:
    path = _csv(tmp_path, "1,2,4,10", row)
    error = _refused(nothing_written, path)
    assert error.message == f"{path} line 3: the id in column {role!r} is empty"


def test_a_null_or_nan_rating_in_parquet_names_the_file_and_row(tmp_path, nothing_written) -> None:
    table = tmp_path / "ratings"
    write_parquet(table / "a.parquet", {"user_id": [1, 2], "item_id": [1, 2], "rating": [4.0, 5.0]})
    second = write_parquet(table / "b.parquet", {"user_id": [3, 4, 5], "item_id": [1, 2, 3],
                                                 "rating": [4.0, 3.0, float("nan")]})
    error = _refused(nothing_written, str(table))
    assert error.message.startswith(f"{second} row 3: the rating nan")
    write_parquet(second, {"user_id": [3, 4], "item_id": [1, 2], "rating": pa.array([None, 3.0], pa.float64())})
    error = _refused(nothing_written, str(table))
    assert error.message.startswith(f"{second} row 1: the rating") and "empty" in error.message


def test_a_null_id_in_parquet_names_the_row(tmp_path, nothing_written) -> None:
    path = write_parquet(tmp_path / "r.parquet", {"user_id": ["a", None], "item_id": [1, 2], "rating": [1.0, 2.0]})
    assert _refused(nothing_written, str(path)).message == f"{path} row 2: the id in column 'user_id' is empty"


@pytest.mark.parametrize("content", ["", HEADER + "\n"])
def test_an_empty_table_is_refused(tmp_path, nothing_written, content: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(content)
    error = _refused(nothing_written, str(path))
    assert "empty" in error.message or "has no rows" in error.message


def test_an_empty_parquet_table_is_refused(tmp_path, nothing_written) -> None:
    path = write_parquet(tmp_path / "r.parquet", {"user_id": pa.array([], pa.int64()),
                                                  "item_id": pa.array([], pa.int64()),
                                                  "rating": pa.array([], pa.float64())})
    assert _refused(nothing_written, str(path)).message == f"{path} has no rows"


def test_a_rating_outside_the_declared_scale_names_the_first(tmp_path, nothing_written) -> None:
    path = _csv(tmp_path, "1,2,4,10", "1,3,6,11", "1,4,0,12")
    error = _refused(nothing_written, path, rating_scale=(1.0, 5.0))
    assert error.message == f"{path} line 3: the rating 6 is outside the declared scale 1:5"
    assert "--rating-scale" in error.hint


def test_a_bad_timestamp_names_the_line(tmp_path, nothing_written) -> None:
    path = _csv(tmp_path, "1,2,4,10", "1,3,4,yesterday")
    assert _refused(nothing_written, path).message.startswith(f"{path} line 3: the timestamp 'yesterday'")


def test_a_missing_file_and_an_empty_directory_are_named(tmp_path, nothing_written) -> None:
    missing = tmp_path / "nope.csv"
    assert _refused(nothing_written, str(missing)).message == f"{missing} does not exist"
    (tmp_path / "empty").mkdir()
    assert "holds no Parquet files" in _refused(nothing_written, str(tmp_path / "empty")).message


def test_a_file_that_is_not_what_its_name_says_is_named_with_the_cause(tmp_path, nothing_written) -> None:
    fake = tmp_path / "r.parquet"
    fake.write_text(HEADER + "\n1,2,3,4\n")
    error = _refused(nothing_written, str(fake))
    assert error.message.startswith(f"cannot read {fake} as Parquet:")
    ragged = _csv(tmp_path, "1,2,3,4", "1,2,3,4,5,6", name="ragged.csv")
    assert _refused(nothing_written, ragged).message.startswith(f"cannot read {ragged} as CSV:")
    other = tmp_path / "r.json"
    other.write_text("{}")
    assert "not a CSV, TSV or Parquet file" in _refused(nothing_written, str(other)).message


def test_an_unreadable_file_is_named(tmp_path, nothing_written) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = _csv(tmp_path, "1,2,3,4")
    os.chmod(path, 0)
    assert _refused(nothing_written, path).message.startswith(f"cannot read {path}")


def test_items_whose_columns_or_ids_do_not_fit_are_refused(tmp_path, nothing_written) -> None:
    ratings = _csv(tmp_path, "1,2,4,10")
    no_title = _csv(tmp_path, "2,Two", header="item_id,name", name="items.csv")
    error = _refused(nothing_written, ratings, items=no_title)
    assert "'title'" in error.message and "columns found: item_id, name" in error.message
    text_ids = _csv(tmp_path, "b2,Two", header="item_id,title", name="items2.csv")
    assert "item id 'b2' is not an integer" in _refused(nothing_written, ratings, items=text_ids).message


def test_two_roles_on_one_column_is_a_usage_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="two roles"):
        read_table(_csv(tmp_path, "1,2,3,4"), Columns(user="user_id", item="user_id"))
