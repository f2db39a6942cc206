"""Scoring a served network outside training: the test RMSE every training run and tuning study reports."""

from __future__ import annotations

import math

import torch

from sentinel_ml.data.splits import Ratings
from sentinel_ml.models.config import ModelConfig
from sentinel_ml.models.served import trained_network
from sentinel_ml.models.spec import Scorer

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
