"""RayJobs run to an end: KubeRay creates the cluster and the submitter Job, kwok completes the
submitter pod, and the stand-in dashboard reports the Ray job's outcome."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.testenv.dashboard import Outcome
from tests.testenv.env import Environment
from tests.testenv.process import wait_for
from tests.testenv.test_smoke import TIMEOUT_S, raycluster

pytestmark = pytest.mark.k8s


def rayjob(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": "python -c 'print(42)'",
            "rayClusterSpec": raycluster(f"{name}-cluster", workers=1)["spec"],
        },
    }


def _wait_for_deployment_status(
    custom: client.CustomObjectsApi, namespace: str, name: str, wanted: str
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def reason() -> str | None:
        seen.update(custom.get_namespaced_custom_object_status(
            "ray.io", "v1", namespace, "rayjobs", name).get("status", {}))
        if seen.get("jobDeploymentStatus") == wanted:
            return None
        return (f"jobDeploymentStatus={seen.get('jobDeploymentStatus')} "
                f"jobStatus={seen.get('jobStatus')} message={seen.get('message')}")

    wait_for(f"RayJob {name} {wanted}", reason, TIMEOUT_S)
    return seen


def test_rayjob_completes_when_its_ray_job_succeeds(
    k8s_env: Environment, k8s_api: client.ApiClient, k8s_namespace: str
) -> None:
    custom = client.CustomObjectsApi(k8s_api)
    custom.create_namespaced_custom_object("ray.io", "v1", k8s_namespace, "rayjobs",
                                           rayjob("ok"))

    status = _wait_for_deployment_status(custom, k8s_namespace, "ok", "Complete")

    assert status["jobStatus"] == "SUCCEEDED"
    submitter = client.BatchV1Api(k8s_api).read_namespaced_job("ok", k8s_namespace)
    assert submitter.status.succeeded == 1
    assert k8s_env.dashboard is not None
    asked = [r.path for r in k8s_env.dashboard.requests if r.namespace == k8s_namespace]
    assert f"/api/jobs/{status['jobId']}" in asked


def test_rayjob_fails_when_its_ray_job_fails(
    k8s_env: Environment, k8s_api: client.ApiClient, k8s_namespace: str
) -> None:
    assert k8s_env.dashboard is not None
    k8s_env.dashboard.set_outcome(k8s_namespace, Outcome("FAILED", "Job entrypoint failed"))
    custom = client.CustomObjectsApi(k8s_api)
    custom.create_namespaced_custom_object("ray.io", "v1", k8s_namespace, "rayjobs",
                                           rayjob("broken"))

    status = _wait_for_deployment_status(custom, k8s_namespace, "broken", "Failed")

    assert status["jobStatus"] == "FAILED"
    assert status["reason"] == "AppFailed"
    assert status["message"] == "Job entrypoint failed"
