"""Real training on a real local Ray with the shared MovieLens copy: local mode and a DDP worker group."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from sentinel_ml.data.source import DataSource
from sentinel_ml.errors import ConfigError
from sentinel_ml.store import index as checkpoints
from sentinel_ml.store.checkpoint import load_network
from sentinel_ml.training.config import Hyperparameters, TrainConfig

pytestmark = pytest.mark.slow
from tests.support.movielens_ref import u1_test


def test_short_training_learns_and_writes_checkpoints_and_index(trained_run) -> None:
    result = trained_run
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert result.history[1]["val_rmse"] < result.history[0]["val_rmse"]
    assert result.metrics["val_rmse"] < 1.0 and result.metrics["test_rmse"] < 1.0
    records = checkpoints.read_records(result.storage_root)
    assert [r.run_id for r in records] == [result.run_id]
    record = records[0]
    assert record.kind == "train" and record.config["epochs"] == 2
    assert record.checkpoints == result.checkpoints
    assert record.mlflow_run_id == result.mlflow_run_id
    # the ranking metrics beside the RMSEs: recorded, and better than an empty list on u1's 459 test users
    from sentinel_ml.models.metrics import COVERAGE, NDCG, RECALL, TEST_METRICS

    assert {name: record.metrics[name] for name in TEST_METRICS} == {name: result.metrics[name] for name in TEST_METRICS}
    assert 0 < result.metrics[NDCG] < 1 and 0 < result.metrics[RECALL] < 1 and 0 < result.metrics[COVERAGE] <= 1
    assert result.metrics["ranking_users"] > 400


def test_checkpoint_loads_and_predicts(trained_run, dataset_dir) -> None:
    from sentinel_ml.models.evaluation import rmse

    net, saved = load_network(trained_run.checkpoints["best"])
    predictions = net.predict(torch.tensor([1, 1, 42]), torch.tensor([1, 2, 3]))
    assert predictions.shape == (3,) and torch.all((predictions >= 1) & (predictions <= 5))
    assert rmse(net, u1_test(dataset_dir)) == pytest.approx(trained_run.metrics["test_rmse"], abs=1e-6)
    assert saved["metrics"]["val_rmse"] == pytest.approx(trained_run.metrics["val_rmse"])
    last, _ = load_network(trained_run.checkpoints["last"])
    assert last.user_factors.weight.shape == net.user_factors.weight.shape


def test_mlflow_has_params_per_epoch_metrics_and_checkpoint(trained_run) -> None:
    from mlflow import MlflowClient

    db = trained_run.storage_root.rsplit("/", 1)[0] + "/mlflow.db"
    client = MlflowClient(f"sqlite:///{db}")
    run = client.get_run(trained_run.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "2" and run.data.params["embedding_dim"] == "32"
    assert run.data.tags["checkpoint_uri"] == trained_run.checkpoints["best"]
    history = client.get_metric_history(run.info.run_id, "val_rmse")
    assert [m.step for m in history] == [1, 2]
    from sentinel_ml.models.metrics import TEST_METRICS

    assert {name: run.data.metrics[name] for name in TEST_METRICS} == pytest.approx(
        {name: trained_run.metrics[name] for name in TEST_METRICS})


def test_two_workers_run_a_real_ddp_worker_group(ray_session, dataset_dir, tmp_path) -> None:
    from sentinel_ml.training.run import train

    events = []
    config = TrainConfig(hp=Hyperparameters(epochs=1), workers=2, source=DataSource(data=str(dataset_dir)),
                         storage=str(tmp_path / "artifacts"), mlflow_uri="off")
    result = train(config, on_progress=events.append)
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1]
    assert result.metrics["val_rmse"] < 1.1
    assert result.mlflow_run_id is None and result.mlflow_error is None
    net, _ = load_network(result.checkpoints["best"])
    assert net.predict(torch.tensor([1]), torch.tensor([1])).item() > 0
    assert (tmp_path / "artifacts" / "index" / f"{result.run_id}.json").is_file()


def test_invalid_config_is_rejected_before_anything_starts(tmp_path) -> None:
    from sentinel_ml.training.run import train

    with pytest.raises(ConfigError, match="--lr must be positive"):
        train(TrainConfig(hp=Hyperparameters(lr=0.0), storage=str(tmp_path)))
    assert list(tmp_path.iterdir()) == []


def test_container_entrypoint_runs_as_a_module(sentinel_home, dataset_dir, tmp_path) -> None:
    """What the RayJob runs: ``python -m sentinel_ml.train``; JSON progress on stderr, summary on stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "sentinel_ml.train", "--epochs", "1", "--data", str(dataset_dir),
         "--storage", str(tmp_path / "store"), "--mlflow-uri", "off", "--run-id", "train-entrypoint"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["run_id"] == "train-entrypoint"
    epochs = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith('{"event": "epoch"')]
    assert [e["epoch"] for e in epochs] == [1]
