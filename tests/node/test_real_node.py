"""Sentinel's objects on the real node: Ray starts in real containers from our own images.

One RayCluster rendered by ``sentinel render cluster`` (a head and one worker, small requests: the
node has 2 CPUs) serves the module's tests; the others show what Sentinel's bounded waits say
when the real kubelet cannot pull an image or the real scheduler finds no room.

Its namespace enforces Pod Security ``restricted`` and the node enforces NetworkPolicies
(kube-router's firewall, ``node.start_network_policies``): the cluster's own traffic still flows
(the worker joins, a job runs), a pod outside the cluster cannot reach its GCS or dashboard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_cli.k8s import security
from tests.support.node import node_memory
from tests.testenv import node
from tests.testenv.process import wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.node]

CLUSTER = "real"
SMALL = ["workers=1", "head.cpu=500m", "head.memory=1500Mi", "worker.cpu=500m",
         "worker.memory=1500Mi"]
START_TIMEOUT_S = 300  # image unpacked, Ray head and worker started, on 2 busy cores
PROMPT_S = 90  # "promptly": the kubelet reports a pull failure within seconds of scheduling
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    return " ".join(text.split())


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def _rendered(namespace: str) -> list[dict[str, Any]]:
    result = cli("render", "cluster", "--name", CLUSTER, "-n", namespace, *sets(*SMALL))
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout)["items"]


def _apply(api: client.ApiClient, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        namespace = obj["metadata"]["namespace"]
        if obj["kind"] == "ServiceAccount":
            client.CoreV1Api(api).create_namespaced_service_account(namespace, obj)
        elif obj["kind"] == "NetworkPolicy":
            client.NetworkingV1Api(api).create_namespaced_network_policy(namespace, obj)
        elif obj["kind"] == "RayCluster":
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                "ray.io", "v1", namespace, "rayclusters", obj)
        else:
            raise AssertionError(f"unexpected object in `sentinel render cluster`: {obj['kind']}")


def _cluster_reason(api: client.ApiClient, namespace: str) -> str | None:
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "ray.io", "v1", namespace, "rayclusters", CLUSTER)
    status = obj.get("status") or {}
    if status.get("state") == "ready" and status.get("readyWorkerReplicas") == 1:
        return None
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    phases = ", ".join(f"{p.metadata.name} {p.status.phase} on {p.spec.node_name}" for p in pods)
    return f"RayCluster state {status.get('state')!r}, ready workers {status.get('readyWorkerReplicas')}; {phases}"


@pytest.fixture(scope="module")
def ray_cluster(real_node: node.RealNode, k8s_api, tmp_path_factory) -> dict[str, Any]:
    """The rendered RayCluster, Ready on the real node, in a namespace of its own."""
    namespace = f"t-real-node-{int(time.time()) % 100000}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace, labels={
        "app.kubernetes.io/created-by": "sentinel-tests",
        "pod-security.kubernetes.io/enforce": security.POD_SECURITY_LEVEL})))
    node.start_network_policies(real_node)
    # The operator (and this test) run on the host, outside the node: its address stands for the operator.
    operator = [{"pods": {"app.kubernetes.io/name": "kuberay-operator"}}, {"cidr": f"{node.HOST_ADDRESS}/32"}]
    profile = tmp_path_factory.mktemp("profile") / "profile.yaml"
    profile.write_text(yaml.safe_dump(real_node.profile(namespace=namespace,
                                                        network_policy={"operator": operator})))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SENTINEL_PROFILE", str(profile))
        patch.setenv("KUBECONFIG", str(real_node.env.kubeconfig))
        patch.setenv("SENTINEL_HOME", str(profile.parent))
        wait_for(f"the default ServiceAccount of {namespace}",
                 lambda: None if core.list_namespaced_service_account(namespace).items
                 else "not yet", 30)
        started = time.monotonic()
        _apply(k8s_api, _rendered(namespace))
        wait_for(f"RayCluster {CLUSTER} ready on the real node",
                 lambda: _cluster_reason(k8s_api, namespace), START_TIMEOUT_S)
        ready_s = time.monotonic() - started
    print(f"\nRayCluster {CLUSTER} ready in {ready_s:.0f} s; node memory {node_memory(real_node)}")
    yield {"namespace": namespace, "profile": profile, "ready_s": ready_s}
    core.delete_namespace(namespace)


@pytest.fixture
def cluster_cli(ray_cluster, real_node: node.RealNode, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """ray_cluster, with the CLI pointed at it ($SENTINEL_PROFILE, $KUBECONFIG)."""
    monkeypatch.setenv("SENTINEL_PROFILE", str(ray_cluster["profile"]))
    monkeypatch.setenv("SENTINEL_HOME", str(ray_cluster["profile"].parent))
    monkeypatch.setenv("KUBECONFIG", str(real_node.env.kubeconfig))
    return ray_cluster


def _head_ip(namespace: str) -> str:
    name = f"{CLUSTER}-head-svc.{namespace}.svc.{node.CLUSTER_DOMAIN}"
    addresses = node.dns_query(node.NODE_ADDRESS, name)
    assert addresses, f"CoreDNS does not resolve {name}"
    return addresses[0]


def _token(namespace: str) -> str:
    """The cluster's Ray token, as Sentinel reads it (KubeRay's Secret, through the client funnel)."""
    from sentinel_cli.k8s import ray_auth
    from sentinel_cli.k8s.client import connect

    with connect(None, None, namespace) as kube:
        return ray_auth.cluster_token(kube, CLUSTER)


def _dashboard(method: str, url: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    """One request to the real dashboard, with ``token`` (or none): the status and the JSON answer."""
    from sentinel_cli.k8s import ray_auth

    headers = {"Content-Type": "application/json", **(ray_auth.headers(token) if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, data, headers, method=method), timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def _alive_nodes(head_ip: str, token: str) -> int:
    status, answer = _dashboard("GET", f"http://{head_ip}:8265/api/v0/nodes?limit=100", token)
    assert status == 200, (status, answer)
    rows = answer["data"]["result"]["result"]
    return sum(1 for row in rows if row.get("state") == "ALIVE")


def test_a_rendered_raycluster_runs_real_ray_and_its_worker_joins(cluster_cli, real_node, k8s_api) -> None:
    namespace = cluster_cli["namespace"]
    pods = client.CoreV1Api(k8s_api).list_namespaced_pod(namespace).items
    assert {p.spec.node_name for p in pods} == {real_node.name}
    assert {p.spec.containers[0].image for p in pods} == {real_node.images["train"].reference}
    # A read-only root filesystem in every container KubeRay made from the rendered templates (the
    # init container copies the Ray container's), and Ray, its dashboard and a job ran (below) in it.
    containers = [c for p in pods for c in [*(p.spec.init_containers or []), *p.spec.containers]]
    assert all(c.security_context.read_only_root_filesystem for c in containers), containers
    head_ip = _head_ip(namespace)  # the headless Service, through CoreDNS
    assert node.ip_address(head_ip) in node.ip_network(node.POD_CIDR)
    token = _token(namespace)
    wait_for("2 alive Ray nodes on the head's dashboard",
             lambda: None if _alive_nodes(head_ip, token) == 2 else f"{_alive_nodes(head_ip, token)} alive", 60)

    result = cli("status", "--target", "k8s", "-n", namespace, "-o", "json")
    assert result.exit_code == 0, result.output
    rows = [r for r in json.loads(result.stdout)["objects"] if r.get("name") == CLUSTER]
    assert rows, result.stdout
    assert rows[0]["kind"] == "RayCluster" and rows[0]["state"] == "ready", rows


def test_the_real_dashboard_runs_no_job_without_the_clusters_token(cluster_cli, k8s_api) -> None:
    """Ray's token authentication, as KubeRay wires it from Sentinel's authOptions: a job submission
    without the token gets 401, with another token 403, with the cluster's own token it runs."""
    namespace = cluster_cli["namespace"]
    head = client.CoreV1Api(k8s_api).list_namespaced_pod(
        namespace, label_selector=f"ray.io/cluster={CLUSTER},ray.io/node-type=head").items[0]
    env = {e.name: e for e in head.spec.containers[0].env}
    assert env["RAY_AUTH_MODE"].value == "token"
    assert env["RAY_AUTH_TOKEN"].value is None and env["RAY_AUTH_TOKEN"].value_from.secret_key_ref.name == CLUSTER
    jobs, job = f"http://{_head_ip(namespace)}:8265/api/jobs/", {"entrypoint": "echo authenticated"}
    assert _dashboard("POST", jobs, None, job)[0] == 401
    assert _dashboard("POST", jobs, "not-the-token", job)[0] == 403
    token = _token(namespace)
    status, answer = _dashboard("POST", jobs, token, job)
    assert status == 200 and answer["submission_id"], (status, answer)

    def finished() -> str | None:
        state = _dashboard("GET", jobs + answer["submission_id"], token)[1]["status"]
        return None if state in ("SUCCEEDED", "FAILED", "STOPPED") else state

    wait_for("the authenticated job to finish", finished, 60)
    assert _dashboard("GET", jobs + answer["submission_id"], token)[1]["status"] == "SUCCEEDED"


