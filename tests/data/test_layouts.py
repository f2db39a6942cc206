"""Each MovieLens layout read into a RawRatings: small files written here in every archive's own
layout (u.data and u.item, ratings.dat and movies.dat, ratings.csv and movies.csv), and the real
ml-100k copy. ``write_dataset`` is also what tests/data/test_archives.py zips and serves."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pyarrow as pa
import pytest

from sentinel_ml.data import catalog
from sentinel_ml.data.catalog import DatasetSpec
from sentinel_ml.data.layouts import fingerprint_of, read_movielens
from sentinel_ml.errors import DataError

# (user, item, rating, timestamp); half stars where the spec's step allows them.
HALF_STARS = [(1, 10, 4.0, 978300760), (1, 20, 3.5, 978300761), (2, 10, 5.0, 978300762), (3, 30, 0.5, 978300763)]
WHOLE_STARS = [(1, 10, 4.0, 978300760), (1, 20, 3.0, 978300761), (2, 10, 5.0, 978300762), (3, 30, 1.0, 978300763)]
TITLES = [
    (10, "Toy Story (1995)"),
    (20, "Star Wars: Episode IV - A New Hope (1977)"),  # a colon: movies.dat splits on "::" only
    (30, "Misérables, Les (1995)"),  # a comma (quoted in movies.csv) and a Latin-1 letter
    (40, '"Great Performances" Cats (1998)'),  # quotes: literal in u.item and movies.dat
]


def expected_ratings(spec: DatasetSpec) -> list[tuple[int, int, float, int]]:
    return HALF_STARS if spec.step == 0.5 else WHOLE_STARS


def write_dataset(root: Path, spec: DatasetSpec, *, ratings: list | None = None) -> Path:
    """The files ``spec`` reads, in its layout, under ``root/<its archive folder>``; returns that folder."""
    folder = root / spec.folder
    folder.mkdir(parents=True)
    rows = expected_ratings(spec) if ratings is None else ratings
    _write_ratings(folder / spec.ratings_file, spec, rows)
    _write_items(folder / spec.items_file, spec)
    for train, test in spec.fixed_splits.values():
        _write_ratings(folder / train, spec, rows[:3])
        _write_ratings(folder / test, spec, rows[3:])
    for member in spec.members:
        if not (folder / member).exists():  # u.user: required, not read
            (folder / member).write_text("1|24|M|technician|85711\n")
    return folder


def _write_ratings(path: Path, spec: DatasetSpec, rows: list) -> None:
    def fmt(v: object) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    if spec.ratings_layout == "csv":
        text = "userId,movieId,rating,timestamp\n" + "".join(",".join(map(fmt, r)) + "\n" for r in rows)
    else:
        sep = "\t" if spec.ratings_layout == "tab" else "::"
        text = "".join(sep.join(map(fmt, r)) + "\n" for r in rows)
    path.write_text(text, encoding="ascii")


def _write_items(path: Path, spec: DatasetSpec) -> None:
    if spec.items_layout == "csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["movieId", "title", "genres"])
            writer.writerows([(item, title, "Comedy|Drama") for item, title in TITLES])
    elif spec.items_layout == "dcolon":
        path.write_text("".join(f"{item}::{title}::Comedy|Drama\n" for item, title in TITLES),
                        encoding=spec.items_encoding)
    else:  # u.item: id|title|release|video release|IMDb URL|19 genre flags
        flags = "|".join("0" * 19)
        path.write_text("".join(f"{item}|{title}|01-Jan-1995||http://example.invalid/|{flags}\n"
                                for item, title in TITLES), encoding=spec.items_encoding)


@pytest.mark.parametrize("name", catalog.SPECS)
def test_each_layout_parses_to_the_rows_types_and_titles(tmp_path: Path, name: str) -> None:
    spec = catalog.spec(name)
    folder = write_dataset(tmp_path, spec)
    raw = read_movielens(folder, spec)
    assert raw.ratings.schema == pa.schema([("user", pa.int64()), ("item", pa.int64()),
                                            ("rating", pa.float32()), ("timestamp", pa.int64())])
    assert [tuple(r.values()) for r in raw.ratings.to_pylist()] == expected_ratings(spec)
    assert raw.items.schema == pa.schema([("item", pa.int64()), ("title", pa.string())])
    assert [tuple(r.values()) for r in raw.items.to_pylist()] == TITLES
    assert raw.scale == spec.scale and raw.dataset == name
    assert raw.origin == f"{name} ({spec.ratings_file})"
    assert raw.fingerprint == fingerprint_of(folder, spec)
    if name == "ml-100k":
        train, test = raw.fixed_splits["u1"]
        assert (train.num_rows, test.num_rows) == (3, 1) and train.schema == raw.ratings.schema
    else:
        assert raw.fixed_splits == {}


def test_the_real_ml_100k_parses_to_its_published_counts(dataset_dir: Path) -> None:
    raw = read_movielens(dataset_dir, catalog.ML_100K)
    counts = catalog.ML_100K.counts
    assert raw.ratings.num_rows == counts.ratings and raw.items.num_rows == counts.items
    assert len(set(raw.ratings.column("user").to_pylist())) == counts.users
    assert raw.items.column("title")[0].as_py() == "Toy Story (1995)"
    train, test = raw.fixed_splits["u1"]
    assert (train.num_rows, test.num_rows) == (80_000, 20_000)


def test_titles_not_in_the_declared_encoding_fall_back_to_latin_1(tmp_path: Path) -> None:
    """ml-10m's movies.dat is read as UTF-8; a Latin-1 title gives a readable name, not a refusal."""
    spec = catalog.ML_10M
    folder = write_dataset(tmp_path, spec)
    (folder / "movies.dat").write_bytes("30::Misérables, Les (1995)::Drama\n".encode("latin-1"))
    raw = read_movielens(folder, spec)
    assert raw.items.to_pylist() == [{"item": 30, "title": "Misérables, Les (1995)"}]


@pytest.mark.parametrize(("name", "line", "message"), [
    ("ml-1m", "1::10::four::978300760\n", r"cannot parse .*ratings.dat as MovieLens dcolon ratings"),
    ("ml-20m", "1,10,,978300760\n", "1 rows without a rating"),
    ("ml-100k", "1\t10\t7\t978300760\n", r"outside ml-100k's scale 1-5 \(1-7\)"),
    ("ml-10m", "1::10::3.5\n", "cannot parse"),  # a field short
])
def test_a_bad_ratings_row_is_a_data_error_naming_the_file(tmp_path: Path, name: str, line: str,
                                                           message: str) -> None:
    spec = catalog.spec(name)
    folder = write_dataset(tmp_path, spec)
    with (folder / spec.ratings_file).open("a") as f:
        f.write(line)
    with pytest.raises(DataError, match=message) as info:
        read_movielens(folder, spec)
    assert spec.ratings_file in info.value.message


def test_fingerprint_of_a_users_directory_follows_its_files(tmp_path: Path) -> None:
    spec = catalog.ML_25M
    folder = write_dataset(tmp_path, spec)
    first = fingerprint_of(folder, spec)
    assert first.startswith("ml-25m:files:") and fingerprint_of(folder, spec) == first
    ratings = folder / spec.ratings_file
    os.utime(ratings, ns=(ratings.stat().st_atime_ns, ratings.stat().st_mtime_ns + 1_000_000_000))
    assert fingerprint_of(folder, spec) != first
    (folder / ".complete").write_text("verified: sha256 abc, the published checksum\nfingerprint: ml-25m:sha256:abc\n")
    assert fingerprint_of(folder, spec) == "ml-25m:sha256:abc"  # a cache entry: what was verified
