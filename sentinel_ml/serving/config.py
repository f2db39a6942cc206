"""What ``sentinel serve`` asks a backend for: plain data, cheap to import (no Ray, no FastAPI)."""

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


@dataclass(frozen=True)
class ServeRequest:
    checkpoint: str = "latest"  # latest | best | <run id> | <URI>
    storage: str | None = None  # checkpoint root holding the index; None: $SENTINEL_STORAGE or default
    data: str | None = None  # dataset source for titles and rated movies
    host: str = DEFAULT_HTTP_HOST
    port: int = DEFAULT_HTTP_PORT
    timeout_s: float = 180.0  # bound on the wait for the health check
    app_args: dict[str, Any] = field(default_factory=dict)  # ServeArgs overrides (replicas, CPUs, …)

    def validate(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port} is not a TCP port", hint="use 1-65535, e.g. 8000")
        if self.timeout_s <= 0:
            raise ConfigError("--timeout must be positive")
        if not self.checkpoint.strip():
            raise ConfigError("--checkpoint is empty", hint="use latest, best, a run id or a checkpoint URI")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
