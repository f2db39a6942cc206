"""The Ray Serve application: deployment ``MovieRecommender`` (``NAMES.deployment``), one FastAPI
ingress for three REST protocols on one HTTP port (``/recommend``, TF-Serving's ``/v1``, the Open
Inference Protocol's ``/v2``) and the OIP's gRPC service (``inference.GRPCInferenceService``) through
Serve's gRPC proxy. The deployment is the protocols' mixins (``sentinel_ml.serving.protocols``) on
one ``Replica`` (model, batching, top-k), behind the FastAPI app of ``sentinel_ml.serving.ingress``.

Build it with ``app_builder(ServeArgs(...))``. That is the same function a RayService names as its
``import_path`` (``sentinel_ml.serve:app_builder``), with the fields of ``ServeArgs`` as ``args`` in
``serveConfigV2``; Serve turns the dict into ``ServeArgs`` from the annotation (so this module must
not use ``from __future__ import annotations``). A RayService's args carry no autoscaling: its
``serveConfigV2`` gives it to the deployment (``config.serve_application``), and Serve applies it.
"""

from ray import serve
from ray.serve import Application

from sentinel_ml.serving.config import NAMES, ServeArgs
from sentinel_ml.serving.ingress import api, use_token_check
# The REST routes register on `api` as their modules load: in this order, as the spec lists them.
from sentinel_ml.serving.protocols.recommend import RecommendRoutes
from sentinel_ml.serving.protocols.tfserving import TFServingRoutes
from sentinel_ml.serving.protocols.oip_rest import OIPRestRoutes
from sentinel_ml.serving.protocols.oip_grpc import OIPGrpcServicer


class MovieRecommender(RecommendRoutes, TFServingRoutes, OIPRestRoutes, OIPGrpcServicer):
    """Every protocol on one replica: the routes of each protocol, one model, one batching path, and
    one token check (``Replica.token_check``) that the REST guard and the gRPC guard both ask."""

    def __init__(self, args: dict) -> None:
        super().__init__(args)
        use_token_check(self.token_check)  # the REST guard of this replica's process


# Not decorators on the class: the name must stay the plain class, so that a replica unpickles it by
# reference and imports this module, whose next line makes the FastAPI routes of the mixins methods
# of the replica (serve.ingress rewrites each route's `self` in the process that runs it).
DEPLOYMENT = serve.deployment(name=NAMES.deployment)(serve.ingress(api)(MovieRecommender))


def app_builder(args: ServeArgs) -> Application:
    """The application for ``args`` (a ``ServeArgs`` or its dict, as a RayService passes it)."""
    settings = ServeArgs.model_validate(args) if isinstance(args, dict) else args
    return DEPLOYMENT.options(**settings.deployment_options()).bind(settings.model_dump())


__all__ = ["DEPLOYMENT", "MovieRecommender", "ServeArgs", "app_builder"]
