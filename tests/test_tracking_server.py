"""Tracking against a real MLflow server process (what the cluster's jobs talk to).

MLflow prints "View run … at: http://…" to stdout when a run ends on a tracking server; the
tracking child's answers share that stream, and a job on the real node failed at its very end
(JSONDecodeError in Tracker.close). The child now keeps stdout for its answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sentinel_ml.tracking import Tracker
from tests.support.ports import free_ports
from tests.testenv.process import wait_for


@pytest.fixture
def mlflow_server(tmp_path: Path):
    [port] = free_ports(1)
    log = (tmp_path / "mlflow.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"

    def healthy() -> str | None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return None if response.status == 200 else f"HTTP {response.status}"
        except OSError as error:
            return str(error)

    try:
        wait_for("the MLflow server", healthy, 120)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_runs_on_a_tracking_server_end_cleanly_with_their_metrics(mlflow_server: str) -> None:
    tracker = Tracker(mlflow_server, experiment="sentinel-tests")
    tracker.start("run", "tracked-run", {"lr": 0.01})
    for epoch in (1, 2):
        tracker.log_metrics("run", {"val_rmse": 1.0 / epoch}, epoch)
    tracker.end("run")
    run_ids = tracker.close()
    assert tracker.error is None
    run_id = run_ids["run"]
    with urllib.request.urlopen(f"{mlflow_server}/api/2.0/mlflow/metrics/get-history?run_id={run_id}"
                                "&metric_key=val_rmse", timeout=10) as response:
        history = json.load(response)["metrics"]
    assert [(m["step"], m["value"]) for m in history] == [(1, 1.0), (2, 0.5)]
