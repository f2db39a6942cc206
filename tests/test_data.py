"""Checksum and atomic extraction of MovieLens 100k (real files, no network). Parsing each layout is
tests/data/test_layouts.py's; splits are tests/data/test_splits.py's and test_prepared_movielens.py's."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from sentinel_ml.data import download
from sentinel_ml.errors import DataError


def test_checksum_mismatch_is_rejected(tmp_path: Path, movielens_zip: Path) -> None:
    corrupt = tmp_path / "ml-100k.zip"
    payload = bytearray(movielens_zip.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(payload))
    with pytest.raises(DataError, match="checksum mismatch"):
        download.verify_archive(corrupt)


def test_corrupt_archive_leaves_no_cache_behind(tmp_path: Path, movielens_zip: Path) -> None:
    truncated = tmp_path / "partial.zip"
    truncated.write_bytes(movielens_zip.read_bytes()[:100_000])
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch"):
        download.ensure_dataset(str(truncated), cache_dir=cache)
    assert not (cache / "ml-100k").exists()
    assert [p.name for p in cache.iterdir()] == []  # no staging or download leftovers


def test_extract_of_a_broken_zip_is_atomic(tmp_path: Path) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 this is not a zip")
    target = tmp_path / "cache" / "ml-100k"
    target.parent.mkdir()
    with pytest.raises(DataError, match="not a valid zip"):
        download.extract_atomically(broken, target)
    assert list(target.parent.iterdir()) == []


def test_unsafe_member_paths_are_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.txt", "x")
    (tmp_path / "cache").mkdir()
    with pytest.raises(DataError, match="unsafe path"):
        download.extract_atomically(evil, tmp_path / "cache" / "ml-100k")
    assert not (tmp_path / "escape.txt").exists()


def test_local_zip_extracts_once_then_reuses_the_cache(tmp_path: Path, movielens_zip: Path) -> None:
    cache = tmp_path / "cache"
    first = download.ensure_dataset(str(movielens_zip), cache_dir=cache)
    marker = first / ".complete"
    stamp = marker.stat().st_mtime_ns
    second = download.ensure_dataset(movielens_zip.as_uri(), cache_dir=cache)  # file:// URL
    assert first == second and marker.stat().st_mtime_ns == stamp
    assert (first / "u1.base").is_file()


def test_directory_source_is_used_in_place(dataset_dir: Path, tmp_path: Path) -> None:
    assert download.ensure_dataset(str(dataset_dir), cache_dir=tmp_path) == dataset_dir
    assert download.ensure_dataset(str(dataset_dir.parent), cache_dir=tmp_path) == dataset_dir
    assert list(tmp_path.iterdir()) == []


def test_directory_without_the_files_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing u.data"):
        download.ensure_dataset(str(tmp_path))


def test_missing_local_source_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset not found") as info:
        download.ensure_dataset(str(tmp_path / "nope.zip"), cache_dir=tmp_path / "cache")
    assert "--data" in info.value.hint


def test_unsupported_scheme_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unsupported dataset source"):
        download.ensure_dataset("ftp://example.invalid/ml-100k.zip", cache_dir=tmp_path)


def test_s3_source_downloads_once_from_the_bucket(tmp_path: Path, movielens_zip: Path, s3_bucket: str) -> None:
    """What pods without internet access use: the archive in the platform's bucket (a real S3
    server, boto3 through the storage funnel)."""
    from sentinel_ml.store import uri as storage

    source = s3_bucket + "/data/ml-100k.zip"
    storage.write_bytes(source, movielens_zip.read_bytes())
    cache = tmp_path / "cache"
    extracted = download.ensure_dataset(source, cache_dir=cache)
    assert (extracted / "u1.base").is_file() and (extracted / ".complete").is_file()
    storage.delete(source)  # the cache answers from now on
    assert download.ensure_dataset(source, cache_dir=cache) == extracted


def test_missing_s3_source_names_the_uri_and_the_upload(tmp_path: Path, s3_bucket: str) -> None:
    with pytest.raises(DataError, match="dataset not found at s3://") as info:
        download.ensure_dataset(s3_bucket + "/data/none.zip", cache_dir=tmp_path / "cache")
    assert "aws s3 cp" in info.value.hint
