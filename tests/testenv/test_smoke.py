"""Smoke tests proving the environment is real: the API server validates, the scheduler
schedules, the controller manager collects garbage, kwok runs pods, KubeRay reconciles."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from tests.testenv.process import wait_for

pytestmark = pytest.mark.k8s

RAY_IMAGE = "rayproject/ray:2.52.0"  # never pulled: kwok runs no containers
TIMEOUT_S = 60


def _container(name: str, cpu: str, memory: str) -> dict[str, Any]:
    resources = {"cpu": cpu, "memory": memory}
    return {"name": name, "image": RAY_IMAGE,
            "resources": {"requests": resources, "limits": resources}}


def raycluster(name: str, workers: int = 2) -> dict[str, Any]:
    """A minimal RayCluster: head on the on-demand node, workers on spot training nodes."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name},
        "spec": {
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {"spec": {
                    "nodeSelector": {"lifecycle": "OnDemand"},
                    "containers": [_container("ray-head", "1", "2Gi")],
                }},
            },
            "workerGroupSpecs": [{
                "groupName": "train",
                "replicas": workers,
                "minReplicas": workers,
                "maxReplicas": workers,
                "rayStartParams": {},
                "template": {"spec": {
                    "nodeSelector": {"intention": "training", "lifecycle": "Ec2Spot"},
                    "containers": [_container("ray-worker", "1", "2Gi")],
                }},
            }],
        },
    }


def _ray_pods(core: client.CoreV1Api, namespace: str, cluster: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(namespace, label_selector=f"ray.io/cluster={cluster}").items


def _pods_running_reason(pods: list[client.V1Pod], expected: int) -> str | None:
    running = [
        p for p in pods
        if p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]
    if len(running) == expected:
        return None
    phases = ", ".join(f"{p.metadata.name}={p.status.phase}" for p in pods) or "no pods"
    return f"{len(running)} of {expected} pods Running and Ready ({phases})"


def test_raycluster_is_reconciled_scheduled_ready_and_collected(
    k8s_api: client.ApiClient, k8s_namespace: str
) -> None:
    core, custom = client.CoreV1Api(k8s_api), client.CustomObjectsApi(k8s_api)
    name, ns = "smoke", k8s_namespace
    custom.create_namespaced_custom_object("ray.io", "v1", ns, "rayclusters", raycluster(name))

    wait_for("head and worker pods Running",
             lambda: _pods_running_reason(_ray_pods(core, ns, name), expected=3), TIMEOUT_S)
    pods = _ray_pods(core, ns, name)
    kinds = sorted(p.metadata.labels["ray.io/node-type"] for p in pods)
    assert kinds == ["head", "worker", "worker"]
    nodes: dict[str, set[str]] = {"head": set(), "worker": set()}
    for pod in pods:
        nodes[pod.metadata.labels["ray.io/node-type"]].add(pod.spec.node_name)
    assert nodes["head"] == {"kwok-ondemand-0"}
    assert nodes["worker"] <= {"kwok-spot-0", "kwok-spot-1"}
    core.read_namespaced_service(f"{name}-head-svc", ns)

    def ready_reason() -> str | None:
        status = custom.get_namespaced_custom_object_status(
            "ray.io", "v1", ns, "rayclusters", name).get("status", {})
        return None if status.get("state") == "ready" else f"RayCluster status: {status}"

    wait_for("RayCluster status ready", ready_reason, TIMEOUT_S)

    custom.delete_namespaced_custom_object("ray.io", "v1", ns, "rayclusters", name)

    def collected_reason() -> str | None:
        left = [p.metadata.name for p in _ray_pods(core, ns, name)]
        services = [s.metadata.name for s in core.list_namespaced_service(ns).items]
        return f"still present: pods {left}, services {services}" if left or services else None

    wait_for("garbage collection of the RayCluster's pods and service", collected_reason,
             TIMEOUT_S)


@pytest.mark.parametrize(
    ("path", "value", "reason", "message"),
    [
        (("submitterConfig", "backoffLimit"), "three", "FieldValueTypeInvalid",
         "must be of type integer"),
        (("deletionStrategy", "onSuccess", "policy"), "DeleteEverything",
         "FieldValueNotSupported", 'Unsupported value: "DeleteEverything"'),
    ],
    ids=["wrong-type", "not-in-enum"],
)
def test_invalid_rayjob_is_rejected_by_crd_validation(
    k8s_api: client.ApiClient,
    k8s_namespace: str,
    path: tuple[str, ...],
    value: str,
    reason: str,
    message: str,
) -> None:
    spec: dict[str, Any] = {"entrypoint": "python -c 'print(1)'",
                            "rayClusterSpec": raycluster("unused")["spec"]}
    body = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "invalid"},
            "spec": spec}
    leaf = spec
    for key in path[:-1]:
        leaf = leaf.setdefault(key, {})
    leaf[path[-1]] = value

    with pytest.raises(ApiException) as raised:
        client.CustomObjectsApi(k8s_api).create_namespaced_custom_object(
            "ray.io", "v1", k8s_namespace, "rayjobs", body)

    status = json.loads(raised.value.body or "{}")
    assert (raised.value.status, status["reason"]) == (422, "Invalid"), status
    causes = {c["field"]: c for c in status["details"]["causes"]}
    cause = causes["spec." + ".".join(path)]
    assert cause["reason"] == reason
    assert message in cause["message"]


def test_pod_larger_than_any_node_stays_pending_with_failed_scheduling(
    k8s_api: client.ApiClient, k8s_namespace: str
) -> None:
    core = client.CoreV1Api(k8s_api)
    pod = {"metadata": {"name": "too-big"},
           "spec": {"containers": [_container("main", "64", "1Gi")]}}
    core.create_namespaced_pod(k8s_namespace, pod)

    def event_reason() -> str | None:
        events = core.list_namespaced_event(
            k8s_namespace, field_selector="involvedObject.name=too-big").items
        if any(e.reason == "FailedScheduling" for e in events):
            return None
        return f"events so far: {[e.reason for e in events]}"

    wait_for("a FailedScheduling event", event_reason, TIMEOUT_S)
    event = next(e for e in core.list_namespaced_event(k8s_namespace).items
                 if e.reason == "FailedScheduling")
    assert "Insufficient cpu" in event.message
    status = core.read_namespaced_pod("too-big", k8s_namespace).status
    assert status.phase == "Pending"
    assert any(c.type == "PodScheduled" and c.reason == "Unschedulable"
               for c in status.conditions or [])


def test_job_pod_completes_and_serves_logs(k8s_api: client.ApiClient, k8s_namespace: str) -> None:
    batch, core = client.BatchV1Api(k8s_api), client.CoreV1Api(k8s_api)
    job = {"metadata": {"name": "once"},
           "spec": {"backoffLimit": 0, "template": {"spec": {
               "restartPolicy": "Never", "containers": [_container("main", "100m", "64Mi")]}}}}
    batch.create_namespaced_job(k8s_namespace, job)

    def complete_reason() -> str | None:
        status = batch.read_namespaced_job_status("once", k8s_namespace).status
        done = any(c.type == "Complete" and c.status == "True" for c in status.conditions or [])
        return None if done else f"Job status: succeeded={status.succeeded} active={status.active}"

    wait_for("the Job to complete", complete_reason, TIMEOUT_S)
    pod = core.list_namespaced_pod(k8s_namespace, label_selector="job-name=once").items[0]
    assert pod.status.phase == "Succeeded"
    logs = core.read_namespaced_pod_log(pod.metadata.name, k8s_namespace)
    assert "no container runs" in logs
