"""The MovieLens archives Sentinel knows by name: where each comes from, how it is verified, and how
its files are laid out. Plain data, cheap to import (no numpy or pyarrow): the CLI, the downloader
(``download``) and the readers (``layouts``) all take a ``DatasetSpec`` from here.

Checksums are GroupLens' published archives' SHA-256 (cross-checked against the published MD5 by
public loaders; sources in the shared dataset notes). Only ml-100k also pins the SHA-256 of each file
read (``members``): that is what lets a repack of it (the test suite's copy) be verified; a repack of
the other sets cannot be, and is used as an extracted directory instead (see ``download``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from sentinel_ml.data import DATASETS, DEFAULT_DATASET
from sentinel_ml.errors import ConfigError

RatingsLayout = Literal["tab", "dcolon", "csv"]
"""``tab``: u.data, ``user item rating timestamp`` tab-separated, no header. ``dcolon``: ratings.dat,
``UserID::MovieID::Rating::Timestamp``. ``csv``: ratings.csv, header ``userId,movieId,rating,timestamp``."""
ItemsLayout = Literal["pipe", "dcolon", "csv"]
"""``pipe``: u.item, ``id|title|…``. ``dcolon``: movies.dat, ``MovieID::Title::Genres``. ``csv``:
movies.csv, quoted, header ``movieId,title,genres``."""

URL_BASE = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class Counts:
    """As the dataset's README publishes them (items: the movies listed, not only those rated)."""

    ratings: int
    users: int
    items: int


@dataclass(frozen=True)
class DatasetSpec:
    """One MovieLens archive as GroupLens ships it, and what Sentinel reads from it."""

    name: str  # the dataset's name (``--dataset``), the archive's (``<name>.zip``) and the cache's folder
    sha256: str  # of the archive, as published
    size: int  # bytes of the archive, as published
    folder: str  # the folder inside the archive (ml-10m's is ``ml-10M100K``)
    ratings_file: str
    ratings_layout: RatingsLayout
    items_file: str
    items_layout: ItemsLayout
    items_encoding: str
    scale: tuple[float, float]
    step: float  # 1.0: whole stars; 0.5: half stars
    counts: Counts
    url: str = ""  # defaults to GroupLens' ``<URL_BASE>/<name>.zip``
    # Plain dicts, not mapping proxies: a spec pickles (to Ray workers).
    # file name -> SHA-256 of its content: a repack passes when these match (ml-100k only).
    members: Mapping[str, str] = field(default_factory=dict)
    # The publisher's own splits: name -> (train file, test file).
    fixed_splits: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.url:
            object.__setattr__(self, "url", f"{URL_BASE}/{self.name}.zip")

    @property
    def required_files(self) -> tuple[str, ...]:
        """Every file read from the archive: its absence makes a directory or archive not this dataset."""
        names = [self.ratings_file, self.items_file, *self.members]
        for train, test in self.fixed_splits.values():
            names += [train, test]
        return tuple(dict.fromkeys(names))


ArchiveSpec = DatasetSpec  # the name this type had when only ml-100k existed


def _csv_dataset(name: str, sha256: str, size: int, counts: Counts) -> DatasetSpec:
    """ml-20m and later: ratings.csv and movies.csv (UTF-8) with headers, half stars 0.5-5."""
    return DatasetSpec(name=name, sha256=sha256, size=size, folder=name,
                       ratings_file="ratings.csv", ratings_layout="csv",
                       items_file="movies.csv", items_layout="csv", items_encoding="utf-8",
                       scale=(0.5, 5.0), step=0.5, counts=counts)

ML_100K = DatasetSpec(
    name="ml-100k",
    # GroupLens' ml-100k.zip: 4,924,029 bytes, MD5 0e33842e24a9c977be4e0107933c0723 (its published .md5).
    sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    size=4_924_029,
    folder="ml-100k",
    ratings_file="u.data", ratings_layout="tab",
    items_file="u.item", items_layout="pipe", items_encoding="latin-1",
    scale=(1.0, 5.0), step=1.0,
    counts=Counts(ratings=100_000, users=943, items=1_682),
    # u.data, u.item and u.user as others record them for GroupLens' archive; u1.base and u1.test
    # (made from u.data by the archive's mku.sh) from the same members in our repacked test copy.
    members={
        "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
        "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
        "u1.base": "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a",
        "u1.test": "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950",
    },
    fixed_splits={"u1": ("u1.base", "u1.test")},
)
ML_1M = DatasetSpec(
    name="ml-1m",
    sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",  # MD5 c4d9eecf…
    size=5_917_549,
    folder="ml-1m",
    ratings_file="ratings.dat", ratings_layout="dcolon",
    items_file="movies.dat", items_layout="dcolon", items_encoding="latin-1",
    scale=(1.0, 5.0), step=1.0,
    counts=Counts(ratings=1_000_209, users=6_040, items=3_883),
)
ML_10M = DatasetSpec(
    name="ml-10m",
    sha256="813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",  # MD5 ce571fd5…
    size=65_566_137,
    folder="ml-10M100K",
    ratings_file="ratings.dat", ratings_layout="dcolon",
    # Loaders that pinned this archive read its titles as UTF-8; the reader falls back to Latin-1.
    items_file="movies.dat", items_layout="dcolon", items_encoding="utf-8",
    scale=(0.5, 5.0), step=0.5,
    counts=Counts(ratings=10_000_054, users=71_567, items=10_681),
)
ML_20M = _csv_dataset("ml-20m", "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",  # MD5 cd245b17…
                      198_702_078, Counts(ratings=20_000_263, users=138_493, items=27_278))
ML_25M = _csv_dataset("ml-25m", "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",  # MD5 6b51fb27…
                      261_978_986, Counts(ratings=25_000_095, users=162_541, items=62_423))
# The published MD5 is d472be33…; this SHA-256 and size were computed by others from their download
# (the weakest pin here: a mismatch names both checksums and the --data way around).
ML_32M = _csv_dataset("ml-32m", "e4a68655d7386b8f95f2f2424b2ff975dfdd15ffd59e0d864a14dca43e99d6ee",
                      238_950_008, Counts(ratings=32_000_204, users=200_948, items=87_585))

SPECS: Mapping[str, DatasetSpec] = {s.name: s for s in (ML_100K, ML_1M, ML_10M, ML_20M, ML_25M, ML_32M)}
assert tuple(SPECS) == DATASETS, "catalog and sentinel_ml.data.DATASETS disagree"


def spec(name: str = DEFAULT_DATASET) -> DatasetSpec:
    """The spec of a dataset by name; an unknown name is a ConfigError listing the known ones."""
    try:
        return SPECS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}", hint=f"choose one of: {', '.join(SPECS)}") from None
