"""Fetch the MovieLens 100k archive once, verify it, and extract it atomically into the cache.

Sources: the GroupLens URL (default), or an override from ``--data`` / ``$SENTINEL_DATA``: an http(s),
``s3://`` (the archive in a bucket: what pods without internet access use) or ``file://`` URL, a
local zip, or a directory that already holds the extracted files.

What is verified (``verify_archive``): an archive whose SHA-256 is GroupLens' published one passes
as it is. Any other archive (a repack of the same files, such as the copy our tests use, or one a
mirror zipped again) passes only if it is a sound zip (every member's CRC) and each file Sentinel
reads has the SHA-256 of GroupLens' own: the same files pass however they were zipped, different
files fail. A directory is verified by the same files' checksums.
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
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sentinel_ml.errors import DataError
from sentinel_ml.paths import data_cache_dir

log = logging.getLogger(__name__)

DATA_ENV = "SENTINEL_DATA"
_COMPLETE_MARKER = ".complete"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveSpec:
    """A dataset archive as its publisher ships it: where, its published checksum, and the SHA-256 of
    each file Sentinel reads from it."""

    name: str  # the archive's folder, and the cache's
    url: str
    sha256: str  # of the archive, as published
    members: Mapping[str, str]  # file name -> sha256 of its content

    @property
    def required_files(self) -> tuple[str, ...]:
        return tuple(self.members)


ML_100K = ArchiveSpec(
    name="ml-100k",
    url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    # GroupLens' ml-100k.zip: 4,924,029 bytes, MD5 0e33842e24a9c977be4e0107933c0723 (its published .md5).
    sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    # u.data, u.item and u.user as others record them for GroupLens' archive; u1.base and u1.test
    # (made from u.data by the archive's mku.sh) from the same members in our repacked test copy.
    members={
        "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
        "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
        "u1.base": "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a",
        "u1.test": "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950",
    },
)
DEFAULT_URL = ML_100K.url
DATASET_NAME = ML_100K.name


def ensure_dataset(source: str | None = None, *, cache_dir: Path | None = None,
                   spec: ArchiveSpec = ML_100K) -> Path:
    """Return a directory holding the extracted dataset, downloading and extracting it if needed.

    ``source`` defaults to ``$SENTINEL_DATA`` and then to the publisher's URL.
    """
    source = source or os.environ.get(DATA_ENV) or spec.url
    local = _as_local_path(source)
    if local is not None and local.is_dir():
        return verify_directory(_dataset_root(local, spec), spec, origin=str(local))

    if local is not None and not local.is_file():
        raise DataError(
            f"dataset not found at {local}",
            hint=f"pass --data with a path to {spec.name}.zip, a directory or a URL",
        )
    cache_dir = cache_dir or data_cache_dir()
    target = cache_dir / spec.name
    if (target / _COMPLETE_MARKER).exists():
        return target

    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache_dir) as tmp:
        archive = Path(tmp) / f"{spec.name}.zip"
        if local is not None:
            shutil.copyfile(local, archive)
        elif source.startswith("s3://"):
            _download_s3(source, archive, spec)
        else:
            _download(source, archive, spec)
        how = verify_archive(archive, spec)
        log.info("%s: verified (%s)", source, how)
        extract_atomically(archive, target, spec, verified=how)
    return target


def file_sha256(f: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: f.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def verify_archive(archive: Path, spec: ArchiveSpec = ML_100K) -> str:
    """Check ``archive`` is the publisher's (see the module doc); returns how it was verified."""
    with archive.open("rb") as f:
        actual = file_sha256(f)
    if actual == spec.sha256:
        return f"sha256 {actual}, the published checksum"
    fix = f"download it again, or pass --data with {spec.name}.zip as its publisher ships it"
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                broken = zf.testzip()
            except (zlib.error, EOFError) as e:
                broken = f"a member ({e})"
            if broken is not None:
                raise DataError(f"checksum mismatch: {broken} in {archive.name} does not decompress to "
                                "what it was zipped from (a corrupt or partial archive)", hint=fix)
            names = {Path(name).name: name for name in zf.namelist() if Path(name).parent.name in ("", spec.name)}
            for member, expected in spec.members.items():
                if member not in names:
                    raise DataError(f"checksum mismatch: {archive.name} is not {spec.name} (no {member} in it)",
                                    hint=fix)
                with zf.open(names[member]) as f:
                    got = file_sha256(f)
                if got != expected:
                    raise DataError(f"checksum mismatch: {member} in {archive.name} is not {spec.name}'s "
                                    f"(sha256 {got}, expected {expected})", hint=fix)
    except zipfile.BadZipFile as e:
        raise DataError(f"checksum mismatch for the {spec.name} archive: sha256 {actual}, expected the "
                        f"published {spec.sha256}, and it is not a zip whose files could be checked ({e})",
                        hint=f"the download is corrupt or partial; {fix}") from None
    return f"a repack: the {len(spec.members)} files read have {spec.name}'s checksums"


