"""The Ray Serve application: deployment ``MovieRecommender``, one FastAPI ingress for three REST
protocols on one HTTP port (``/recommend``, TF-Serving's ``/v1``, the Open Inference Protocol's
``/v2``) and the OIP's gRPC service (``inference.GRPCInferenceService``) through Serve's gRPC proxy.

Build it with ``app_builder(ServeArgs(...))``. That is the same function a RayService names as its
``import_path`` (``sentinel_ml.serve:app_builder``), with the fields of ``ServeArgs`` as ``args`` in
``serveConfigV2``; Serve turns the dict into ``ServeArgs`` (``sentinel_ml.serving.config``) from the
annotation (so this module must not use ``from __future__ import annotations``). A RayService's args
carry no autoscaling: its ``serveConfigV2`` gives it to the deployment, and Serve applies it.

Each replica loads the model from the checkpoint URI (local path or ``s3://``) and the dataset
(titles, rated movies) from the data source when it starts. Predictions of every protocol go through
one batching path (``sentinel_ml.serving.batching.MicroBatcher``): requests from all callers share
one forward pass. The contracts and the bad-input policy live in ``sentinel_ml.serving.api``,
``tfserving`` and ``oip``.
"""

import logging
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve import Application
from ray.serve.grpc_util import RayServegRPCContext
from starlette.exceptions import HTTPException as StarletteHTTPException

from sentinel_ml.serving import oip, tfserving
from sentinel_ml.serving.api import (
    BODY_ERROR_RESPONSES,
    DEFAULT_MIN_RATINGS,
    DEFAULT_TOP_K,
    ERROR_RESPONSES,
    MAX_BODY_BYTES,
    MAX_TOP_K,
    ApiError,
    BatchingInfo,
    Health,
    ModelInfo,
    ModelRef,
    PredictRequest,
    PredictResponse,
    ScoredMovie,
    TopResponse,
    check_movies,
    check_pairs,
    check_user,
    validation_message,
)
from sentinel_ml.serving.batching import AdaptiveWait, MicroBatcher
from sentinel_ml.serving.config import NAMES, RECOMMEND_PATH, ServeArgs

log = logging.getLogger(__name__)

api = FastAPI(
    title="Sentinel MovieRecommender",
    version="1",
    description="Rating predictions and top-k recommendations from a matrix-factorization model "
                "trained on MovieLens 100k. Ids are MovieLens ids. The same model answers "
                "`/recommend`, TensorFlow Serving's REST API (`/v1`) and the Open Inference Protocol "
                "(`/v2`; its gRPC service on Serve's gRPC port).",
    openapi_url=f"{RECOMMEND_PATH}/openapi.json",
    docs_url=f"{RECOMMEND_PATH}/docs",
    redoc_url=None,
)

_PROTOCOL_PREFIXES = ("/v1/", "/v2/")  # paths whose errors are {"error": …} and 400 for bad input


def _error(request_path: str, status_code: int, message: str) -> JSONResponse:
    """A client error in the body of the protocol the path belongs to."""
    if request_path.startswith(_PROTOCOL_PREFIXES) or request_path == "/v2":
        return JSONResponse({"error": message}, status_code=400 if status_code == 422 else status_code)
    return JSONResponse({"detail": message}, status_code=status_code)


