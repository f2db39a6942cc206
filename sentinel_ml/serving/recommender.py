"""Inference on a trained checkpoint: batched rating predictions and top-k recommendations.

Plain PyTorch on the ``BiasedMF`` network (no Lightning), shared by the Ray Serve replicas and the
benchmark's baseline. Everything a replica needs comes from two sources it can reach in any
environment: the checkpoint URI (local path or ``s3://``) and the dataset source (titles, and the
ratings that say which movies a user has already rated).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sentinel_ml.data.movielens import read_ratings, read_titles
from sentinel_ml.errors import ConfigError, SentinelError
from sentinel_ml.models.biased_mf import BiasedMF
from sentinel_ml.store.checkpoint import load_network
from sentinel_ml.store.index import run_id_from_uri


@dataclass
class Recommender:
    network: BiasedMF
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
        num_users, num_items = network.user_bias.num_embeddings, network.item_bias.num_embeddings
        ratings = read_ratings(dataset_dir / "u.data")
        known = (ratings.users < num_users) & (ratings.items < num_items)
        rated = np.zeros((num_users, num_items), dtype=bool)
        rated[ratings.users[known], ratings.items[known]] = True
        metrics = {k: float(v) for k, v in saved.get("metrics", {}).items() if isinstance(v, int | float)}
        return cls(
            network=network,
            checkpoint_uri=checkpoint_uri,
            run_id=run_id or run_id_from_uri(checkpoint_uri),
            metrics=metrics,
            embedding_dim=int(saved["model_config"]["embedding_dim"]),
            titles=read_titles(dataset_dir),
            rated=rated,
            rating_counts=np.bincount(ratings.items[known], minlength=num_items),
        )

    @property
    def num_users(self) -> int:
        return self.network.user_bias.num_embeddings

    @property
    def num_items(self) -> int:
        return self.network.item_bias.num_embeddings

    def predict(self, user_id: int, movie_ids: list[int]) -> list[float]:
        return self.predict_many([(user_id, movie_ids)])[0]

    def predict_many(self, requests: list[tuple[int, list[int]]]) -> list[list[float]]:
        """One vectorized forward pass for all requests; results split back in request order."""
        lengths = [len(movies) for _, movies in requests]
        users = np.repeat(np.fromiter((u for u, _ in requests), dtype=np.int64, count=len(requests)), lengths)
        items = np.fromiter((m for _, movies in requests for m in movies), dtype=np.int64, count=sum(lengths))
        scores = self.network.predict(torch.from_numpy(users), torch.from_numpy(items)).tolist()
        out, start = [], 0
        for n in lengths:
            out.append(scores[start:start + n])
            start += n
        return out

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


def load_checked(uri: str) -> tuple[BiasedMF, dict]:
    """``load_network`` with one clear error for a file that is not a Sentinel checkpoint."""
    try:
        return load_network(uri)
    except SentinelError:
        raise
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged or foreign file
        raise ConfigError(f"checkpoint {uri} cannot be loaded: not a Sentinel checkpoint, or damaged "
                          f"({type(e).__name__})",
                          hint="serve a checkpoint written by `sentinel train` (see `sentinel status`)") from None
