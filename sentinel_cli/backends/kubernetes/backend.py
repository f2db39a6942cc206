"""The Kubernetes target. Its jobs: each command's plan (``plan``) applied and followed (``run``),
and what it made, looked at (``inspect``); ``RenderBackend`` stands in for them under ``sentinel
render``. Its platform: ``up``/``down``/``doctor`` (``platform``)."""

from __future__ import annotations

from sentinel_cli.backends.base import Unsupported
from sentinel_cli.backends.kubernetes import inspect, plan, run
from sentinel_cli.backends.results import (
    CanaryReport,
    CheckReport,
    DeleteReport,
    LogsReport,
    Rendered,
    ServeReport,
    ServingModel,
    StatusReport,
    StopReport,
    TrainReport,
    TuneReport,
    from_data,
)
from sentinel_cli.k8s.request import KubeRequest, PlatformRequest

NAME = run.NAME


class KubernetesBackend:
    """Applies the plan with server-side apply and follows it to an outcome."""

    name = NAME

    def train(self, config, deploy: KubeRequest) -> TrainReport:
        return run.run_job(plan.plan_train(config, deploy), deploy, TrainReport)

    def tune(self, config, deploy: KubeRequest) -> TuneReport:
        return run.run_job(plan.plan_tune(config, deploy), deploy, TuneReport)

    def serve(self, request, deploy: KubeRequest) -> ServeReport:
        return run.serve(plan.plan_serve(request, deploy, live=True), deploy)

    def serve_canary(self, decision: str, watch, timeout_s: float | None, deploy: KubeRequest) -> CanaryReport:
        """End the canary in the RayService's spec: the candidate alone (promote) or the incumbent alone."""
        if watch is not None:
            raise Unsupported("`serve promote --auto` is not available on k8s yet (the watch of the "
                              "per-version metrics through the API server is still to come)",
                              hint="read the per-version counts on the head's metrics port, then run `sentinel "
                                   "serve promote --target k8s` or `sentinel serve rollback --target k8s`")
        planned = plan.plan_canary_end(decision, deploy, timeout_s)
        served = run.serve(planned, deploy)
        return CanaryReport(decision=decision, checkpoint=planned.checkpoint, run_id=planned.run_id,
                            model_version=str(planned.model_version), ended_canary=planned.ended or {},
                            state=served.state)

    def serve_stop(self, deploy: KubeRequest) -> StopReport:
        raise Unsupported("`sentinel serve stop` stops the local application",
                          hint="on k8s use `sentinel delete <rayservice name> --target k8s`")

    def serving_model(self, storage: str | None, deploy: KubeRequest) -> ServingModel:
        return inspect.serving_model(storage, deploy)

    def status(self, storage: str | None, limit: int, deploy: KubeRequest) -> StatusReport:
        return inspect.status(storage, limit, deploy)

    def logs(self, name: str, follow: bool, deploy: KubeRequest) -> LogsReport:
        return inspect.logs(name, follow, deploy)

    def delete(self, name: str, deploy: KubeRequest) -> DeleteReport:
        return inspect.delete(name, deploy)


class RenderBackend:
    """Stands in for the Kubernetes target under ``sentinel render``: each command returns the
    objects it would apply (``Rendered``, a ``v1 List``), and nothing is sent to a cluster."""

    name = NAME

    def train(self, config, deploy: KubeRequest) -> Rendered:
        return _rendered(plan.plan_train(config, deploy).objects)

    def tune(self, config, deploy: KubeRequest) -> Rendered:
        return _rendered(plan.plan_tune(config, deploy).objects)

    def serve(self, request, deploy: KubeRequest) -> Rendered:
        # Nothing is read from the cluster but, for --canary, the RayService it joins.
        return _rendered(plan.plan_serve(request, deploy).objects)

    def cluster(self, deploy: KubeRequest) -> Rendered:
        return _rendered(plan.plan_cluster(deploy).objects)

    def serve_canary(self, decision: str, watch, timeout_s: float | None, deploy: KubeRequest):
        raise Unsupported(f"nothing to render for `serve {decision}`")

    def serve_stop(self, deploy: KubeRequest) -> StopReport:
        raise Unsupported("nothing to render for `serve stop`")

    def serving_model(self, storage: str | None, deploy: KubeRequest) -> ServingModel:
        raise Unsupported("nothing to render for `promote`", hint="render `serve --checkpoint X` instead")

    def status(self, storage: str | None, limit: int, deploy: KubeRequest) -> StatusReport:
        raise Unsupported("nothing to render for `status`")

    def logs(self, name: str, follow: bool, deploy: KubeRequest) -> LogsReport:
        raise Unsupported("nothing to render for `logs`")

    def delete(self, name: str, deploy: KubeRequest) -> DeleteReport:
        raise Unsupported("nothing to render for `delete`")


class KubernetesPlatform:
    """``up``/``down``/``doctor`` on the cluster of the kubeconfig and profile."""

    name = "k8s"

    def up(self, request: PlatformRequest) -> CheckReport:
        from sentinel_cli.backends.kubernetes.platform import UpRequest, up

        settings = _settings(request, request.storage)
        result = up(settings, UpRequest(crds=request.crds, metrics_server=request.metrics_server,
                                        role_arn=request.role_arn, dry_run=request.dry_run,
                                        operator=request.operator, wait=request.wait,
                                        timeout_s=request.timeout_s))
        if request.advise and "profile" in result:  # not when the cluster could not be reached
            _suggest_profile(settings, result["profile"])
        return from_data(CheckReport, result)

    def down(self, request: PlatformRequest) -> CheckReport:
        from sentinel_cli.backends.kubernetes.platform import down

        return from_data(CheckReport, down(_settings(request, None), purge=request.purge, dry_run=request.dry_run,
                                           wait=request.wait, timeout_s=request.timeout_s))

    def doctor(self, request: PlatformRequest) -> CheckReport:
        from sentinel_cli.backends.kubernetes.platform import doctor

        return from_data(CheckReport, doctor(_settings(request, request.storage)))


def _rendered(objects: list) -> Rendered:
    from sentinel_cli.backends.kubernetes.run import warn_open

    warn_open(objects)
    return Rendered(items=objects)


def _settings(request: PlatformRequest, storage: str | None):
    from sentinel_cli.k8s import settings
    from sentinel_cli.k8s.request import Overrides

    return settings.load(Overrides(profile=request.profile, namespace=request.namespace, storage=storage))


def _suggest_profile(settings, wanted: dict) -> None:
    """Say which profile keys point jobs at this platform's MinIO and MLflow, when they do not yet."""
    from sentinel_cli.progress import kube_say

    current = {"s3": settings.s3.model_dump(), "mlflow_uri": settings.mlflow_uri}
    if current == wanted:
        return
    keys = [f"kubernetes.s3.endpoint: {wanted['s3']['endpoint']}",
            f"kubernetes.s3.credentials_secret: {wanted['s3']['credentials_secret']}",
            f"kubernetes.mlflow_uri: {wanted['mlflow_uri']}"]
    kube_say("to keep checkpoints in this platform's MinIO and track runs in its MLflow, set in the "
             "profile: " + "; ".join(keys) + " (and kubernetes.storage: s3://<bucket>/<prefix>)")
