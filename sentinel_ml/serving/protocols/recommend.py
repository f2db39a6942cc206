"""Sentinel's own API under ``/recommend``: ratings of movies for a user (batched), the top-k movies a
user has not rated (off the event loop), health, and what the replica serves."""

from typing import Annotated

from fastapi import Path, Query

from sentinel_ml.serving.api import (
    BODY_ERROR_RESPONSES,
    DEFAULT_MIN_RATINGS,
    DEFAULT_TOP_K,
    ERROR_RESPONSES,
    MAX_TOP_K,
    Health,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    ScoredMovie,
    TopResponse,
    check_movies,
    check_user,
)
from sentinel_ml.serving.config import RECOMMEND_PATH
from sentinel_ml.serving.ingress import api, open_to_probes
from sentinel_ml.serving.replica import Replica

RECOMMEND = {"tags": ["recommend"]}


class RecommendRoutes(Replica):
    @api.post(RECOMMEND_PATH, response_model=PredictResponse, responses=BODY_ERROR_RESPONSES,
              summary="Predict ratings of movies for a user", **RECOMMEND)
    @api.post(RECOMMEND_PATH + "/", response_model=PredictResponse, include_in_schema=False)
    async def predict(self, request: PredictRequest) -> dict:
        check_user(request.user_id, self.model.num_users)
        check_movies(request.movie_ids, self.model.num_items)
        scores = await self.score([request.user_id] * len(request.movie_ids), request.movie_ids)
        return {"user_id": request.user_id, "predictions": scores.tolist()}

    @api.get(RECOMMEND_PATH + "/{user_id}/top", response_model=TopResponse, responses=ERROR_RESPONSES,
             summary="Top-k movies the user has not rated", **RECOMMEND)
    async def top(self, user_id: Annotated[int, Path(ge=1)],
                  k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = DEFAULT_TOP_K,
                  min_ratings: Annotated[int, Query(ge=0, le=1000, description=(
                      "Skip movies with fewer ratings in u.data; 0 considers every movie."))] = DEFAULT_MIN_RATINGS,
                  ) -> dict:
        check_user(user_id, self.model.num_users)
        top = await self.top_k(user_id, k, min_ratings)
        movies = [ScoredMovie(movie_id=m, title=t, score=s) for m, t, s in top]
        return {"user_id": user_id, "k": k, "min_ratings": min_ratings, "movies": movies}

    @api.get(open_to_probes(RECOMMEND_PATH + "/healthz"), response_model=Health, summary="Liveness of this replica", **RECOMMEND)
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get(RECOMMEND_PATH + "/model", response_model=ModelInfo, summary="The checkpoint this replica serves",
             **RECOMMEND)
    async def model_info(self) -> dict:
        m = self.model
        return {"model_name": self.ref.name, "model_version": self.ref.version,
                "checkpoint_uri": m.checkpoint_uri, "run_id": m.run_id, "metrics": m.metrics,
                "num_users": m.num_users, "num_items": m.num_items, "embedding_dim": m.embedding_dim,
                "batching": self.batching_info()}
