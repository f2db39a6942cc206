"""The local target's platform: nothing to install, only prerequisites to check.

Ray importable, the MovieLens data cached or downloadable, the checkpoint storage writable, the
MLflow store writable, and (for ``doctor``) a checkpoint index with at least one run.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from sentinel_cli.checks import FAIL, SKIP, Item, run_check
from sentinel_ml.errors import ConfigError, StorageError

PROBE = ".sentinel-probe"  # written (and overwritten) under the storage root to prove it is writable


def prerequisites(data: str | None, storage: str | None, mlflow_uri: str | None) -> list[Item]:
    return [
        run_check("ray", _ray),
        run_check("data", lambda: _data(data)),
        run_check("storage", lambda: _storage(storage)),
        run_check("mlflow", lambda: _mlflow(mlflow_uri)),
    ]


def doctor(data: str | None, storage: str | None, mlflow_uri: str | None) -> list[Item]:
    return [*prerequisites(data, storage, mlflow_uri), run_check("checkpoint index", lambda: _index(storage))]


def _ray() -> str:
    try:
        import ray
    except Exception as e:  # ImportError, or a broken install failing at import
        raise ConfigError(f"cannot import ray: {e}", hint="pip install 'ray[train,tune,serve]' "
                                                          "(or reinstall sentinel: make setup)") from None
    return f"ray {ray.__version__} importable"


def _data(source: str | None) -> str | Item:
    from sentinel_ml.data.download import DATA_ENV, DATASET_NAME, DEFAULT_URL
    from sentinel_ml.paths import data_cache_dir

    cached = data_cache_dir() / DATASET_NAME
    if (cached / ".complete").exists():
        return f"cached in {cached}"
    source = source or os.environ.get(DATA_ENV) or DEFAULT_URL
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme not in ("http", "https"):
        local = Path(parsed.path) if parsed.scheme == "file" else Path(source).expanduser()
        if local.exists():
            return f"not cached; will copy from {local}"
        raise ConfigError(f"not cached, and the source {local} does not exist",
                          hint="pass --data with a path to ml-100k.zip, or unset SENTINEL_DATA to download")
    _reachable(source)
    return f"not cached; {urllib.parse.urlparse(source).netloc} answers, downloads on first train"


def _reachable(url: str) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=10):
            return
    except (urllib.error.URLError, OSError) as e:
        raise ConfigError(f"not cached, and {url} cannot be reached: {getattr(e, 'reason', e)}",
                          hint="check the network, or pass --data with a local ml-100k.zip") from None


def _storage(storage: str | None) -> str:
    from sentinel_ml.paths import storage_root
    from sentinel_ml.store import uri as store

    root = storage_root(storage)
    try:
        store.write_bytes(store.join(root, PROBE), b"ok\n")
    except StorageError as e:
        raise StorageError(f"{root} is not writable: {e.message}", hint=e.hint or "pass --storage") from None
    return f"{root} writable"


def _mlflow(uri: str | None) -> str | Item:
    from sentinel_ml.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(uri)
    if uri == "off":
        return Item("mlflow", SKIP, "tracking off")
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("http", "https"):
        _http_ok(uri.rstrip("/") + "/health", "the MLflow server")
        return f"{uri} answers"
    if parsed.scheme == "sqlite":
        folder = Path(uri.removeprefix("sqlite:///")).parent
    elif parsed.scheme in ("file", ""):
        folder = Path(parsed.path or uri)
    else:
        return Item("mlflow", SKIP, f"{uri}: cannot check a {parsed.scheme} store from here")
    if not _writable_dir(folder):
        return Item("mlflow", FAIL, f"{uri}: {folder} is not writable",
                    "pass --mlflow-uri with a writable location, or --mlflow-uri off")
    return f"{uri} writable"


def _writable_dir(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def _http_ok(url: str, what: str) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            if response.status < 400:
                return
    except (urllib.error.URLError, OSError) as e:
        raise ConfigError(f"{what} at {url} does not answer: {getattr(e, 'reason', e)}",
                          hint="start it, or pass --mlflow-uri with another store (or off)") from None
    raise ConfigError(f"{what} at {url} answered an error", hint="check the server's logs")


def _index(storage: str | None) -> str:
    from sentinel_ml.paths import storage_root
    from sentinel_ml.store import index as checkpoints

    root = storage_root(storage)
    records = checkpoints.read_records(root)
    if not records:
        raise ConfigError(f"no runs in the checkpoint index under {root}",
                          hint="run `sentinel train` (or pass --storage where the runs are)")
    return f"{len(records)} runs, latest {records[0].run_id}"

