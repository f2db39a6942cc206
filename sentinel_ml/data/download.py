"""Fetch a MovieLens archive once, verify it, and extract it atomically into the cache.

Which archive: a ``DatasetSpec`` from ``sentinel_ml.data.catalog`` (ml-100k by default). Sources: the
publisher's URL (default), or an override from ``--data``: an http(s), ``s3://`` (the archive in a
bucket: what pods without internet access use) or ``file://`` URL, a local zip, or a directory that
already holds the extracted files. ``$SENTINEL_DATA`` stands in for ``--data`` for the default
dataset (ml-100k) only: one variable cannot name the archives of several datasets.

What is verified (``verify_archive``): an archive whose SHA-256 is GroupLens' published one passes
as it is. For ml-100k, whose files' own checksums are pinned, any other archive (a repack of the same
files, such as the copy our tests use, or one a mirror zipped again) passes only if it is a sound zip
(every member's CRC) and each file Sentinel reads has the SHA-256 of GroupLens' own; a directory is
verified by the same files' checksums. The larger sets pin only the archive's checksum: another
archive is refused, and a directory is used as it is once the files read are there (logged as not
checksum-verified): that is the way to use one's own copy.

A download fails fast: no answer within ``TIMEOUT_S`` (to connect, for the response, or between two
reads) is a ``DataError`` naming the URL and the ``--data`` way around, never a hang.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sentinel_ml.data import DEFAULT_DATASET
from sentinel_ml.data.catalog import ML_100K, ArchiveSpec, DatasetSpec
from sentinel_ml.errors import DataError
from sentinel_ml.paths import data_cache_dir

__all__ = [
    "DATASET_NAME",
    "DATA_ENV",
    "DEFAULT_URL",
    "ML_100K",
    "TIMEOUT_S",
    "ArchiveSpec",
    "DatasetSpec",
    "Progress",
    "Verification",
    "ensure_dataset",
    "extract_atomically",
    "file_sha256",
    "members_fingerprint",
    "recorded_fingerprint",
    "use_directory",
    "verify_archive",
    "verify_directory",
]

log = logging.getLogger(__name__)

DATA_ENV = "SENTINEL_DATA"
COMPLETE_MARKER = ".complete"
_CHUNK = 1 << 20
TIMEOUT_S = 5.0
"""Seconds to connect, to get the response, and between two reads: a dead host fails in seconds."""

Progress = Callable[[int, int | None], None]
"""``progress(bytes_done, bytes_total)``, total ``None`` when the server does not say."""

DEFAULT_URL = ML_100K.url
DATASET_NAME = ML_100K.name


@dataclass(frozen=True)
class Verification:
    """How an archive was verified (for the log and the cache's marker), and the fingerprint of its
    content that the prepared cache is keyed by."""

    how: str
    fingerprint: str


def ensure_dataset(source: str | None = None, *, cache_dir: Path | None = None,
                   spec: DatasetSpec = ML_100K, progress: Progress | None = None) -> Path:
    """Return the absolute directory holding the extracted dataset, downloading and extracting it
    into ``cache_dir/<name>`` first if it is not there.

    ``source`` defaults to ``$SENTINEL_DATA`` (the default dataset only) and then to the spec's URL.
    A directory is used in place: verified by its files' checksums where the spec pins them
    (ml-100k), otherwise only checked to hold the files read (not checksum-verified). ``progress``
    is called as the archive arrives (see ``Progress``).
    """
    source = source or _default_source(spec)
    local = _as_local_path(source)
    if local is not None and local.is_dir():
        return use_directory(local, spec)

    if local is not None and not local.is_file():
        raise DataError(
            f"dataset not found at {local}",
            hint=f"pass --data with a path to {spec.name}.zip, a directory or a URL",
        )
    cache_dir = (cache_dir or data_cache_dir()).absolute()
    target = cache_dir / spec.name
    if (target / COMPLETE_MARKER).exists():
        return target

    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache_dir) as tmp:
        archive = Path(tmp) / f"{spec.name}.zip"
        if local is not None:
            with local.open("rb") as src, archive.open("wb") as out:
                _copy(src, out, local.stat().st_size, progress)
        elif source.startswith("s3://"):
            _download_s3(source, archive, spec)
        else:
            _download(source, archive, spec, progress)
        verified = verify_archive(archive, spec)
        log.info("%s: verified (%s)", source, verified.how)
        extract_atomically(archive, target, spec, verified=verified)
    return target


def use_directory(directory: Path, spec: DatasetSpec = ML_100K) -> Path:
    """An extracted copy given as ``--data``: the dataset's folder itself, or its parent."""
    root = _dataset_root(directory, spec).absolute()
    if spec.members:
        return verify_directory(root, spec, origin=str(directory))
    _validated_dir(root, spec, origin=str(directory))
    log.warning("%s: using the %s files found there as they are: not checksum-verified (GroupLens "
                "publishes the archive's checksum only)", root, spec.name)
    return root


def file_sha256(f: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: f.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def members_fingerprint(spec: DatasetSpec) -> str:
    """The fingerprint of content verified file by file: the same however it was zipped."""
    listing = "".join(f"{name} {digest}\n" for name, digest in sorted(spec.members.items()))
    return f"{spec.name}:members:{hashlib.sha256(listing.encode()).hexdigest()}"


def verify_archive(archive: Path, spec: DatasetSpec = ML_100K) -> Verification:
    """Check ``archive`` is the publisher's (see the module doc); says how, and its fingerprint."""
    with archive.open("rb") as f:
        actual = file_sha256(f)
    if actual == spec.sha256:
        return Verification(f"sha256 {actual}, the published checksum", f"{spec.name}:sha256:{actual}")
    if not spec.members:
        raise DataError(f"checksum mismatch: {archive.name} has sha256 {actual}, not the published "
                        f"{spec.sha256} of GroupLens' {spec.name}.zip",
                        hint="download it again; to use a copy of your own, extract it and pass "
                             "--data <directory> (a directory is used as it is, not checksum-verified)")
    fix = f"download it again, or pass --data with {spec.name}.zip as its publisher ships it"
    try:
        with zipfile.ZipFile(archive) as zf:
            _verify_members(zf, archive, spec, fix)
    except zipfile.BadZipFile as e:
        raise DataError(f"checksum mismatch for the {spec.name} archive: sha256 {actual}, expected the "
                        f"published {spec.sha256}, and it is not a zip whose files could be checked ({e})",
                        hint=f"the download is corrupt or partial; {fix}") from None
    return Verification(f"a repack: the {len(spec.members)} files read have {spec.name}'s checksums",
                        members_fingerprint(spec))


def _verify_members(zf: zipfile.ZipFile, archive: Path, spec: DatasetSpec, fix: str) -> None:
    try:
        broken = zf.testzip()
    except (zlib.error, EOFError) as e:
        broken = f"a member ({e})"
    if broken is not None:
        raise DataError(f"checksum mismatch: {broken} in {archive.name} does not decompress to "
                        "what it was zipped from (a corrupt or partial archive)", hint=fix)
    names = {Path(name).name: name for name in zf.namelist()
             if Path(name).parent.name in ("", spec.folder, spec.name)}
    for member, expected in spec.members.items():
        if member not in names:
            raise DataError(f"checksum mismatch: {archive.name} is not {spec.name} (no {member} in it)", hint=fix)
        with zf.open(names[member]) as f:
            got = file_sha256(f)
        if got != expected:
            raise DataError(f"checksum mismatch: {member} in {archive.name} is not {spec.name}'s "
                            f"(sha256 {got}, expected {expected})", hint=fix)


def verify_directory(directory: Path, spec: DatasetSpec = ML_100K, *, origin: str) -> Path:
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


def recorded_fingerprint(directory: Path) -> str | None:
    """The fingerprint the cache's marker recorded at extract time (None: no marker, or an older one)."""
    try:
        text = (directory / COMPLETE_MARKER).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == "fingerprint" and value:
            return value
    return None


def extract_atomically(archive: Path, target: Path, spec: DatasetSpec = ML_100K, *,
                       verified: Verification | None = None) -> None:
    """Extract into a sibling temp dir, check it, record how it was verified, then rename into place:
    never a half-made cache."""
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
        marker = f"verified: {verified.how}\nfingerprint: {verified.fingerprint}\n" if verified else "verified: unknown\n"
        (root / COMPLETE_MARKER).write_text(marker)
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


def _default_source(spec: DatasetSpec) -> str:
    if spec.name == DEFAULT_DATASET and os.environ.get(DATA_ENV):
        return os.environ[DATA_ENV]
    return spec.url


def _fallback_hint(spec: DatasetSpec) -> str:
    return f"check the network, or pass --data with a local copy of {spec.name}.zip or its extracted folder"


def _download(url: str, dest: Path, spec: DatasetSpec, progress: Progress | None) -> None:
    """One GET, streamed to ``dest``; every failure (refused, no answer within TIMEOUT_S, an HTTP
    error, a connection cut short) is a DataError naming the URL."""
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, dest.open("wb") as out:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = _copy(resp, out, total, progress)
    except urllib.error.HTTPError as e:
        reason = f"HTTP {e.code} {e.reason}"
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        cause = getattr(e, "reason", e)
        reason = f"no answer within {TIMEOUT_S:g} s" if isinstance(cause, TimeoutError) else str(cause) or repr(cause)
    else:
        if total is None or done == total:
            return
        reason = f"the connection closed after {done:,} of {total:,} bytes"
    raise DataError(f"cannot download {spec.name} from {url}: {reason}", hint=_fallback_hint(spec))


def _copy(src: BinaryIO, out: BinaryIO, total: int | None, progress: Progress | None) -> int:
    done = 0
    if progress:
        progress(0, total)
    for chunk in iter(lambda: src.read(_CHUNK), b""):
        out.write(chunk)
        done += len(chunk)
        if progress:
            progress(done, total)
    return done


def _download_s3(uri: str, dest: Path, spec: DatasetSpec) -> None:
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


def _dataset_root(directory: Path, spec: DatasetSpec) -> Path:
    """Accept both the extracted folder itself and its parent (which holds ``ml-100k/``, or
    ``ml-10M100K/`` for ml-10m)."""
    for name in (spec.folder, spec.name):
        nested = directory / name
        if nested.is_dir():
            return nested
    return directory


def _validated_dir(directory: Path, spec: DatasetSpec, *, origin: str) -> Path:
    missing = [name for name in spec.required_files if not (directory / name).is_file()]
    if missing:
        raise DataError(
            f"{origin} does not hold the {spec.name} files (missing {', '.join(missing)})",
            hint=f"pass --data with the {spec.name}.zip archive or its extracted folder",
        )
    return directory
