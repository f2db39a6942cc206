"""Where Sentinel keeps its files on this machine. Everything lives under $SENTINEL_HOME."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "SENTINEL_HOME"


def sentinel_home() -> Path:
    """$SENTINEL_HOME, or ~/.sentinel."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".sentinel").expanduser()


def data_cache_dir() -> Path:
    return sentinel_home() / "data"


def artifacts_dir() -> Path:
    """Default checkpoint storage for the local target."""
    return sentinel_home() / "artifacts"


def default_mlflow_uri() -> str:
    return f"sqlite:///{sentinel_home() / 'mlflow.db'}"


def storage_root(explicit: str | None = None) -> str:
    """Checkpoint root: the flag, then $SENTINEL_STORAGE, then $SENTINEL_HOME/artifacts."""
    return absolute(explicit or os.environ.get("SENTINEL_STORAGE") or str(artifacts_dir()))


def absolute(location: str) -> str:
    """A path made absolute (``~`` expanded) before it crosses into another process: Ray workers,
    Serve replicas and jobs run with another working directory. URLs and URIs pass as they are."""
    if "://" in location:
        return location
    return os.path.abspath(os.path.expanduser(location))  # as given, symlinks kept
