"""The real downloader over real HTTP, against a loopback server serving the shared archive."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from sentinel_ml.data import download
from sentinel_ml.errors import DataError


@pytest.fixture
def http_files(tmp_path: Path, movielens_zip: Path):
    """Serve ``good.zip`` and ``corrupt.zip`` on 127.0.0.1; yields (base URL, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "good.zip").write_bytes(movielens_zip.read_bytes())
    corrupt = bytearray(movielens_zip.read_bytes())
    corrupt[1000:1010] = b"\x00" * 10
    (root / "corrupt.zip").write_bytes(bytes(corrupt))
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):  # noqa: N802 - http.server's naming
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


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
