"""The Open Inference Protocol's gRPC service (``inference.GRPCInferenceService``) through Serve's
gRPC proxy. Serve calls the method named like the RPC with the request message; the generated
``grpc_predict_v2_pb2`` module is imported inside the methods (Serve's gRPC guide). Client errors set
a status code on ``grpc_context`` and return an empty message: INVALID_ARGUMENT, NOT_FOUND or
RESOURCE_EXHAUSTED, never INTERNAL. The contract is ``sentinel_ml.serving.oip``."""

from ray.serve.grpc_util import RayServegRPCContext

from sentinel_ml.serving import oip
from sentinel_ml.serving.api import ApiError
from sentinel_ml.serving.replica import Replica


class OIPGrpcServicer(Replica):
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
            indices = self.lookup(parsed.users, parsed.movies)  # UnknownId: NOT_FOUND naming the ids
        except ApiError as e:
            oip.set_grpc_error(grpc_context, e)
            return pb.ModelInferResponse()
        return oip.grpc_response(self.ref, parsed, await self.score(*indices))
