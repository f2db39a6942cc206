"""The Kubernetes target: KubeRay RayJobs (train, tune), a RayService (serve), RayClusters.

Every function renders the objects (``render``), applies them with server-side apply
(``kube.Kube.apply``) and, unless told not to wait, follows them to an outcome (``watch``). The
RayJob's status decides the exit code: JobFailed (1), WaitTimeout (3); Ctrl-C while following
raises ``Detached`` with the command that reattaches. Progress goes to stderr, results are returned.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from sentinel_cli.k8s.request import KubeRequest
from sentinel_cli.k8s.settings import KubeSettings
from sentinel_cli.progress import kube_line as _driver_line
from sentinel_cli.progress import kube_say as _say
from sentinel_cli.progress import kube_waiting as _waiting
from sentinel_cli.progress import kube_warning as _warn
from sentinel_ml.errors import ConfigError, Detached, JobFailed, SentinelError, StorageError

NAME = "k8s"


# -- the plan: what a command applies, shared by running it and rendering it --------------------


@dataclass(frozen=True)
class Plan:
    what: str  # train | tune | serve | cluster
    name: str
    settings: KubeSettings
    objects: list[dict[str, Any]]
    checkpoint: str | None = None  # serve: the exact URI resolved
    run_id: str | None = None  # serve: the run it came from


def plan(what: str, request, deploy: KubeRequest) -> Plan:
    """Exactly the objects ``what`` applies for ``request``: the TrainConfig (train), StudyConfig
    (tune), ServeRequest or checkpoint reference (serve; a named one is resolved through the index
    in S3), or nothing (cluster). Pure but for that index read."""
    from sentinel_cli.k8s import manifests
    from sentinel_cli.k8s.render import render
    from sentinel_ml.store.index import new_run_id

    deploy = _from_request(deploy, request)
    settings = _settings(deploy)
    if what in ("train", "tune"):
        request.validate()
        name = deploy.name or request.run_id or new_run_id(what)
        values = (manifests.train_values(settings, request, name) if what == "train"
                  else manifests.tune_values(settings, request, name))
        return Plan(what, name, settings, render(what, values))
    if what == "serve":
        uri, run_id = resolve_checkpoint(_checkpoint_reference(request), settings)
        values = manifests.serve_values(settings, uri, run_id, deploy.name)
        return Plan(what, values["name"], settings, render(what, values), checkpoint=uri, run_id=run_id)
    if what == "cluster":
        name = deploy.name or "sentinel"
        return Plan(what, name, settings, render(what, manifests.cluster_values(settings, name)))
    raise ConfigError(f"nothing to render for {what!r}", hint="use train, tune, serve or cluster")


class KubernetesBackend:
    """Applies the plan with server-side apply and follows it to an outcome."""

    name = NAME

    def train(self, config, deploy: KubeRequest) -> dict[str, Any]:
        return _run_job(plan("train", config, deploy), deploy)

    def tune(self, config, deploy: KubeRequest) -> dict[str, Any]:
        return _run_job(plan("tune", config, deploy), deploy)

    def serve(self, request, deploy: KubeRequest) -> dict[str, Any]:
        return serve(request, deploy)

    def serve_stop(self, deploy: KubeRequest) -> dict[str, Any]:
        raise ConfigError("`sentinel serve stop` stops the local application",
                          hint="on k8s use `sentinel delete <rayservice name> --target k8s`")

    def status(self, storage: str | None, limit: int, deploy: KubeRequest) -> dict[str, Any]:
        return status(limit, deploy)


class RenderBackend:
    """Stands in for the Kubernetes backend under ``sentinel render``: each command returns the
    objects it would apply, as a ``v1 List``, and nothing is sent to a cluster."""

    name = NAME

    def _list(self, what: str, request, deploy: KubeRequest) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "List", "items": plan(what, request, deploy).objects}

    def train(self, config, deploy: KubeRequest) -> dict[str, Any]:
        return self._list("train", config, deploy)

    def tune(self, config, deploy: KubeRequest) -> dict[str, Any]:
        return self._list("tune", config, deploy)

    def serve(self, request, deploy: KubeRequest) -> dict[str, Any]:
        return self._list("serve", request, deploy)

    def cluster(self, deploy: KubeRequest) -> dict[str, Any]:
        return self._list("cluster", None, deploy)

    def serve_stop(self, deploy: KubeRequest) -> dict[str, Any]:
        raise ConfigError("nothing to render for `serve stop`")

    def status(self, storage: str | None, limit: int, deploy: KubeRequest) -> dict[str, Any]:
        raise ConfigError("nothing to render for `status`")


# -- commands ----------------------------------------------------------------------------------


def serve(request, deploy: KubeRequest | None = None) -> dict[str, Any]:
    """Resolve the checkpoint through the index in S3, apply the RayService, wait until Ready.

    ``request``: a checkpoint reference (latest, best, run id, s3:// URI) or an object with one in
    ``.checkpoint`` (the serve command's request).
    """
    from sentinel_cli.k8s import manifests
    from sentinel_cli.k8s.client import RAYSERVICE
    from sentinel_cli.k8s.watch import wait_rayservice

    deploy = deploy or KubeRequest()
    planned = plan("serve", request, deploy)
    uri, run_id, name, settings = planned.checkpoint, planned.run_id, planned.name, planned.settings
    _say(f"checkpoint: {uri}" + (f" (run {run_id})" if run_id else ""))
    with _connect(settings) as kube:
        previous = kube.get(RAYSERVICE, name) if not deploy.dry_run else None
        applied = _apply(kube, planned.objects, deploy.dry_run)
        result = {"target": NAME, "namespace": kube.namespace, "rayservice": name, "checkpoint": uri,
                  "run_id": run_id, "endpoint": endpoint(name, kube.namespace, settings.serve.port),
                  "grpc_endpoint": grpc_endpoint(name, kube.namespace, settings.serve.grpc_port)}
        if deploy.dry_run:
            return {**result, "dry_run": True, "objects": applied}
        before = _annotation(previous, manifests.CHECKPOINT)
        if previous is not None and before != uri:
            _say(f"upgrading RayService {name} in place: {before} -> {uri}")
        result["previous_checkpoint"] = before
        if not deploy.wait:
            return {**result, "state": "applied"}
        try:
            state = wait_rayservice(kube, name, timeout_s=_timeout(deploy, settings), on_wait=_waiting)
        except KeyboardInterrupt:
            raise _detached("RayService", name, kube.namespace, follow=False) from None
        _say(f"RayService {name} is Ready")
        return {**result, "state": "Ready", "applications": {k: v[0] for k, v in state.applications.items()}}


def cluster(deploy: KubeRequest | None = None) -> dict[str, Any]:
    """A standalone RayCluster (for interactive work); returns once applied."""
    planned = plan("cluster", None, deploy or KubeRequest())
    with _connect(planned.settings) as kube:
        applied = _apply(kube, planned.objects, (deploy or KubeRequest()).dry_run)
        return {"target": NAME, "namespace": kube.namespace, "objects": applied}


def _checkpoint_reference(request) -> str:
    """A checkpoint reference from a string or a request object that has one (``.checkpoint``)."""
    return getattr(request, "checkpoint", request) or "latest"


def status(limit: int = 20, deploy: KubeRequest | None = None) -> dict[str, Any]:
    """What Sentinel manages: one LIST call per kind, filtered by label on the server."""
    from sentinel_cli.k8s import manifests
    from sentinel_cli.k8s.client import RAYCLUSTER, RAYJOB, RAYSERVICE

    deploy = deploy or KubeRequest()
    settings = _settings(deploy)
    now = datetime.now(timezone.utc)
    with _connect(settings) as kube:
        everywhere = deploy.all_namespaces
        jobs = kube.list(RAYJOB, manifests.SELECTOR, everywhere)
        services = kube.list(RAYSERVICE, manifests.SELECTOR, everywhere)
        clusters = kube.list(RAYCLUSTER, manifests.SELECTOR, everywhere)
        namespace = "*" if everywhere else kube.namespace
    jobs.sort(key=_created, reverse=True)
    standalone = [c for c in clusters if "ray.io/originated-from-crd" not in _labels(c)]
    rows = ([_job_row(j, now) for j in jobs[:limit]] + [_service_row(s, now) for s in services]
            + [_cluster_row(c, now) for c in standalone])
    return {"target": NAME, "namespace": namespace, "objects": rows,
            "counts": {"RayJob": len(jobs), "RayService": len(services), "RayCluster": len(standalone)},
            "shown_jobs": min(limit, len(jobs)), **_runs(settings.storage, limit)}


def _runs(storage: str | None, limit: int) -> dict[str, Any]:
    """The checkpoint index's newest runs, beside the objects; an unreachable store is said, not fatal."""
    if not storage:
        return {"storage": None, "runs": []}
    from sentinel_ml.store.index import read_records

    try:
        records = read_records(storage)
    except SentinelError as e:
        return {"storage": storage, "runs": [], "runs_error": f"{e.message} ({e.hint})" if e.hint else e.message}
    return {"storage": storage, "runs": [asdict(r) for r in records[:limit]]}


def logs(name: str, follow: bool = False, deploy: KubeRequest | None = None) -> dict[str, Any]:
    """Print the driver log of a RayJob (its submitter pod) or the head log of a RayService."""
    from sentinel_cli.k8s.client import RAYCLUSTER, RAYJOB, RAYSERVICE, NotFound
    from sentinel_cli.k8s.watch import (
        HEAD_CONTAINER,
        SUBMITTER_CONTAINER,
        follow_pod,
        follow_rayjob,
        rayjob_pods,
        rayjob_state,
        rayservice_state,
    )

    deploy = deploy or KubeRequest()
    settings = _settings(deploy)
    with _connect(settings) as kube:
        job = kube.get(RAYJOB, name)
        if job is not None:
            state = rayjob_state(job)
            if follow and not state.terminal:
                try:
                    state = follow_rayjob(kube, name, timeout_s=_timeout(deploy, settings),
                                          on_line=_driver_line, on_wait=_waiting)
                except KeyboardInterrupt:
                    raise _detached("RayJob", name, kube.namespace, follow=True) from None
                return _finish_job(state, kube.namespace, settings, with_record=False)
            _, submitter = rayjob_pods(kube, name, None)
            if submitter is None:
                raise NotFound(f"RayJob {name} has no submitter pod yet ({state.describe()})",
                               hint=f"follow it until it starts: sentinel logs {name} -n {kube.namespace} -f")
            follow_pod(kube, submitter["metadata"]["name"], SUBMITTER_CONTAINER, _driver_line, follow=False)
            return {"kind": "RayJob", "name": name, "state": state.describe()}
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
            raise NotFound(f"{kind} {name} has no head pod yet",
                           hint="wait for its cluster: sentinel status --target k8s")
        follow_pod(kube, heads[-1]["metadata"]["name"], HEAD_CONTAINER, _driver_line, follow=follow)
        return {"kind": kind, "name": name}


def delete(name: str, deploy: KubeRequest | None = None) -> dict[str, Any]:
    """Delete what Sentinel made under ``name`` (its pods and clusters follow); others are refused."""
    from sentinel_cli.k8s import manifests
    from sentinel_cli.k8s.client import RAY_KINDS, RAYSERVICE, SERVICE, NotFound

    deploy = deploy or KubeRequest()
    settings = _settings(deploy)
    with _connect(settings) as kube:
        for kind in RAY_KINDS:
            obj = kube.get(kind, name)
            if obj is None:
                continue
            if _labels(obj).get(manifests.MANAGED_BY) != manifests.MANAGER:
                raise ConfigError(f"{kind.kind} {name} is not managed by Sentinel; not deleting it",
                                  hint=f"delete it with kubectl if you mean to: kubectl delete "
                                       f"{kind.plural} {name} -n {kube.namespace}")
            if deploy.dry_run:
                return {"kind": kind.kind, "name": name, "namespace": kube.namespace, "deleted": False,
                        "dry_run": True}
            kube.delete(kind, name)
            _say(f"deleted {kind.kind} {name} in namespace {kube.namespace}")
            grpc = kube.get(SERVICE, manifests.grpc_service_name(name)) if kind is RAYSERVICE else None
            if grpc is not None and _labels(grpc).get(manifests.MANAGED_BY) == manifests.MANAGER:
                kube.delete(SERVICE, grpc["metadata"]["name"])  # the RayService's gRPC Service (serve)
            return {"kind": kind.kind, "name": name, "namespace": kube.namespace, "deleted": True}
    raise NotFound(f"no RayJob, RayService or RayCluster named {name} in namespace {kube.namespace}",
                   hint="list them: sentinel status --target k8s")


# -- checkpoints -------------------------------------------------------------------------------


def resolve_checkpoint(reference: str, settings) -> tuple[str, str | None]:
    """``latest`` / ``best`` / run id through the index in S3; an s3:// URI as given (pods cannot
    read this machine's files). The run id is kept only when it is a valid label value."""
    from sentinel_cli.k8s.settings import check_label
    from sentinel_ml.store import index

    if index.looks_like_uri(reference) and not reference.startswith("s3://"):
        raise ConfigError(f"checkpoint {reference} is not in S3; pods cannot read this machine's files",
                          hint="use latest, best, a run id, or an s3:// URI")
    root = None if index.looks_like_uri(reference) else settings.require_storage()
    uri, run_id = index.resolve_checkpoint(reference, root, must_exist=False)
    try:
        return uri, check_label(run_id, "run id") if run_id else None
    except ConfigError:
        return uri, None


def read_record(storage: str, run_id: str) -> dict[str, Any] | None:
    """The index record a finished job wrote, or None (with a warning) if it cannot be read."""
    import json

    from sentinel_ml.store import index as checkpoints
    from sentinel_ml.store import uri as store

    uri = store.join(storage, checkpoints.INDEX_DIR, f"{run_id}.json")
    try:
        record = checkpoints.RunRecord.from_dict(json.loads(store.read_bytes(uri)))
    except StorageError as e:
        _warn(f"the job succeeded but its index record {uri} cannot be read: {e.message}"
              + (f" ({e.hint})" if e.hint else ""))
        return None
    except (ValueError, TypeError) as e:
        _warn(f"the index record {uri} is damaged: {e}")
        return None
    return {**asdict(record), "index_uri": uri}


# -- helpers -----------------------------------------------------------------------------------


def _from_request(deploy: KubeRequest | None, request) -> KubeRequest:
    """Settings a command's request carries (--storage, --mlflow-uri; serve's --port and replica
    bounds) override the profile, as flags. Each travels once: in the request."""
    from dataclasses import replace

    deploy = deploy or KubeRequest()
    if getattr(request, "host", None) is not None:
        raise ConfigError("--host only applies to the local target",
                          hint="on k8s the RayService's Service exposes the port")
    given = {key: getattr(request, key, None) for key in ("storage", "mlflow_uri")}
    named = {k: v for k, v in given.items() if v is not None and getattr(deploy.overrides, k) is None}
    serving = {f"serve.{k}": v for k, v in _serve_settings(request).items() if v is not None}
    timeout = getattr(request, "timeout_s", None) if deploy.timeout_s is None else deploy.timeout_s
    overrides = replace(deploy.overrides, **named, extra={**deploy.overrides.extra, **serving})
    return replace(deploy, overrides=overrides, timeout_s=timeout)


def _serve_settings(request) -> dict[str, Any]:
    """A ServeRequest's port and replica bounds, as the profile's serve.* keys."""
    app_args = getattr(request, "app_args", None) or {}
    return {"port": getattr(request, "port", None), "grpc_port": getattr(request, "grpc_port", None),
            "min_replicas": app_args.get("min_replicas"),
            "max_replicas": app_args.get("max_replicas")}


def _settings(deploy: KubeRequest):
    from sentinel_cli.k8s import settings

    return settings.load(deploy.overrides)


def _connect(settings):
    from sentinel_cli.k8s import client as kube

    return kube.connect(settings.kubeconfig, settings.context, settings.namespace)


def _timeout(deploy: KubeRequest, settings) -> float:
    return deploy.timeout_s if deploy.timeout_s is not None else settings.wait_timeout_s


def _apply(kube, objects: list[dict[str, Any]], dry_run: bool) -> list[dict[str, Any]]:
    applied = [kube.apply(obj, dry_run=dry_run) for obj in objects]
    names = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    verb = "validated (server-side dry run)" if dry_run else "applied"
    _say(f"{verb} {names} in namespace {kube.namespace}")
    return applied


def _run_job(planned: Plan, deploy: KubeRequest) -> dict[str, Any]:
    from sentinel_cli.k8s.watch import follow_rayjob

    name, settings = planned.name, planned.settings
    started = time.monotonic()
    with _connect(settings) as kube:
        applied = _apply(kube, planned.objects, deploy.dry_run)
        result: dict[str, Any] = {"target": NAME, "namespace": kube.namespace, "rayjob": name, "run_id": name}
        if deploy.dry_run:
            return {**result, "dry_run": True, "objects": applied}
        if not deploy.wait:
            _say(f"follow it: sentinel logs {name} -n {kube.namespace} -f")
            return {**result, "state": "applied"}
        try:
            state = follow_rayjob(kube, name, timeout_s=_timeout(deploy, settings),
                                  on_line=_driver_line, on_wait=_waiting)
        except KeyboardInterrupt:
            raise _detached("RayJob", name, kube.namespace, follow=True) from None
        outcome = _finish_job(state, kube.namespace, settings, with_record=True)
    return {**result, **outcome, "wall_s": round(time.monotonic() - started, 2)}


def _finish_job(state, namespace: str, settings, with_record: bool) -> dict[str, Any]:
    if not state.succeeded:
        raise JobFailed(f"RayJob {state.name} failed: {state.describe()}",
                        hint=f"read the driver log: sentinel logs {state.name} -n {namespace}")
    _say(f"RayJob {state.name} succeeded")
    outcome: dict[str, Any] = {"state": state.deployment, "job_status": state.job_status}
    if with_record and settings.storage:
        record = read_record(settings.storage, state.name)
        if record:
            outcome.update(metrics=record["metrics"], checkpoints=record["checkpoints"],
                           index_uri=record["index_uri"], mlflow_run_id=record["mlflow_run_id"],
                           mlflow_error=None, restarts=(record.get("extra") or {}).get("restarts", []),
                           record=record)
    return outcome


def _detached(kind: str, name: str, namespace: str, follow: bool):
    command = f"sentinel logs {name} -n {namespace} -f" if follow else \
        f"sentinel status --target k8s -n {namespace}"
    return Detached(f"detached from {kind} {name}; it keeps running in namespace {namespace}",
                    hint=f"reattach: {command}")


def endpoint(name: str, namespace: str, port: int) -> str:
    return f"http://{name}-serve-svc.{namespace}.svc.cluster.local:{port}/recommend"


def grpc_endpoint(name: str, namespace: str, port: int) -> str:
    """The OIP gRPC service behind Sentinel's own Service (KubeRay's serve Service carries only HTTP)."""
    from sentinel_cli.k8s.manifests import grpc_service_name

    return f"{grpc_service_name(name)}.{namespace}.svc.cluster.local:{port}"


def _annotation(obj: dict[str, Any] | None, key: str) -> str | None:
    if obj is None:
        return None
    return (obj["metadata"].get("annotations") or {}).get(key)


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("labels") or {}


def _created(obj: dict[str, Any]) -> str:
    return obj["metadata"].get("creationTimestamp") or ""


def age(created: str, now: datetime) -> str:
    if not created:
        return "-"
    seconds = int((now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _row(obj: dict[str, Any], kind: str, state: str, now: datetime, checkpoint: str | None) -> dict[str, Any]:
    from sentinel_cli.k8s import manifests

    meta = obj["metadata"]
    return {"kind": kind, "name": meta["name"], "namespace": meta.get("namespace"), "state": state,
            "age": age(meta.get("creationTimestamp") or "", now), "created": meta.get("creationTimestamp"),
            "run_id": _labels(obj).get(manifests.RUN_ID), "checkpoint": checkpoint}


def _job_row(obj: dict[str, Any], now: datetime) -> dict[str, Any]:
    from sentinel_cli.k8s import manifests
    from sentinel_cli.k8s.watch import rayjob_state

    state = rayjob_state(obj)
    text = state.deployment + (f" ({state.job_status})" if state.job_status else "")
    return _row(obj, "RayJob", text, now, _annotation(obj, manifests.CHECKPOINT))


def _service_row(obj: dict[str, Any], now: datetime) -> dict[str, Any]:
    from sentinel_cli.k8s import manifests
    from sentinel_cli.k8s.watch import rayservice_state

    state = rayservice_state(obj)
    text = "Ready" if state.ready else f"NotReady ({state.reason or 'starting'})"
    if state.upgrading:
        text += ", upgrading"
    return _row(obj, "RayService", text, now, _annotation(obj, manifests.CHECKPOINT))


def _cluster_row(obj: dict[str, Any], now: datetime) -> dict[str, Any]:
    status = obj.get("status") or {}
    return _row(obj, "RayCluster", status.get("state") or "pending", now, None)
