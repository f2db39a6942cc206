"""The embedded local target: jobs on Ray on this machine, checkpoints on local disk or S3
(``LocalBackend``); a platform of prerequisites to check (``LocalPlatform``, the checks in ``platform``)."""

from __future__ import annotations

from sentinel_cli.backends.base import Unsupported
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
    from_data,
)
from sentinel_cli.k8s.request import KubeRequest, PlatformRequest, check_local

NAME = "local"


class LocalBackend:
    name = NAME

    def train(self, config, deploy: KubeRequest) -> TrainReport:
        from sentinel_cli.progress import train_progress
        from sentinel_ml.training.run import train

        check_local(deploy)
        return from_data(TrainReport, train(config, on_progress=train_progress).summary())

    def tune(self, config, deploy: KubeRequest) -> TuneReport:
        from sentinel_cli.progress import tune_progress
        from sentinel_ml.tuning.study import tune

        check_local(deploy)
        return from_data(TuneReport, tune(config, on_progress=tune_progress).summary())

    def serve(self, request, deploy: KubeRequest) -> ServeReport:
        from sentinel_cli.backends.local import serving
        from sentinel_cli.progress import serve_progress

        check_local(deploy)
        return from_data(ServeReport, serving.start(request, on_progress=serve_progress))

    def serve_stop(self, deploy: KubeRequest) -> StopReport:
        from sentinel_cli.backends.local import serving

        check_local(deploy)
        return from_data(StopReport, serving.stop())

    def serving_model(self, storage: str | None, deploy: KubeRequest) -> ServingModel:
        from sentinel_cli.backends.local import serving
        from sentinel_ml.paths import storage_root

        check_local(deploy)
        return ServingModel(**(serving.current() or {"checkpoint": None}), storage=storage_root(storage))

    def status(self, storage: str | None, limit: int, deploy: KubeRequest) -> StatusReport:
        from dataclasses import asdict

        from sentinel_cli.backends.local import serving
        from sentinel_ml.paths import storage_root
        from sentinel_ml.store.index import read_records

        check_local(deploy)
        root = storage_root(storage)
        records = read_records(root)
        described = serving.describe()
        return StatusReport(target=self.name, storage=root, runs=[asdict(r) for r in records[:limit]],
                            serving=from_data(ServeReport, described) if described is not None else None)

    def logs(self, name: str, follow: bool, deploy: KubeRequest) -> LogsReport:
        raise _kubernetes_only("logs")

    def delete(self, name: str, deploy: KubeRequest) -> DeleteReport:
        raise _kubernetes_only("delete")


def _kubernetes_only(command: str) -> Unsupported:
    return Unsupported(f"`sentinel {command}` works on the Kubernetes target only",
                       hint="drop --target, or use --target k8s")


class LocalPlatform:
    """``up``/``down``/``doctor`` on the local target: nothing to install, prerequisites to check."""

    name = "local"

    def up(self, request: PlatformRequest) -> CheckReport:
        from sentinel_cli.backends.local.platform import prerequisites

        check_local(request)
        return _report(prerequisites(request.data, request.storage, request.mlflow_uri))

    def down(self, request: PlatformRequest) -> CheckReport:
        from sentinel_cli.checks import SKIP, Item

        check_local(request)
        return _report([Item("platform", SKIP, "nothing installed on the local target; data stays in $SENTINEL_HOME")])

    def doctor(self, request: PlatformRequest) -> CheckReport:
        from sentinel_cli.backends.local.platform import doctor

        check_local(request)
        return _report(doctor(request.data, request.storage, request.mlflow_uri))


def _report(items: list) -> CheckReport:
    from sentinel_cli.checks import report

    return from_data(CheckReport, report("local", items))
