"""Each MovieLens archive's download over real HTTP on 127.0.0.1: small archives in every layout,
whose SHA-256 a copy of the catalog's spec names as published (GroupLens is out of reach here).
What is checked: verified, extracted atomically, parsed; a wrong checksum refused with nothing left
in the cache; a dead or silent server fails within seconds naming the URL and ``--data``."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel_ml.data import catalog, download
from sentinel_ml.data.catalog import DatasetSpec
from sentinel_ml.data.layouts import read_movielens
from sentinel_ml.errors import ConfigError, DataError
from tests.data.test_layouts import expected_ratings, write_dataset
from tests.support.ports import free_port
from tests.support.www import serve_directory


def _short_body(handler) -> None:
    """Promises more than it sends, then hangs up."""
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(b"PK" * 10)


@pytest.fixture
def www(tmp_path: Path) -> Iterator[tuple[Path, str, list[str]]]:
    """A directory served on 127.0.0.1: yields (directory, base URL, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_directory(root, {"/short.zip": _short_body}) as (url, requests):
        yield root, url, requests


def make_archive(tmp_path: Path, spec: DatasetSpec, dest: Path) -> Path:
    """``spec``'s files in its layout, zipped under its archive folder as GroupLens does."""
    folder = write_dataset(tmp_path / f"src-{spec.name}", spec)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"{spec.folder}/{path.name}")
    return dest


def published(spec: DatasetSpec, archive: Path, url: str) -> DatasetSpec:
    """The spec as if GroupLens had published ``archive`` at ``url``."""
    data = archive.read_bytes()
    return dataclasses.replace(spec, url=url, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


@pytest.mark.parametrize("name", ["ml-1m", "ml-10m", "ml-25m"])  # ratings.dat, ml-10M100K/, ratings.csv
def test_an_archive_downloads_verifies_extracts_and_parses(www, tmp_path: Path, name: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    root, base, requests = www
    spec = catalog.spec(name)
    archive = make_archive(tmp_path, spec, root / f"{name}.zip")
    spec = published(spec, archive, f"{base}/{name}.zip")
    monkeypatch.setenv(download.DATA_ENV, str(tmp_path / "nope.zip"))  # names ml-100k's source only
    cache = tmp_path / "cache"
    calls: list[tuple[int, int | None]] = []

    extracted = download.ensure_dataset(None, cache_dir=cache, spec=spec,
                                        progress=lambda done, total: calls.append((done, total)))

    assert extracted == cache / name and extracted.is_absolute()
    assert sorted(p.name for p in cache.iterdir()) == [name]  # no staging or download left beside it
    assert calls[0] == (0, spec.size) and calls[-1] == (spec.size, spec.size)
    assert (extracted / ".complete").read_text() == (f"verified: sha256 {spec.sha256}, the published checksum\n"
                                                     f"fingerprint: {name}:sha256:{spec.sha256}\n")
    raw = read_movielens(extracted, spec)
    assert [tuple(r.values()) for r in raw.ratings.to_pylist()] == expected_ratings(spec)
    assert raw.fingerprint == f"{name}:sha256:{spec.sha256}"
    if spec.step == 0.5:
        assert 3.5 in raw.ratings.column("rating").to_pylist()
    assert download.ensure_dataset(None, cache_dir=cache, spec=spec) == extracted
    assert requests == [f"/{name}.zip"]  # the second call answered from the cache


def test_a_wrong_checksum_is_refused_naming_both_and_leaves_nothing(www, tmp_path: Path) -> None:
    root, base, _ = www
    archive = make_archive(tmp_path, catalog.ML_20M, root / "ml-20m.zip")
    actual = hashlib.sha256(archive.read_bytes()).hexdigest()
    spec = dataclasses.replace(catalog.ML_20M, url=f"{base}/ml-20m.zip")  # GroupLens' checksum: not this
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch") as info:
        download.ensure_dataset(None, cache_dir=cache, spec=spec)
    assert actual in info.value.message and catalog.ML_20M.sha256 in info.value.message
    assert "--data <directory>" in info.value.hint
    assert list(cache.iterdir()) == []
    # A local copy of the archive: refused the same way.
    with pytest.raises(DataError, match=actual):
        download.ensure_dataset(str(archive), cache_dir=cache, spec=spec)
    assert list(cache.iterdir()) == []


def test_a_users_extracted_copy_is_used_in_place_unverified(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The way around a repack: its folder (here ml-10m's, given as the folder above ml-10M100K/)."""
    spec = catalog.ML_10M
    folder = write_dataset(tmp_path / "mine", spec)
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger=download.__name__):
        used = download.ensure_dataset(str(tmp_path / "mine"), cache_dir=cache, spec=spec)
    assert used == folder and not cache.exists()
    assert "not checksum-verified" in caplog.text
    assert read_movielens(used, spec).fingerprint.startswith("ml-10m:files:")
    (folder / "movies.dat").unlink()
    with pytest.raises(DataError, match="missing movies.dat"):
        download.ensure_dataset(str(folder), cache_dir=cache, spec=spec)


def _assert_fails_fast(url: str, cache: Path, spec: DatasetSpec, reason: str) -> None:
    started = time.monotonic()
    with pytest.raises(DataError, match="cannot download") as info:
        download.ensure_dataset(url, cache_dir=cache, spec=spec)
    assert time.monotonic() - started < 10  # a behaviour bound: seconds, never a hang
    assert url in info.value.message and reason in info.value.message
    assert info.value.hint.endswith(f"pass --data with a local copy of {spec.name}.zip or its extracted folder")
    assert list(cache.iterdir()) == []


def test_a_closed_port_fails_within_seconds_naming_the_url_and_data(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/ml-1m.zip"
    _assert_fails_fast(url, tmp_path / "cache", catalog.ML_1M, "refused")


def test_a_server_that_never_answers_fails_within_seconds(tmp_path: Path) -> None:
    with socket.socket() as silent:  # listening: connections are accepted by the kernel, never answered
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/ml-32m.zip"
        _assert_fails_fast(url, tmp_path / "cache", catalog.ML_32M, f"no answer within {download.TIMEOUT_S:g} s")


def test_a_download_cut_short_or_missing_is_refused(www, tmp_path: Path) -> None:
    _, base, _ = www
    _assert_fails_fast(f"{base}/short.zip", tmp_path / "cache", catalog.ML_1M, "closed after 20 of 1,000 bytes")
    _assert_fails_fast(f"{base}/missing.zip", tmp_path / "cache", catalog.ML_1M, "HTTP 404")


def test_the_catalog_names_every_dataset_and_refuses_others() -> None:
    from sentinel_ml.data import DATASETS

    assert tuple(catalog.SPECS) == DATASETS
    for name, spec in catalog.SPECS.items():
        assert spec.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        assert len(spec.sha256) == 64 and spec.size > 0
    assert catalog.ML_10M.folder == "ml-10M100K" and catalog.ML_100K.fixed_splits == {"u1": ("u1.base", "u1.test")}
    assert download.ML_100K is catalog.ML_100K  # the names other code imports still hold
    with pytest.raises(ConfigError, match="unknown dataset 'ml-5m'") as info:
        catalog.spec("ml-5m")
    assert "ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m" in info.value.hint


def test_the_catalog_and_downloader_import_without_numpy_or_pyarrow() -> None:
    """The CLI builds its choices from them: they must stay cheap to import."""
    code = ("import sys, sentinel_ml.data.catalog, sentinel_ml.data.download; "
            "print([m for m in ('numpy', 'pyarrow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
