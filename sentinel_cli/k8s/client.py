"""Kubernetes I/O: one table of kinds and one funnel for every API call and its errors.

Objects travel as plain dicts (JSON), whatever their kind. Kinds are declared as data (``Kind``:
group, version, plural, kind, namespaced), so every object, built-in or custom, is read, listed,
applied and deleted through the same path-based requests. Every request goes through
``Kube._call``, which retries transient failures and turns the API's failures into
``SentinelError``s that name the cause and the next step: no kubeconfig, cluster unreachable,
credentials rejected, forbidden (RBAC), KubeRay CRDs missing, namespace missing, an object rejected
by validation.

The kubernetes package is imported here and in nothing the CLI loads eagerly.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentinel_ml.errors import ConfigError, SentinelError

FIELD_MANAGER = "sentinel"
APPLY_PATCH = "application/apply-patch+yaml"
TIMEOUT = (5, 30)  # connect, read (seconds) for every call but log streams
RETRIES = 3  # after the first attempt, for idempotent requests only
BACKOFF_S = 0.25  # doubles after each retry
MAX_RETRY_AFTER_S = 5.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_sleep = time.sleep  # the tests record the backoff instead of waiting it out


class ClusterUnreachable(ConfigError):
    """No kubeconfig, or the API server does not answer."""


class Forbidden(ConfigError):
    """The credentials work but RBAC does not allow the call."""


class KubeRayMissing(ConfigError):
    """The ray.io CRDs are not installed in the cluster."""


class Rejected(ConfigError):
    """The API server refused an object (schema validation, admission)."""


class NotFound(ConfigError):
    """The named object does not exist."""


class Conflict(SentinelError):
    """The object exists already (create), or changed under the request."""


# -- kinds -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def type_meta(self) -> dict[str, str]:
        """The ``apiVersion`` and ``kind`` that head every object of this kind."""
        return {"apiVersion": self.api_version, "kind": self.kind}

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the collection (all namespaces when ``namespace`` is None) or of one object."""
        path = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            path += f"/namespaces/{namespace}"
        path += f"/{self.plural}"
        return f"{path}/{name}" if name else path


_RBAC = "rbac.authorization.k8s.io"
RAYJOB = Kind("RayJob", "ray.io", "v1", "rayjobs")
RAYSERVICE = Kind("RayService", "ray.io", "v1", "rayservices")
RAYCLUSTER = Kind("RayCluster", "ray.io", "v1", "rayclusters")
NAMESPACE = Kind("Namespace", "", "v1", "namespaces", namespaced=False)
NODE = Kind("Node", "", "v1", "nodes", namespaced=False)
POD = Kind("Pod", "", "v1", "pods")
EVENT = Kind("Event", "", "v1", "events")
SERVICEACCOUNT = Kind("ServiceAccount", "", "v1", "serviceaccounts")
SECRET = Kind("Secret", "", "v1", "secrets")
SERVICE = Kind("Service", "", "v1", "services")
CONFIGMAP = Kind("ConfigMap", "", "v1", "configmaps")
PVC = Kind("PersistentVolumeClaim", "", "v1", "persistentvolumeclaims")
DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments")
DAEMONSET = Kind("DaemonSet", "apps", "v1", "daemonsets")
JOB = Kind("Job", "batch", "v1", "jobs")
CRONJOB = Kind("CronJob", "batch", "v1", "cronjobs")
NETWORKPOLICY = Kind("NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies")
ROLE = Kind("Role", _RBAC, "v1", "roles")
ROLEBINDING = Kind("RoleBinding", _RBAC, "v1", "rolebindings")
CLUSTERROLE = Kind("ClusterRole", _RBAC, "v1", "clusterroles", namespaced=False)
CLUSTERROLEBINDING = Kind("ClusterRoleBinding", _RBAC, "v1", "clusterrolebindings", namespaced=False)
CRD = Kind("CustomResourceDefinition", "apiextensions.k8s.io", "v1", "customresourcedefinitions",
           namespaced=False)
