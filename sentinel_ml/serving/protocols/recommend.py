"""Sentinel's own API under ``/recommend``: ratings of movies for a user (batched), the top-k movies a
user has not rated (off the event loop), health, and what the replica serves. Ids in and out are the
dataset's own (JSON integers or strings; in the top-k path, the id as text)."""

from typing import Annotated

import numpy as np
from fastapi import Path, Query

from sentinel_ml.serving.api import (
    BODY_ERROR_RESPONSES,
    DEFAULT_MIN_RATINGS,
    DEFAULT_TOP_K,
    ERROR_RESPONSES,
    MAX_ID_LENGTH,
    MAX_TOP_K,
    Health,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    ScoredMovie,
    TopResponse,
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
        async def work(variant):
            users, items = variant.model.catalogue.users, variant.model.catalogue.items
            user = users.index(request.user_id)
            movies = items.indices(request.movie_ids)
            scores = await self.score(np.full(len(movies), user, dtype=np.int64), movies, variant)
            return {"user_id": users.id(user), "predictions": scores.tolist()}

        variant, body = await self.answer(request.user_id, None, work)
        return {**body, "model_version": variant.ref.version}

    @api.get(RECOMMEND_PATH + "/{user_id}/top", response_model=TopResponse, responses=ERROR_RESPONSES,
             summary="Top-k movies the user has not rated", **RECOMMEND)
    async def top(self, user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, description=(
                      "The dataset's user id (an integer dataset's as its decimal string)."))],
                  k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = DEFAULT_TOP_K,
                  min_ratings: Annotated[int, Query(ge=0, le=1000, description=(
                      "Skip movies with fewer ratings in the dataset; 0 considers every movie."))] = DEFAULT_MIN_RATINGS,
                  ) -> dict:
        async def work(variant):
            users = variant.model.catalogue.users
            user = users.id(users.index(user_id))  # an unknown user is a 404 here, before the top-k thread
            return user, await self.top_k(user, k, min_ratings, variant)

        variant, (user, top) = await self.answer(user_id, None, work)
        movies = [ScoredMovie(movie_id=m, title=t, score=s) for m, t, s in top]
        return {"user_id": user, "k": k, "min_ratings": min_ratings, "movies": movies,
                "model_version": variant.ref.version}

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
                "dataset": m.catalogue.dataset, "id_type": m.catalogue.id_type, "batching": self.batching_info(),
                "canary": self.canary_info()}
