"""The real downloader over real HTTP, against a loopback server serving archives the tests make:
what is verified (GroupLens' published checksum, else each file's) decides what passes."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import pytest

from sentinel_ml.data import download
from sentinel_ml.errors import DataError
from tests.support.www import serve_directory


@pytest.fixture
def http_files(tmp_path: Path, movielens_zip: Path):
    """Serve ``good.zip`` and ``corrupt.zip`` on 127.0.0.1; yields (base URL, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "good.zip").write_bytes(movielens_zip.read_bytes())
    corrupt = bytearray(movielens_zip.read_bytes())
    corrupt[1000:1010] = b"\x00" * 10
    (root / "corrupt.zip").write_bytes(bytes(corrupt))
    with serve_directory(root) as (url, requests):
        yield url, requests


def repack(source: Path, dest: Path, *, change: str | None = None) -> Path:
    """The same members zipped again (stored, in reverse order): another archive, the same files;
    with ``change``, one byte of that member flipped."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zout:
        for info in reversed(zin.infolist()):
            data = zin.read(info)
            if change and info.filename.endswith("/" + change):
                data = bytes([data[0] ^ 0x01]) + data[1:]
            zout.writestr(info.filename, data)
    return dest


def test_a_repack_of_the_same_files_passes_by_their_checksums(http_files, tmp_path: Path,
                                                               movielens_zip: Path) -> None:
    base, _ = http_files
    repacked = repack(movielens_zip, tmp_path / "www" / "repacked.zip")
    assert repacked.read_bytes() != movielens_zip.read_bytes()
    extracted = download.ensure_dataset(f"{base}/repacked.zip", cache_dir=tmp_path / "cache")
    assert (extracted / ".complete").read_text().startswith("verified: a repack: the 5 files read")
    assert download.recorded_fingerprint(extracted) == download.members_fingerprint(download.ML_100K)


def test_a_repack_with_one_changed_byte_in_u_data_is_refused(http_files, tmp_path: Path,
                                                             movielens_zip: Path) -> None:
    base, _ = http_files
    repack(movielens_zip, tmp_path / "www" / "changed.zip", change="u.data")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"checksum mismatch: u.data in ml-100k.zip is not ml-100k's") as info:
        download.ensure_dataset(f"{base}/changed.zip", cache_dir=cache)
    assert "--data" in info.value.hint
    assert list(cache.iterdir()) == []  # no cache entry, no download left behind
    # The same files as a folder: refused the same way.
    folder = tmp_path / "folder"
    with zipfile.ZipFile(tmp_path / "www" / "changed.zip") as zf:
        zf.extractall(folder)
    with pytest.raises(DataError, match="u.data is not ml-100k's"):
        download.ensure_dataset(str(folder), cache_dir=cache)


def test_an_archive_with_the_published_checksum_passes_as_it_is(http_files, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The published checksum alone decides for the publisher's own archive: here a small archive in
    ml-100k's layout, not GroupLens' files, whose SHA-256 the spec names as published."""
    base, requests = http_files
    archive = tmp_path / "www" / "published.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in download.ML_100K.required_files:
            zf.writestr(f"ml-100k/{name}", f"{name}\n")
    published = hashlib.sha256(archive.read_bytes()).hexdigest()
    spec = dataclasses.replace(download.ML_100K, url=f"{base}/published.zip", sha256=published)
    monkeypatch.delenv(download.DATA_ENV, raising=False)
    cache = tmp_path / "cache"
    extracted = download.ensure_dataset(None, cache_dir=cache, spec=spec)  # the spec's URL: the default
    assert requests == ["/published.zip"]
    assert (extracted / ".complete").read_text() == (f"verified: sha256 {published}, the published checksum\n"
                                                     f"fingerprint: ml-100k:sha256:{published}\n")
    assert (extracted / "u.data").read_text() == "u.data\n"
    # The same archive against GroupLens' checksum: its files are not GroupLens', so it is refused.
    with pytest.raises(DataError, match="u.data in ml-100k.zip is not ml-100k's"):
        download.ensure_dataset(f"{base}/published.zip", cache_dir=tmp_path / "other")


def test_download_verifies_extracts_and_caches(http_files, tmp_path: Path) -> None:
    base, requests = http_files
    cache = tmp_path / "cache"
    first = download.ensure_dataset(f"{base}/good.zip", cache_dir=cache)
    assert (first / "u1.test").is_file()
    second = download.ensure_dataset(f"{base}/good.zip", cache_dir=cache)
    assert second == first
    assert requests == ["/good.zip"]  # the second call never went to the network


def test_corrupt_download_is_rejected_and_leaves_nothing(http_files, tmp_path: Path) -> None:
    base, _ = http_files
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch"):
        download.ensure_dataset(f"{base}/corrupt.zip", cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_http_error_names_the_url_and_the_fix(http_files, tmp_path: Path) -> None:
    base, _ = http_files
    with pytest.raises(DataError, match="cannot download") as info:
        download.ensure_dataset(f"{base}/missing.zip", cache_dir=tmp_path / "cache")
    assert "--data" in info.value.hint
    assert not (tmp_path / "cache" / "ml-100k").exists()
