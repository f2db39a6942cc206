"""Issue 25, item 5, end to end: `sentinel train --workers 2 --ingestion ray-data` on a small synthetic
table (`sentinel data synth`) runs two real Ray Train workers on the embedded local Ray, each
iterating only its own Ray Data shard. What each worker saw is recorded by a test-only probe
(tests/support/shard_probe: a ``sitecustomize`` that wraps ``ShardBatches`` in every process of the
run), so no product code path exists for the test's sake."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import REPO, SENTINEL

pytestmark = pytest.mark.slow

PROBE = Path(__file__).parent / "support" / "shard_probe"


def test_two_workers_each_train_on_their_own_ray_data_shard(tmp_path) -> None:
    home, table, log = tmp_path / "home", tmp_path / "table", tmp_path / "shards"
    log.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI", "SENTINEL_TARGET", "SENTINEL_DATA", "RAY_ADDRESS")}
    env.update(SENTINEL_HOME=str(home), COLUMNS="160",
               PYTHONPATH=os.pathsep.join([str(PROBE), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))

    def sentinel(*args: str, probe: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run([*SENTINEL, *args], cwd=REPO, capture_output=True, text=True, timeout=540,
                              env={**env, **({"SENTINEL_TEST_SHARD_LOG": str(log)} if probe else {})})

    made = sentinel("data", "synth", "--ratings", "3000", "--users", "200", "--items", "120", "--seed", "3",
                    "--out", str(table))
    assert made.returncode == 0, made.stderr
    result = sentinel("train", "--data", str(table), "--workers", "2", "--ingestion", "ray-data", "--epochs", "1",
                      "-o", "json", probe=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert "training data: ray-data" in result.stderr and "starting 2 Ray Train workers" in result.stderr
    data, metrics = summary["data"], summary["metrics"]
    assert (data["split"], data["ratings"]) == ("random", 3000)
    assert 0.3 < metrics["val_rmse"] < 2.0 and 0.3 < metrics["test_rmse"] < 2.0, metrics

    passes = [json.loads(p.read_text()) for p in log.iterdir()]
    assert sorted(p["rank"] for p in passes) == [0, 1], passes  # one pass (epoch) by each of the two workers
    assert len({p["pid"] for p in passes}) == 2 and all(p["world"] == 2 for p in passes)
    assert os.getpid() not in {p["pid"] for p in passes}
    seen = [p["rows"] for p in passes]
    # Equal shards that together are the training part (less at most one row, to keep them equal),
    # so each worker saw only its half, never the whole part.
    assert seen[0] == seen[1] and data["train"] - 1 <= sum(seen) <= data["train"], (seen, data["train"])
