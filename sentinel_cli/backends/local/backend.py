"""The embedded local target: Ray on this machine, checkpoints on local disk or S3."""

from __future__ import annotations

from typing import Any

from sentinel_cli.progress import train_progress


def train(config) -> dict[str, Any]:
    from sentinel_ml.training.run import train as run_training

    return run_training(config, on_progress=train_progress).summary()


def tune(config) -> dict[str, Any]:
    from sentinel_cli.progress import tune_progress
    from sentinel_ml.tuning.study import tune as run_study

    return run_study(config, on_progress=tune_progress).summary()


def status(storage: str | None, limit: int) -> dict[str, Any]:
    from dataclasses import asdict

    from sentinel_ml.store import index as checkpoints
    from sentinel_ml.paths import storage_root

    root = storage_root(storage)
    records = checkpoints.read_records(root)
    from sentinel_cli.backends.local import serving as local_serve

    return {"target": "local", "storage": root, "runs": [asdict(r) for r in records[:limit]],
            "serving": local_serve.describe()}


def serve(request) -> dict[str, Any]:
    from sentinel_cli.backends.local import serving as local_serve
    from sentinel_cli.progress import serve_progress

    return local_serve.start(request, on_progress=serve_progress)


def serve_stop() -> dict[str, Any]:
    from sentinel_cli.backends.local import serving as local_serve

    return local_serve.stop()
