"""Read a user's own ratings table (CSV, TSV or Parquet; one file or a directory of Parquet files;
local or ``s3://``: see ``table_files``) into ``RawRatings``, refusing bad input with the file, the
row and the fix. Reading writes nothing anywhere: the prepared cache (``prepared``) is the only
writer, and it runs after this succeeded.

Columns: ``Columns`` maps each role to the user's column name (defaults ``user_id``, ``item_id``,
``rating``, ``timestamp``). The timestamp column may be missing (every timestamp is then null); the
others must be there. A text table must start with a header line naming its columns.

Types, decided once for every format:

- ids: a column whose every value is an integer is ``int64``: integer columns, floating columns whose
  values are all integral (pandas writes an integer column with gaps as floats), and text written as
  canonical integers (``42``, ``-7``; not ``007`` or ``4.0``, which would merge distinct ids).
  Anything else is ``string``: the id's text as written (CSV fields trimmed of surrounding spaces;
  a fractional float column's values as their shortest text: 1.5 → ``1.5``, 2.0 → ``2``);
- rating: any number, as ``float32`` (text must be a decimal number; NaN and infinities refused);
- timestamp: integers as Unix seconds as they are, fractional seconds truncated, dates and
  date-times (Parquet's, or ISO 8601 text) converted to Unix seconds; empty fields are null.

An empty CSV field is null (and so refused for an id or a rating); no other text means null, so an
id ``NA`` is the string ``NA``.

Scale: with ``rating_scale`` (``--rating-scale``) every rating must lie inside it; without, the
scale is read from the data: (lowest rating, highest rating).

Rows in messages: a text file's ``line N`` counts the header as line 1 (so the first data row is
line 2; blank lines, which are skipped, and quoted fields spanning lines are not counted); a Parquet file's ``row N`` counts its data rows from 1, within the file that holds it.

Items (``--items``): a table in any of the same formats with an id column and a ``title`` column.
The id column is the one named like the ratings' item column (``Columns.item``) when the items
table has it, else ``item_id``. Its ids are typed as the ratings' item ids are (integer ids may
name text ids: they become their text). A null title is kept (unknown); other columns are ignored.
"""

from __future__ import annotations

import bisect
import csv
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sentinel_ml.data import table_files
from sentinel_ml.data.raw import RawRatings
from sentinel_ml.data.source import Columns
from sentinel_ml.data.table_files import TableFiles
from sentinel_ml.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pyarrow as pa

_INTEGER_TEXT = r"^-?(0|[1-9][0-9]*)$"
_NUMBER_TEXT = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"
_HEADER_PEEK = 1 << 16
_SNIFFED = ("\t", ",", ";", "|")
_ITEM_ID_DEFAULT = "item_id"
_TITLE = "title"
DEFAULT_COLUMNS = Columns()
_COLUMNS_HINT = "name your columns with --columns user=…,item=…,rating=…[,timestamp=…]"


def read_table(location: str, columns: Columns = DEFAULT_COLUMNS, *, items: str | None = None,
               rating_scale: tuple[float, float] | None = None) -> RawRatings:
    """The ratings table at ``location`` (and the item table at ``items``) as ``RawRatings``."""
    _check_distinct(columns)
    files = table_files.locate(location)
    source = _open(files)
    roles = {"user": columns.user, "item": columns.item, "rating": columns.rating}
    if columns.rating not in source.names:
        raise DataError(f"{location} has no rating column {columns.rating!r} (columns found: {_listed(source.names)})",
                        hint="implicit feedback (interactions without ratings) is not supported yet; "
                             f"if the ratings are in another column, {_COLUMNS_HINT}")
    _require(source, roles.values(), location)
    has_time = columns.timestamp in source.names
    wanted = [*roles.values(), *([columns.timestamp] if has_time else [])]
    table = source.read(wanted, text={columns.user, columns.item})
    if table.num_rows == 0:
        raise DataError(f"{location} has no rows", hint="give a table with at least one rating")
    ratings = _ratings(table.column(columns.rating), source.where, columns.rating)
    scale = _scale(ratings, rating_scale, source.where)
    import pyarrow as pa

    raw = pa.table({
        "user": _ids(table.column(columns.user), source.where, columns.user),
        "item": _ids(table.column(columns.item), source.where, columns.item),
        "rating": ratings.cast(pa.float32(), safe=False),
        "timestamp": (_timestamps(table.column(columns.timestamp), source.where, columns.timestamp)
                      if has_time else pa.nulls(table.num_rows, pa.int64())),
    })
    item_table = read_items(items, columns.item, raw.schema.field("item").type) if items else None
    return RawRatings(ratings=raw, origin=location, fingerprint=table_files.fingerprint(files, columns, rating_scale),
                      scale=scale, dataset="table", items=item_table)


def table_fingerprint(location: str, columns: Columns = DEFAULT_COLUMNS,
                      rating_scale: tuple[float, float] | None = None) -> str:
    """The fingerprint ``read_table`` would give, from a listing alone (no data read): a cache lookup."""
    return table_files.fingerprint(table_files.locate(location), columns, rating_scale)