APISERVICE = Kind("APIService", "apiregistration.k8s.io", "v1", "apiservices", namespaced=False)
PODMONITOR = Kind("PodMonitor", "monitoring.coreos.com", "v1", "podmonitors")
SERVICEMONITOR = Kind("ServiceMonitor", "monitoring.coreos.com", "v1", "servicemonitors")
NODEPOOL = Kind("NodePool", "karpenter.sh", "v1", "nodepools", namespaced=False)  # read only: is Karpenter here
RAY_KINDS = (RAYJOB, RAYSERVICE, RAYCLUSTER)
KINDS = {k.kind: k for k in (
    *RAY_KINDS, NAMESPACE, NODE, POD, EVENT, SERVICEACCOUNT, SECRET, SERVICE, CONFIGMAP, PVC,
    DEPLOYMENT, DAEMONSET, JOB, CRONJOB, NETWORKPOLICY, ROLE, ROLEBINDING, CLUSTERROLE, CLUSTERROLEBINDING, CRD,
    APISERVICE,
    PODMONITOR, SERVICEMONITOR, NODEPOOL)}


def kind_of(obj: dict[str, Any]) -> Kind:
    try:
        return KINDS[obj["kind"]]
    except KeyError:
        raise ConfigError(f"Sentinel does not manage objects of kind {obj.get('kind')!r}") from None


# -- requests --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One API request, and the words its errors use."""

    method: str
    path: str
    what: str  # "list rayjobs in namespace x": completes "cannot …", "forbidden to …"
    kind: Kind | None = None
    namespace: str | None = None  # None: cluster-scoped, or all namespaces
    verb: str = "get"  # the RBAC verb, for the hint when forbidden
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None
    content_type: str = "application/json"
    timeout: tuple[float, float] = TIMEOUT
    stream: bool = False  # hand back the open response (log streams): never retried

    @property
    def retryable(self) -> bool:
        # GET, DELETE and server-side apply converge when repeated; anything else could duplicate.
        idempotent = self.method in ("GET", "DELETE") or self.content_type == APPLY_PATCH
        return idempotent and not self.stream


