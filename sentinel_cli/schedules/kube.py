"""Schedules on a cluster: apply one (``schedule train``), list them with their newest run (``schedule
list``, ``status``), delete one with everything it made (``schedule delete``). A run's outcome is the
JSON its pod wrote to its termination log (run.py), read from the pod's status: no storage to read."""

from __future__ import annotations

import json
from typing import Any

from sentinel_cli.backends.results import ScheduleReport, ScheduleRow
from sentinel_cli.k8s import manifests
from sentinel_cli.k8s.settings import KubeSettings
from sentinel_cli.schedules import objects
from sentinel_cli.schedules.spec import ScheduleRequest, describe, run_args
from sentinel_ml.errors import ConfigError

SELECTOR = f"{manifests.SELECTOR},{manifests.COMPONENT}={objects.COMPONENT}"


def apply(kube, request: ScheduleRequest, settings: KubeSettings, dry_run: bool) -> ScheduleReport:
    applied = [kube.apply(obj, dry_run=dry_run) for obj in objects.objects(request, settings)]
    return ScheduleReport(target="k8s", name=request.name, namespace=kube.namespace, cron=request.cron,
                          action=describe(request), run=["sentinel", *run_args(request, "k8s")],
                          applied=[f"{o['kind']}/{o['metadata']['name']}" for o in applied], dry_run=dry_run)


def rows(kube, all_namespaces: bool = False) -> list[ScheduleRow]:
    """Every schedule (three LIST calls: CronJobs, their Jobs, their pods), newest run first read."""
    from sentinel_cli.k8s.client import CRONJOB, JOB, POD

    cronjobs = kube.list(CRONJOB, SELECTOR, all_namespaces)
    if not cronjobs:
        return []
    jobs = kube.list(JOB, SELECTOR, all_namespaces)
    pods = kube.list(POD, SELECTOR, all_namespaces)
    return [_row(c, jobs, pods) for c in sorted(cronjobs, key=lambda c: c["metadata"]["name"])]


def delete(kube, name: str, dry_run: bool) -> ScheduleReport:
    """The CronJob (its Jobs and pods follow), its profile, Role, RoleBinding and ServiceAccount."""
    from sentinel_cli.k8s.client import CONFIGMAP, CRONJOB, ROLE, ROLEBINDING, SERVICEACCOUNT

    name = objects.schedule_name(name)
    cronjob = kube.get(CRONJOB, name)
    if cronjob is None or (cronjob["metadata"].get("labels") or {}).get(objects.SCHEDULE_LABEL) != name:
        raise ConfigError(f"no schedule {name} in namespace {kube.namespace}",
                          hint=f"list them: sentinel schedule list --target k8s -n {kube.namespace}")
    deleted = []
    for kind in (CRONJOB, CONFIGMAP, ROLEBINDING, ROLE, SERVICEACCOUNT):
        found = kube.get(kind, name)
        if found is None or (found["metadata"].get("labels") or {}).get(objects.SCHEDULE_LABEL) != name:
            continue  # not ours: never delete what another owner made under this name
        if not dry_run:
            kube.delete(kind, name)
        deleted.append(f"{kind.kind}/{name}")
    return ScheduleReport(target="k8s", name=name, namespace=kube.namespace, deleted=deleted, dry_run=dry_run)


def _row(cronjob: dict[str, Any], jobs: list[dict[str, Any]], pods: list[dict[str, Any]]) -> ScheduleRow:
    meta, spec, state = cronjob["metadata"], cronjob["spec"], cronjob.get("status") or {}
    name, namespace = meta["name"], meta["namespace"]
    mine = sorted((j for j in jobs if _owned(j, name, namespace)), key=_created, reverse=True)
    last = mine[0] if mine else None
    outcome: dict[str, Any] = {}
    for job in mine:  # the newest run that wrote an outcome
        outcome = _outcome(job, pods)
        if outcome:
            break
    return ScheduleRow(
        name=name, namespace=namespace, cron=spec.get("schedule", ""),
        action=(meta.get("annotations") or {}).get(objects.ACTION, ""), suspended=bool(spec.get("suspend")),
        last_scheduled=state.get("lastScheduleTime"), last_job=last["metadata"]["name"] if last else None,
        job_state=job_state(last) if last else None, outcome=outcome.get("outcome"),
        detail=outcome.get("detail"), gate=outcome.get("gate"), run_id=outcome.get("run_id"), checkpoint=outcome.get("checkpoint"),
        metrics=outcome.get("metrics"))


def job_state(job: dict[str, Any]) -> str:
    """Complete, Failed (with the reason: DeadlineExceeded, BackoffLimitExceeded), Running or Pending."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            reason = condition.get("reason")
            return condition["type"] + (f" ({reason})" if condition["type"] == "Failed" and reason else "")
    return "Running" if status.get("active") else "Pending"


def _outcome(job: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON a run's pod left as its termination message, or {} (still running, or killed)."""
    job_name = job["metadata"]["name"]
    for pod in pods:
        if (pod["metadata"].get("labels") or {}).get("job-name") != job_name:
            continue
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((container.get("state") or {}).get("terminated") or {}).get("message")
            try:
                found = json.loads(message) if message else None
            except ValueError:
                found = None
            if isinstance(found, dict):
                return found
    return {}


def _owned(job: dict[str, Any], name: str, namespace: str) -> bool:
    meta = job["metadata"]
    return meta.get("namespace") == namespace and (meta.get("labels") or {}).get(objects.SCHEDULE_LABEL) == name


def _created(obj: dict[str, Any]) -> str:
    return obj["metadata"].get("creationTimestamp") or ""
