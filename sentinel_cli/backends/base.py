"""The interface every target implements: what the commands ask of it, as typed requests.

Each method takes the command's request and its Kubernetes options (a ``KubeRequest``); a target
refuses the options it cannot honour before any work starts. Results are plain dicts that the
commands print (``-o table|json|yaml``); failures are ``SentinelError`` types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sentinel_cli.k8s.request import KubeRequest
    from sentinel_ml.serving.config import ServeRequest
    from sentinel_ml.training.config import TrainConfig
    from sentinel_ml.tuning.config import StudyConfig


@runtime_checkable
class Backend(Protocol):
    name: str

    def train(self, config: TrainConfig, deploy: KubeRequest) -> dict[str, Any]: ...

    def tune(self, config: StudyConfig, deploy: KubeRequest) -> dict[str, Any]: ...

    def serve(self, request: ServeRequest, deploy: KubeRequest) -> dict[str, Any]: ...

    def serve_stop(self, deploy: KubeRequest) -> dict[str, Any]: ...

    def status(self, storage: str | None, limit: int, deploy: KubeRequest) -> dict[str, Any]: ...