def connect(kubeconfig: str | None = None, context: str | None = None, namespace: str = "default") -> Kube:
    """A client from the kubeconfig (``kubeconfig``, $KUBECONFIG, ~/.kube/config), else in-cluster."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    files = [Path(p).expanduser() for p in path.split(os.pathsep) if p]
    configuration = client.Configuration()
    if any(f.is_file() for f in files):
        try:
            config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
        except (ConfigException, ValueError, OSError) as e:
            raise ClusterUnreachable(
                f"cannot use kubeconfig {path}: {e}",
                hint="check the file and the context name (kubectl config get-contexts)",
            ) from None
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        raise ClusterUnreachable(
            f"no kubeconfig found ({path})",
            hint="set KUBECONFIG or kubernetes.kubeconfig in the profile, e.g. after "
                 "`aws eks update-kubeconfig --name <cluster>`",
        )
    configuration.retries = False  # Kube._call retries, with backoff; urllib3 would retry unseen
    return Kube(client.ApiClient(configuration), namespace)


class Kube:
    """The Kubernetes API, as plain dicts; namespaced calls default to ``namespace``."""

    def __init__(self, api, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    @property
    def server(self) -> str:
        return self.api.configuration.host

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- objects -------------------------------------------------------------------------------

    def apply(self, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply as field manager ``sentinel``: creates or converges, never conflicts."""
        kind, name = kind_of(obj), obj["metadata"]["name"]
        ns = self._namespace(kind, obj["metadata"].get("namespace"))
        query = [("fieldManager", FIELD_MANAGER), ("force", "true"), ("fieldValidation", "Strict")]
        if dry_run:
            query.append(("dryRun", "All"))
        return self._call(Request("PATCH", kind.path(ns, name), f"apply {kind.kind} {_where(ns, name)}", kind, ns,
                                  verb="patch", query=tuple(query), body=obj, content_type=APPLY_PATCH))

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Create ``obj`` as field manager ``sentinel``; None when it exists already (it is kept as
        it is: a generated Secret keeps its value). Errors never carry the object's content."""
        kind, name = kind_of(obj), obj["metadata"]["name"]
        ns = self._namespace(kind, obj["metadata"].get("namespace"))
        try:
            return self._call(Request("POST", kind.path(ns), f"create {kind.kind} {_where(ns, name)}", kind, ns,
                                      verb="create", query=(("fieldManager", FIELD_MANAGER),), body=obj))
        except Conflict:
            return None

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        ns = self._namespace(kind, namespace)
        try:
            return self._call(Request("GET", kind.path(ns, name), f"read {kind.kind} {name}", kind, ns))
        except NotFound:
            return None

    def list(self, kind: Kind, selector: str | None = None, all_namespaces: bool = False) -> list[dict[str, Any]]:
        """One LIST call: the objects of ``kind`` matching the label ``selector``."""
        ns = None if all_namespaces else self._namespace(kind)
        where = f" in namespace {ns}" if ns else " in all namespaces" if kind.namespaced else ""
        return self._list(kind, ns, selector, f"list {kind.plural}{where}")

    def delete(self, kind: Kind, name: str, namespace: str | None = None) -> bool:
        """Delete in the background (owned objects follow); False when it was not there."""
        ns = self._namespace(kind, namespace)
        try:
            self._call(Request("DELETE", kind.path(ns, name), f"delete {kind.kind} {name}", kind, ns, verb="delete",
                               query=(("propagationPolicy", "Background"),)))
        except NotFound:
            return False
        return True

    def get_object(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The live version of ``obj`` (found by kind, name and namespace), or None."""
        return self.get(kind_of(obj), obj["metadata"]["name"], obj["metadata"].get("namespace"))

    def delete_object(self, obj: dict[str, Any]) -> bool:
        return self.delete(kind_of(obj), obj["metadata"]["name"], obj["metadata"].get("namespace"))

    def crd_exists(self, name: str) -> bool:
        return self.get(CRD, name) is not None

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return self._list(POD, self.namespace, selector, f"list pods ({selector})")

    def events(self) -> list[dict[str, Any]]:
        return self._list(EVENT, self.namespace, None, "list events")

    def nodes(self) -> list[dict[str, Any]]:
        return self._list(NODE, None, None, "list nodes")

    def deployments(self, selector: str) -> list[dict[str, Any]]:
        """Deployments in every namespace matching ``selector``."""
        return self._list(DEPLOYMENT, None, selector, "list deployments")

    def version(self) -> str:
        return self._call(Request("GET", "/version", "read the server version"))["gitVersion"]

    def _list(self, kind: Kind, ns: str | None, selector: str | None, what: str) -> list[dict[str, Any]]:
        query = (("labelSelector", selector),) if selector else ()
        return self._call(Request("GET", kind.path(ns), what, kind, ns, verb="list", query=query)).get("items", [])

    def _namespace(self, kind: Kind, namespace: str | None = None) -> str | None:
        return (namespace or self.namespace) if kind.namespaced else None

    # -- logs ----------------------------------------------------------------------------------

    def log_lines(self, pod: str, container: str | None, *, follow: bool, since_seconds: int | None,
                  read_timeout: float, max_seconds: float | None = None) -> Iterator[str]:
        """Lines of a container's log, each prefixed with its RFC 3339 timestamp.

        Ends quietly when the stream ends, drops, or stays silent for ``read_timeout`` seconds, or
        after ``max_seconds``: the caller decides whether to reconnect (``LogCursor`` skips what it
        has already seen).
        """
        from urllib3.exceptions import HTTPError as Urllib3Error

        response = self._call(self._log_request(pod, container, follow, since_seconds, read_timeout))
        deadline = time.monotonic() + max_seconds if max_seconds else None
        buffer = b""
        try:
            for chunk in response.stream(4096, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
                if deadline and time.monotonic() > deadline:
                    return
            if buffer:
                yield buffer.decode(errors="replace")
        except (Urllib3Error, OSError):
            return  # dropped or silent: the caller checks the job and reconnects
        finally:
            response.release_conn()
            response.close()

    def _log_request(self, pod: str, container: str | None, follow: bool, since_seconds: int | None,
                     read_timeout: float) -> Request:
        query = [("follow", str(follow).lower()), ("timestamps", "true")]
        if container:
            query.append(("container", container))
        if since_seconds:
            query.append(("sinceSeconds", str(since_seconds)))
        return Request("GET", POD.path(self.namespace, pod) + "/log", f"read logs of pod {pod}", POD,
                       self.namespace, query=tuple(query), timeout=(5, read_timeout), stream=True)

    # -- the funnel ----------------------------------------------------------------------------

    def _call(self, request: Request) -> Any:
        """Send ``request``; retry transient failures; the JSON body, or the open response to stream."""
        delays = _delays(request)
        while True:
            try:
                response = self._send(request)
            except _network_errors() as e:
                if _is_refused_or_reset(e) and _wait(delays):
                    continue
                raise self._unreachable(request, _cause(e)) from None
            if 200 <= response.status < 300:
                return response.response if request.stream else _json(response.read())
            body = _body(response.read())
            if _transient(response.status, body) and _wait(delays, _retry_after(response)):
                continue
            raise self._translate(request, response.status, response.reason, body) from None

    def _send(self, request: Request):
        headers = {"Accept": "application/json", "Content-Type": request.content_type}
        method, url, headers, body, _ = self.api.param_serialize(
            request.method, request.path, query_params=list(request.query), header_params=headers,
            body=request.body, auth_settings=["BearerToken"])
        return self.api.call_api(method, url, headers, body, _request_timeout=request.timeout)

    def _unreachable(self, request: Request, cause: object) -> ClusterUnreachable:
        return ClusterUnreachable(
            f"cannot reach the Kubernetes API server at {self.server} to {request.what}: {_short(cause)}",
            hint="check that the cluster is up and the kubeconfig context points at it (kubectl cluster-info)")

    def _translate(self, request: Request, status: int, reason: str | None, body: dict[str, Any]) -> SentinelError:
        failure = _Failure(request, status, body.get("message") or reason or str(status),
                           body.get("details") or {}, request.namespace or self.namespace, self.server)
        if _is_schema_error(status, body):
            return _rejected(failure)
        return _BY_STATUS.get(status, _failed)(failure)


# -- retries ---------------------------------------------------------------------------------------


def _transient(status: int, body: dict[str, Any]) -> bool:
    return status in RETRY_STATUSES and not _is_schema_error(status, body)


def _is_schema_error(status: int, body: dict[str, Any]) -> bool:
    """A server-side apply of a field the schema lacks: the API server answers 500 ("failed to
    create typed patch object"), though it is the object that is wrong and a retry cannot help."""
    return status == 500 and "typed patch object" in str(body.get("message", ""))


def _delays(request: Request) -> Iterator[float]:
    return iter([BACKOFF_S * 2 ** i for i in range(RETRIES)] if request.retryable else [])


def _wait(delays: Iterator[float], at_least: float = 0.0) -> bool:
    """Sleep before the next attempt; False when no attempt is left."""
    delay = next(delays, None)
    if delay is None:
        return False
    _sleep(max(delay, at_least))
    return True


def _retry_after(response) -> float:
    try:
        return min(float(response.headers.get("Retry-After") or 0), MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0


def _network_errors() -> tuple[type[BaseException], ...]:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    return ApiException, Urllib3Error, OSError  # ApiException here has status 0: TLS failed


def _is_refused_or_reset(error: BaseException) -> bool:
    """Connection refused, or dropped mid-call: worth another attempt. Timeouts and DNS are not."""
    from urllib3.exceptions import (
        MaxRetryError,
        NameResolutionError,
        NewConnectionError,
        ProtocolError,
    )

    if isinstance(error, MaxRetryError) and error.reason is not None:
        error = error.reason  # a client built elsewhere may keep urllib3's own retries
    if isinstance(error, NameResolutionError):
        return False
    return isinstance(error, (NewConnectionError, ProtocolError, ConnectionRefusedError, ConnectionResetError))


def _cause(error: BaseException) -> object:
    from kubernetes.client.exceptions import ApiException

    return error.reason if isinstance(error, ApiException) else error


# -- errors ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    """An API error response, with what the messages need to name it."""

    request: Request
    status: int
    message: str
    details: dict[str, Any]
    namespace: str
    server: str


def _unauthorized(f: _Failure) -> SentinelError:
    return ClusterUnreachable(f"the Kubernetes API server rejected the credentials to {f.request.what}",
                              hint="refresh them (for EKS: aws eks update-kubeconfig --name <cluster>)")


def _forbidden(f: _Failure) -> SentinelError:
    verb, kind = f.request.verb, f.request.kind
    resource = kind.plural if kind else f.request.path
    if kind is not None and not kind.namespaced:
        hint = (f"ask for an RBAC ClusterRole allowing {verb} on {resource} "
                f"(check: kubectl auth can-i {verb} {resource})")
    else:
        hint = (f"ask for an RBAC Role allowing {verb} on {resource} in namespace {f.namespace} "
                f"(check: kubectl auth can-i {verb} {resource} -n {f.namespace})")
    return Forbidden(f"forbidden to {f.request.what}: {f.message}", hint=hint)


def _not_found(f: _Failure) -> SentinelError:
    kind = f.request.kind
    if f.details.get("kind") == "namespaces":
        return ConfigError(f"namespace {f.namespace} does not exist",
                           hint=f"create it (kubectl create namespace {f.namespace}) or set "
                                "kubernetes.namespace / --namespace")
    if f.details.get("name"):
        return NotFound(f"{kind.kind if kind else 'object'} {f.details['name']} not found "
                        f"in namespace {f.namespace}",
                        hint="list what Sentinel manages: sentinel status --target k8s")
    if kind is not None and kind.group == "ray.io":
        return KubeRayMissing(f"the KubeRay CRDs are not installed in the cluster at {f.server} "
                              f"(no {kind.plural}.{kind.group}/{kind.version})",
                              hint="run `sentinel up` to install the KubeRay operator and its CRDs")
    return NotFound(f"not found: {f.request.what} ({f.message})")


def _rejected(f: _Failure) -> SentinelError:
    return Rejected(f"the API server rejected {f.request.what}: {f.message}",
                    hint="check the values in the profile and flags; `sentinel render …` shows the objects")


def _conflict(f: _Failure) -> SentinelError:
    return Conflict(f"conflict to {f.request.what}: {f.message}", hint="retry the command")


def _failed(f: _Failure) -> SentinelError:
    return SentinelError(f"the Kubernetes API failed to {f.request.what}: HTTP {f.status} {f.message}",
                         hint="retry; if it persists, check the API server's health")


_BY_STATUS: dict[int, Callable[[_Failure], SentinelError]] = {
    400: _rejected, 401: _unauthorized, 403: _forbidden, 404: _not_found, 409: _conflict, 422: _rejected}


def _where(ns: str | None, name: str) -> str:
    return f"{ns}/{name}" if ns else name


def _json(data: bytes) -> dict[str, Any]:
    return json.loads(data) if data else {}


def _body(data: bytes | None) -> dict[str, Any]:
    try:
        body = json.loads(data or b"{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _short(error: object) -> str:
    text = str(error)
    for marker in ("Failed to establish a new connection: ", "Caused by "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.strip(" ()'\"")[:200]
