"""Inference on a trained checkpoint: batched rating predictions and top-k recommendations.

Plain PyTorch on the served network of the model the checkpoint names (its spec's scorer; no
Lightning), shared by the Ray Serve replicas and the benchmark's baseline. Everything a replica needs
comes from the checkpoint URI (local path or ``s3://``): the weights, and the serving artifact
(``saved["data"]``: id maps, titles, popularity, seen items; ``sentinel_ml.serving.catalogue``). It
never reads the raw dataset, so a replica needs no dataset source and no download.

Ids: the public methods (``predict``, ``predict_many``, ``top_k``) take and return the dataset's own
ids; ``score_many`` (the batching path) takes the network's dense indices, looked up beforehand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sentinel_ml.errors import ConfigError, SentinelError
from sentinel_ml.models.config import ModelConfig
from sentinel_ml.models.spec import Scorer
from sentinel_ml.serving.catalogue import Catalogue, Id
from sentinel_ml.serving.config import model_version  # noqa: F401 - read here and through this module
from sentinel_ml.store.checkpoint import load_network
from sentinel_ml.store.index import run_id_from_uri


@dataclass
class Recommender:
    network: Scorer
    catalogue: Catalogue
    checkpoint_uri: str
    run_id: str | None
    metrics: dict[str, float]
    embedding_dim: int
    device: str = "cpu"  # where the network scores: "cuda" on a replica given a GPU (``on_gpu``)

    def on_gpu(self) -> None:
        """Score on this process's CUDA device (a replica with ``num_gpus``: Ray made it visible)."""
        self.network = self.network.to("cuda")
        self.device = "cuda"

    @classmethod
    def load(cls, checkpoint_uri: str, run_id: str | None = None) -> Recommender:
        """The checkpoint's network and catalogue. ``ConfigError`` for a checkpoint that carries no
        serving data (written before issue 25) or whose data does not fit its network."""
        network, saved = load_checked(checkpoint_uri)
        config = ModelConfig.from_saved(saved["model_config"])
        catalogue = Catalogue.from_artifact(saved["data"])
        if (config.num_users, config.num_items) != (catalogue.num_users, catalogue.num_items):
            raise ConfigError(f"checkpoint {checkpoint_uri}: its network has {config.num_users} users and "
                              f"{config.num_items} items, its serving data {catalogue.num_users} and "
                              f"{catalogue.num_items}", hint="retrain with `sentinel train`")
        metrics = {k: float(v) for k, v in saved.get("metrics", {}).items() if isinstance(v, int | float)}
        return cls(network=network, catalogue=catalogue, checkpoint_uri=checkpoint_uri,
                   run_id=run_id or run_id_from_uri(checkpoint_uri), metrics=metrics,
                   embedding_dim=config.embedding_dim)

    @property
    def num_users(self) -> int:
        return self.catalogue.num_users

    @property
    def num_items(self) -> int:
        return self.catalogue.num_items

    def predict(self, user_id: Id, item_ids: Sequence[Id]) -> list[float]:
        """Ratings of the dataset's items for the dataset's user; ``UnknownId`` for an id not served."""
        return self.predict_many([(user_id, item_ids)])[0]

    def predict_many(self, requests: Sequence[tuple[Id, Sequence[Id]]]) -> list[list[float]]:
        """One forward pass for many (user id, item ids) requests; results in request order."""
        users, items = self.catalogue.users, self.catalogue.items
        pairs = []
        for user, movies in requests:
            index = users.index(user)
            pairs.append((np.full(len(movies), index, dtype=np.int64), items.indices(movies)))
        return [scores.tolist() for scores in self.score_many(pairs)]

    def score_many(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[np.ndarray]:
        """One vectorized forward pass for all requests, each a (user indices, item indices) pair of
        equal length: float32 ratings clipped to the artifact's scale, split back per request, in
        request order. Every protocol's requests go through here (the Serve replica's one batching
        path)."""
        lengths = [len(users) for users, _ in requests]
        users = np.concatenate([np.asarray(u, dtype=np.int64) for u, _ in requests])
        items = np.concatenate([np.asarray(m, dtype=np.int64) for _, m in requests])
        scores = self._scores(torch.from_numpy(users), torch.from_numpy(items)).numpy()
        return np.split(scores, np.cumsum(lengths)[:-1])

    def top_k(self, user_id: Id, k: int, min_ratings: int = 0) -> list[tuple[Id, str | None, float]]:
        """The k highest-scored items the user has not rated, among those with at least
        ``min_ratings`` ratings: (the dataset's item id, title, score), best first.

        One batched scoring of the whole catalogue (a [num_items] pass: 59k items at ML-25M's shape);
        the user's seen items are a slice of the CSR structure, set to -inf in that one vector."""
        catalogue = self.catalogue
        user = catalogue.user_index(user_id)
        items = torch.arange(catalogue.num_items)
        scores = self._scores(torch.full_like(items, user), items)
        scores[torch.from_numpy(catalogue.seen(user).astype(np.int64))] = -torch.inf
        if min_ratings > 0:
            scores[torch.from_numpy(catalogue.popularity < min_ratings)] = -torch.inf
        k = min(k, int(torch.isfinite(scores).sum()))
        best = torch.topk(scores, k)
        return [(catalogue.items.id(i), catalogue.titles[i], float(s))
                for s, i in zip(best.values.tolist(), best.indices.tolist())]

    @torch.no_grad()
    def _scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The network's unclipped ratings (its forward, as validation scores them), clipped to the
        artifact's scale. Not ``network.predict``: that clips to MovieLens' 1-5 whatever the data."""
        lo, hi = self.catalogue.scale
        return self.network(users.to(self.device), items.to(self.device)).float().clamp(lo, hi).cpu()




def load_checked(uri: str) -> tuple[Scorer, dict[str, Any]]:
    """``load_network`` (the served network of the model the checkpoint names) with one clear error for a
    file that is not a Sentinel checkpoint, and one for a checkpoint without serving data (written by a
    Sentinel before issue 25: its replica would need the raw dataset, which replicas no longer read)."""
    try:
        network, saved = load_network(uri)
    except SentinelError:
        raise
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged or foreign file
        raise ConfigError(f"checkpoint {uri} cannot be loaded: not a Sentinel checkpoint, or damaged "
                          f"({type(e).__name__})",
                          hint="serve a checkpoint written by `sentinel train` (see `sentinel status`)") from None
    if not isinstance(saved.get("data"), dict):
        raise ConfigError(f"checkpoint {uri} was written by an older Sentinel: it carries no serving data "
                          "(id maps, item catalogue, seen items)",
                          hint="retrain with `sentinel train` (or `sentinel tune`) and serve the new run")
    return network, saved
