"""Shared fixtures: the MovieLens copy beside the checkout, an isolated $SENTINEL_HOME per test,
one real local Ray per session, and one short real training run reused by tests that need a
checkpoint."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ZIP = Path(os.environ.get("SENTINEL_TEST_DATA", REPO.parent / "shared" / "data" / "ml-100k.zip"))

os.environ.setdefault("COLUMNS", "120")  # stable rich output
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def movielens_zip() -> Path:
    if not SHARED_ZIP.is_file():
        pytest.fail(f"MovieLens test copy not found at {SHARED_ZIP}; set SENTINEL_TEST_DATA")
    return SHARED_ZIP


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory, movielens_zip) -> Path:
    """The extracted dataset, made once per session through the real downloader."""
    from sentinel_ml.data.download import ensure_dataset

    return ensure_dataset(str(movielens_zip), cache_dir=tmp_path_factory.mktemp("data-cache"))


@pytest.fixture
def sentinel_home(tmp_path, monkeypatch, movielens_zip, dataset_dir) -> Path:
    """An empty $SENTINEL_HOME whose data cache is already warm (a copy of the session's)."""
    home = tmp_path / "home"
    shutil.copytree(dataset_dir, home / "data" / "ml-100k")
    monkeypatch.setenv("SENTINEL_HOME", str(home))
    monkeypatch.setenv("SENTINEL_DATA", str(movielens_zip))
    for name in ("SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI", "SENTINEL_TARGET", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray for the whole session (starting Ray costs seconds)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, dataset_dir):
    """A short real training run (2 epochs, local mode) with its own storage root and MLflow store.

    Returns the TrainResult; its record is in ``<root>/index``. Tests must not modify it.
    """
    from sentinel_ml.training.config import Hyperparameters, TrainConfig
    from sentinel_ml.training.run import train

    root = tmp_path_factory.mktemp("trained")
    config = TrainConfig(
        hp=Hyperparameters(epochs=2),
        data=str(dataset_dir),
        storage=str(root / "artifacts"),
        mlflow_uri=f"sqlite:///{root / 'mlflow.db'}",
    )
    result = train(config)
    result.storage_root = str(root / "artifacts")
    return result


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
