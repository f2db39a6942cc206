"""Fetch the MovieLens 100k archive once, verify it, and extract it atomically into the cache.

Sources: the GroupLens URL (default), or an override from ``--data`` / ``$SENTINEL_DATA``: an http(s),
``s3://`` (the archive in a bucket: what pods without internet access use) or ``file://`` URL, a
local zip, or a directory that already holds the extracted files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from sentinel_ml.errors import DataError
from sentinel_ml.paths import data_cache_dir

log = logging.getLogger(__name__)

DATA_ENV = "SENTINEL_DATA"
DEFAULT_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ARCHIVE_SHA256 = "96071c98dd763078ee45fb1681756b55ecab9b481595746715db12007ca766d4"
DATASET_NAME = "ml-100k"
REQUIRED_FILES = ("u.data", "u.item", "u.user", "u1.base", "u1.test")
_COMPLETE_MARKER = ".complete"
_CHUNK = 1 << 20


def ensure_dataset(source: str | None = None, *, cache_dir: Path | None = None) -> Path:
    """Return a directory holding the extracted dataset, downloading and extracting it if needed.

    ``source`` defaults to ``$SENTINEL_DATA`` and then to the GroupLens URL.
    """
    source = source or os.environ.get(DATA_ENV) or DEFAULT_URL
    local = _as_local_path(source)
    if local is not None and local.is_dir():
        return _validated_dir(_dataset_root(local), origin=str(local))

    if local is not None and not local.is_file():
        raise DataError(
            f"dataset not found at {local}",
            hint="pass --data with a path to ml-100k.zip, a directory or a URL",
        )
    cache_dir = cache_dir or data_cache_dir()
    target = cache_dir / DATASET_NAME
    if (target / _COMPLETE_MARKER).exists():
        return target

    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache_dir) as tmp:
        archive = Path(tmp) / "ml-100k.zip"
        if local is not None:
            shutil.copyfile(local, archive)
        elif source.startswith("s3://"):
            _download_s3(source, archive)
        else:
            _download(source, archive)
        verify_checksum(archive)
        extract_atomically(archive, target)
    return target


def verify_checksum(archive: Path, expected: str = ARCHIVE_SHA256) -> None:
    digest = hashlib.sha256()
    with archive.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    actual = digest.hexdigest()
    if actual != expected:
        raise DataError(
            f"checksum mismatch for the MovieLens archive: sha256 {actual}, expected {expected}",
            hint="the download is corrupt or partial; run again, or pass --data with a good copy",
        )


def extract_atomically(archive: Path, target: Path) -> None:
    """Extract into a sibling temp dir, check it, then rename into place: never a half-made cache."""
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                _check_members(zf)
                zf.extractall(staging)
        except zipfile.BadZipFile as e:
            raise DataError(
                f"{archive.name} is not a valid zip archive ({e})",
                hint="delete it and download again, or pass --data with a good copy",
            ) from None
        root = _validated_dir(_dataset_root(staging), origin=str(archive))
        (root / _COMPLETE_MARKER).write_text(ARCHIVE_SHA256 + "\n")
        if target.exists():  # a stale, incomplete cache from an older version
            shutil.rmtree(target)
        os.replace(root, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_members(zf: zipfile.ZipFile) -> None:
    for name in zf.namelist():
        path = Path(name)
        if path.is_absolute() or ".." in path.parts:
            raise DataError(f"refusing to extract unsafe path {name!r} from the archive")


def _download(url: str, dest: Path) -> None:
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, dest.open("wb") as out:
            shutil.copyfileobj(resp, out, _CHUNK)
    except (urllib.error.URLError, OSError) as e:
        raise DataError(
            f"cannot download the MovieLens dataset from {url}: {getattr(e, 'reason', e)}",
            hint=f"check the network, or pass --data (or set ${DATA_ENV}) to a local ml-100k.zip",
        ) from None


def _download_s3(uri: str, dest: Path) -> None:
    from sentinel_ml.store import uri as storage

    log.info("downloading %s", uri)
    try:
        dest.write_bytes(storage.read_bytes(uri))
    except storage.ObjectNotFound:
        raise DataError(f"dataset not found at {uri}",
                        hint=f"upload ml-100k.zip there (aws s3 cp ml-100k.zip {uri}), or pass --data "
                             "with another source") from None


def _as_local_path(source: str) -> Path | None:
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https", "s3"):
        return None
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:
        raise DataError(
            f"unsupported dataset source {source!r}",
            hint="use an http(s)://, s3:// or file:// URL, a path to ml-100k.zip, or a directory",
        )
    return Path(source).expanduser()


def _dataset_root(directory: Path) -> Path:
    """Accept both the extracted folder itself and its parent (which holds ``ml-100k/``)."""
    nested = directory / DATASET_NAME
    return nested if nested.is_dir() else directory


def _validated_dir(directory: Path, *, origin: str) -> Path:
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise DataError(
            f"{origin} does not hold the MovieLens 100k files (missing {', '.join(missing)})",
            hint="pass --data with the ml-100k.zip archive or its extracted folder",
        )
    return directory
