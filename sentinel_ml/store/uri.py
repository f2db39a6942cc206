"""Read, write and list small objects on local disk or S3, addressed by URI.

A URI is a local path (absolute or relative), a ``file://`` URL, or ``s3://bucket/key``. S3 goes
through boto3, so the usual AWS settings apply (credentials chain, ``AWS_ENDPOINT_URL`` for an
S3-compatible server such as MinIO). Every S3 call goes through ``_s3_call``, which turns client
errors into a ``StorageError`` that names the cause and the next step.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from functools import lru_cache
from pathlib import Path

from sentinel_ml.errors import ObjectNotFound, StorageError


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def join(base: str, *parts: str) -> str:
    if is_s3(base):
        return "/".join([base.rstrip("/"), *parts])
    return str(Path(local_path(base), *parts))


def local_path(uri: str) -> Path:
    if uri.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path))
    return Path(uri).expanduser()


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urllib.parse.urlparse(uri)
    if not parsed.netloc:
        raise StorageError(f"invalid S3 URI {uri!r}", hint="use s3://bucket/prefix")
    return parsed.netloc, parsed.path.lstrip("/")


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` whole or not at all: a writer killed half way leaves the old object (or none).

    S3: one PUT, which S3 makes visible only once every byte has arrived. Disk: a temporary file
    beside the target (``.<name>.<random>``, never matched by the index's ``*.json``), then
    ``os.replace``, which is atomic.
    """
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _s3_call("write", uri, lambda s3: s3.put_object(Bucket=bucket, Key=key, Body=data))
        return
    path = local_path(uri)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        raise StorageError(
            f"cannot write {path}: {e.strerror or e}",
            hint="check that the storage path is writable, or pass --storage",
        ) from None


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        response = _s3_call("read", uri, lambda s3: s3.get_object(Bucket=bucket, Key=key))
        return response["Body"].read()
    try:
        return local_path(uri).read_bytes()
    except FileNotFoundError:
        raise ObjectNotFound(f"{uri} does not exist") from None
    except OSError as e:
        raise StorageError(f"cannot read {uri}: {e.strerror or e}") from None


def list_names(prefix_uri: str, suffix: str = "") -> list[str]:
    """Full URIs of the objects directly under ``prefix_uri`` whose names end in ``suffix``."""
    if is_s3(prefix_uri):
        bucket, key = split_s3(prefix_uri.rstrip("/") + "/")

        def list_all(s3):
            paginator = s3.get_paginator("list_objects_v2")
            keys: list[str] = []
            for page in paginator.paginate(Bucket=bucket, Prefix=key, Delimiter="/"):
                keys.extend(item["Key"] for item in page.get("Contents", []))
            return keys

        keys = _s3_call("list", prefix_uri, list_all)
        return [f"s3://{bucket}/{k}" for k in keys if k.endswith(suffix)]
    directory = local_path(prefix_uri)
    if not directory.is_dir():
        return []
    return [str(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name.endswith(suffix)]


def exists(uri: str) -> bool:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            _s3_call("read", uri, lambda s3: s3.head_object(Bucket=bucket, Key=key))
        except ObjectNotFound:
            return False
        return True
    return local_path(uri).exists()


def size(uri: str) -> int | None:
    """The object's size in bytes, or None when it does not exist."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            head = _s3_call("read", uri, lambda s3: s3.head_object(Bucket=bucket, Key=key))
        except ObjectNotFound:
            return None
        return int(head["ContentLength"])
    try:
        return local_path(uri).stat().st_size
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError(f"cannot read {uri}: {e.strerror or e}") from None


def sizes_under(prefix_uri: str) -> dict[str, int]:
    """Every object under ``prefix_uri`` (at any depth) by full URI, with its size: one listing."""
    if is_s3(prefix_uri):
        bucket, key = split_s3(prefix_uri.rstrip("/") + "/")

        def list_all(s3):
            found: dict[str, int] = {}
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
                found.update({f"s3://{bucket}/{item['Key']}": int(item["Size"]) for item in page.get("Contents", [])})
            return found

        return _s3_call("list", prefix_uri, list_all)
    directory = local_path(prefix_uri)
    found = {}
    for dirpath, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                found[path] = os.stat(path).st_size
            except OSError:
                continue
    return found


def remove_tree(prefix_uri: str) -> None:
    """Remove everything under ``prefix_uri`` (a directory, or an S3 prefix); nothing there is fine."""
    if is_s3(prefix_uri):
        bucket, _ = split_s3(prefix_uri)
        keys = [split_s3(uri)[1] for uri in sizes_under(prefix_uri)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes up to 1000 keys
            batch = {"Objects": [{"Key": key} for key in keys[start:start + 1000]], "Quiet": True}
            _s3_call("delete", prefix_uri, lambda s3, batch=batch: s3.delete_objects(Bucket=bucket, Delete=batch))
        return
    shutil.rmtree(local_path(prefix_uri), ignore_errors=True)


def bucket_exists(uri: str) -> bool:
    """Whether the bucket of the S3 ``uri`` exists (and these credentials may see it)."""
    bucket, _ = split_s3(uri)
    try:
        _s3_call("check", f"s3://{bucket}", lambda s3: s3.head_bucket(Bucket=bucket))
    except ObjectNotFound:
        return False
    return True


def ensure_bucket(uri: str) -> bool:
    """Create the bucket of the S3 ``uri`` (in the client's region) unless it exists; True when created."""
    if bucket_exists(uri):
        return False
    bucket, _ = split_s3(uri)

    def create(s3) -> None:
        region = s3.meta.region_name
        where = {} if region in (None, "us-east-1") else {
            "CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **where)

    _s3_call("create", f"s3://{bucket}", create)
    return True


@lru_cache(maxsize=1)
def _s3_client():
    import boto3

    return boto3.client("s3")


def _s3_call(action: str, uri: str, call):
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return call(_s3_client())
    except NoCredentialsError:
        raise StorageError(
            f"no AWS credentials to {action} {uri}",
            hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or use an IRSA role",
        ) from None
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            raise ObjectNotFound(f"{uri} does not exist") from None
        if code == "NoSuchBucket":
            raise StorageError(
                f"bucket of {uri} does not exist", hint="create it, or run `sentinel up`"
            ) from None
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise StorageError(
                f"S3 access denied to {action} {uri} ({code})",
                hint="check the credentials, and that the IAM policy grants this bucket",
            ) from None
        raise StorageError(f"S3 error to {action} {uri}: {code or e}") from None
    except BotoCoreError as e:
        raise StorageError(
            f"cannot reach S3 to {action} {uri}: {e}",
            hint="check AWS_ENDPOINT_URL and the network",
        ) from None


def delete(uri: str) -> bool:
    """Remove the object; False when there was none."""
    if is_s3(uri):
        if not exists(uri):
            return False
        bucket, key = split_s3(uri)
        _s3_call("delete", uri, lambda s3: s3.delete_object(Bucket=bucket, Key=key))
        return True
    try:
        local_path(uri).unlink()
    except FileNotFoundError:
        return False
    return True
