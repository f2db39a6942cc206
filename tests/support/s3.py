"""Fixtures: a real S3-compatible server on loopback and a fresh bucket on it. A test that uses
them is marked ``s3`` (plugin.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-compatible server (moto in server mode, which also speaks ECR and STS) on loopback."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket on the S3 server; AWS_* point boto3 at it. Yields the storage root."""
    import secrets

    import boto3

    from sentinel_ml.store import uri as storage

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    storage._s3_client.cache_clear()
    bucket = f"sentinel-{secrets.token_hex(4)}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    yield f"s3://{bucket}/artifacts"
    storage._s3_client.cache_clear()
