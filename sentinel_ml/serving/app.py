"""The Ray Serve application: deployment ``MovieRecommender`` behind a FastAPI ingress at ``/recommend``.

Build it with ``app_builder(ServeArgs(...))``. That is the same function a RayService names as its
``import_path`` (``sentinel_ml.serve:app_builder``), with the fields of ``ServeArgs`` as ``args`` in
``serveConfigV2``; Serve turns the dict into ``ServeArgs`` from the annotation (so this module must
not use ``from __future__ import annotations``).

Each replica loads the model from the checkpoint URI (local path or ``s3://``) and the dataset
(titles, rated movies) from the data source when it starts. ``POST /recommend`` requests from all
callers are batched with ``@serve.batch`` into one forward pass. The API contract and its bad-input
policy live in ``sentinel_ml.serving.api``.
"""

import logging
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve
from ray.serve import Application

from sentinel_ml.serving.api import (
    BODY_ERROR_RESPONSES,
    DEFAULT_MIN_RATINGS,
    DEFAULT_TOP_K,
    ERROR_RESPONSES,
    MAX_TOP_K,
    ApiError,
    BatchingInfo,
    Health,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    ScoredMovie,
    TopResponse,
    check_movies,
    check_user,
    validation_message,
)
from sentinel_ml.serving.config import (
    APP_NAME,
    AUTOSCALING,
    DEFAULT_HTTP_PORT,
    DEPLOYMENT_NAME,
    ROUTE_PREFIX,
)

log = logging.getLogger(__name__)

class ServeArgs(BaseModel):
    """What the application is built from: the CLI and a RayService's ``args`` both give these."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(description="Checkpoint URI: a local path or s3://bucket/…/best.pt.")
    run_id: str | None = Field(None, description="Run the checkpoint came from (shown by /model).")
    data: str | None = Field(None, description="MovieLens source for titles and rated movies "
                             "(directory, zip, file:// or http(s) URL). Default: $SENTINEL_DATA, "
                             "else download from GroupLens once per node.")
    min_replicas: int = Field(AUTOSCALING["min_replicas"], ge=0)
    max_replicas: int = Field(AUTOSCALING["max_replicas"], ge=1)
    target_ongoing_requests: float = Field(AUTOSCALING["target_ongoing_requests"], gt=0)
    upscale_delay_s: float = Field(AUTOSCALING["upscale_delay_s"], ge=0)
    downscale_delay_s: float = Field(AUTOSCALING["downscale_delay_s"], ge=0)
    num_cpus: float = Field(0.5, gt=0, description="CPUs reserved per replica.")
    max_ongoing_requests: int = Field(32, ge=1, description="Requests one replica takes at once; "
                                      "the rest wait in the proxy. Also the largest useful batch.")
    max_batch_size: int = Field(32, ge=1)
    batch_wait_timeout_s: float = Field(0.0, ge=0, description="How long a batch waits to fill. 0: "
                                        "batch whatever queued while the previous batch ran.")
    torch_threads: int = Field(1, ge=1, description="Intra-op threads per replica.")
    access_log: bool = Field(False, description="Log every request in the replica logs (costs throughput).")

    @model_validator(mode="after")
    def _consistent(self) -> "ServeArgs":
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        if self.max_ongoing_requests < self.target_ongoing_requests:
            raise ValueError("max_ongoing_requests must be >= target_ongoing_requests")
        return self

    def deployment_options(self) -> dict[str, Any]:
        """``Deployment.options`` keyword arguments (names as in Ray Serve 2.60)."""
        return {
            "autoscaling_config": {
                "min_replicas": self.min_replicas,
                "initial_replicas": max(self.min_replicas, 1),
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
            },
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus},
            "logging_config": {"enable_access_log": self.access_log},
            "user_config": {"max_batch_size": self.max_batch_size,
                            "batch_wait_timeout_s": self.batch_wait_timeout_s},
        }


api = FastAPI(
    title="Sentinel MovieRecommender",
    version="1",
    description="Rating predictions and top-k recommendations from a matrix-factorization model "
                "trained on MovieLens 100k. Ids are MovieLens ids.",
)


class _PrefixRoot:
    """ASGI middleware: ``POST /recommend`` reaches the ``/`` route (Starlette would answer 307 to
    ``/recommend/``, which most clients do not follow for a POST)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        root = scope.get("root_path", "")
        if scope["type"] == "http" and root and scope["path"] == root:
            scope = {**scope, "path": root + "/", "raw_path": (root + "/").encode()}
        await self.app(scope, receive, send)


