"""Least privilege for the pods Sentinel renders, as data (pure).

Pod Security: every pod Sentinel renders (Ray heads and workers, a RayJob's submitter, the autoscaler
sidecar of a serving cluster, the platform's MinIO, MLflow, bucket Job and operator) admits under
the Pod Security Standards' ``restricted`` level (``POD_SECURITY_LEVEL``): non-root, no privilege
escalation, every capability dropped, seccomp ``RuntimeDefault``. The images run as uid 1000.

Read-only root filesystem: every container Sentinel renders has ``readOnlyRootFilesystem: true``
and an ``emptyDir`` for each path it writes (``scratch``): Ray's pods (``RAY_SCRATCH``: ``/tmp``,
where Ray 2.60 keeps its session directories, sockets, logs, spilled objects and the runtime env
agent's files, Serve's HAProxy config and Python's temporary files; the caches under ``$HOME``;
``SENTINEL_HOME``) and the autoscaler sidecar beside them (KubeRay mounts its own ``/tmp/ray`` into
both, over ours); MinIO, MLflow, the bucket Job and the schedule's CronJob (``/tmp``:
MinIO's ``$HOME`` and mc's config, MLflow's server's temporary files, the CronJob's
``SENTINEL_HOME``). Their data stays on their volumes.

NetworkPolicies: with every RayCluster, RayJob and RayService, ``templates/_networkpolicy.j2``
renders the values of ``ray_policies``. Ray's pods carry ``CLUSTER_LABEL: <name>`` (a RayJob's and a
RayService's RayCluster get a generated name, so KubeRay's ``ray.io/cluster`` is not known when
rendering); every port of them (GCS 6379, the client 10001, the object and node managers, the
dashboard agent, the workers' ports) admits only pods with the same label. On top of that the
dashboard (8265) admits the operator (``network_policy.operator``) and the RayJob's submitter
(``SUBMITTER_LABEL``); the metrics port (8080) admits Prometheus; a RayService's Serve HTTP and gRPC
ports admit ``network_policy.serve_from``, and its HTTP port the operator (KubeRay checks each
proxy's ``/-/healthz``). A rule whose peers are all removed is left out, never rendered with an
empty ``from`` (which Kubernetes reads as "everyone").
"""

from __future__ import annotations

from typing import Any

POD_SECURITY_LEVEL = "restricted"  # the Pod Security Standard every rendered pod meets

CLUSTER_LABEL = "sentinel.io/ray-cluster"  # on a Ray object's head and worker pods: its name
SUBMITTER_LABEL = "sentinel.io/ray-submitter"  # on a RayJob's submitter pod: the RayJob's name
DASHBOARD_PORT = 8265
METRICS_PORT = 8080


def pod_security() -> dict[str, Any]:
    """The pod-level securityContext (a fresh copy: values are plain data)."""
    return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


# What Ray's containers write under a read-only root (the images' layout: uid 1000, HOME /home/ray,
# SENTINEL_HOME /home/ray/.sentinel; Dockerfile.train, Dockerfile.serve).
RAY_SCRATCH = ("/tmp", "/home/ray/.cache", "/home/ray/.config", "/home/ray/.sentinel")
TMP = ("/tmp",)  # the platform's pods and the schedule's CronJob


def container_security() -> dict[str, Any]:
    """The container-level securityContext (a fresh copy): with ``scratch`` for what it writes."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True}


def scratch(paths: tuple[str, ...]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's ``emptyDir`` volumes and the container's mounts for ``paths``, the directories it
    writes under a read-only root filesystem."""
    names = ["scratch" + path.replace("/", "-").replace(".", "") for path in paths]
    return ([{"name": name, "emptyDir": {}} for name in names],
            [{"name": name, "mountPath": path} for name, path in zip(names, paths)])


def peer(item) -> dict[str, Any]:
    """A ``settings.Peer`` as a NetworkPolicy peer."""
    if item.cidr is not None:
        return {"ipBlock": {"cidr": item.cidr}}
    found: dict[str, Any] = {}
    if item.namespaces is not None:
        found["namespaceSelector"] = {"matchLabels": dict(item.namespaces)} if item.namespaces else {}
    if item.pods is not None:
        found["podSelector"] = {"matchLabels": dict(item.pods)} if item.pods else {}
    return found


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def _rule(peers: list[dict[str, Any]], ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ingress rule, or none when no peer is left (an empty ``from`` admits everyone)."""
    return [{"from": peers, "ports": ports}] if peers else []


def ray_policies(settings, name: str, labels: dict[str, str], *, submitter: bool = False,
                 serve_ports: tuple[int, int] | None = None) -> dict[str, Any]:
    """The values of ``templates/_networkpolicy.j2`` for the Ray object ``name``: ``serve_ports``
    (HTTP, gRPC) for a RayService, ``submitter`` for a RayJob."""
    policy = settings.network_policy
    if not policy.enabled:
        return {"enabled": False}
    members = {CLUSTER_LABEL: name}
    operator = [peer(p) for p in policy.operator]
    dashboard = operator + ([{"podSelector": {"matchLabels": {SUBMITTER_LABEL: name}}}] if submitter else [])
    ingress = [{"from": [{"podSelector": {"matchLabels": dict(members)}}]},  # every port, this cluster only
               *_rule(dashboard, _tcp(DASHBOARD_PORT)),
               *_rule([peer(p) for p in policy.prometheus], _tcp(METRICS_PORT))]
    values: dict[str, Any] = {"enabled": True, "name": f"{name}-ray", "selector": members,
                              "labels": {**labels, CLUSTER_LABEL: name}, "ingress": ingress, "serve": None}
    if serve_ports is not None:
        http, grpc = serve_ports
        serve = [*_rule([peer(p) for p in policy.serve_from], _tcp(http, grpc)),
                 *_rule(operator, _tcp(http))]
        values["serve"] = {"name": f"{name}-serve", "ingress": serve} if serve else None
    return values


def policy_names(name: str) -> tuple[str, str]:
    """The NetworkPolicies a Ray object ``name`` may have."""
    return f"{name}-ray", f"{name}-serve"
