"""The serving application's names and defaults, defined once, and what ``sentinel serve`` asks a
backend for: plain data, cheap to import (no Ray, no FastAPI). The local target, the RayService
manifest, the profile's ``serve`` settings and the application itself all read them from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sentinel_ml.errors import ConfigError

APP_NAME = "sentinel"
DEPLOYMENT_NAME = "MovieRecommender"
# Serve mounts the application at the root: it answers /recommend, TF-Serving's /v1 and the Open
# Inference Protocol's /v2 on the one HTTP port.
ROUTE_PREFIX = "/"
RECOMMEND_PATH = "/recommend"
MODEL_NAME = "recommender"  # the model's name in TF-Serving and OIP requests (ServeArgs.model_name)
SIGNATURE_NAME = "serving_default"  # TF-Serving's only signature here
DEFAULT_HTTP_HOST = "127.0.0.1"
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
# Autoscaling of the deployment (DESIGN.md): min 1, max 5 replicas, 5 ongoing requests per replica,
# upscale after 1 s, downscale after 30 s.
AUTOSCALING = {"min_replicas": 1, "max_replicas": 5, "target_ongoing_requests": 5.0,
               "upscale_delay_s": 1.0, "downscale_delay_s": 30.0}


@dataclass(frozen=True)
class ServeRequest:
    checkpoint: str = "latest"  # latest | best | <run id> | <URI>
    storage: str | None = None  # checkpoint root holding the index; None: $SENTINEL_STORAGE or default
    data: str | None = None  # dataset source for titles and rated movies
    host: str | None = None  # local target: the listen address; None: DEFAULT_HTTP_HOST
    port: int | None = None  # None: the target's default (8000; k8s: the profile's serve.port)
    grpc_port: int | None = None  # None: the target's default (9000; k8s: the profile's serve.grpc_port)
    timeout_s: float | None = None  # bound on the wait until it serves; None: the target's default
    app_args: dict[str, Any] = field(default_factory=dict)  # ServeArgs overrides (replicas, CPUs, …)

    def validate(self) -> None:
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port} is not a TCP port", hint="use 1-65535, e.g. 8000")
        if self.grpc_port is not None and not 1 <= self.grpc_port <= 65535:
            raise ConfigError(f"--grpc-port {self.grpc_port} is not a TCP port", hint="use 1-65535, e.g. 9000")
        if (self.grpc_port or DEFAULT_GRPC_PORT) == (self.port or DEFAULT_HTTP_PORT):
            raise ConfigError(f"gRPC port {self.grpc_port or DEFAULT_GRPC_PORT} is also the HTTP port",
                              hint="give HTTP and gRPC different ports, e.g. --port 8000 --grpc-port 9000")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError("--timeout must be positive")
        if not self.checkpoint.strip():
            raise ConfigError("--checkpoint is empty", hint="use latest, best, a run id or a checkpoint URI")

    def with_local_defaults(self, timeout_s: float) -> ServeRequest:
        """This request with the local target's defaults filled in."""
        from dataclasses import replace

        return replace(self, host=self.host or DEFAULT_HTTP_HOST, port=self.port or DEFAULT_HTTP_PORT,
                       grpc_port=self.grpc_port or DEFAULT_GRPC_PORT, timeout_s=self.timeout_s or timeout_s)

    @property
    def url(self) -> str:
        return f"http://{self.host or DEFAULT_HTTP_HOST}:{self.port or DEFAULT_HTTP_PORT}"

    @property
    def grpc_address(self) -> str:
        return f"{self.host or DEFAULT_HTTP_HOST}:{self.grpc_port or DEFAULT_GRPC_PORT}"


def grpc_options(port: int = DEFAULT_GRPC_PORT) -> dict[str, Any]:
    """Ray Serve's ``gRPCOptions`` (``serve.start(grpc_options=…)``, a RayService's ``grpc_options``)."""
    return {"port": port, "grpc_servicer_functions": [GRPC_SERVICER]}


# HAProxy's `retry-on` and `retries` (Ray renders them into its `defaults` section, with `option
# redispatch 1`: each retry goes to another replica). `empty-response`/`junk-response` are layer-7
# retries: HAProxy keeps a copy of the request (up to tune.bufsize, 16 kB; larger requests are not
# replayed) and sends it again when the replica closed the connection without a whole answer. Safe
# because every call of this API is an idempotent read. Locally and in the RayService's pods.
HAPROXY_RETRIES = {"RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response junk-response",
                   "RAY_SERVE_HAPROXY_RETRIES": "3"}
