"""The RayService's gRPC port against the real test environment (tests/testenv): the real KubeRay 1.5.2
operator makes its serve Service with the port named ``serve`` only, so Sentinel's own Service
``<name>-grpc`` carries 9000; the real endpoint controller fills it with exactly this RayService's
pods whose Serve proxy is ready (``ray.io/serve=true``, set by the operator on the head), and
``sentinel delete`` removes it with the RayService."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from tests.k8s.test_cluster import TIMEOUT_S, cli, cluster  # noqa: F401 - the fixture
from tests.testenv.process import wait_for

pytestmark = pytest.mark.k8s


def test_grpc_reaches_the_serving_pods_through_sentinels_service(cluster) -> None:  # noqa: F811
    ns = cluster.namespace
    cluster.env.dashboard.set_serve_status(ns, "RUNNING")
    cluster.write_record("train-20260103-000000-cccc", 0.9, "2026-01-03T00:00:00+00:00")
    served = cli("serve", "--target", "k8s", "--checkpoint", "latest", "--timeout", "60", "-o", "json")
    assert served.exit_code == 0, served.output
    summary = json.loads(served.stdout)
    assert summary["grpc_endpoint"] == f"recommender-grpc.{ns}.svc.cluster.local:9000"
    config = cluster.get("rayservices", "recommender")["spec"]["serveConfigV2"]
    assert "grpc_options" in config and "add_GRPCInferenceServiceServicer_to_server" in config

    # What the operator itself made: the serve Service has the HTTP port only.
    kuberay = cluster.core.read_namespaced_service("recommender-serve-svc", ns)
    assert [p.name for p in kuberay.spec.ports] == ["serve"]

    grpc = cluster.core.read_namespaced_service("recommender-grpc", ns)
    assert [(p.name, p.port, p.target_port) for p in grpc.spec.ports] == [("grpc", 9000, "grpc")]
    slices = client.DiscoveryV1Api(cluster.api)

    def endpoints() -> tuple[set[str], set[str], list]:
        ready = {p.status.pod_ip for p in cluster.pods("sentinel.io/rayservice=recommender,ray.io/serve=true")
                 if p.status.pod_ip}
        found = slices.list_namespaced_endpoint_slice(ns, label_selector="kubernetes.io/service-name=recommender-grpc")
        addresses = {a for s in found.items for e in s.endpoints or [] for a in e.addresses}
        ports = [(p.name, p.port) for s in found.items for p in s.ports or []]
        return ready, addresses, ports

    def why_not() -> str | None:
        ready, addresses, ports = endpoints()
        heads = cluster.pods("sentinel.io/rayservice=recommender,ray.io/node-type=head,ray.io/serve=true")
        if heads and ready and addresses == ready and ports == [("grpc", 9000)]:
            return None
        return f"serving pods {ready}, head labelled ready: {bool(heads)}, endpoints {addresses} ports {ports}"

    wait_for("the gRPC Service's endpoints", why_not, TIMEOUT_S)
    ready, _, _ = endpoints()
    assert len(ready) >= 2  # the head (labelled by the operator) and the serving worker

    deleted = cli("delete", "recommender", "-o", "json")
    assert deleted.exit_code == 0, deleted.output
    services = {s.metadata.name for s in cluster.core.list_namespaced_service(ns).items}
    assert "recommender-grpc" not in services
