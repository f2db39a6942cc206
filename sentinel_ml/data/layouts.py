"""Read an extracted MovieLens dataset, in its archive's own layout, into one ``RawRatings``.

Every file goes through pyarrow's CSV reader (multithreaded C++, no Python loop per row):

- ``tab`` (ml-100k's u.data, u1.base, u1.test): tab-separated, no header;
- ``dcolon`` (ratings.dat): ``::`` separated. pyarrow takes a one-byte delimiter only, so the file is
  read with ``:`` and the empty fields between each pair are dropped: no copy of the file (replacing
  ``::`` in the bytes first measured 15% slower on 3M rows, 0.69 s against 0.59 s, and doubles memory);
- ``csv`` (ratings.csv): with its header ``userId,movieId,rating,timestamp``.

Titles: u.item (pipe, Latin-1), movies.dat (``::``; titles hold ``:`` themselves, so there ``::``
is replaced by a byte that never occurs in text: the file is small), movies.csv (quoted, UTF-8).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sentinel_ml.data.catalog import DatasetSpec
from sentinel_ml.data.download import members_fingerprint, recorded_fingerprint
from sentinel_ml.data.raw import RAW_COLUMNS, RawRatings
from sentinel_ml.errors import DataError

_TYPES = {"user": pa.int64(), "item": pa.int64(), "rating": pa.float32(), "timestamp": pa.int64()}
_CSV_HEADER = {"userId": "user", "movieId": "item", "rating": "rating", "timestamp": "timestamp"}
_UNIT_SEPARATOR = "\x1f"  # ASCII's own field separator: never in a title


def read_movielens(dataset_dir: Path, spec: DatasetSpec) -> RawRatings:
    """The ratings, titles and publisher's splits of an extracted dataset (as ``download.ensure_dataset``
    returns it), typed as ``raw.RawRatings`` documents."""
    dataset_dir = Path(dataset_dir).absolute()
    ratings = read_ratings(dataset_dir / spec.ratings_file, spec)
    splits = {name: (read_ratings(dataset_dir / train, spec), read_ratings(dataset_dir / test, spec))
              for name, (train, test) in spec.fixed_splits.items()}
    return RawRatings(
        ratings=ratings,
        origin=f"{spec.name} ({spec.ratings_file})",
        fingerprint=fingerprint_of(dataset_dir, spec),
        scale=spec.scale,
        dataset=spec.name,
        items=read_items(dataset_dir / spec.items_file, spec),
        fixed_splits=splits,
    )


def fingerprint_of(dataset_dir: Path, spec: DatasetSpec) -> str:
    """What identifies the dataset's content, without parsing it: the fingerprint recorded when the
    archive was verified and extracted (its published sha256, or its files' digests); for ml-100k's
    directory, which ``ensure_dataset`` verified file by file, those digests; for another directory
    given with ``--data`` (not checksum-verified), a digest of its files' names, sizes and mtimes."""
    recorded = recorded_fingerprint(dataset_dir)
    if recorded:
        return recorded
    if spec.members:
        return members_fingerprint(spec)
    digest = hashlib.sha256()
    for name in spec.required_files:
        stat = (dataset_dir / name).stat()
        digest.update(f"{name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return f"{spec.name}:files:{digest.hexdigest()}"


def read_ratings(path: Path, spec: DatasetSpec) -> pa.Table:
    """One ratings file in the spec's layout: ``user``, ``item`` int64, ``rating`` float32,
    ``timestamp`` int64, in the file's order; nulls and ratings outside the scale are refused."""
    layout = spec.ratings_layout  # the publisher's splits (u1.base) are in its ratings file's layout
    convert = pacsv.ConvertOptions(column_types=_TYPES, include_columns=list(_TYPES))
    if layout == "tab":
        names, parse = list(_TYPES), pacsv.ParseOptions(delimiter="\t", quote_char=False)
    elif layout == "dcolon":
        names = ["user", "_1", "item", "_2", "rating", "_3", "timestamp"]
        parse = pacsv.ParseOptions(delimiter=":", quote_char=False)
    else:
        names, parse = None, pacsv.ParseOptions()
        convert = pacsv.ConvertOptions(column_types=dict(zip(_CSV_HEADER, _TYPES.values(), strict=True)),
                                       include_columns=list(_CSV_HEADER))
    table = _read_csv(path, pacsv.ReadOptions(column_names=names), parse, convert, what=f"{layout} ratings")
    table = table.rename_columns(list(RAW_COLUMNS))
    _check(table, path, spec)
    return table


def read_items(path: Path, spec: DatasetSpec) -> pa.Table:
    """``item`` (int64) and ``title`` (string) from the spec's items file."""
    layout, encoding = spec.items_layout, spec.items_encoding
    if layout == "csv":
        read = pacsv.ReadOptions(encoding=encoding)
        convert = pacsv.ConvertOptions(column_types={"movieId": pa.int64(), "title": pa.string()},
                                       include_columns=["movieId", "title"])
        table = _read_csv(path, read, pacsv.ParseOptions(), convert, what="movies.csv titles")
    else:
        source: Path | pa.BufferReader = path
        if layout == "dcolon":
            source = pa.BufferReader(_read_bytes(path).replace(b"::", _UNIT_SEPARATOR.encode()))
        delimiter = "|" if layout == "pipe" else _UNIT_SEPARATOR
        parse = pacsv.ParseOptions(delimiter=delimiter, quote_char=False)
        convert = pacsv.ConvertOptions(column_types={"f0": pa.int64(), "f1": pa.string()}, include_columns=["f0", "f1"])
        try:
            table = _read_csv(source, pacsv.ReadOptions(autogenerate_column_names=True, encoding=encoding),
                              parse, convert, what=f"{layout} titles", name=path)
        except DataError:
            if encoding == "latin-1":
                raise
            # Titles are names for recommendations: read them as Latin-1 (which never fails) rather than
            # refuse a dataset over one title's encoding.
            if isinstance(source, pa.BufferReader):
                source.seek(0)
            table = _read_csv(source, pacsv.ReadOptions(autogenerate_column_names=True, encoding="latin-1"),
                              parse, convert, what=f"{layout} titles", name=path)
    table = table.rename_columns(["item", "title"])
    if table.column("item").null_count:
        raise DataError(f"cannot parse {path}: a movie without an id")
    return table


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def _read_csv(source: Path | pa.BufferReader, read: pacsv.ReadOptions, parse: pacsv.ParseOptions,
              convert: pacsv.ConvertOptions, *, what: str, name: Path | None = None) -> pa.Table:
    try:
        return pacsv.read_csv(source, read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowKeyError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot parse {name or source} as MovieLens {what}: {e}",
                        hint="pass --data with the dataset's archive or its folder as GroupLens ships it") from None


def _check(table: pa.Table, path: Path, spec: DatasetSpec) -> None:
    for column in ("user", "item", "rating"):
        if table.column(column).null_count:
            raise DataError(f"cannot parse {path}: {table.column(column).null_count} rows without a {column}")
    if table.num_rows == 0:
        raise DataError(f"{path} holds no ratings")
    low, high = spec.scale
    bounds = pc.min_max(table.column("rating")).as_py()
    if bounds["min"] < low or bounds["max"] > high:
        raise DataError(f"ratings in {path} fall outside {spec.name}'s scale {low:g}-{high:g} "
                        f"({bounds['min']:g}-{bounds['max']:g})")
