"""Running a plan: apply its objects with server-side apply and follow them to an outcome.

A RayJob's status decides the exit code: JobFailed (1), WaitTimeout (3); Ctrl-C while following
raises ``Detached`` with the command that reattaches. Progress goes to stderr, results are returned.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, TypeVar

from sentinel_cli.backends.kubernetes.plan import Plan, ServePlan
from sentinel_cli.backends.results import ServeReport, TrainReport, TuneReport
from sentinel_cli.k8s.request import KubeRequest
from sentinel_cli.progress import kube_line as _driver_line
from sentinel_cli.progress import kube_say as _say
from sentinel_cli.progress import kube_waiting as _waiting
from sentinel_cli.progress import kube_warning as _warn
from sentinel_ml.errors import Detached, JobFailed, StorageError

NAME = "k8s"
Report = TypeVar("Report", TrainReport, TuneReport)


def run_job(planned: Plan, deploy: KubeRequest, report: type[Report]) -> Report:
    """Apply a train or tune RayJob; unless told not to, follow it and read the record it wrote."""
    from sentinel_cli.k8s.watch import follow_rayjob

    name, settings = planned.name, planned.settings
    started = time.monotonic()
    with connect(settings) as kube:
        applied = apply(kube, planned.objects, deploy)
        where = {"target": NAME, "namespace": kube.namespace, "rayjob": name, "run_id": name}
        if deploy.dry_run:
            return report(**where, dry_run=True, objects=applied)
        if not deploy.wait:
            _say(f"follow it: sentinel logs {name} -n {kube.namespace} -f")
            return report(**where, state="applied")
        try:
            state = follow_rayjob(kube, name, timeout_s=planned.timeout_s, on_line=_driver_line, on_wait=_waiting)
        except KeyboardInterrupt:
            raise detached("RayJob", name, kube.namespace, follow=True) from None
        outcome = finish_job(state, kube.namespace)
    record = read_record(settings.storage, name) if settings.storage else None
    return report(**where, **outcome, **_from_record(record), wall_s=round(time.monotonic() - started, 2))


def serve(planned: ServePlan, deploy: KubeRequest) -> ServeReport:
    """Apply the RayService (an upgrade in place when it exists) and wait until it is Ready."""
    from sentinel_cli.k8s import manifests
    from sentinel_cli.k8s.client import RAYSERVICE
    from sentinel_cli.k8s.watch import wait_rayservice

    uri, run_id, name, settings = planned.checkpoint, planned.run_id, planned.name, planned.settings
    if planned.canary is None:
        _say(f"checkpoint: {uri}" + (f" (run {run_id})" if run_id else ""))
    with connect(settings) as kube:
        previous = kube.get(RAYSERVICE, name) if not deploy.dry_run else None
        applied = apply(kube, planned.objects, deploy)
        result: dict[str, Any] = {
            "target": NAME, "namespace": kube.namespace, "rayservice": name, "checkpoint": uri, "run_id": run_id,
            "endpoint": endpoint(name, kube.namespace, settings.serve.port),
            "grpc_endpoint": grpc_endpoint(name, kube.namespace, settings.serve.grpc_port),
            **({"canary": planned.canary} if planned.canary else {})}
        result["auth"] = planned.auth
        if planned.token_secret:
            result["token_secret"] = planned.token_secret
        if deploy.dry_run:
            return ServeReport(**result, dry_run=True, objects=applied)
        if planned.token_secret and planned.canary is None and planned.ended is None:
            # after the RayService, which owns it; the pods wait for its volume. A canary's start or
            # end changes a live application whose Secret exists: no Secret call (a schedule's Role has none)
            from sentinel_cli.k8s import serve_token

            service = next(o for o in applied if o["kind"] == "RayService")
            _say(serve_token.ensure(kube, planned.token_secret, service, planned.token_file))
        before = _annotation(previous, manifests.CHECKPOINT)
        if planned.canary is not None:
            _say(f"canary in RayService {name}: candidate {planned.canary['checkpoint']} for "
                 f"{planned.canary['percent']:g}% of users, beside {uri} (the Serve application is updated "
                 "in place)")
        elif planned.ended is not None:
            _say(f"ending the canary in RayService {name}: serving {uri} alone (in place)")
        elif previous is not None and before != uri:
            _say(f"upgrading RayService {name} in place: {before} -> {uri}")
        result["previous_checkpoint"] = before
        if not deploy.wait:
            return ServeReport(**result, state="applied")
        try:
            state = wait_rayservice(kube, name, timeout_s=planned.timeout_s, on_wait=_waiting)
        except KeyboardInterrupt:
            raise detached("RayService", name, kube.namespace, follow=False) from None
        _say(f"RayService {name} is Ready")
        return ServeReport(**result, state="Ready", applications={k: v[0] for k, v in state.applications.items()})


def cluster(planned: Plan, deploy: KubeRequest) -> list[dict[str, Any]]:
    """Apply a standalone RayCluster; returns the objects once applied."""
    with connect(planned.settings) as kube:
        return apply(kube, planned.objects, deploy)


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


def _from_record(record: dict[str, Any] | None) -> dict[str, Any]:
    """A finished job's run, as its index record tells it (nothing when there is no record)."""
    if record is None:
        return {}
    extra = record.get("extra") or {}
    # The data it trained on (dataset, split, sizes), as the local target reports it: the summary names
    # the split its test RMSE is on (without it the table said "u1 test RMSE" for any split).
    data = {"data": extra["data"]} if extra.get("data") else {}
    return {"metrics": record["metrics"], "checkpoints": record["checkpoints"], "index_uri": record["index_uri"],
            "mlflow_run_id": record["mlflow_run_id"], "mlflow_error": None,
            "restarts": extra.get("restarts", []), **data, "record": record}


