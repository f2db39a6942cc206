"""Where a user's ratings table lives: its files, the filesystem that reads them, and a cheap, stable
fingerprint of them, all without reading a row (the prepared cache looks its entry up by that
fingerprint before deciding to read anything).

A location is a local path, a ``file://`` URL, or ``s3://bucket/key``. It names one file, whose
suffix says its format (``.csv`` comma-separated, ``.tsv`` tab-separated, ``.txt`` either, sniffed
from its header; ``.parquet`` / ``.pq``), or a directory / S3 prefix of Parquet files, read as one
dataset: every ``*.parquet`` / ``*.pq`` beneath it, at any depth, except names starting with ``.``
or ``_`` (``_SUCCESS``, ``.part.crc``: what Spark and pyarrow write beside the data).

S3 is addressed as ``sentinel_ml.store.uri`` addresses it: listing goes through its boto3 client
(so ``AWS_ENDPOINT_URL`` and the usual credential chain apply, and errors read the same), and the
data is read through pyarrow's S3 filesystem built from that client's endpoint, region and
credentials, so a large Parquet object is streamed in ranges rather than copied into memory first.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sentinel_ml.data.source import Columns
from sentinel_ml.errors import DataError, ObjectNotFound, StorageError
from sentinel_ml.store import uri as storage

if TYPE_CHECKING:
    from pyarrow import fs as pafs

# Text formats and their delimiter (None: sniffed from the header line).
TEXT_SUFFIXES: dict[str, str | None] = {".csv": ",", ".tsv": "\t", ".txt": None}
PARQUET_SUFFIXES = (".parquet", ".pq")
TABLE_SUFFIXES = (*TEXT_SUFFIXES, *PARQUET_SUFFIXES)
_FINGERPRINT_VERSION = 1


@dataclass(frozen=True)
class TableFile:
    path: str  # as the filesystem names it: an absolute local path, or bucket/key on S3
    name: str  # relative to the location (a single file: its own name): the fingerprint's part
    size: int
    stamp: str  # the modification time in ns locally, the ETag on S3
    shown: str  # for messages: the local path or s3://bucket/key


@dataclass(frozen=True)
class TableFiles:
    location: str
    format: str  # "text" or "parquet"
    delimiter: str | None  # text: "," or "\t", or None to sniff
    files: tuple[TableFile, ...]

    @property
    def is_s3(self) -> bool:
        return storage.is_s3(self.location)

    def filesystem(self) -> pafs.FileSystem:
        from pyarrow import fs as pafs

        return s3_filesystem() if self.is_s3 else pafs.LocalFileSystem()


def suffix_of(location: str) -> str:
    """The lower-cased suffix of the location's last name (``s3://b/r.CSV`` → ``.csv``; URLs' queries ignored)."""
    path = urllib.parse.urlparse(location).path if "://" in location else location
    return posixpath.splitext(path.rstrip("/"))[1].lower()


def locate(location: str) -> TableFiles:
    """The table's files, listed (one listing, no data read); a ``DataError`` when there are none."""
    suffix = suffix_of(location)
    files = _locate_s3(location, suffix) if storage.is_s3(location) else _locate_local(location, suffix)
    if suffix in TEXT_SUFFIXES:
        return TableFiles(location, "text", TEXT_SUFFIXES[suffix], files)
    return TableFiles(location, "parquet", None, files)