def verify_directory(directory: Path, spec: ArchiveSpec = ML_100K, *, origin: str) -> Path:
    """A directory of extracted files: each file read must have the publisher's checksum."""
    _validated_dir(directory, spec, origin=origin)
    for member, expected in spec.members.items():
        with (directory / member).open("rb") as f:
            got = file_sha256(f)
        if got != expected:
            raise DataError(f"{origin}: {member} is not {spec.name}'s (sha256 {got}, expected {expected})",
                            hint=f"pass --data with {spec.name}.zip as its publisher ships it, or its "
                                 "extracted folder unchanged")
    return directory


def extract_atomically(archive: Path, target: Path, spec: ArchiveSpec = ML_100K, *, verified: str = "") -> None:
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
        root = _validated_dir(_dataset_root(staging, spec), spec, origin=str(archive))
        (root / _COMPLETE_MARKER).write_text(f"verified: {verified or 'unknown'}\n")
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


def _download(url: str, dest: Path, spec: ArchiveSpec) -> None:
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, dest.open("wb") as out:
            shutil.copyfileobj(resp, out, _CHUNK)
    except (urllib.error.URLError, OSError) as e:
        raise DataError(
            f"cannot download the MovieLens dataset from {url}: {getattr(e, 'reason', e)}",
            hint=f"check the network, or pass --data (or set ${DATA_ENV}) to a local {spec.name}.zip",
        ) from None


def _download_s3(uri: str, dest: Path, spec: ArchiveSpec) -> None:
    from sentinel_ml.store import uri as storage

    log.info("downloading %s", uri)
    try:
        dest.write_bytes(storage.read_bytes(uri))
    except storage.ObjectNotFound:
        raise DataError(f"dataset not found at {uri}",
                        hint=f"upload {spec.name}.zip there (aws s3 cp {spec.name}.zip {uri}), or pass "
                             "--data with another source") from None


def _as_local_path(source: str) -> Path | None:
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https", "s3"):
        return None
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:
        raise DataError(
            f"unsupported dataset source {source!r}",
            hint="use an http(s)://, s3:// or file:// URL, a path to the archive, or a directory",
        )
    return Path(source).expanduser()


def _dataset_root(directory: Path, spec: ArchiveSpec) -> Path:
    """Accept both the extracted folder itself and its parent (which holds ``ml-100k/``)."""
    nested = directory / spec.name
    return nested if nested.is_dir() else directory


def _validated_dir(directory: Path, spec: ArchiveSpec, *, origin: str) -> Path:
    missing = [name for name in spec.required_files if not (directory / name).is_file()]
    if missing:
        raise DataError(
            f"{origin} does not hold the {spec.name} files (missing {', '.join(missing)})",
            hint=f"pass --data with the {spec.name}.zip archive or its extracted folder",
        )
    return directory
