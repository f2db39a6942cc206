"""One HTTP request to a Service's port, carried by a port-forward through the API server to a ready
pod behind it: Sentinel's own calls into a cluster (``verify``) need no route into the pod network,
and, unlike the API server's Service proxy (which strips ``Authorization`` after authenticating the
caller), the request reaches the pod with its headers intact, so the serving token goes with it.

RBAC: ``get`` on ``services``, ``list`` on ``pods``, and ``create`` and ``get`` on
``pods/portforward`` (the kubernetes client opens the forward as a WebSocket, a GET; newer API
servers also ask for ``create``, as ``kubectl port-forward`` does).
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

from sentinel_ml.errors import ConfigError, JobFailed

READ_TIMEOUT_S = 60.0  # one inference answer; the serving API answers in milliseconds when it is up


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def target(service: dict[str, Any], port: int, pods: list[dict[str, Any]]) -> tuple[str, int]:
    """(pod, container port) for ``service``'s ``port``: the first Ready pod of ``pods`` (the Service's
    selector's), the port's ``targetPort`` resolved (a number, or a name among the pod's container ports)."""
    name = service["metadata"]["name"]
    spec_port = next((p for p in service.get("spec", {}).get("ports", []) if p.get("port") == port), None)
    if spec_port is None:
        raise ConfigError(f"Service {name} has no port {port}",
                          hint=f"kubectl get service {name} -o yaml shows its ports")
    wanted = spec_port.get("targetPort", port)
    for pod in pods:
        if not _ready(pod):
            continue
        if isinstance(wanted, int) or str(wanted).isdigit():
            return pod["metadata"]["name"], int(wanted)
        for container in pod.get("spec", {}).get("containers", []):
            for p in container.get("ports", []):
                if p.get("name") == wanted:
                    return pod["metadata"]["name"], int(p["containerPort"])
    raise ConfigError(f"no ready pod serves Service {name} port {port}",
                      hint=f"sentinel status shows the RayService; kubectl get pods -l "
                           f"{_selector(service) or '<selector>'}")


def call(kube, service: str, port: int, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None, timeout_s: float = READ_TIMEOUT_S) -> Answer:
    """``method path`` on ``service``:``port`` in ``kube``'s namespace, through a port-forward to one
    ready pod behind it. Any HTTP status comes back (the caller judges it); a forward that cannot be
    opened raises with the cause."""
    from sentinel_cli.k8s.client import SERVICE, NotFound

    svc = kube.get(SERVICE, service)
    if svc is None:
        raise NotFound(f"Service {service} does not exist in namespace {kube.namespace}",
                       hint="sentinel status lists what serves")
    selector = _selector(svc)
    pod, pod_port = target(svc, port, kube.pods(selector) if selector else [])
    forward = _open(kube, pod, pod_port)
    payload = json.dumps(body).encode() if body is not None else None
    connection = http.client.HTTPConnection("localhost", pod_port, timeout=timeout_s)
    connection.sock = forward.socket(pod_port)
    connection.sock.settimeout(timeout_s)
    try:
        connection.request(method, path, body=payload, headers={
            "Content-Type": "application/json", "Connection": "close", **(headers or {})})
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    except (OSError, http.client.HTTPException) as e:
        error = forward.error(pod_port)
        raise JobFailed(f"the port-forward to pod {pod} port {pod_port} broke: {error or type(e).__name__}",
                        hint=f"kubectl logs {pod} -n {kube.namespace}; is the server in it listening?") from None
    finally:
        connection.close()
        forward.close()


def _open(kube, pod: str, port: int):
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException
    from kubernetes.stream import portforward

    from sentinel_cli.k8s.client import Forbidden

    try:
        return portforward(CoreV1Api(kube.api).connect_get_namespaced_pod_portforward, pod, kube.namespace,
                           ports=str(port))
    except ApiException as e:
        reason = str(e.reason or e)
        if "403" in reason:
            raise Forbidden(f"forbidden to port-forward to pod {pod} in namespace {kube.namespace}",
                            hint="grant create and get on pods/portforward (kubectl auth can-i create "
                                 "pods/portforward)") from None
        raise JobFailed(f"cannot open a port-forward to pod {pod} port {port}: {reason.splitlines()[0]}",
                        hint="check that the pod is running (kubectl get pod) and the API server "
                             "allows port-forwarding") from None


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))


def _selector(service: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((service.get("spec", {}).get("selector") or {}).items()))