def finish_job(state, namespace: str) -> dict[str, Any]:
    """A finished RayJob's state, or JobFailed with where to read why."""
    if not state.succeeded:
        raise JobFailed(f"RayJob {state.name} failed: {state.describe()}",
                        hint=f"read the driver log: sentinel logs {state.name} -n {namespace}")
    _say(f"RayJob {state.name} succeeded")
    return {"state": state.deployment, "job_status": state.job_status}


def detached(kind: str, name: str, namespace: str, follow: bool) -> Detached:
    command = f"sentinel logs {name} -n {namespace} -f" if follow else \
        f"sentinel status --target k8s -n {namespace}"
    return Detached(f"detached from {kind} {name}; it keeps running in namespace {namespace}",
                    hint=f"reattach: {command}")


def connect(settings):
    from sentinel_cli.k8s import client as kube

    return kube.connect(settings.kubeconfig, settings.context, settings.namespace)


def apply(kube, objects: list[dict[str, Any]], deploy: KubeRequest) -> list[dict[str, Any]]:
    """The capacity preflight (unless --no-preflight), then server-side apply of each object."""
    from sentinel_cli.backends.kubernetes import preflight
    from sentinel_cli.k8s import ray_auth

    warn_open(objects)
    if deploy.preflight:
        preflight.check(kube, objects)
    if ray_auth.uses_token(objects):
        ray_auth.check_operator(kube)  # an operator without authOptions would run the cluster open
    dry_run = deploy.dry_run
    applied = [kube.apply(obj, dry_run=dry_run) for obj in objects]
    names = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    verb = "validated (server-side dry run)" if dry_run else "applied"
    _say(f"{verb} {names} in namespace {kube.namespace}")
    return applied


def warn_open(objects: list[dict[str, Any]]) -> None:
    """Say on stderr which Ray objects run without token authentication (--insecure-ray) and what
    that leaves open."""
    from sentinel_cli.k8s import ray_auth

    opened = ray_auth.open_clusters(objects)
    if opened:
        _warn(f"{', '.join(opened)}: {ray_auth.LEFT_OPEN}")


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
