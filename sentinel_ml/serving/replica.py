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

With a canary (``ServeArgs.canary_*``) a replica holds two ``Variant``s, the incumbent and the
candidate, each with its model and batching; ``answer`` picks one for a request (``route``: the rules
of ``sentinel_ml.serving.canary``), records its version's request, error and latency metrics, names the
version in the HTTP answer's header, and falls back to the incumbent when the candidate fails.
"""

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from sentinel_ml.serving import canary
from sentinel_ml.serving.api import ApiError, BatchingInfo, ModelRef
from sentinel_ml.serving.auth import TokenCheck
from sentinel_ml.serving.batching import AdaptiveWait, MicroBatcher
from sentinel_ml.serving.config import ServeArgs

log = logging.getLogger(__name__)
T = TypeVar("T")


class InjectedFault(RuntimeError):
    """A candidate's failure on purpose (``ServeArgs.canary_fault_rate``: tests and benchmarks only)."""


@dataclass
class Variant:
    """One model a replica serves: the incumbent, or the canary's candidate."""

    role: str  # canary.ROLES
    model: Any  # Recommender
    ref: ModelRef
    batcher: MicroBatcher

    @property
    def version(self) -> str:
        return str(self.ref.version)


class VersionMetrics:
    """Per-version requests, errors and latency as Ray Serve metrics (Prometheus, through Ray's metrics
    agent), tagged ``model_version`` and ``role``. Outside a Ray worker it records nothing."""

    def __init__(self) -> None:
        try:
            from ray.serve.metrics import Counter, Histogram

            self.requests = Counter(canary.METRIC_REQUESTS, description="Requests each model version answered.",
                                    tag_keys=canary.TAG_KEYS)
            self.errors = Counter(canary.METRIC_ERRORS, description="Requests a model version failed "
                                  "(server errors; client errors are not the model's).", tag_keys=canary.TAG_KEYS)
            self.latency = Histogram(canary.METRIC_LATENCY, description="Time a model version took per request.",
                                     boundaries=list(canary.LATENCY_BOUNDARIES_MS), tag_keys=canary.TAG_KEYS)
        except Exception as e:  # noqa: BLE001 - metrics must never stop a replica from serving
            log.warning("per-version metrics are off: %s", e)
            self.requests = None

    def record(self, variant: Variant, seconds: float, failed: bool) -> None:
        if self.requests is None:
            return
        tags = {"model_version": variant.version, "role": variant.role}
        self.requests.inc(1, tags=tags)
        if failed:
            self.errors.inc(1, tags=tags)
        self.latency.observe(seconds * 1000.0, tags=tags)


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
        self.incumbent = Variant("incumbent", self.model, self.ref, self._batcher)
        self.candidate: Variant | None = None
        self.canary_percent = settings.canary_percent or 0.0
        self.fault_rate = settings.canary_fault_rate
        if settings.canary_checkpoint:
            model = Recommender.load(settings.canary_checkpoint, settings.canary_run_id)
            cversion = settings.canary_model_version or model_version(model.run_id, settings.canary_checkpoint)
            if cversion == version:
                raise ValueError(f"the canary's candidate and the incumbent are both version {version}: "
                                 "give the candidate another canary_model_version")
            ref = ModelRef(settings.model_name, cversion, model.num_users, model.num_items, model.catalogue.id_type)
            batcher = MicroBatcher(lambda requests, m=model: self._predict_batch(requests, m),
                                   self.batching.max_batch_size, AdaptiveWait(self.batching.batch_wait_timeout_s))
            self.candidate = Variant("candidate", model, ref, batcher)
            log.info("canary: %s as version %d for %.2f%% of users", settings.canary_checkpoint, cversion,
                     self.canary_percent)
        self.variants = [v for v in (self.incumbent, self.candidate) if v is not None]
        self.version_metrics = VersionMetrics()
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
            self._batcher = MicroBatcher(lambda requests: self._predict_batch(requests, self.model),
                                         self.batching.max_batch_size, wait)
        else:  # a user_config update: the queues and their workers stay
            self._batcher.max_size, self._batcher.wait = self.batching.max_batch_size, wait
            candidate = getattr(self, "candidate", None)
            if candidate is not None:  # the canary's candidate: the same settings, a wait of its own
                candidate.batcher.max_size = self.batching.max_batch_size
                candidate.batcher.wait = AdaptiveWait(float(config["batch_wait_timeout_s"]))

    def check_health(self) -> None:
        for variant in self.variants:
            variant.model.score_many([([0], [0])])  # raises if a model is broken

    def route(self, user_id: Any, version: str | None = None) -> Variant:
        """The variant that answers ``user_id``: the one ``version`` names when given (else the
        incumbent, whose ``ref.check`` then answers 404), the candidate for the canary's share of
        users, the incumbent otherwise."""
        if version is not None:
            return next((v for v in self.variants if v.version == str(version).strip()), self.incumbent)
        if self.candidate is not None and user_id is not None and canary.to_candidate(user_id, self.canary_percent):
            return self.candidate
        return self.incumbent

    def version_ref(self, version: str | None) -> ModelRef:
        """The ModelRef a request naming ``version`` checks against (the incumbent's when it names none
        or an unknown one: its check answers 404)."""
        return self.route(None, version).ref if version else self.ref

    def canary_info(self) -> dict[str, Any] | None:
        """The candidate this replica serves beside the incumbent (``/recommend/model``), or None."""
        c = self.candidate
        if c is None:
            return None
        return {"checkpoint_uri": c.model.checkpoint_uri, "run_id": c.model.run_id, "model_version": c.ref.version,
                "percent": self.canary_percent}

    async def answer(self, user_id: Any, version: str | None,
                     work: Callable[[Variant], Awaitable[T]]) -> tuple[Variant, T]:
        """``work`` done by the variant that answers ``user_id`` (``route``), measured for its version.
        A candidate that fails (not a client error) counts the error and the incumbent answers instead,
        unless the request named the candidate's version."""
        variant = self.route(user_id, version)
        try:
            return variant, await self._measured(variant, work)
        except ApiError:
            raise
        except Exception as e:
            if variant is self.incumbent or version is not None:
                raise
            log.warning("candidate version %s failed (%s); the incumbent answers", variant.version, e)
            return self.incumbent, await self._measured(self.incumbent, work)

    async def _measured(self, variant: Variant, work: Callable[[Variant], Awaitable[T]]) -> T:
        start, failed = time.perf_counter(), False
        try:
            if variant is self.candidate and self.fault_rate and random.random() < self.fault_rate:
                raise InjectedFault("injected fault (canary_fault_rate)")
            result = await work(variant)
        except ApiError:
            raise
        except Exception:
            failed = True
            raise
        finally:
            self.version_metrics.record(variant, time.perf_counter() - start, failed)
        answered = canary.ANSWERED.get()
        if answered is not None:
            answered["version"] = variant.version
        return result

    def batching_info(self) -> BatchingInfo:
        """The batching counters, with the wait the batches use now."""
        return self.batching.model_copy(update={"current_wait_s": self._batcher.wait.current_s})

    def lookup(self, users: Sequence[Any], movies: Sequence[Any],
               variant: Variant | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The network's indices of the dataset's ids (in ``variant``'s catalogue, default the
        incumbent's); ``UnknownId`` (404) naming the unknown users, else the unknown items."""
        catalogue = (variant.model if variant else self.model).catalogue
        return catalogue.users.indices(users), catalogue.items.indices(movies)

    async def score(self, users: np.ndarray, movies: np.ndarray, variant: Variant | None = None) -> np.ndarray:
        """float32 predictions for (user index, item index) pairs (``lookup``), batched with other
        callers' requests to the same variant (default the incumbent)."""
        return await (variant.batcher if variant else self._batcher).submit((users, movies))

    def _predict_batch(self, requests: list[tuple[np.ndarray, np.ndarray]], model: Any) -> list[np.ndarray]:
        """One forward pass for a batch of requests (``MicroBatcher`` calls it on the event loop)."""
        stats = self.batching
        stats.batches += 1
        stats.requests += len(requests)
        stats.largest_batch = max(stats.largest_batch, len(requests))
        return model.score_many(requests)

    async def top_k(self, user_id: int | str, k: int, min_ratings: int,
                    variant: Variant | None = None) -> list[tuple[int | str, str | None, float]]:
        """``Recommender.top_k`` (the dataset's ids) in the replica's top-k thread: the event loop stays
        free meanwhile."""
        loop = asyncio.get_running_loop()
        model = variant.model if variant else self.model
        return await loop.run_in_executor(self._top_k_pool, model.top_k, user_id, k, min_ratings)
