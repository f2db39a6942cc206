"""Pod Security and NetworkPolicies against the real API server (kwok nodes, the real operator).

One namespace enforces the Pod Security Standard Sentinel's pods are written for
(``security.POD_SECURITY_LEVEL``, by the API server's own PodSecurity admission); in it Sentinel
applies a RayCluster, a RayJob and a RayService (and the platform's MinIO, MLflow and bucket Job):
every pod the operator, the Job controller and the ReplicaSet controller make from them is admitted,
while a pod without the securityContext is refused. The NetworkPolicies applied with each Ray object
are accepted by the API server, and their selectors pick exactly the pods of that object's RayCluster
(by KubeRay's own ``ray.io/cluster`` label on the pods), the RayJob's submitter for the dashboard,
and nothing of the other objects. Enforcement itself needs a real data path: tests/node.
"""

from __future__ import annotations

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from sentinel_cli.backends.kubernetes import plan, run
from sentinel_cli.backends.kubernetes.backend import KubernetesBackend
from sentinel_cli.k8s import client as kube_client
from sentinel_cli.k8s import platform_objects, security
from sentinel_cli.k8s.request import kube_request
from sentinel_ml.serving.config import ServeRequest
from sentinel_ml.training.config import TrainConfig
from tests.testenv.process import wait_for

pytestmark = pytest.mark.k8s

TIMEOUT_S = 60
ORIGIN = "ray.io/originated-from-cr-name"  # KubeRay's label on the RayCluster of a RayJob or RayService


@pytest.fixture
def restricted(k8s_env, k8s_api, k8s_namespace, kube_env, tmp_path, monkeypatch) -> str:
    """The test namespace, enforcing Pod Security ``restricted``, with a profile for it."""
    level = security.POD_SECURITY_LEVEL
    client.CoreV1Api(k8s_api).patch_namespace(k8s_namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": level, "pod-security.kubernetes.io/enforce-version": "latest"}}})
    small = {"cpu": "100m", "memory": "256Mi"}
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"target": "k8s", "kubernetes": {
        "namespace": k8s_namespace, "storage": "s3://bucket/sentinel", "workers": 1,
        "head": small, "worker": small, "serve_worker": small, "submitter": small,
        "images": {"train": "registry.example/sentinel-train:0.1.0",
                   "serve": "registry.example/sentinel-serve:0.1.0"}}}))
    monkeypatch.setenv("KUBECONFIG", str(k8s_env.kubeconfig))
    monkeypatch.setenv("SENTINEL_PROFILE", str(profile))
    return k8s_namespace


def _pods(core: client.CoreV1Api, namespace: str, labels: dict[str, str]) -> set[str]:
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    return {p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=selector).items}


