"""Fixtures: one real local Ray per session, and one short real training run reused by the tests
that need a checkpoint. A test that uses either is marked ``slow`` (plugin.py)."""

from __future__ import annotations

import pytest


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
    from sentinel_ml.data.source import DataSource
    from sentinel_ml.training.config import Hyperparameters, TrainConfig
    from sentinel_ml.training.run import train

    root = tmp_path_factory.mktemp("trained")
    config = TrainConfig(
        hp=Hyperparameters(epochs=2),
        source=DataSource(data=str(dataset_dir)),
        storage=str(root / "artifacts"),
        mlflow_uri=f"sqlite:///{root / 'mlflow.db'}",
    )
    result = train(config)
    result.storage_root = str(root / "artifacts")
    return result
