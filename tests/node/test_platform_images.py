"""The platform's images (tests/testenv/images.py: MinIO, mc, MLflow) on the real node: containerd
holds them under the names the manifests use, and they run as pods as
sentinel_cli/k8s/platform_objects.py runs them (uid 1000, not root, their memory limits): MinIO
serves an empty /data, mc makes the buckets there as the bucket Job does, and MLflow's server, with
the manifests' command, stores an artifact in MinIO through boto3. (`sentinel up` on the node, with
the manifests themselves, is tested end to end apart.)

MLflow 3.17's server as it starts by default (4 uvicorn workers, and a job runner with 7 huey
consumers) holds about 1.9 GiB (measured: the pod's memory cgroup): over the 1 GiB limit, the kernel
kills it. Here it runs with one worker and no job execution (about 0.35 GiB); the manifests need
the same. Upstream's image behaves alike: these are MLflow's defaults, not this image's doing.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from sentinel_cli.k8s import platform_objects, security
from tests.testenv import node
from tests.testenv.process import wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.node]

START_TIMEOUT_S = 240  # MinIO's first start, or MLflow's server's imports, on 2 busy cores
USER, PASSWORD = "sentinel-root", "sentinel-password"
LIMITS = {"limits": {"memory": "1Gi"}}  # MinIO's and MLflow's in platform_objects


def _pod(name: str, image: str, volume: bool = False, **container: Any) -> dict[str, Any]:
    """A pod on the real node only, run as the platform's pods are (uid 1000, not root)."""
    spec: dict[str, Any] = {
        "nodeSelector": {"sentinel.dev/node": "real"}, "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
        "containers": [{"name": name, "image": image, "imagePullPolicy": "IfNotPresent", **container}]}
    # A read-only root with an emptyDir /tmp, as platform_objects renders them (security.py).
    scratch, mounts = security.scratch(security.TMP)
    spec["containers"][0].update(securityContext=security.container_security(), volumeMounts=mounts)
    spec["volumes"] = scratch
    if volume:
        spec["containers"][0]["volumeMounts"] = [*mounts, {"name": "data", "mountPath": "/data"}]
        spec["volumes"] = [*scratch, {"name": "data", "emptyDir": {}}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _reason(core: client.CoreV1Api, namespace: str, name: str, wanted: str) -> str | None:
    """None once the pod is Ready (wanted "Ready") or has Succeeded; fails when it ended otherwise."""
    pod = core.read_namespaced_pod(name, namespace)
    if wanted == "Ready" and any(c.type == "Ready" and c.status == "True"
                                 for c in pod.status.conditions or []):
        return None
    if pod.status.phase == wanted:
        return None
    if pod.status.phase in ("Failed", "Succeeded"):
        pytest.fail(f"pod {name} ended {pod.status.phase}:\n"
                    + core.read_namespaced_pod_log(name, namespace)[-3000:], pytrace=False)
    states = [(s.state.waiting or s.state.terminated) for s in pod.status.container_statuses or []]
    return pod.status.phase + "".join(f", {s.reason}: {s.message}" for s in states if s)


def _start(core: client.CoreV1Api, namespace: str, pod: dict[str, Any], wanted: str) -> float:
    name = pod["metadata"]["name"]
    started = time.monotonic()
    core.create_namespaced_pod(namespace, pod)
    wait_for(f"pod {name} {wanted}", lambda: _reason(core, namespace, name, wanted), START_TIMEOUT_S)
    return time.monotonic() - started


def _http(method: str, url: str, body: bytes | None = None) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, data=body, method=method), timeout=30) as answer:
        return answer.read()


