"""Baseline for bench/train.py: the same biased MF, split and hyperparameters in a plain
single-process PyTorch loop (no Lightning, no Ray, no tracking). Prints JSON with the u1 test RMSE."""

from __future__ import annotations

import json
import sys
import time

started = time.monotonic()

import torch  # noqa: E402

from sentinel_ml.data.batching import TensorBatches  # noqa: E402
from sentinel_ml.data.prepared import prepare  # noqa: E402
from sentinel_ml.data.source import DataSource  # noqa: E402
from sentinel_ml.models.biased_mf import BiasedMF  # noqa: E402
from sentinel_ml.models.evaluation import rmse  # noqa: E402
from sentinel_ml.training.config import Hyperparameters  # noqa: E402


def main(epochs: int) -> dict:
    hp = Hyperparameters(epochs=epochs)
    torch.set_num_threads(1)
    torch.manual_seed(hp.seed)
    split = prepare(DataSource(), hp.split, hp.seed).load_split()  # the same prepared data sentinel train uses
    net = BiasedMF(split.num_users, split.num_items, hp.embedding_dim, split.global_mean, split.scale)
    optimizer = torch.optim.Adam(net.parameters(), lr=hp.lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=hp.lr_decay)
    batches = TensorBatches(split.train, hp.batch_size, shuffle=True, seed=hp.seed)
    for _ in range(hp.epochs):
        for users, items, ratings in batches:
            loss = torch.nn.functional.mse_loss(net(users, items), ratings)
            loss = loss + hp.regularization * net.penalty(users, items)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    return {"test_rmse": rmse(net.eval(), split.test), "wall_s": time.monotonic() - started}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
