"""Scoring a served network outside training: the test RMSE every training run and tuning study reports,
and beside it the ranking metrics (``sentinel_ml.models.ranking``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from sentinel_ml.data.splits import Ratings, Split
from sentinel_ml.models.config import ModelConfig
from sentinel_ml.models.served import trained_network
from sentinel_ml.models.spec import Scorer

if TYPE_CHECKING:
    from sentinel_ml.data.prepared import Prepared

EVAL_BATCH_SIZE = 8192


def rmse(net: Scorer, ratings: Ratings) -> float:
    """Root mean squared error of ``net``'s clipped predictions on ``ratings``."""
    users = torch.from_numpy(ratings.users)
    items = torch.from_numpy(ratings.items)
    target = torch.from_numpy(ratings.ratings)
    squared = 0.0
    for start in range(0, len(target), EVAL_BATCH_SIZE):
        end = start + EVAL_BATCH_SIZE
        error = net.predict(users[start:end], items[start:end]) - target[start:end]
        squared += float(error.pow(2).sum())
    return math.sqrt(squared / max(1, len(target)))


def served_rmse(config: ModelConfig, state_dict: dict[str, torch.Tensor], ratings: Ratings) -> float:
    """RMSE on ``ratings`` (a run's test split) of ``config``'s served network with these weights."""
    return rmse(trained_network(config, state_dict), ratings)


def served_test_metrics(config: ModelConfig, state_dict: dict[str, torch.Tensor], split: Split,
                        data: Prepared | None = None) -> dict[str, float]:
    """What every run reports on its test split: the RMSE and the ranking metrics (``models.ranking``).
    Where the training part is not in memory (streamed as shards), its pairs are read from ``data``."""
    from sentinel_ml.models.ranking import concat, split_ranking

    net = trained_network(config, state_dict)
    seen = None
    if len(split.train) == 0 and data is not None:
        seen = concat(_pairs(data.part("train")), split.val)
    return {"test_rmse": rmse(net, split.test), **split_ranking(net, split, seen).metrics()}


def _pairs(path) -> Ratings:
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["user", "item"])
    users = table.column("user").to_numpy().astype(np.int64)
    return Ratings(users, table.column("item").to_numpy().astype(np.int64), np.zeros(len(users), np.float32))
