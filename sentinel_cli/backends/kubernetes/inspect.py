"""Looking at what Sentinel made on a cluster: ``status`` (one LIST call per kind, filtered by label
on the server, beside the checkpoint index's newest runs), ``logs`` and ``delete``."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from sentinel_cli.backends.kubernetes.plan import load_settings
from sentinel_cli.backends.kubernetes.run import NAME, connect, detached, finish_job
from sentinel_cli.backends.results import DeleteReport, LogsReport, ManagedObject, ServingModel, StatusReport
from sentinel_cli.k8s.request import KubeRequest, Overrides
from sentinel_cli.progress import kube_line as _driver_line
from sentinel_cli.progress import kube_say as _say
from sentinel_cli.progress import kube_waiting as _waiting
from sentinel_ml.errors import ConfigError, SentinelError


def status(storage: str | None, limit: int, deploy: KubeRequest) -> StatusReport:
    """The managed objects (the newest ``limit`` RayJobs, every RayService and standalone RayCluster)
    and the newest runs in ``storage`` (--storage, else the profile's)."""
    from sentinel_cli.k8s import manifests
    from sentinel_cli.k8s.client import RAYCLUSTER, RAYJOB, RAYSERVICE
    settings = load_settings(deploy, Overrides(storage=storage))
    now = datetime.now(timezone.utc)
    with connect(settings) as kube:
        everywhere = deploy.all_namespaces
        jobs = kube.list(RAYJOB, manifests.SELECTOR, everywhere)
        services = kube.list(RAYSERVICE, manifests.SELECTOR, everywhere)
        clusters = kube.list(RAYCLUSTER, manifests.SELECTOR, everywhere)
        schedules = _schedules(kube, everywhere)
        namespace = "*" if everywhere else kube.namespace
    jobs.sort(key=_created, reverse=True)
    standalone = [c for c in clusters if "ray.io/originated-from-crd" not in _labels(c)]
    rows = ([_job_row(j, now) for j in jobs[:limit]] + [_service_row(s, now) for s in services]
            + [_cluster_row(c, now) for c in standalone])
    return StatusReport(target=NAME, namespace=namespace, objects=rows,
                        counts={"RayJob": len(jobs), "RayService": len(services), "RayCluster": len(standalone)},
                        shown_jobs=min(limit, len(jobs)), schedules=schedules, **_runs(settings.storage, limit))


def serving_model(storage: str | None, deploy: KubeRequest) -> ServingModel:
    """The checkpoint the RayService (--name, else the profile's serve.name) serves, from the annotation
    and run-id label ``serve`` writes; ``checkpoint`` None when there is no such RayService."""
    from sentinel_cli.k8s import manifests
    from sentinel_cli.k8s.client import RAYSERVICE

    settings = load_settings(deploy, Overrides(storage=storage))
    name = deploy.name or settings.serve.name
    with connect(settings) as kube:
        service = kube.get(RAYSERVICE, name)
        namespace = kube.namespace
    checkpoint = _checkpoint(service) if service is not None else None
    if checkpoint is None:
        return ServingModel(checkpoint=None, storage=settings.storage)
    return ServingModel(checkpoint=checkpoint, run_id=_labels(service).get(manifests.RUN_ID),
                        storage=settings.storage, where=f"RayService {name} in namespace {namespace}")


def _schedules(kube, everywhere: bool) -> list:
    """The retraining schedules; a user whose RBAC does not cover CronJobs still gets the rest."""
    from sentinel_cli.k8s.client import Forbidden
    from sentinel_cli.schedules import kube as scheduled

    try:
        return scheduled.rows(kube, everywhere)
    except Forbidden:
        return []


def _runs(storage: str | None, limit: int) -> dict[str, Any]:
    """The checkpoint index's newest runs, beside the objects; an unreachable store is said, not fatal."""
    if not storage:
        return {"storage": None, "runs": []}
    from dataclasses import asdict

    from sentinel_ml.store.index import read_records

    try:
        records = read_records(storage)
    except SentinelError as e:
        return {"storage": storage, "runs": [], "runs_error": f"{e.message} ({e.hint})" if e.hint else e.message}
    return {"storage": storage, "runs": [asdict(r) for r in records[:limit]]}


def logs(name: str, follow: bool, deploy: KubeRequest) -> LogsReport:
    """Print the driver log of a RayJob (its submitter pod) or the head log of a RayService or
    RayCluster; with ``follow``, a RayJob until it ends (its outcome decides the exit code)."""
    from sentinel_cli.k8s.client import RAYJOB, NotFound
    from sentinel_cli.k8s.watch import SUBMITTER_CONTAINER, follow_pod, follow_rayjob, rayjob_pods, rayjob_state

    settings = load_settings(deploy)
    timeout = deploy.timeout_s if deploy.timeout_s is not None else settings.wait_timeout_s
    with connect(settings) as kube:
        job = kube.get(RAYJOB, name)
        if job is None:
            return _head_logs(kube, name, follow)
        state = rayjob_state(job)
        if follow and not state.terminal:
            try:
                state = follow_rayjob(kube, name, timeout_s=timeout, on_line=_driver_line, on_wait=_waiting)
            except KeyboardInterrupt:
                raise detached("RayJob", name, kube.namespace, follow=True) from None
            return LogsReport(kind="RayJob", name=name, **finish_job(state, kube.namespace))
        _, submitter = rayjob_pods(kube, name, None)
        if submitter is None:
            raise NotFound(f"RayJob {name} has no submitter pod yet ({state.describe()})",
                           hint=f"follow it until it starts: sentinel logs {name} -n {kube.namespace} -f")
        follow_pod(kube, submitter["metadata"]["name"], SUBMITTER_CONTAINER, _driver_line, follow=False)
        return LogsReport(kind="RayJob", name=name, state=state.describe())


def _head_logs(kube, name: str, follow: bool) -> LogsReport:
    """The head's log of the RayService or RayCluster ``name``."""
    from sentinel_cli.k8s.client import RAYCLUSTER, RAYSERVICE, NotFound
    from sentinel_cli.k8s.watch import HEAD_CONTAINER, follow_pod, rayservice_state

    service = kube.get(RAYSERVICE, name)
    clusters: tuple[str, ...] = ()
    kind = "RayService"
    if service is not None:
        clusters = rayservice_state(service).clusters
    elif kube.get(RAYCLUSTER, name) is not None:
        kind, clusters = "RayCluster", (name,)
    else:
        raise NotFound(f"no RayJob, RayService or RayCluster named {name} in namespace {kube.namespace}",
                       hint="list them: sentinel status --target k8s")
    heads = [p for c in clusters for p in kube.pods(f"ray.io/cluster={c},ray.io/node-type=head")]
    if not heads:
        raise NotFound(f"{kind} {name} has no head pod yet", hint="wait for its cluster: sentinel status --target k8s")
    follow_pod(kube, heads[-1]["metadata"]["name"], HEAD_CONTAINER, _driver_line, follow=follow)
    return LogsReport(kind=kind, name=name)


def delete(name: str, deploy: KubeRequest) -> DeleteReport:
    """Delete what Sentinel made under ``name`` (its pods and clusters follow); others are refused."""
    from sentinel_cli.k8s import manifests, security
    from sentinel_cli.k8s.client import NETWORKPOLICY, RAY_KINDS, RAYSERVICE, SECRET, SERVICE, NotFound

    with connect(load_settings(deploy)) as kube:
        for kind in RAY_KINDS:
            obj = kube.get(kind, name)
            if obj is None:
                continue
            if _labels(obj).get(manifests.MANAGED_BY) != manifests.MANAGER:
                raise ConfigError(f"{kind.kind} {name} is not managed by Sentinel; not deleting it",
                                  hint=f"delete it with kubectl if you mean to: kubectl delete "
                                       f"{kind.plural} {name} -n {kube.namespace}")
            if deploy.dry_run:
                return DeleteReport(kind=kind.kind, name=name, namespace=kube.namespace, deleted=False, dry_run=True)
            kube.delete(kind, name)
            _say(f"deleted {kind.kind} {name} in namespace {kube.namespace}")
            if kind is RAYSERVICE:  # its gRPC Service and serving token (the token also goes with its owner)
                for extra, extra_name in ((SERVICE, manifests.grpc_service_name(name)),
                                          (SECRET, manifests.serve_token_secret(name))):
                    obj = kube.get(extra, extra_name)
                    if obj is not None and _labels(obj).get(manifests.MANAGED_BY) == manifests.MANAGER:
                        kube.delete(extra, extra_name)
            for policy_name in security.policy_names(name):  # its NetworkPolicies, once its pods are going
                policy = kube.get(NETWORKPOLICY, policy_name)
                if policy is not None and _labels(policy).get(manifests.MANAGED_BY) == manifests.MANAGER:
                    kube.delete(NETWORKPOLICY, policy_name)
            return DeleteReport(kind=kind.kind, name=name, namespace=kube.namespace, deleted=True)
        raise NotFound(f"no RayJob, RayService or RayCluster named {name} in namespace {kube.namespace}",
                       hint="list them: sentinel status --target k8s")


def age(created: str, now: datetime) -> str:
    if not created:
        return "-"
    seconds = int((now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("labels") or {}


def _created(obj: dict[str, Any]) -> str:
    return obj["metadata"].get("creationTimestamp") or ""


def _checkpoint(obj: dict[str, Any]) -> str | None:
    from sentinel_cli.k8s import manifests

    return (obj["metadata"].get("annotations") or {}).get(manifests.CHECKPOINT)


def _row(obj: dict[str, Any], kind: str, state: str, now: datetime, checkpoint: str | None) -> ManagedObject:
    from sentinel_cli.k8s import manifests

    meta = obj["metadata"]
    return ManagedObject(kind=kind, name=meta["name"], namespace=meta.get("namespace"), state=state,
                         age=age(meta.get("creationTimestamp") or "", now), created=meta.get("creationTimestamp"),
                         run_id=_labels(obj).get(manifests.RUN_ID), checkpoint=checkpoint)


def _job_row(obj: dict[str, Any], now: datetime) -> ManagedObject:
    from sentinel_cli.k8s.watch import rayjob_state

    state = rayjob_state(obj)
    text = state.deployment + (f" ({state.job_status})" if state.job_status else "")
    return _row(obj, "RayJob", text, now, _checkpoint(obj))


def _service_row(obj: dict[str, Any], now: datetime) -> ManagedObject:
    from sentinel_cli.k8s.watch import rayservice_state

    state = rayservice_state(obj)
    text = "Ready" if state.ready else f"NotReady ({state.reason or 'starting'})"
    if state.upgrading:
        text += ", upgrading"
    from sentinel_cli.backends.kubernetes.canary import live_args

    row = replace(_row(obj, "RayService", text, now, _checkpoint(obj)), auth=_serve_auth(obj))
    args = live_args(obj)
    return replace(row, canary=args.canary) if args is not None and args.canary else row


def _serve_auth(obj: dict[str, Any]) -> str:
    """The serving API's auth mode, from the application's args in serveConfigV2 (a path, never a token)."""
    import yaml

    try:
        apps = yaml.safe_load((obj.get("spec") or {}).get("serveConfigV2") or "{}").get("applications") or []
    except (yaml.YAMLError, AttributeError):
        return "?"
    return next(((app.get("args") or {}).get("auth") or "none" for app in apps), "none")


def _cluster_row(obj: dict[str, Any], now: datetime) -> ManagedObject:
    status = obj.get("status") or {}
    return _row(obj, "RayCluster", status.get("state") or "pending", now, None)

