"""The serving application's names and defaults, defined once, and what ``sentinel serve`` asks a
backend for: plain data, cheap to import (no Ray, no FastAPI). The local target, the RayService
manifest, the profile's ``serve`` settings and the application itself all read them from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sentinel_ml.errors import ConfigError

APP_NAME = "sentinel"
DEPLOYMENT_NAME = "MovieRecommender"
ROUTE_PREFIX = "/recommend"
DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8000
DEFAULT_URL = f"http://{DEFAULT_HTTP_HOST}:{DEFAULT_HTTP_PORT}"
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
    timeout_s: float | None = None  # bound on the wait until it serves; None: the target's default
    app_args: dict[str, Any] = field(default_factory=dict)  # ServeArgs overrides (replicas, CPUs, …)

    def validate(self) -> None:
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port} is not a TCP port", hint="use 1-65535, e.g. 8000")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError("--timeout must be positive")
        if not self.checkpoint.strip():
            raise ConfigError("--checkpoint is empty", hint="use latest, best, a run id or a checkpoint URI")

    def with_local_defaults(self, timeout_s: float) -> ServeRequest:
        """This request with the local target's defaults filled in."""
        from dataclasses import replace

        return replace(self, host=self.host or DEFAULT_HTTP_HOST, port=self.port or DEFAULT_HTTP_PORT,
                       timeout_s=self.timeout_s or timeout_s)

    @property
    def url(self) -> str:
        return f"http://{self.host or DEFAULT_HTTP_HOST}:{self.port or DEFAULT_HTTP_PORT}"