def test_logs_of_the_head_stream_real_ray_output(cluster_cli) -> None:
    result = cli("logs", CLUSTER, "-n", cluster_cli["namespace"])
    assert result.exit_code == 0, result.output
    text = flat(result.stderr)
    assert "Ray runtime started" in text, text[-3000:]
    assert "Read-only file system" not in text, text[-3000:]  # everything Ray writes has its emptyDir
    assert "kwok pod" not in text  # not the kwok nodes' fixed line


def test_the_operator_talks_to_the_real_dashboard(ray_cluster, real_node, k8s_api) -> None:
    """A RayJob submitted over HTTP to the running cluster: the operator's requests go through
    the stand-in's proxy route to the real head, where the job really runs."""
    namespace = ray_cluster["namespace"]
    job = {
        "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "hello"},
        "spec": {
            "submissionMode": "HTTPMode",
            "clusterSelector": {"ray.io/cluster": CLUSTER},
            "entrypoint": "python -c \"import ray; ray.init(); print('resources', ray.cluster_resources())\"",
        },
    }
    custom = client.CustomObjectsApi(k8s_api)
    custom.create_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", job)

    def done() -> str | None:
        status = custom.get_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs",
                                                     "hello").get("status") or {}
        if status.get("jobDeploymentStatus") in ("Complete", "Failed"):
            return None
        return f"{status.get('jobDeploymentStatus')} / {status.get('jobStatus')}"

    wait_for("RayJob hello to finish", done, 180)
    status = custom.get_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", "hello")["status"]
    assert (status["jobDeploymentStatus"], status["jobStatus"]) == ("Complete", "SUCCEEDED"), status
    forwarded = [r for r in real_node.env.dashboard.requests
                 if r.namespace == namespace and r.forwarded_to]
    assert forwarded and all(r.forwarded_to.endswith(":8265") for r in forwarded)
    assert not [r for r in real_node.env.dashboard.requests
                if r.namespace == namespace and not r.forwarded_to], "the stand-in answered"