def read_items(location: str, item_column: str, item_type: pa.DataType) -> pa.Table:
    """The item table at ``location``: ``item`` (typed ``item_type``, as the ratings' item) and ``title``."""
    import pyarrow as pa

    source = _open(table_files.locate(location))
    id_column = item_column if item_column in source.names else _ITEM_ID_DEFAULT
    if id_column not in source.names or _TITLE not in source.names:
        raise DataError(f"{location} needs an id column ({item_column!r} or {_ITEM_ID_DEFAULT!r}) and a "
                        f"{_TITLE!r} column (columns found: {_listed(source.names)})",
                        hint="give --items a table of item ids and titles, with a header naming them")
    table = source.read([id_column, _TITLE], text={id_column, _TITLE})
    ids = _ids(table.column(id_column), source.where, id_column)
    if ids.type != item_type:
        if not pa.types.is_string(item_type):
            example = ids[_first(_not_integer_text(ids))].as_py()
            raise DataError(f"{location}: item id {example!r} is not an integer, but the ratings' item ids are",
                            hint="--items must name the same ids as the ratings table")
        ids = ids.cast(pa.string())
    return pa.table({"item": ids, "title": table.column(_TITLE).cast(pa.string())})


# --- opening a table: its column names, reading chosen columns, naming a row ---------------------------------

@dataclass
class _Opened:
    names: list[str]
    read: Callable[..., pa.Table]  # read(names, text=set of names to read as text) -> table with those columns
    where: Callable[[int], str]  # 0-based row of the read table -> "FILE line N" / "FILE row N"


def _open(files: TableFiles) -> _Opened:
    return _open_text(files) if files.format == "text" else _open_parquet(files)


def _open_text(files: TableFiles) -> _Opened:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    (file,) = files.files
    filesystem = files.filesystem()
    try:
        with filesystem.open_input_file(file.path) as random_access:  # on S3: one ranged GET, not the object
            head = random_access.read(_HEADER_PEEK).decode("utf-8", errors="replace")
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"cannot read {file.shown}: {e}", hint="check that the file exists and is readable") from None
    first_line = head.lstrip("\ufeff").splitlines()[0] if head.strip() else ""
    if not first_line.strip():
        raise DataError(f"{file.shown} is empty: no header line and no rows",
                        hint="give a table whose first line names its columns")
    delimiter = _delimiter(files.delimiter, first_line)
    names = [name.strip() for name in next(csv.reader([first_line], delimiter=delimiter))]

    def read(wanted: list[str], text: set[str]) -> pa.Table:
        try:
            with filesystem.open_input_stream(file.path) as stream:
                table = pacsv.read_csv(
                    stream,
                    read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
                    parse_options=pacsv.ParseOptions(delimiter=delimiter),
                    convert_options=pacsv.ConvertOptions(
                        include_columns=wanted, column_types={name: pa.string() for name in text},
                        null_values=[""], strings_can_be_null=True))
        except (OSError, pa.ArrowException) as e:
            kind = {",": "CSV", "\t": "TSV"}.get(delimiter, f"a table separated by {delimiter!r}")
            raise DataError(f"cannot read {file.shown} as {kind}: {e}",
                            hint="check that every line has the header's columns, separated the same way") from None
        import pyarrow.compute as pc

        return pa.table({name: pc.utf8_trim_whitespace(table.column(name)) if name in text else table.column(name)
                         for name in wanted})

    return _Opened(names, read, lambda row: f"{file.shown} line {row + 2}")


def _open_parquet(files: TableFiles) -> _Opened:
    import pyarrow as pa
    import pyarrow.dataset as pads

    try:
        dataset = pads.dataset([f.path for f in files.files], filesystem=files.filesystem(), format="parquet")
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"cannot read {files.location} as Parquet: {e}",
                        hint="check that the files are Parquet (a CSV or TSV file is read by its .csv/.tsv name)"
                        ) from None

    def read(wanted: list[str], text: set[str]) -> pa.Table:
        try:
            return dataset.to_table(columns=wanted)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"cannot read {files.location} as Parquet: {e}",
                            hint="check that every file is Parquet with the same columns") from None

    def where(row: int) -> str:
        counts = [fragment.count_rows() for fragment in dataset.get_fragments()]
        starts = [sum(counts[:i]) for i in range(len(counts))]
        index = bisect.bisect_right(starts, row) - 1
        return f"{files.files[index].shown} row {row - starts[index] + 1}"

    return _Opened(list(dataset.schema.names), read, where)


def _delimiter(declared: str | None, header: str) -> str:
    """The suffix's delimiter when the header has it (``.txt``: none), else the most frequent of tab,
    comma, semicolon and bar in the header: a ``.csv`` that is really tab-separated still reads."""
    if declared and declared in header:
        return declared
    counts = {candidate: header.count(candidate) for candidate in _SNIFFED}
    best = max(_SNIFFED, key=counts.__getitem__)
    return best if counts[best] else (declared or ",")


# --- columns, checked and typed (vectorised: no loop over rows) ------------------------------------------------

