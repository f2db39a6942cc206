"""A schedule's Kubernetes objects, as pure data: the CronJob that runs Sentinel's CLI image, the
profile its runs read (a ConfigMap), and the ServiceAccount with a Role holding only what a run
does: apply and follow a RayJob, read its pods and their logs, read and patch the RayService the
gate compares with, and apply the RayService's gRPC Service when serving. It reads no Secret through
the API: the S3 keys reach the pod as environment from the profile's Secret (the kubelet reads it)."""

from __future__ import annotations

from typing import Any

from sentinel_cli.k8s import client as kinds
from sentinel_cli.k8s import manifests, security
from sentinel_cli.k8s.settings import KubeSettings, check_label
from sentinel_cli.schedules.spec import NAME_LIMIT, ScheduleRequest, describe, run_args

SCHEDULE_LABEL = "sentinel.io/schedule"
ACTION = "sentinel.io/action"  # the CronJob's annotation: what each run does (spec.describe)
COMPONENT = "schedule"
PROFILE_DIR = "/etc/sentinel"
PROFILE_FILE = "profile.yaml"
TERMINATION_LOG = "/dev/termination-log"  # the run's outcome, which `status` reads from the pod
HISTORY = 3  # finished Jobs kept, succeeded and failed each
STARTING_DEADLINE_S = 300  # a run missed by more than this (controller down) is skipped
RUNNER_RESOURCES = {"cpu": "250m", "memory": "512Mi"}
# Beyond the RayJob's own deadline: waiting for its pods, reading its record, gating and serving.
DEADLINE_MARGIN_S = 1800
RULES = (
    # The run's RayJob: server-side apply (create, patch), then followed by GET.
    {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "get", "patch"]},
    # The gate reads what serves; promoting or a canary patches it (apply creates the first one).
    {"apiGroups": ["ray.io"], "resources": ["rayservices"], "verbs": ["create", "get", "patch"]},
    # The RayService's gRPC Service, applied with it.
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "get", "patch"]},
    # The NetworkPolicies that come with each Ray cluster (k8s/security.py), applied with it.
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create", "get", "patch"]},
    # Following the job: its pods (by label), the driver's log, the events that explain a wait.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
)


def schedule_name(name: str) -> str:
    return check_label(name, "schedule name", NAME_LIMIT)


def labels(name: str) -> dict[str, str]:
    return {manifests.MANAGED_BY: manifests.MANAGER, "app.kubernetes.io/name": "sentinel",
            manifests.COMPONENT: COMPONENT, SCHEDULE_LABEL: name}


def objects(request: ScheduleRequest, settings: KubeSettings) -> list[dict[str, Any]]:
    """Everything ``schedule train`` applies, in order (the CronJob last: its first run finds the rest)."""
    name = schedule_name(request.name)
    return [*_ray_service_account(settings), service_account(name, settings.namespace),
            role(name, settings.namespace), role_binding(name, settings.namespace),
            profile(name, settings), cronjob(request, settings)]


def service_account(name: str, namespace: str) -> dict[str, Any]:
    return {**kinds.SERVICEACCOUNT.type_meta(), "metadata": _meta(name, namespace)}


def role(name: str, namespace: str) -> dict[str, Any]:
    return {**kinds.ROLE.type_meta(), "metadata": _meta(name, namespace), "rules": [dict(r) for r in RULES]}


def role_binding(name: str, namespace: str) -> dict[str, Any]:
    return {**kinds.ROLEBINDING.type_meta(), "metadata": _meta(name, namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]}


def profile(name: str, settings: KubeSettings) -> dict[str, Any]:
    """The settings the runs use, as a profile: this cluster's, in-cluster (no kubeconfig or context),
    with the Ray pods' ServiceAccount left to ``schedule train`` (the runs may not create one)."""
    import yaml

    section = settings.model_dump(mode="json", exclude_none=True, exclude={"kubeconfig", "context"})
    section["service_account"]["create"] = False
    text = yaml.safe_dump({"target": "k8s", "kubernetes": section}, sort_keys=False)
    return {**kinds.CONFIGMAP.type_meta(), "metadata": _meta(name, settings.namespace),
            "data": {PROFILE_FILE: text}}


def cronjob(request: ScheduleRequest, settings: KubeSettings) -> dict[str, Any]:
    name = schedule_name(request.name)
    env = [{"name": "SENTINEL_PROFILE", "value": f"{PROFILE_DIR}/{PROFILE_FILE}"},
           {"name": "SENTINEL_HOME", "value": "/tmp/sentinel"}, *manifests.s3_env(settings)]
    container = {
        "name": "sentinel", "image": settings.images.cli, "imagePullPolicy": settings.images.pull_policy,
        "command": ["sentinel"], "args": run_args(request, "k8s"), "env": env,
        "resources": {"requests": dict(RUNNER_RESOURCES), "limits": dict(RUNNER_RESOURCES)},
        "volumeMounts": [{"name": "profile", "mountPath": PROFILE_DIR, "readOnly": True},
                         *security.scratch(security.TMP)[1]],  # SENTINEL_HOME under a read-only root
        "terminationMessagePath": TERMINATION_LOG, "terminationMessagePolicy": "File",
        "securityContext": security.container_security(),  # Pod Security restricted, as the Ray pods
    }
    pod = {"metadata": {"labels": labels(name)},
           "spec": {"serviceAccountName": name, "restartPolicy": "Never", "containers": [container],
                    "securityContext": {**security.pod_security(), "runAsUser": 1000},
                    "nodeSelector": dict(settings.head_node_selector),
                    "volumes": [{"name": "profile", "configMap": {"name": name}}, *security.scratch(security.TMP)[0]]}}
    meta = {**_meta(name, settings.namespace), "annotations": {ACTION: describe(request)}}
    return {**kinds.CRONJOB.type_meta(), "metadata": meta,
            "spec": {"schedule": request.cron, "concurrencyPolicy": "Forbid",
                     "startingDeadlineSeconds": STARTING_DEADLINE_S,
                     "successfulJobsHistoryLimit": HISTORY, "failedJobsHistoryLimit": HISTORY,
                     "jobTemplate": {"metadata": {"labels": labels(name)},
                                     "spec": {"backoffLimit": 0,
                                              "activeDeadlineSeconds": deadline_s(settings),
                                              "template": pod}}}}


def deadline_s(settings: KubeSettings) -> int:
    """A run's bound: the RayJob's own deadline, the serving wait, and a margin."""
    job = settings.rayjob.active_deadline_seconds or 7200
    return int(job + settings.wait_timeout_s + DEADLINE_MARGIN_S)


def _ray_service_account(settings: KubeSettings) -> list[dict[str, Any]]:
    """The Ray pods' ServiceAccount, which train would render (the runs themselves may not)."""
    account = settings.service_account
    if not account.create:
        return []
    meta = {"name": account.name, "namespace": settings.namespace,
            "labels": {manifests.MANAGED_BY: manifests.MANAGER, "app.kubernetes.io/name": "sentinel"}}
    if account.role_arn:
        meta["annotations"] = {manifests.IRSA_ROLE: account.role_arn}
    return [{**kinds.SERVICEACCOUNT.type_meta(), "metadata": meta}]


def _meta(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels(name)}