api.add_middleware(_PrefixRoot)


@api.exception_handler(ApiError)
async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
    return JSONResponse({"detail": error.message}, status_code=error.status_code)


@api.exception_handler(RequestValidationError)
async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": validation_message(list(error.errors()))}, status_code=422)


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress(api)
class MovieRecommender:
    def __init__(self, args: dict[str, Any]) -> None:
        import torch

        from sentinel_ml.data.download import ensure_dataset
        from sentinel_ml.serving.recommender import Recommender

        settings = ServeArgs.model_validate(args)
        self.reconfigure({"max_batch_size": settings.max_batch_size,
                          "batch_wait_timeout_s": settings.batch_wait_timeout_s})
        torch.set_num_threads(settings.torch_threads)
        self.model = Recommender.load(settings.checkpoint, ensure_dataset(settings.data), settings.run_id)
        log.info("serving %s (%d users, %d movies)", settings.checkpoint, self.model.num_users,
                 self.model.num_items)

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.batching = BatchingInfo(max_batch_size=int(config["max_batch_size"]),
                                     batch_wait_timeout_s=float(config["batch_wait_timeout_s"]))
        self._predict_batch.set_max_batch_size(self.batching.max_batch_size)
        self._predict_batch.set_batch_wait_timeout_s(self.batching.batch_wait_timeout_s)

    def check_health(self) -> None:
        self.model.predict(1, [1])  # raises if the model is broken

    @api.post("/", response_model=PredictResponse, responses=BODY_ERROR_RESPONSES,
              summary="Predict ratings of movies for a user")
    async def predict(self, request: PredictRequest) -> dict:
        check_user(request.user_id, self.model.num_users)
        check_movies(request.movie_ids, self.model.num_items)
        predictions = await self._predict_batch((request.user_id, request.movie_ids))
        return {"user_id": request.user_id, "predictions": predictions}

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _predict_batch(self, requests: list[tuple[int, list[int]]]) -> list[list[float]]:
        stats = self.batching
        stats.batches += 1
        stats.requests += len(requests)
        stats.largest_batch = max(stats.largest_batch, len(requests))
        return self.model.predict_many(requests)

    @api.get("/{user_id}/top", response_model=TopResponse, responses=ERROR_RESPONSES,
             summary="Top-k movies the user has not rated")
    async def top(self, user_id: Annotated[int, Path(ge=1)],
                  k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = DEFAULT_TOP_K,
                  min_ratings: Annotated[int, Query(ge=0, le=1000, description=(
                      "Skip movies with fewer ratings in u.data; 0 considers every movie."))] = DEFAULT_MIN_RATINGS,
                  ) -> dict:
        check_user(user_id, self.model.num_users)
        top = self.model.top_k(user_id, k, min_ratings=min_ratings)
        movies = [ScoredMovie(movie_id=m, title=t, score=s) for m, t, s in top]
        return {"user_id": user_id, "k": k, "min_ratings": min_ratings, "movies": movies}

    @api.get("/healthz", response_model=Health, summary="Liveness of this replica")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/model", response_model=ModelInfo, summary="The checkpoint this replica serves")
    async def model_info(self) -> dict:
        m = self.model
        return {"checkpoint_uri": m.checkpoint_uri, "run_id": m.run_id, "metrics": m.metrics,
                "num_users": m.num_users, "num_items": m.num_items, "embedding_dim": m.embedding_dim,
                "batching": self.batching}


def app_builder(args: ServeArgs) -> Application:
    """The application for ``args`` (a ``ServeArgs`` or its dict, as a RayService passes it)."""
    settings = ServeArgs.model_validate(args) if isinstance(args, dict) else args
    return MovieRecommender.options(**settings.deployment_options()).bind(settings.model_dump())


__all__ = ["APP_NAME", "DEFAULT_HTTP_PORT", "DEPLOYMENT_NAME", "ROUTE_PREFIX", "ServeArgs", "app_builder"]