def fingerprint(files: TableFiles, columns: Columns, rating_scale: tuple[float, float] | None) -> str:
    """SHA-256 of what decides the table read: each file's relative name, size and modification stamp
    (mtime locally, ETag on S3), the column mapping and the declared scale. The location itself is
    left out, so a directory moved or mounted elsewhere keeps its cache entry."""
    content = {
        "v": _FINGERPRINT_VERSION,
        "files": sorted([f.name, f.size, f.stamp] for f in files.files),
        "columns": columns.as_text(),
        "scale": list(rating_scale) if rating_scale else None,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def is_data_name(relative: str) -> bool:
    """A Parquet data file inside a dataset directory (not ``_SUCCESS``, ``.crc``, ``_metadata``)."""
    parts = relative.split("/")
    return relative.lower().endswith(PARQUET_SUFFIXES) and not any(p.startswith((".", "_")) for p in parts)


def _locate_local(location: str, suffix: str) -> tuple[TableFile, ...]:
    path = storage.local_path(location).absolute()
    try:
        if path.is_dir():
            found = [(p, p.relative_to(path).as_posix()) for p in path.rglob("*") if p.is_file()]
            chosen = sorted((rel, p) for p, rel in found if is_data_name(rel))
            if not chosen:
                raise DataError(f"{path} holds no Parquet files (*.parquet, *.pq)",
                                hint="a directory given to --data must hold the table's Parquet files; "
                                     "give a CSV or TSV file by its own path")
            return tuple(_local_file(p, rel) for rel, p in chosen)
        if not path.exists():
            raise DataError(f"{path} does not exist", hint="check the path given to --data or --items")
        if suffix not in TABLE_SUFFIXES:
            raise DataError(f"{path} is not a CSV, TSV or Parquet file (by its name)",
                            hint="name it .csv, .tsv, .txt, .parquet or .pq")
        return (_local_file(path, path.name),)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}",
                        hint="check that the file exists and is readable") from None


def _local_file(path: Path, relative: str) -> TableFile:
    stat = path.stat()
    return TableFile(str(path), relative, stat.st_size, str(stat.st_mtime_ns), str(path))


def _locate_s3(location: str, suffix: str) -> tuple[TableFile, ...]:
    try:
        bucket, key = storage.split_s3(location)
        if suffix in TABLE_SUFFIXES:
            head = storage._s3_call("read", location, lambda s3: s3.head_object(Bucket=bucket, Key=key))
            return (TableFile(f"{bucket}/{key}", posixpath.basename(key), int(head["ContentLength"]),
                              head.get("ETag", ""), location),)
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""

        def list_all(s3) -> list[dict]:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return [item for page in pages for item in page.get("Contents", [])]

        objects = storage._s3_call("list", location, list_all)
    except ObjectNotFound:
        raise DataError(f"{location} does not exist", hint="check the location given to --data or --items") from None
    except StorageError as e:
        raise DataError(f"cannot read {location}: {e.message}", hint=e.hint or "check the S3 location") from None
    chosen = sorted((obj["Key"][len(prefix):], obj) for obj in objects if is_data_name(obj["Key"][len(prefix):]))
    if not chosen:
        raise DataError(f"{location} holds no Parquet objects (*.parquet, *.pq)",
                        hint="give the prefix the table's Parquet files were written under, or one "
                             "CSV, TSV or Parquet object by its key")
    return tuple(TableFile(f"{bucket}/{obj['Key']}", rel, int(obj["Size"]), obj.get("ETag", ""),
                           f"s3://{bucket}/{obj['Key']}") for rel, obj in chosen)


def s3_filesystem() -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem with the settings of ``sentinel_ml.store.uri``'s boto3 client: its
    endpoint (``AWS_ENDPOINT_URL``: MinIO, the test server), region and resolved credentials."""
    import boto3
    from pyarrow import fs as pafs

    client = storage._s3_client()
    options: dict = {"region": client.meta.region_name or "us-east-1"}
    credentials = boto3.session.Session().get_credentials()
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        options.update(access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token)
    endpoint = urllib.parse.urlparse(client.meta.endpoint_url or "")
    if endpoint.netloc and not endpoint.netloc.endswith("amazonaws.com"):
        options.update(endpoint_override=endpoint.netloc + endpoint.path.rstrip("/"),
                       scheme=endpoint.scheme or "https")
    return pafs.S3FileSystem(**options)
