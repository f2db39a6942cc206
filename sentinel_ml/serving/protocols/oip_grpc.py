"""The Open Inference Protocol's gRPC service (``inference.GRPCInferenceService``) through Serve's
gRPC proxy. Serve calls the method named like the RPC with the request message; the generated
``grpc_predict_v2_pb2`` module is imported inside the methods (Serve's gRPC guide). Client errors set
a status code on ``grpc_context`` and return an empty message: INVALID_ARGUMENT, NOT_FOUND or
RESOURCE_EXHAUSTED, never INTERNAL. The contract is ``sentinel_ml.serving.oip``.

With a token (``ServeArgs.auth``), every RPC but ``OPEN_RPCS`` needs the ``authorization`` metadata
``Bearer <token>``: one guard (``_guard``), put around each of the servicer's RPCs below the class,
answers UNAUTHENTICATED without it. A new RPC is guarded unless it is named in ``OPEN_RPCS``."""

import functools
import inspect

from ray.serve.grpc_util import RayServegRPCContext

from sentinel_ml.serving import oip
from sentinel_ml.serving.api import ApiError
from sentinel_ml.serving.auth import GRPC_METADATA_KEY
from sentinel_ml.serving.canary import VERSION_HEADER
from sentinel_ml.serving.replica import Replica

# Liveness and readiness answer without a token (probes); metadata and inference need it.
OPEN_RPCS = frozenset({"ServerLive", "ServerReady", "ModelReady"})


class OIPGrpcServicer(Replica):
    async def ServerLive(self, request):
        from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request):
        from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

        return pb.ServerReadyResponse(ready=True)

    async def ServerMetadata(self, request, grpc_context: RayServegRPCContext):
        from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

        return pb.ServerMetadataResponse(**oip.server_metadata())

    async def ModelReady(self, request):
        """ready=false (not an error) for another model or version, as Triton answers."""
        from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

        try:
            self.version_ref(request.version).check(request.name, request.version)
        except ApiError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ModelMetadata(self, request, grpc_context: RayServegRPCContext):
        from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

        try:
            self.version_ref(request.version).check(request.name, request.version)
        except ApiError as e:
            oip.set_grpc_error(grpc_context, e)
            return pb.ModelMetadataResponse()
        return oip.grpc_model_metadata(self.version_ref(request.version))

    async def ModelInfer(self, request, grpc_context: RayServegRPCContext):
        from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

        async def work(variant):
            # UnknownId: NOT_FOUND naming the ids
            return await self.score(*self.lookup(parsed.users, parsed.movies, variant), variant)

        try:
            parsed = oip.parse_grpc(request, self.version_ref(request.model_version))
            # A batch of users goes, as one, to the model its first user's hash picks (docs/serving.md).
            first = parsed.users[0] if len(parsed.users) else None
            variant, predictions = await self.answer(first, request.model_version or None, work)
        except ApiError as e:
            oip.set_grpc_error(grpc_context, e)
            return pb.ModelInferResponse()
        grpc_context.set_trailing_metadata([(VERSION_HEADER, variant.version)])
        return oip.grpc_response(variant.ref, parsed, predictions)


def _authorization(grpc_context: RayServegRPCContext) -> str | None:
    for key, value in grpc_context.invocation_metadata():
        if key.lower() == GRPC_METADATA_KEY:
            return value
    return None


def _guard(rpc):
    """``rpc`` answering UNAUTHENTICATED (and its empty response) unless the replica needs no token or
    the request's ``authorization`` metadata carries it. Serve reads the signature through
    ``functools.wraps``, so ``rpc`` must take ``grpc_context`` to get it."""
    name = rpc.__name__
    if "grpc_context" not in inspect.signature(rpc).parameters:
        raise TypeError(f"{name} must take grpc_context to be guarded")

    @functools.wraps(rpc)
    async def guarded(self, request, grpc_context: RayServegRPCContext):
        check = self.token_check
        if check is not None and not check.accepts_header(_authorization(grpc_context)):
            import grpc

            from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

            grpc_context.set_code(grpc.StatusCode.UNAUTHENTICATED)
            grpc_context.set_details("this service needs a bearer token: send the metadata "
                                     f"'{GRPC_METADATA_KEY}: Bearer <token>'")
            return getattr(pb, f"{name}Response")()
        return await rpc(self, request, grpc_context=grpc_context)

    return guarded


def rpc_names(cls: type = OIPGrpcServicer) -> list[str]:
    """The servicer's RPCs: its coroutine methods named like RPCs (CapitalizedWords)."""
    return [n for n, f in vars(cls).items() if n[:1].isupper() and inspect.iscoroutinefunction(f)]


for _name in rpc_names():
    if _name not in OPEN_RPCS:
        setattr(OIPGrpcServicer, _name, _guard(getattr(OIPGrpcServicer, _name)))
