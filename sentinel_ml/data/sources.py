"""One entry to a run's ratings, whatever ``DataSource`` names: the user's own table (``tables``) or
a MovieLens dataset by name (``catalog``, ``download``, ``layouts``), as ``RawRatings``, and the
fingerprint the prepared cache keys on.

``--data`` means one of two things, told apart by ``is_table``:

- a MovieLens archive override (where the named ``--dataset``'s archive comes from): any ``.zip``
  (a local path, ``file://``, ``http(s)://`` or ``s3://``), a local directory holding a MovieLens
  dataset's files (``u.data``, ``ratings.dat`` or ``ratings.csv``, there or one folder down, as the
  archives extract), and any other ``http(s)://`` URL or local path without a table's suffix
  (the downloader checks and names what is wrong with it);
- a ratings table: a ``.csv``, ``.tsv``, ``.txt``, ``.parquet`` or ``.pq`` file (local or
  ``s3://``), a local directory holding Parquet files, or any ``s3://`` location that is not a zip
  (a prefix of Parquet objects).

Tables over ``http(s)://`` are not read (a clear ``ConfigError``: copy the table locally or to S3);
a local directory holding neither kind of file is a ``DataError`` naming both.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from sentinel_ml.data import table_files, tables
from sentinel_ml.data.raw import RawRatings
from sentinel_ml.data.source import DataSource
from sentinel_ml.errors import ConfigError, DataError
from sentinel_ml.store import uri as storage

ARCHIVE_SUFFIX = ".zip"
MOVIELENS_FILES = ("u.data", "ratings.dat", "ratings.csv")  # ml-100k; ml-1m and ml-10m; ml-20m and later
_LOCAL_SCHEMES = ("", "file")


def is_table(data: str | None) -> bool:
    """Whether ``--data`` names the user's ratings table (True) or a MovieLens archive override (False)."""
    if not data or not data.strip():
        return False
    data = data.strip()
    scheme = urllib.parse.urlparse(data).scheme.lower() if "://" in data else ""
    suffix = table_files.suffix_of(data)
    if suffix == ARCHIVE_SUFFIX:
        return False
    if scheme in ("http", "https"):
        if suffix in table_files.TABLE_SUFFIXES:
            raise ConfigError(f"--data {data}: ratings tables are not read over {scheme}://",
                              hint="download the table and give its local path, or copy it to s3://")
        return False
    if scheme == "s3":
        return True
    if scheme not in _LOCAL_SCHEMES:
        raise ConfigError(f"--data {data}: cannot read {scheme}:// locations",
                          hint="give a local path, file://, s3:// or (for a MovieLens archive) http(s)://")
    if suffix in table_files.TABLE_SUFFIXES:
        return True
    path = storage.local_path(data)
    if not path.is_dir():
        return False
    if _holds_movielens(path):
        return False
    if _holds_parquet(path):
        return True
    raise DataError(f"{path} holds neither a MovieLens dataset's files ({', '.join(MOVIELENS_FILES)}) "
                    "nor Parquet files",
                    hint="give --data a MovieLens archive or its extracted folder, a CSV, TSV or Parquet "
                         "file, or a directory of Parquet files")


def read_source(source: DataSource) -> RawRatings:
    """The source's ratings: the user's table read as it is, or the named dataset (downloaded once
    into the cache, unless ``source.data`` points at its archive) parsed in its own layout."""
    if is_table(source.data):
        return tables.read_table(source.data, source.columns, items=source.items, rating_scale=source.rating_scale)
    # MovieLens only: reading a table never imports the archive modules.
    from sentinel_ml.data import catalog, download, layouts

    spec = catalog.spec(source.dataset)
    return layouts.read_movielens(download.ensure_dataset(source.data, spec=spec), spec)


def source_fingerprint(source: DataSource) -> str:
    """What the prepared cache is keyed on: a table's listing (no data read), or the dataset's files."""
    if is_table(source.data):
        return tables.table_fingerprint(source.data, source.columns, source.rating_scale)
    from sentinel_ml.data import catalog, download, layouts

    spec = catalog.spec(source.dataset)
    return layouts.fingerprint_of(download.ensure_dataset(source.data, spec=spec), spec)


def _holds_movielens(directory: Path) -> bool:
    folders = [directory, *(p for p in directory.iterdir() if p.is_dir())]
    return any((folder / name).is_file() for folder in folders for name in MOVIELENS_FILES)


def _holds_parquet(directory: Path) -> bool:
    return any(table_files.is_data_name(p.relative_to(directory).as_posix())
               for p in directory.rglob("*") if p.is_file())