def test_sentinels_pods_admit_under_restricted_and_its_policies_select_each_clusters_pods(
        restricted: str, k8s_api) -> None:
    namespace, core = restricted, client.CoreV1Api(k8s_api)
    custom = client.CustomObjectsApi(k8s_api)
    run.cluster(plan.plan_cluster(kube_request(name="interactive")), kube_request(name="interactive"))
    job = "train-sec"
    KubernetesBackend().train(TrainConfig(), kube_request(name=job, wait=False))
    KubernetesBackend().serve(ServeRequest(checkpoint="s3://bucket/sentinel/runs/x/best.pt"),
                              kube_request(wait=False))
    with kube_client.connect(namespace=namespace) as kube:  # the platform's pods, in the same namespace
        objects = [*platform_objects.minio(namespace, {"type": "kwok"}),
                   *platform_objects.mlflow(namespace, {"type": "kwok"})]
        for obj in objects:
            kube.apply(obj)

    # Who each Ray object's pods are, by KubeRay's own label (a RayJob's cluster has a generated name).
    def clusters() -> dict[str, str]:
        found = custom.list_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters")["items"]
        return {c["metadata"]["name"]: c["metadata"]["labels"].get(ORIGIN, c["metadata"]["name"]) for c in found}

    owners = {"interactive": "RayCluster", job: "RayJob", "recommender": "RayService"}

    def pods_reason() -> str | None:
        made = clusters()
        missing = [o for o in owners if o not in made.values()]
        if missing:
            return f"no RayCluster yet for {missing}"
        counts = {o: len(_pods(core, namespace, {"ray.io/cluster": c})) for c, o in made.items()}
        submitter = _pods(core, namespace, {"batch.kubernetes.io/job-name": job})
        platform = _pods(core, namespace, {platform_objects.COMPONENT: "minio"}) | _pods(
            core, namespace, {platform_objects.COMPONENT: "mlflow"})
        if min(counts.values()) < 2 or not submitter or len(platform) < 3:
            return f"Ray pods {counts}, submitter {sorted(submitter)}, platform pods {sorted(platform)}"
        return None

    wait_for("every pod admitted under Pod Security restricted", pods_reason, TIMEOUT_S)
    # Every container has a read-only root, KubeRay's init containers and autoscaler sidecar too, and
    # a writable /tmp (security.scratch).
    containers = [(p.metadata.name, c) for p in core.list_namespaced_pod(namespace).items
                  for c in [*(p.spec.init_containers or []), *p.spec.containers]]
    assert [(pod, c.name) for pod, c in containers if not c.security_context.read_only_root_filesystem] == []
    assert [(pod, c.name) for pod, c in containers if "/tmp" not in {m.mount_path for m in c.volume_mounts}] == []

    # The admission is on: a pod without Sentinel's securityContext is refused.
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
            "spec": {"containers": [{"name": "c", "image": "registry.example/sentinel-train:0.1.0"}]}}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, bare)
    assert refused.value.status == 403 and "violates PodSecurity" in refused.value.body, refused.value.body
    serve_head = core.list_namespaced_pod(namespace, label_selector="sentinel.io/rayservice=recommender,"
                                                                    "ray.io/node-type=head").items
    assert {c.name for c in serve_head[0].spec.containers} == {"ray-head", "autoscaler"}  # the sidecar too

    # The policies: accepted, and each selects exactly its own object's Ray pods.
    made = clusters()
    policies = {p.metadata.name: p for p in client.NetworkingV1Api(k8s_api).list_namespaced_network_policy(
        namespace).items}
    assert set(policies) == {"interactive-ray", f"{job}-ray", "recommender-ray", "recommender-serve",
                             platform_objects.MINIO, platform_objects.MLFLOW}
    for name in (platform_objects.MINIO, platform_objects.MLFLOW):  # the platform's: its own pods only
        selected = _pods(core, namespace, policies[name].spec.pod_selector.match_labels)
        assert selected == _pods(core, namespace, {"app.kubernetes.io/name": name}) and len(selected) == 1
    every_ray_pod = _pods(core, namespace, {"ray.io/is-ray-node": "yes"})
    for owner in owners:
        own = set().union(*(_pods(core, namespace, {"ray.io/cluster": c}) for c, o in made.items() if o == owner))
        policy = policies[f"{owner}-ray"]
        selected = _pods(core, namespace, policy.spec.pod_selector.match_labels)
        assert selected == own and own < every_ray_pod, (owner, selected, own)
        members, dashboard, metrics = policy.spec.ingress
        assert members.ports is None  # every port, but only from the same cluster's pods
        assert _pods(core, namespace, members._from[0].pod_selector.match_labels) == own
        assert [p.port for p in dashboard.ports] == [8265] and [p.port for p in metrics.ports] == [8080]
        peers = [_pods(core, namespace, peer.pod_selector.match_labels) for peer in dashboard._from]
        submitter = _pods(core, namespace, {"batch.kubernetes.io/job-name": job}) if owner == job else set()
        assert peers[1:] == ([submitter] if submitter else [])  # the RayJob's submitter, and only its own
    serve = policies["recommender-serve"].spec.ingress
    assert [[p.port for p in rule.ports] for rule in serve] == [[8000, 9000], [8000]]

    # `delete` takes a Ray object's policies with it, and leaves the others'.
    KubernetesBackend().delete("recommender", kube_request())
    left = {p.metadata.name for p in client.NetworkingV1Api(k8s_api).list_namespaced_network_policy(namespace).items}
    assert left == set(policies) - {"recommender-ray", "recommender-serve"}
