"""What serves the model is called and where it listens: names, paths, default addresses and the
protocols ``sentinel predict`` speaks. Plain constants (no pydantic, no Ray), cheap enough for the
CLI's start-up; ``serving/config.py`` builds the application's configuration on them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeNames:
    """The one naming scheme of what serves the model. The product names the application, the class
    names the deployment, and the model and the Kubernetes objects that expose it share one name.
    Each name is seen from outside (Serve's status, metrics labels, request paths, Service DNS names),
    so renaming one is a breaking change for whoever reads it."""

    application: str  # the Serve application: serve.status(), serveConfigV2 applications[].name
    deployment: str  # the Serve deployment: its replicas, the `deployment` label of Serve's metrics
    model: str  # the model in TF-Serving and OIP requests (/v1/models/<model>, /v2/models/<model>)
    service: str  # the RayService (profile serve.name) and its Services <service>-serve-svc, <service>-grpc


NAMES = ServeNames(application="sentinel", deployment="MovieRecommender", model="recommender",
                   service="recommender")
# Serve mounts the application at the root: it answers /recommend, TF-Serving's /v1 and the Open
# Inference Protocol's /v2 on the one HTTP port.
ROUTE_PREFIX = "/"
RECOMMEND_PATH = "/recommend"
SIGNATURE_NAME = "serving_default"  # TF-Serving's only signature here
DEFAULT_HTTP_HOST = "127.0.0.1"
# Host names of this machine's loopback: no proxy for them, and the local default is no token there.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_HTTP_PORT = 8000
DEFAULT_GRPC_PORT = 9000  # the OIP gRPC service through Ray Serve's gRPC proxy
DEFAULT_URL = f"http://{DEFAULT_HTTP_HOST}:{DEFAULT_HTTP_PORT}"
DEFAULT_GRPC_ADDRESS = f"{DEFAULT_HTTP_HOST}:{DEFAULT_GRPC_PORT}"
# What Serve's gRPC proxy registers (gRPCOptions.grpc_servicer_functions): the generated OIP stubs.
GRPC_SERVICER = "sentinel_ml.serving.grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server"
GRPC_SERVICE = "inference.GRPCInferenceService"
# How `sentinel predict` can ask: /recommend, TF-Serving REST, OIP REST (v2), OIP gRPC.
PROTOCOLS = ("recommend", "tfserving", "v2", "grpc")
# The application as Ray Serve and a RayService's serveConfigV2 import it (a string: no Ray here).
IMPORT_PATH = "sentinel_ml.serve:app_builder"
