"""Ratings tables on S3, read from the real S3-compatible test server (moto on loopback, reached
through AWS_ENDPOINT_URL as MinIO is): a CSV object, a Parquet object, a prefix of Parquet objects."""

from __future__ import annotations

import io

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sentinel_ml.data.source import Columns, DataSource
from sentinel_ml.data.sources import read_source, source_fingerprint
from sentinel_ml.data.tables import read_table, table_fingerprint
from sentinel_ml.errors import DataError


def _put(root: str, key: str, body: bytes) -> str:
    bucket = root.removeprefix("s3://").split("/")[0]
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def _parquet(columns: dict[str, list]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def test_a_csv_object_with_string_ids_and_its_items(s3_bucket: str) -> None:
    ratings = _put(s3_bucket, "in/r.csv", b"uid,movie,stars\nalice,m1,4\nbob,m2,2.5\n")
    items = _put(s3_bucket, "in/movies.tsv", b"movie\ttitle\nm1\tOne\n")
    raw = read_table(ratings, Columns.parse("user=uid,item=movie,rating=stars"), items=items)
    assert raw.ratings.column("user").to_pylist() == ["alice", "bob"]
    assert raw.scale == (2.5, 4.0) and raw.origin == ratings
    assert raw.items.to_pylist() == [{"item": "m1", "title": "One"}]


def test_a_parquet_object_and_a_prefix_of_parquet_objects(s3_bucket: str) -> None:
    one = _put(s3_bucket, "one/r.parquet", _parquet({"user_id": [1], "item_id": [2], "rating": [3.0]}))
    assert read_table(one).ratings.column("item").to_pylist() == [2]
    _put(s3_bucket, "many/part-0.parquet", _parquet({"user_id": [1, 2], "item_id": [1, 1], "rating": [4.0, 5.0]}))
    second = _put(s3_bucket, "many/part-1.parquet", _parquet({"user_id": [3], "item_id": [2], "rating": [1.0]}))
    _put(s3_bucket, "many/_SUCCESS", b"")
    prefix = s3_bucket.rsplit("/", 1)[0] + "/many"
    raw = read_source(DataSource(data=prefix))
    assert raw.ratings.column("user").to_pylist() == [1, 2, 3] and raw.dataset == "table"
    assert source_fingerprint(DataSource(data=prefix)) == raw.fingerprint == table_fingerprint(prefix + "/")
    _put(s3_bucket, "many/part-1.parquet", _parquet({"user_id": [3], "item_id": [2], "rating": [6.0]}))
    assert table_fingerprint(prefix) != raw.fingerprint  # the ETag changed
    with pytest.raises(DataError, match=f"^{second} row 1: the rating 6 is outside"):
        read_table(prefix, rating_scale=(1.0, 5.0))


def test_missing_objects_and_empty_prefixes_are_named(s3_bucket: str) -> None:
    root = s3_bucket.rsplit("/", 1)[0]
    with pytest.raises(DataError, match=f"^{root}/nope.csv does not exist \\("):
        read_table(f"{root}/nope.csv")
    with pytest.raises(DataError, match=f"^{root}/nothing holds no Parquet objects"):
        read_table(f"{root}/nothing")
    with pytest.raises(DataError, match="^cannot read s3://no-such-bucket-here/t: bucket of .* does not exist"):
        read_table("s3://no-such-bucket-here/t")
