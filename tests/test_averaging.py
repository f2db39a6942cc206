"""Periodic weight averaging of a worker group (sentinel_ml/training/averaging.py), which replaces DDP's
per-step gradient allreduce for biased MF's large sparse tables (issue 25: distribution must pay).

The merge rule on two real processes over a real gloo group; then `sentinel train --workers 2` on a
table large enough to train sparse tables (real Ray Train workers), which must merge and reach the
val RMSE one process reaches."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.support.cli import REPO, SENTINEL

pytestmark = pytest.mark.slow


def _merge_worker(rank: int, port: int, results) -> None:
    from sentinel_ml.training.averaging import RowAveraging

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # different weights: start() must make rank 0's everyone's
        table = torch.nn.Embedding(4, 2, sparse=True)
        averaging = RowAveraging(table, every=1)
        averaging.start()
        start = table.weight.detach().clone()
        rows = [0, 1] if rank == 0 else [1, 2]  # row 0: rank 0 alone, row 1: both, row 2: rank 1 alone
        table(torch.tensor(rows)).sum().backward()
        averaging.mark()
        with torch.no_grad():
            table.weight[rows] += torch.tensor([[1.0, 1.0], [3.0, 3.0]]) * (rank + 1)
        averaging.step()  # every=1: merges now
        results.put((rank, start.tolist(), (table.weight.detach() - start).tolist(), averaging.merges))
    finally:
        dist.destroy_process_group()


def test_a_merge_keeps_one_workers_update_and_averages_shared_rows() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.get_context("fork").SimpleQueue()  # fork: the children need not import torch again
    mp.start_processes(_merge_worker, args=(port, results), nprocs=2, start_method="fork")
    got = dict((r[0], r[1:]) for r in (results.get(), results.get()))
    (start0, moved0, merges0), (start1, moved1, merges1) = got[0], got[1]
    assert start0 == start1  # rank 1 started from rank 0's weights
    assert moved0 == moved1 and merges0 == merges1 == 1  # one merge, the same weights everywhere
    # rank 0 moved rows 0, 1 by 1 and 3; rank 1 moved rows 1, 2 by 2 and 6. In one step a row both
    # touched gets the mean of their moves (a DDP step moves it once); a row one touched keeps its move.
    assert [x for row in moved0 for x in row] == pytest.approx([1, 1, 2.5, 2.5, 6, 6, 0, 0], abs=1e-4)


def test_two_workers_averaging_weights_reach_one_workers_rmse(tmp_path) -> None:
    home, table = tmp_path / "home", tmp_path / "table"
    env = {k: v for k, v in os.environ.items()
           if k not in ("SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI", "SENTINEL_TARGET", "SENTINEL_DATA", "RAY_ADDRESS")}
    env.update(SENTINEL_HOME=str(home), PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))

    def sentinel(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*SENTINEL, *args], cwd=REPO, capture_output=True, text=True, timeout=540, env=env)

    # 21,000 embedding rows: above SPARSE_MIN_ROWS, so the tables train sparse and the workers average.
    made = sentinel("data", "synth", "--ratings", "120000", "--users", "18000", "--items", "3000", "--seed", "5",
                    "--out", str(table))
    assert made.returncode == 0, made.stderr
    common = ("train", "--data", str(table), "--epochs", "2", "--batch-size", "2048", "--mlflow-uri", "off",
              "-o", "json")
    one = sentinel(*common, "--workers", "1")
    two = sentinel(*common, "--workers", "2", "--ingestion", "ray-data")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    alone, pair = json.loads(one.stdout)["metrics"], json.loads(two.stdout)["metrics"]
    # 2 epochs of ~27 steps per worker, merged every SYNC_EVERY_STEPS and before each validation.
    assert "weight_merges" not in alone and pair["weight_merges"] >= 2, pair
    assert abs(pair["val_rmse"] - alone["val_rmse"]) < 0.01, (pair, alone)
    assert pair["val_rmse"] < 1.0, pair  # it learned: the table's ratings spread ~1.0 around their mean