def _ids(column: pa.ChunkedArray, where: Callable[[int], str], name: str) -> pa.ChunkedArray:
    """int64 when every id is an integer (see the module's docstring), else the ids' text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    missing = pc.is_null(column)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        missing = pc.or_kleene(missing, pc.equal(column, ""))
    if (bad := _first(missing)) is not None:
        raise DataError(f"{where(bad)}: the id in column {name!r} is empty",
                        hint="every row needs a user and an item id; remove or fill that row")
    kind = column.type
    if pa.types.is_integer(kind):
        return _int64_or_text(column)
    if pa.types.is_floating(kind):
        integral = pc.and_(pc.is_finite(column), pc.equal(pc.floor(column), column))
        return _int64_or_text(column) if _first(pc.invert(integral)) is None else column.cast(pa.string())
    text = column.cast(pa.string())
    return _int64_or_text(text) if _first(_not_integer_text(text)) is None else text


def _int64_or_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    import pyarrow as pa

    try:
        return column.cast(pa.int64())  # safe: an unsigned or huge id that int64 cannot hold stays text
    except pa.ArrowInvalid:
        return column.cast(pa.string())


def _not_integer_text(text: pa.ChunkedArray) -> pa.ChunkedArray:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.invert(pc.match_substring_regex(text.cast(pa.string()), _INTEGER_TEXT))


def _ratings(column: pa.ChunkedArray, where: Callable[[int], str], name: str) -> pa.ChunkedArray:
    """The ratings as float64 (cast to float32 once checked); every one a finite number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if (bad := _first(pc.is_null(column))) is not None:
        raise DataError(f"{where(bad)}: the rating (column {name!r}) is empty",
                        hint="every row needs a rating; remove or fill that row")
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = pc.utf8_trim_whitespace(column)
        bad = _first(pc.invert(pc.match_substring_regex(text, _NUMBER_TEXT)))
        values = None if bad is not None else text.cast(pa.float64())
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = column.cast(pa.float64())
        bad = _first(pc.invert(pc.is_finite(values)))
    else:
        values, bad = None, 0
    if bad is not None:
        raise DataError(f"{where(bad)}: the rating {column[bad].as_py()!r} (column {name!r}) is not a number",
                        hint="ratings must be numbers, e.g. 4 or 3.5; fix or remove that row")
    return values


def _scale(ratings: pa.ChunkedArray, declared: tuple[float, float] | None,
           where: Callable[[int], str]) -> tuple[float, float]:
    import pyarrow.compute as pc

    if declared is None:
        bounds = pc.min_max(ratings)
        return float(bounds["min"].as_py()), float(bounds["max"].as_py())
    low, high = declared
    outside = pc.or_kleene(pc.less(ratings, low), pc.greater(ratings, high))
    if (bad := _first(outside)) is not None:
        raise DataError(f"{where(bad)}: the rating {ratings[bad].as_py():g} is outside the declared scale "
                        f"{low:g}:{high:g}",
                        hint="fix that row, or declare the scale your ratings use with --rating-scale LOW:HIGH "
                             "(or leave it out to read the scale from the data)")
    return float(low), float(high)


def _timestamps(column: pa.ChunkedArray, where: Callable[[int], str], name: str) -> pa.ChunkedArray:
    """int64 Unix seconds, null where the source has none."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_null(kind):
        return column.cast(pa.int64())
    if pa.types.is_floating(kind):
        finite = pc.if_else(pc.is_finite(column), column, None)
        return pc.floor(finite).cast(pa.int64(), safe=False)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return column.cast(pa.timestamp("s"), safe=False).cast(pa.int64())
    text = column.cast(pa.string())
    if _first(pc.and_(pc.is_valid(text), _not_integer_text(text))) is None:
        return text.cast(pa.int64())
    try:
        return text.cast(pa.timestamp("s")).cast(pa.int64())
    except pa.ArrowInvalid:
        bad = _first(pc.and_(pc.is_valid(text), _not_integer_text(text)))
        raise DataError(f"{where(bad)}: the timestamp {text[bad].as_py()!r} (column {name!r}) is neither Unix "
                        "seconds nor an ISO 8601 date-time",
                        hint="give Unix seconds or ISO 8601 (2024-05-01T12:00:00), or leave the column out") from None


def _first(mask: pa.ChunkedArray) -> int | None:
    """The index of the first true value, or None."""
    import pyarrow.compute as pc

    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return None
    return pc.index(mask, True).as_py()


# --- messages --------------------------------------------------------------------------------------------------

def _check_distinct(columns: Columns) -> None:
    named = [columns.user, columns.item, columns.rating, columns.timestamp]
    if len(set(named)) < len(named):
        raise ConfigError(f"--columns maps two roles to one column ({columns.as_text()})",
                          hint="each of user, item, rating and timestamp needs a column of its own")


def _require(source: _Opened, names, location: str) -> None:
    for name in names:
        if name not in source.names:
            raise DataError(f"{location} has no column {name!r} (columns found: {_listed(source.names)})",
                            hint=f"{_COLUMNS_HINT}; a text table must start with a header line")


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
    return shown or "none"
