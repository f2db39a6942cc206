"""Fixtures: the MovieLens copy beside the checkout and an isolated $SENTINEL_HOME per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.cli import REPO

SHARED_ZIP = Path(os.environ.get("SENTINEL_TEST_DATA", REPO.parent / "shared" / "data" / "ml-100k.zip"))


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
