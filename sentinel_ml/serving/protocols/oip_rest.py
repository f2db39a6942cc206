"""The Open Inference Protocol over REST under ``/v2``: server and model metadata, liveness and
readiness, and ``infer`` (JSON or Triton's binary tensor extension, on the one batching path). The
contract is ``sentinel_ml.serving.oip``."""

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from sentinel_ml.serving import oip
from sentinel_ml.serving.ingress import SPEC_PATCHES, api, open_to_probes
from sentinel_ml.serving.replica import Replica

V2_MODEL = "/v2/models/{model}"
V2_VERSION = "/v2/models/{model}/versions/{version}"
OIP = {"tags": ["Open Inference Protocol REST"], "responses": oip.ERROR_RESPONSES}
OIP_INFER = {**OIP, "responses": {**oip.ERROR_RESPONSES, 200: {"description": "JSON, or with the binary "
             "extension a JSON header then the output's bytes", "content": {"application/octet-stream": {}}}}}


class OIPRestRoutes(Replica):
    @api.get("/v2", response_model=oip.ServerMetadata, summary="Server metadata (OIP)", **OIP)
    async def oip_server_metadata(self) -> dict:
        return oip.server_metadata()

    # Liveness and readiness are open to probes without a token; metadata and infer are not.
    @api.get(open_to_probes("/v2/health/live"), response_model=oip.Live, summary="Server liveness (OIP)", **OIP)
    async def oip_live(self) -> dict:
        return {"live": True}

    @api.get(open_to_probes("/v2/health/ready"), response_model=oip.Ready, summary="Server readiness (OIP)", **OIP)
    async def oip_ready(self) -> dict:
        return {"ready": True}  # a replica answers only once its model is loaded

    @api.get(V2_MODEL, response_model=oip.ModelMetadata, summary="Model metadata (OIP)", **OIP)
    async def oip_model_metadata(self, model: str) -> dict:
        self.ref.check(model)
        return oip.model_metadata(self.ref)

    @api.get(V2_VERSION, response_model=oip.ModelMetadata, summary="Model version metadata (OIP)", **OIP)
    async def oip_version_metadata(self, model: str, version: str) -> dict:
        self.version_ref(version).check(model, version)
        return oip.model_metadata(self.version_ref(version))

    @api.get(open_to_probes(V2_MODEL + "/ready"), response_model=oip.ModelReady, summary="Model readiness (OIP)", **OIP)
    async def oip_model_ready(self, model: str) -> dict:
        self.ref.check(model)
        return {"name": self.ref.name, "ready": True}

    @api.get(open_to_probes(V2_VERSION + "/ready"), response_model=oip.ModelReady, summary="Model version readiness (OIP)", **OIP)
    async def oip_version_ready(self, model: str, version: str) -> dict:
        self.version_ref(version).check(model, version)
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
        parsed = oip.parse_rest(body, request.headers.get(oip.BINARY_HEADER), self.version_ref(version), model,
                                version)

        async def work(variant):
            return await self.score(*self.lookup(parsed.users, parsed.movies, variant), variant)

        # A batch of users goes, as one, to the model its first user's hash picks (docs/serving.md).
        variant, predictions = await self.answer(_first(parsed.users), version, work)
        content, headers = oip.rest_response(variant.ref, parsed, predictions)
        return Response(content, headers=headers)


def _first(users):
    return users[0] if len(users) else None


def _infer_request_body(spec: dict[str, Any]) -> None:
    """The infer request body in the spec: the route reads it raw (for the binary extension), so
    FastAPI cannot see its model."""
    schema = oip.InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(schema.pop("$defs", {}))
    schemas["InferRequest"] = schema
    body = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}}}}
    for path in (V2_MODEL + "/infer", V2_VERSION + "/infer"):
        spec["paths"][path]["post"]["requestBody"] = body


SPEC_PATCHES.append(_infer_request_body)