# A new pod's address reaches the controller's rules a moment after the pod starts (kube-router syncs on
# the pod's events): each port is tried for up to 5 s, and the last refusal is what counts.
PROBE = """
import json, socket, sys, time
reached = {}
for port in (6379, 8265):
    for attempt in range(10):
        try:
            socket.create_connection((sys.argv[1], port), timeout=2).close()
            reached[port] = True
            break
        except OSError as error:
            reached[port] = type(error).__name__
            time.sleep(0.5)
print("PROBE", json.dumps(reached), flush=True)
"""


def _probe(core: client.CoreV1Api, namespace: str, name: str, labels: dict[str, str], head_ip: str,
           image: str) -> dict[str, Any]:
    """What a pod with ``labels`` reaches of the head's GCS (6379) and dashboard (8265)."""
    core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"sentinel.dev/node": "real"},
                 "securityContext": security.pod_security(),
                 "containers": [{"name": "probe", "image": image, "imagePullPolicy": "IfNotPresent",
                                 "command": ["python", "-c", PROBE, head_ip],
                                 "securityContext": security.container_security(),
                                 "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                                               "limits": {"cpu": "500m", "memory": "256Mi"}}}]}})

    def finished() -> str | None:
        phase = core.read_namespaced_pod(name, namespace).status.phase
        return None if phase in ("Succeeded", "Failed") else f"pod {name} {phase}"

    wait_for(f"probe pod {name}", finished, 90)
    lines = [line for line in core.read_namespaced_pod_log(name, namespace).splitlines() if line.startswith("PROBE")]
    assert lines, core.read_namespaced_pod_log(name, namespace)
    return {int(k): v for k, v in json.loads(lines[-1].removeprefix("PROBE ")).items()}


def test_network_policies_keep_pods_outside_the_cluster_from_its_gcs_and_dashboard(
        cluster_cli, real_node, k8s_api) -> None:
    """Enforced by a real NetworkPolicy implementation on the node: a pod of the namespace without the
    cluster's label is refused both ports; one with it (what the worker is) reaches both. The worker
    joining and the RayJob running (the tests above) are the cluster's own traffic under the same policy."""
    namespace, core = cluster_cli["namespace"], client.CoreV1Api(k8s_api)
    head_ip = _head_ip(namespace)
    image = real_node.images["train"].reference
    inside = _probe(core, namespace, "inside", {security.CLUSTER_LABEL: CLUSTER}, head_ip, image)
    outside = _probe(core, namespace, "outside", {"app": "elsewhere"}, head_ip, image)
    assert inside == {6379: True, 8265: True}, inside
    assert outside[6379] is not True and outside[8265] is not True, outside
    print(f"\nNetworkPolicy enforcement: inside {inside}, outside {outside}")


def sentinel(*args: str, timeout_s: float) -> tuple[int | None, str, float]:
    """The CLI as a subprocess, ended after ``timeout_s``: (exit code or None, stderr, seconds)."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "sentinel_cli", *args], cwd=REPO,
                               env={**os.environ, "COLUMNS": "200"}, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = process.communicate(timeout=timeout_s)
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        code = None
    return code, stderr, time.monotonic() - started


@pytest.mark.parametrize(("pull_policy", "reasons"), [
    ("Never", ("ErrImageNeverPull",)),
    ("IfNotPresent", ("ErrImagePull", "ImagePullBackOff")),
])
def test_a_wrong_image_tag_ends_the_bounded_wait_promptly(node_profile, k8s_namespace, pull_policy,
                                                          reasons) -> None:
    wrong = "sentinel-train:no-such-tag"
    # --no-preflight: this test is about the image, and the module's RayCluster keeps the node's CPUs busy,
    # so the capacity preflight would refuse the job's submitter first (its own test is below).
    code, stderr, elapsed = sentinel(
        "train", "--target", "k8s", "--name", "wrong-image", "--timeout", "300", "--no-preflight",
        *sets(*SMALL, f"images.train={wrong}", f"images.pull_policy={pull_policy}",
              "storage=s3://sentinel-tests/none"),
        timeout_s=PROMPT_S)
    text = flat(stderr)
    assert any(reason in text for reason in reasons), text[-3000:]
    assert wrong in text, text[-3000:]
    assert "kubernetes.images" in text  # the fix
    # A missing image is a configuration error (README: exit 2), said as soon as the kubelet
    # reports it -- not after the whole --timeout (300 s), nor never (pulls that keep failing
    # alternate between ErrImagePull and ImagePullBackOff, which the no-progress timer sees as change).
    assert code is not None, f"still waiting after {elapsed:.0f} s (--timeout 300): {text[-2000:]}"
    assert code == 2, f"exit {code} after {elapsed:.0f} s: {text[-2000:]}"


def test_more_cpu_than_the_real_node_has_gets_insufficient_cpu_with_the_fix(node_profile) -> None:
    too_big = ("train", "--target", "k8s", "--name", "too-big", "--timeout", "15",
               *sets(*SMALL, "head.cpu=3", "storage=s3://sentinel-tests/none"))
    # The capacity preflight refuses it before anything is applied: no node here could ever hold it.
    result = cli(*too_big)
    text = flat(result.stderr)
    assert result.exit_code == 2, result.output
    assert "asks for 3 CPU per pod" in text and "has 2 allocatable" in text, text[-3000:]
    assert "at most 2 CPU per pod" in text and "--no-preflight" in text  # the fix, and the way past it
    # Past the preflight, the scheduler says the same after the apply, and Sentinel's hint names the setting.
    result = cli(*too_big, "--no-preflight")
    text = flat(result.stderr)
    assert result.exit_code == 3, result.output
    assert "Insufficient cpu" in text, text[-3000:]
    assert "kubernetes.head.cpu" in text  # Sentinel's hint names the setting to lower