class _BodyLimit:
    """ASGI middleware: a body declared larger than MAX_BODY_BYTES gets 413 before anything parses it.
    The body is read to its end first, so the client sees the answer and not a reset connection."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or ()).get(b"content-length", b"0")
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                while (await receive()).get("more_body"):
                    pass
                response = _error(scope["path"], 413, f"request body of {int(length)} bytes: at most "
                                                      f"{MAX_BODY_BYTES}")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


api.add_middleware(_BodyLimit)


@api.exception_handler(ApiError)
async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return _error(request.url.path, error.status_code, error.message)


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    return _error(request.url.path, 422, validation_message(list(error.errors())))


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    response = _error(request.url.path, error.status_code, str(error.detail))
    response.headers.update(error.headers or {})
    return response


V1_MODEL = "/v1/models/{model}"
V1_VERSION = "/v1/models/{model}/versions/{version}"
V2_MODEL = "/v2/models/{model}"
V2_VERSION = "/v2/models/{model}/versions/{version}"
TF = {"tags": ["TensorFlow Serving REST"], "responses": tfserving.ERROR_RESPONSES}
OIP = {"tags": ["Open Inference Protocol REST"], "responses": oip.ERROR_RESPONSES}
OIP_INFER = {**OIP, "responses": {**oip.ERROR_RESPONSES, 200: {"description": "JSON, or with the binary "
             "extension a JSON header then the output's bytes", "content": {"application/octet-stream": {}}}}}
RECOMMEND = {"tags": ["recommend"]}


@serve.deployment(name=NAMES.deployment)
@serve.ingress(api)
class MovieRecommender:
    def __init__(self, args: dict[str, Any]) -> None:
        import torch

        from sentinel_ml.data.download import ensure_dataset
        from sentinel_ml.serving.recommender import Recommender, model_version

        settings = ServeArgs.model_validate(args)
        self.reconfigure({"max_batch_size": settings.max_batch_size,
                          "batch_wait_timeout_s": settings.batch_wait_timeout_s})
        torch.set_num_threads(settings.torch_threads)
        self.model = Recommender.load(settings.checkpoint, ensure_dataset(settings.data), settings.run_id)
        version = settings.model_version or model_version(self.model.run_id, settings.checkpoint)
        self.ref = ModelRef(settings.model_name, version, self.model.num_users, self.model.num_items)
        log.info("serving %s as %s version %d (%d users, %d movies)", settings.checkpoint, self.ref.name,
                 version, self.model.num_users, self.model.num_items)

    def reconfigure(self, config: dict[str, Any]) -> None:
        wait = AdaptiveWait(float(config["batch_wait_timeout_s"]))
        self.batching = BatchingInfo(max_batch_size=int(config["max_batch_size"]), batch_wait_timeout_s=wait.wait_s)
        if getattr(self, "_batcher", None) is None:
            self._batcher = MicroBatcher(self._predict_batch, self.batching.max_batch_size, wait)
        else:  # a user_config update: the queue and its worker stay
            self._batcher.max_size, self._batcher.wait = self.batching.max_batch_size, wait

    def check_health(self) -> None:
        self.model.predict(1, [1])  # raises if the model is broken

    # -- the one batching path ------------------------------------------------------------------------

    async def _score(self, users: list[int], movies: list[int]) -> np.ndarray:
        """float32 predictions for checked (user, movie) pairs, batched with other callers' requests."""
        return await self._batcher.submit((users, movies))

    def _predict_batch(self, requests: list[tuple[list[int], list[int]]]) -> list[np.ndarray]:
        """One forward pass for a batch of requests (``MicroBatcher`` calls it on the event loop)."""
        stats = self.batching
        stats.batches += 1
        stats.requests += len(requests)
        stats.largest_batch = max(stats.largest_batch, len(requests))
        return self.model.score_many(requests)

    # -- /recommend ----------------------------------------------------------------------------------

    @api.post(RECOMMEND_PATH, response_model=PredictResponse, responses=BODY_ERROR_RESPONSES,
              summary="Predict ratings of movies for a user", **RECOMMEND)
    @api.post(RECOMMEND_PATH + "/", response_model=PredictResponse, include_in_schema=False)
    async def predict(self, request: PredictRequest) -> dict:
        check_user(request.user_id, self.model.num_users)
        check_movies(request.movie_ids, self.model.num_items)
        scores = await self._score([request.user_id] * len(request.movie_ids), request.movie_ids)
        return {"user_id": request.user_id, "predictions": scores.tolist()}

    @api.get(RECOMMEND_PATH + "/{user_id}/top", response_model=TopResponse, responses=ERROR_RESPONSES,
             summary="Top-k movies the user has not rated", **RECOMMEND)
    async def top(self, user_id: Annotated[int, Path(ge=1)],
                  k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = DEFAULT_TOP_K,
                  min_ratings: Annotated[int, Query(ge=0, le=1000, description=(
                      "Skip movies with fewer ratings in u.data; 0 considers every movie."))] = DEFAULT_MIN_RATINGS,
                  ) -> dict:
        check_user(user_id, self.model.num_users)
        top = self.model.top_k(user_id, k, min_ratings=min_ratings)
        movies = [ScoredMovie(movie_id=m, title=t, score=s) for m, t, s in top]
        return {"user_id": user_id, "k": k, "min_ratings": min_ratings, "movies": movies}

    @api.get(RECOMMEND_PATH + "/healthz", response_model=Health, summary="Liveness of this replica", **RECOMMEND)
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get(RECOMMEND_PATH + "/model", response_model=ModelInfo, summary="The checkpoint this replica serves",
             **RECOMMEND)
    async def model_info(self) -> dict:
        m = self.model
        return {"model_name": self.ref.name, "model_version": self.ref.version,
                "checkpoint_uri": m.checkpoint_uri, "run_id": m.run_id, "metrics": m.metrics,
                "num_users": m.num_users, "num_items": m.num_items, "embedding_dim": m.embedding_dim,
                "batching": self.batching.model_copy(update={"current_wait_s": self._batcher.wait.current_s})}

    # -- TensorFlow Serving REST (/v1) ---------------------------------------------------------------

    @api.post(V1_MODEL + ":predict", response_model=tfserving.TFPredictResponse, response_model_exclude_none=True,
              summary="Predict (TF Serving): rows in 'instances' or columns in 'inputs'", **TF)
    async def tf_predict(self, model: str, request: tfserving.TFPredictRequest) -> dict:
        return await self._tf_predict(model, None, request)

    @api.post(V1_VERSION + ":predict", response_model=tfserving.TFPredictResponse, response_model_exclude_none=True,
              summary="Predict with a given model version (TF Serving)", **TF)
    async def tf_predict_version(self, model: str, version: str, request: tfserving.TFPredictRequest) -> dict:
        return await self._tf_predict(model, version, request)

    async def _tf_predict(self, model: str, version: str | None, request: tfserving.TFPredictRequest) -> dict:
        self.ref.check(model, version)
        users, movies = request.pairs()
        check_pairs(users, movies, self.ref.num_users, self.ref.num_items)
        return request.answer((await self._score(users, movies)).tolist())

    @api.get(V1_MODEL, response_model=tfserving.ModelStatus, summary="Model status (TF Serving)", **TF)
    async def tf_status(self, model: str) -> dict:
        self.ref.check(model)
        return tfserving.model_status(self.ref)

    @api.get(V1_VERSION, response_model=tfserving.ModelStatus, summary="Model version status (TF Serving)", **TF)
    async def tf_version_status(self, model: str, version: str) -> dict:
        self.ref.check(model, version)
        return tfserving.model_status(self.ref)

    @api.get(V1_MODEL + "/metadata", summary="Model metadata: the signature (TF Serving)", **TF)
    async def tf_metadata(self, model: str) -> dict:
        self.ref.check(model)
        return tfserving.model_metadata(self.ref)

    @api.get(V1_VERSION + "/metadata", summary="Model version metadata (TF Serving)", **TF)
    async def tf_version_metadata(self, model: str, version: str) -> dict:
        self.ref.check(model, version)
        return tfserving.model_metadata(self.ref)

    # -- Open Inference Protocol REST (/v2) ----------------------------------------------------------

    @api.get("/v2", response_model=oip.ServerMetadata, summary="Server metadata (OIP)", **OIP)
    async def oip_server_metadata(self) -> dict:
        return oip.server_metadata()

    @api.get("/v2/health/live", response_model=oip.Live, summary="Server liveness (OIP)", **OIP)
    async def oip_live(self) -> dict:
        return {"live": True}

    @api.get("/v2/health/ready", response_model=oip.Ready, summary="Server readiness (OIP)", **OIP)
    async def oip_ready(self) -> dict:
        return {"ready": True}  # a replica answers only once its model is loaded

    @api.get(V2_MODEL, response_model=oip.ModelMetadata, summary="Model metadata (OIP)", **OIP)
    async def oip_model_metadata(self, model: str) -> dict:
        self.ref.check(model)
        return oip.model_metadata(self.ref)

    @api.get(V2_VERSION, response_model=oip.ModelMetadata, summary="Model version metadata (OIP)", **OIP)
    async def oip_version_metadata(self, model: str, version: str) -> dict:
        self.ref.check(model, version)
        return oip.model_metadata(self.ref)

    @api.get(V2_MODEL + "/ready", response_model=oip.ModelReady, summary="Model readiness (OIP)", **OIP)
    async def oip_model_ready(self, model: str) -> dict:
        self.ref.check(model)
        return {"name": self.ref.name, "ready": True}

    @api.get(V2_VERSION + "/ready", response_model=oip.ModelReady, summary="Model version readiness (OIP)", **OIP)
    async def oip_version_ready(self, model: str, version: str) -> dict:
        self.ref.check(model, version)
        return {"name": self.ref.name, "ready": True}

    @api.post(V2_MODEL + "/infer", response_model=oip.InferResponse, summary="Inference (OIP)", **OIP_INFER)
    async def oip_infer(self, model: str, request: Request) -> Response:
        return await self._oip_infer(model, None, request)

    @api.post(V2_VERSION + "/infer", response_model=oip.InferResponse, summary="Inference with a given model "
              "version (OIP)", **OIP_INFER)
    async def oip_infer_version(self, model: str, version: str, request: Request) -> Response:
        return await self._oip_infer(model, version, request)

    async def _oip_infer(self, model: str, version: str | None, request: Request) -> Response:
        body = await request.body()
        parsed = oip.parse_rest(body, request.headers.get(oip.BINARY_HEADER), self.ref, model, version)
        content, headers = oip.rest_response(self.ref, parsed, await self._score(parsed.users, parsed.movies))
        return Response(content, headers=headers)

    # -- Open Inference Protocol gRPC (inference.GRPCInferenceService through Serve's gRPC proxy) -------
    # Serve calls the method named like the RPC with the request message; the pb2 modules are imported
    # inside the methods (Serve's gRPC guide). Client errors set a status code on grpc_context and
    # return an empty message: INVALID_ARGUMENT, NOT_FOUND or RESOURCE_EXHAUSTED, never INTERNAL.

    async def ServerLive(self, request):
        from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request):
        from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

        return pb.ServerReadyResponse(ready=True)

    async def ServerMetadata(self, request):
        from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

        return pb.ServerMetadataResponse(**oip.server_metadata())

    async def ModelReady(self, request):
        """ready=false (not an error) for another model or version, as Triton answers."""
        from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

        try:
            self.ref.check(request.name, request.version)
        except ApiError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ModelMetadata(self, request, grpc_context: RayServegRPCContext):
        from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

        try:
            self.ref.check(request.name, request.version)
        except ApiError as e:
            oip.set_grpc_error(grpc_context, e)
            return pb.ModelMetadataResponse()
        return oip.grpc_model_metadata(self.ref)

    async def ModelInfer(self, request, grpc_context: RayServegRPCContext):
        from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

        try:
            parsed = oip.parse_grpc(request, self.ref)
        except ApiError as e:
            oip.set_grpc_error(grpc_context, e)
            return pb.ModelInferResponse()
        return oip.grpc_response(self.ref, parsed, await self._score(parsed.users, parsed.movies))


def _openapi() -> dict[str, Any]:
    """FastAPI's spec, plus the OIP infer request body (read raw for the binary extension, so FastAPI
    cannot see its model)."""
    if api.openapi_schema:
        return api.openapi_schema
    spec = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
    schema = oip.InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(schema.pop("$defs", {}))
    schemas["InferRequest"] = schema
    body = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}}}}
    for path in (V2_MODEL + "/infer", V2_VERSION + "/infer"):
        spec["paths"][path]["post"]["requestBody"] = body
    for path, operations in spec["paths"].items():
        if path.startswith(_PROTOCOL_PREFIXES) or path == "/v2":
            for operation in operations.values():
                operation["responses"].pop("422", None)  # these protocols answer 400 instead
    api.openapi_schema = spec
    return spec


api.openapi = _openapi


def app_builder(args: ServeArgs) -> Application:
    """The application for ``args`` (a ``ServeArgs`` or its dict, as a RayService passes it)."""
    settings = ServeArgs.model_validate(args) if isinstance(args, dict) else args
    return MovieRecommender.options(**settings.deployment_options()).bind(settings.model_dump())


__all__ = ["MovieRecommender", "ServeArgs", "app_builder"]
