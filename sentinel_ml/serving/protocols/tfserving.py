"""TensorFlow Serving's REST API under ``/v1``: predict (rows or columns, on the one batching path),
model status and metadata. The contract is ``sentinel_ml.serving.tfserving``."""

from sentinel_ml.serving import tfserving
from sentinel_ml.serving.api import check_pairs
from sentinel_ml.serving.ingress import api, open_to_probes
from sentinel_ml.serving.replica import Replica

V1_MODEL = "/v1/models/{model}"
V1_VERSION = "/v1/models/{model}/versions/{version}"
TF = {"tags": ["TensorFlow Serving REST"], "responses": tfserving.ERROR_RESPONSES}


class TFServingRoutes(Replica):
    @api.post(V1_MODEL + ":predict", response_model=tfserving.TFPredictResponse, response_model_exclude_none=True,
              summary="Predict (TF Serving): rows in 'instances' or columns in 'inputs'", **TF)
    async def tf_predict(self, model: str, request: tfserving.TFPredictRequest) -> dict:
        return await self._tf_predict(model, None, request)

    @api.post(V1_VERSION + ":predict", response_model=tfserving.TFPredictResponse, response_model_exclude_none=True,
              summary="Predict with a given model version (TF Serving)", **TF)
    async def tf_predict_version(self, model: str, version: str, request: tfserving.TFPredictRequest) -> dict:
        return await self._tf_predict(model, version, request)

    async def _tf_predict(self, model: str, version: str | None, request: tfserving.TFPredictRequest) -> dict:
        self.version_ref(version).check(model, version)
        users, movies = request.pairs()
        check_pairs(users, movies)

        async def work(variant):
            return request.answer((await self.score(*self.lookup(users, movies, variant), variant)).tolist())

        # A batch of users goes, as one, to the model its first user's hash picks (docs/serving.md).
        variant, body = await self.answer(users[0] if len(users) else None, version, work)
        return {**body, "model_version": str(variant.ref.version)}

    # Model status is TF Serving's readiness check: open to probes without a token.
    @api.get(open_to_probes(V1_MODEL), response_model=tfserving.ModelStatus, summary="Model status (TF Serving)", **TF)
    async def tf_status(self, model: str) -> dict:
        self.ref.check(model)
        return tfserving.model_status(self.ref)

    @api.get(open_to_probes(V1_VERSION), response_model=tfserving.ModelStatus, summary="Model version status (TF Serving)", **TF)
    async def tf_version_status(self, model: str, version: str) -> dict:
        self.version_ref(version).check(model, version)
        return tfserving.model_status(self.version_ref(version))

    @api.get(V1_MODEL + "/metadata", summary="Model metadata: the signature (TF Serving)", **TF)
    async def tf_metadata(self, model: str) -> dict:
        self.ref.check(model)
        return tfserving.model_metadata(self.ref)

    @api.get(V1_VERSION + "/metadata", summary="Model version metadata (TF Serving)", **TF)
    async def tf_version_metadata(self, model: str, version: str) -> dict:
        self.version_ref(version).check(model, version)
        return tfserving.model_metadata(self.version_ref(version))
