"""What every protocol of a replica shares: the model loaded from the checkpoint, the model's name
and version, the lookup of the dataset's ids, the one batching path for predictions, and top-k off
the event loop.

The checkpoint is all a replica reads: weights and serving data (id maps, titles, popularity, seen
items). ``ServeArgs.data`` is accepted for compatibility and not read here.

Each protocol (``sentinel_ml.serving.protocols``) is a mixin of ``Replica``; the deployment in
``app.py`` combines them. Predictions of every protocol go through ``score`` (``MicroBatcher``:
requests from all callers share one forward pass). Top-k scores the whole catalogue for one user,
a pass as large as a big batch, so it runs in a thread of its own (``top_k``): torch releases the
GIL while it computes, and the event loop keeps answering and batching the other callers meanwhile.
"""

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from sentinel_ml.serving.api import BatchingInfo, ModelRef
from sentinel_ml.serving.auth import TokenCheck
from sentinel_ml.serving.batching import AdaptiveWait, MicroBatcher
from sentinel_ml.serving.config import ServeArgs

log = logging.getLogger(__name__)


class Replica:
    """One replica's model and batching (no routes: those are the protocols' mixins)."""

    def __init__(self, args: dict[str, Any]) -> None:
        import torch

        from sentinel_ml.serving.recommender import Recommender, model_version

        settings = ServeArgs.model_validate(args)
        # The token's digest, read from its file (the args name the file, never the token).
        self.token_check = TokenCheck.from_file(settings.token_file) if settings.auth == "token" else None
        self.reconfigure({"max_batch_size": settings.max_batch_size,
                          "batch_wait_timeout_s": settings.batch_wait_timeout_s})
        torch.set_num_threads(settings.torch_threads)
        self.model = Recommender.load(settings.checkpoint, settings.run_id)
        if settings.num_gpus and torch.cuda.is_available():
            self.model.on_gpu()
        version = settings.model_version or model_version(self.model.run_id, settings.checkpoint)
        self.ref = ModelRef(settings.model_name, version, self.model.num_users, self.model.num_items,
                            self.model.catalogue.id_type)
        # One thread: concurrent top-k calls queue behind each other instead of each taking a core.
        self._top_k_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="top-k")
        log.info("serving %s as %s version %d (%s: %d users, %d items, %s ids), auth %s", settings.checkpoint,
                 self.ref.name, version, self.model.catalogue.dataset, self.model.num_users, self.model.num_items,
                 self.model.catalogue.id_type, settings.auth)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Serve's ``user_config``: the batch size and wait (``ServeArgs.max_batch_size``,
        ``batch_wait_timeout_s``)."""
        wait = AdaptiveWait(float(config["batch_wait_timeout_s"]))
        self.batching = BatchingInfo(max_batch_size=int(config["max_batch_size"]), batch_wait_timeout_s=wait.wait_s)
        if getattr(self, "_batcher", None) is None:
            self._batcher = MicroBatcher(self._predict_batch, self.batching.max_batch_size, wait)
        else:  # a user_config update: the queue and its worker stay
            self._batcher.max_size, self._batcher.wait = self.batching.max_batch_size, wait

    def check_health(self) -> None:
        self.model.score_many([([0], [0])])  # raises if the model is broken

    def batching_info(self) -> BatchingInfo:
        """The batching counters, with the wait the batches use now."""
        return self.batching.model_copy(update={"current_wait_s": self._batcher.wait.current_s})

    def lookup(self, users: Sequence[Any], movies: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """The network's indices of the dataset's ids; ``UnknownId`` (404) naming the unknown users, else
        the unknown items."""
        catalogue = self.model.catalogue
        return catalogue.users.indices(users), catalogue.items.indices(movies)

    async def score(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        """float32 predictions for (user index, item index) pairs (``lookup``), batched with other
        callers' requests."""
        return await self._batcher.submit((users, movies))

    def _predict_batch(self, requests: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """One forward pass for a batch of requests (``MicroBatcher`` calls it on the event loop)."""
        stats = self.batching
        stats.batches += 1
        stats.requests += len(requests)
        stats.largest_batch = max(stats.largest_batch, len(requests))
        return self.model.score_many(requests)

    async def top_k(self, user_id: int | str, k: int, min_ratings: int) -> list[tuple[int | str, str | None, float]]:
        """``Recommender.top_k`` (the dataset's ids) in the replica's top-k thread: the event loop stays
        free meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._top_k_pool, self.model.top_k, user_id, k, min_ratings)
