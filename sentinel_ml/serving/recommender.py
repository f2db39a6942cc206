"""Inference on a trained checkpoint: batched rating predictions and top-k recommendations.

Plain PyTorch on the served network of the model the checkpoint names (its spec's scorer; no
Lightning), shared by the Ray Serve replicas and the benchmark's baseline. Everything a replica needs
comes from two sources it can reach in any environment: the checkpoint URI (local path or ``s3://``)
and the dataset source (titles, and the ratings that say which movies a user has already rated).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sentinel_ml.data.movielens import read_ratings, read_titles
from sentinel_ml.errors import ConfigError, SentinelError
from sentinel_ml.models.config import ModelConfig
from sentinel_ml.models.spec import Scorer
from sentinel_ml.store.checkpoint import load_network
from sentinel_ml.store.index import run_id_from_uri


@dataclass
class Recommender:
    network: Scorer
    num_users: int  # rows of the network's user table (row 0 is no user)
    num_items: int  # rows of its movie table (row 0 is no movie)
    checkpoint_uri: str
    run_id: str | None
    metrics: dict[str, float]
    embedding_dim: int
    titles: dict[int, str]
    rated: np.ndarray  # bool [num_users, num_items]: rated in u.data (every rating we know of)
    rating_counts: np.ndarray  # int [num_items]: ratings of each movie in u.data

    @classmethod
    def load(cls, checkpoint_uri: str, dataset_dir: Path, run_id: str | None = None) -> Recommender:
        network, saved = load_checked(checkpoint_uri)
        config = ModelConfig.from_saved(saved["model_config"])
        num_users, num_items = config.num_users, config.num_items
        ratings = read_ratings(dataset_dir / "u.data")
        known = (ratings.users < num_users) & (ratings.items < num_items)
        rated = np.zeros((num_users, num_items), dtype=bool)
        rated[ratings.users[known], ratings.items[known]] = True
        metrics = {k: float(v) for k, v in saved.get("metrics", {}).items() if isinstance(v, int | float)}
        return cls(
            network=network,
            num_users=num_users,
            num_items=num_items,
            checkpoint_uri=checkpoint_uri,
            run_id=run_id or run_id_from_uri(checkpoint_uri),
            metrics=metrics,
            embedding_dim=config.embedding_dim,
            titles=read_titles(dataset_dir),
            rated=rated,
            rating_counts=np.bincount(ratings.items[known], minlength=num_items),
        )

    def predict(self, user_id: int, movie_ids: list[int]) -> list[float]:
        return self.predict_many([(user_id, movie_ids)])[0]

    def predict_many(self, requests: list[tuple[int, list[int]]]) -> list[list[float]]:
        """One forward pass for many (user, movie ids) requests; results in request order."""
        pairs = [([user] * len(movies), movies) for user, movies in requests]
        return [scores.tolist() for scores in self.score_many(pairs)]

    def score_many(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[np.ndarray]:
        """One vectorized forward pass for all requests, each a (user ids, movie ids) pair of equal
        length: float32 ratings clipped to 1-5, split back per request, in request order. Every
        protocol's requests go through here (the Serve replica's one batching path)."""
        lengths = [len(users) for users, _ in requests]
        users = np.fromiter((u for us, _ in requests for u in us), dtype=np.int64, count=sum(lengths))
        items = np.fromiter((m for _, ms in requests for m in ms), dtype=np.int64, count=sum(lengths))
        scores = self.network.predict(torch.from_numpy(users), torch.from_numpy(items)).numpy()
        return np.split(scores, np.cumsum(lengths)[:-1])

    def top_k(self, user_id: int, k: int, min_ratings: int = 0) -> list[tuple[int, str | None, float]]:
        """The k highest-scored movies ``user_id`` has not rated, among those with at least
        ``min_ratings`` ratings: (movie id, title, score)."""
        items = torch.arange(self.num_items)
        scores = self.network.predict(torch.full_like(items, user_id), items)
        scores[0] = -torch.inf  # row 0 is no movie
        scores[torch.from_numpy(self.rated[user_id])] = -torch.inf
        if min_ratings > 0:
            scores[torch.from_numpy(self.rating_counts < min_ratings)] = -torch.inf
        k = min(k, int(torch.isfinite(scores).sum()))
        best = torch.topk(scores, k)
        return [(int(i), self.titles.get(int(i)), float(s)) for s, i in zip(best.values, best.indices)]


_RUN_STAMP = re.compile(r"(\d{8})-(\d{6})")


def model_version(run_id: str | None, checkpoint_uri: str) -> int:
    """The model's version in TF-Serving and OIP: a positive integer, the same for one checkpoint.

    The run's creation time as ``YYYYMMDDHHMMSS`` when the run id carries it (``new_run_id`` makes
    ``train-20261127-115300-3f9a`` → 20261127115300: later runs get larger versions); otherwise a
    9-digit number from the checkpoint URI's SHA-256. ``ServeArgs.model_version`` overrides both.
    """
    stamp = _RUN_STAMP.search(run_id or "")
    if stamp:
        return int(stamp.group(1) + stamp.group(2))
    return int(hashlib.sha256(checkpoint_uri.encode()).hexdigest()[:12], 16) % 900_000_000 + 100_000_000


def load_checked(uri: str) -> tuple[Scorer, dict]:
    """``load_network`` (the served network of the model the checkpoint names) with one clear error for a
    file that is not a Sentinel checkpoint."""
    try:
        return load_network(uri)
    except SentinelError:
        raise
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged or foreign file
        raise ConfigError(f"checkpoint {uri} cannot be loaded: not a Sentinel checkpoint, or damaged "
                          f"({type(e).__name__})",
                          hint="serve a checkpoint written by `sentinel train` (see `sentinel status`)") from None