@pytest.fixture(scope="module")
def minio(real_node: node.RealNode, k8s_api: client.ApiClient) -> Iterator[dict[str, Any]]:
    """MinIO Ready in a namespace of its own, and the buckets that mc made there, as the bucket
    Job does (its script, with no MC_CONFIG_DIR of its own: the image's sends mc to /tmp)."""
    namespace = f"t-platform-images-{int(time.time()) % 100000}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=namespace, labels={"app.kubernetes.io/created-by": "sentinel-tests"})))
    try:
        wait_for(f"the default ServiceAccount of {namespace}",
                 lambda: None if core.list_namespaced_service_account(namespace).items else "not yet", 30)
        ready_s = _start(core, namespace, _pod(
            "minio", platform_objects.MINIO_IMAGE, volume=True,
            args=["server", "/data", "--console-address", ":9001"],  # the Deployment's
            env=[{"name": "MINIO_ROOT_USER", "value": USER},
                 {"name": "MINIO_ROOT_PASSWORD", "value": PASSWORD}],
            ports=[{"containerPort": 9000}], resources=LIMITS,
            readinessProbe={"httpGet": {"path": "/minio/health/ready", "port": 9000},
                            "periodSeconds": 2}), "Ready")
        address = core.read_namespaced_pod("minio", namespace).status.pod_ip
        print(f"\nMinIO ready in {ready_s:.0f} s at {address}")
        script = ('mc alias set store "http://$ADDRESS:9000" "$USER" "$PASSWORD" >/dev/null'
                  " && mc mb --ignore-existing store/mlflow store/checkpoints && mc ls store && id -u")
        _start(core, namespace, _pod(
            "mc", platform_objects.MC_IMAGE, command=["/bin/sh", "-c", script],
            env=[{"name": "ADDRESS", "value": address}, {"name": "USER", "value": USER},
                 {"name": "PASSWORD", "value": PASSWORD}]), "Succeeded")
        yield {"namespace": namespace, "address": address, "core": core}
    finally:
        core.delete_namespace(namespace)


def test_containerd_holds_the_platform_images_under_the_manifests_names(real_node: node.RealNode) -> None:
    present = set(real_node.ctr("images", "list", "--quiet").split())
    for reference in (platform_objects.MINIO_IMAGE, platform_objects.MC_IMAGE,
                      platform_objects.MLFLOW_IMAGE):
        assert reference in present, sorted(present)
    assert real_node.images["minio"].reference == platform_objects.MINIO_IMAGE
    assert real_node.images["train"].reference == "sentinel-train:latest"


def test_minio_serves_and_mc_makes_the_buckets_as_uid_1000(minio: dict[str, Any]) -> None:
    core, namespace = minio["core"], minio["namespace"]
    said = core.read_namespaced_pod_log("minio", namespace)
    release = platform_objects.MINIO_IMAGE.rsplit(":", 1)[1]
    assert release in said, said[-2000:]  # the banner names the release
    log = core.read_namespaced_pod_log("mc", namespace)
    assert "mlflow/" in log and "checkpoints/" in log, log
    assert log.split()[-1] == "1000"


def test_mlflow_serves_artifacts_from_minio_as_uid_1000(minio: dict[str, Any]) -> None:
    core, namespace = minio["core"], minio["namespace"]
    command = ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000",  # the Deployment's
               "--backend-store-uri", "sqlite:////data/mlflow.db",
               "--artifacts-destination", "s3://mlflow/artifacts", "--serve-artifacts",
               "--workers", "1"]  # within 1 GiB (module doc)
    ready_s = _start(core, namespace, _pod(
        "mlflow", platform_objects.MLFLOW_IMAGE, volume=True, command=command,
        env=[{"name": "MLFLOW_S3_ENDPOINT_URL", "value": f"http://{minio['address']}:9000"},
             {"name": "AWS_ACCESS_KEY_ID", "value": USER},
             {"name": "AWS_SECRET_ACCESS_KEY", "value": PASSWORD},
             {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "false"}],
        ports=[{"containerPort": 5000}], resources=LIMITS,
        readinessProbe={"httpGet": {"path": "/health", "port": 5000}, "periodSeconds": 2}), "Ready")
    # By the pod's address: MLflow's host check lets private addresses through by default (not
    # a Service's name: the manifests' clients need --allowed-hosts).
    server = f"http://{core.read_namespaced_pod('mlflow', namespace).status.pod_ip}:5000"
    expected = platform_objects.MLFLOW_IMAGE.rsplit(":v", 1)[1].removesuffix("-full")
    assert _http("GET", f"{server}/version").decode().strip() == expected

    # Through the server's artifact proxy into MinIO (boto3 in the image), and back.
    url = f"{server}/api/2.0/mlflow-artifacts/artifacts/checks/hello.txt"
    _http("PUT", url, b"hello from the real node")
    assert _http("GET", url) == b"hello from the real node"
    listing = json.loads(_http("GET", f"{server}/api/2.0/mlflow-artifacts/artifacts?path=checks"))
    assert [f["path"] for f in listing["files"]] == ["hello.txt"]
    import boto3  # the object is in MinIO's bucket, where the manifests put MLflow's artifacts

    s3 = boto3.client("s3", endpoint_url=f"http://{minio['address']}:9000", region_name="us-east-1",
                      aws_access_key_id=USER, aws_secret_access_key=PASSWORD)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow").get("Contents", [])]
    assert keys == ["artifacts/checks/hello.txt"]
    print(f"\nMLflow ready in {ready_s:.0f} s")
