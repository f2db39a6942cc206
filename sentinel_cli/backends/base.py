"""The two interfaces every target implements, as typed requests in and typed results out.

``JobTarget``: the work (train, tune, serve, serve stop, status, logs, delete). ``PlatformTarget``:
what the work runs on (up, down, doctor). Each method takes the command's request and, for jobs, its
Kubernetes options (a ``KubeRequest``); a target refuses the options it cannot honour before any work
starts, and a command it cannot run at all with ``Unsupported``. Results are the dataclasses of
``results``; failures are ``SentinelError`` types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from sentinel_ml.errors import ConfigError

if TYPE_CHECKING:
    from sentinel_cli.backends.results import (
        CheckReport,
        DeleteReport,
        LogsReport,
        ServeReport,
        ServingModel,
        StatusReport,
        StopReport,
        TrainReport,
        TuneReport,
    )
    from sentinel_cli.k8s.request import KubeRequest, PlatformRequest
    from sentinel_ml.serving.config import ServeRequest
    from sentinel_ml.training.config import TrainConfig
    from sentinel_ml.tuning.config import StudyConfig


class Unsupported(ConfigError):
    """The chosen target cannot run this command (exit 2); the hint names what can."""


@runtime_checkable
class JobTarget(Protocol):
    name: str

    def train(self, config: TrainConfig, deploy: KubeRequest) -> TrainReport: ...

    def tune(self, config: StudyConfig, deploy: KubeRequest) -> TuneReport: ...

    def serve(self, request: ServeRequest, deploy: KubeRequest) -> ServeReport: ...

    def serve_stop(self, deploy: KubeRequest) -> StopReport: ...

    def serving_model(self, storage: str | None, deploy: KubeRequest) -> ServingModel:
        """What serves now (the quality gate's incumbent; ``checkpoint`` None when nothing does)."""
        ...

    def status(self, storage: str | None, limit: int, deploy: KubeRequest) -> StatusReport: ...

    def logs(self, name: str, follow: bool, deploy: KubeRequest) -> LogsReport: ...

    def delete(self, name: str, deploy: KubeRequest) -> DeleteReport: ...


@runtime_checkable
class PlatformTarget(Protocol):
    name: str

    def up(self, request: PlatformRequest) -> CheckReport: ...

    def down(self, request: PlatformRequest) -> CheckReport: ...

    def doctor(self, request: PlatformRequest) -> CheckReport: ...
