"""Kubernetes I/O: one funnel for every API call and its errors.

Objects travel as plain dicts (JSON), whatever their kind. Every call goes through ``Kube._call``,
which turns the API's failures into ``SentinelError``s that name the cause and the next step:
no kubeconfig, cluster unreachable, credentials rejected, forbidden (RBAC), KubeRay CRDs missing,
namespace missing, an object rejected by validation. Kinds are declared as data (``Kind``).

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


class ClusterUnreachable(ConfigError):
    """No kubeconfig, or the API server does not answer."""


class Forbidden(ConfigError):
    """The credentials work but RBAC does not allow the call."""


class KubeRayMissing(ConfigError):
    """The ray.io CRDs are not installed in the cluster."""


class Rejected(ConfigError):
    """The API server refused an object (schema validation, admission)."""


class Detached(SentinelError):
    """Ctrl-C while following: the job keeps running; the message says how to reattach."""

    exit_code = 130


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RAYJOB = Kind("RayJob", "ray.io", "v1", "rayjobs")
RAYSERVICE = Kind("RayService", "ray.io", "v1", "rayservices")
RAYCLUSTER = Kind("RayCluster", "ray.io", "v1", "rayclusters")
SERVICEACCOUNT = Kind("ServiceAccount", "", "v1", "serviceaccounts")
RAY_KINDS = (RAYJOB, RAYSERVICE, RAYCLUSTER)
KINDS = {k.kind: k for k in (*RAY_KINDS, SERVICEACCOUNT)}


def kind_of(obj: dict[str, Any]) -> Kind:
    try:
        return KINDS[obj["kind"]]
    except KeyError:
        raise ConfigError(f"Sentinel does not manage objects of kind {obj.get('kind')!r}") from None


def connect(kubeconfig: str | None = None, context: str | None = None, namespace: str = "default") -> Kube:
    """A client from the kubeconfig (``kubeconfig``, $KUBECONFIG, ~/.kube/config), else in-cluster."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    files = [Path(p).expanduser() for p in path.split(os.pathsep) if p]
    if any(f.is_file() for f in files):
        try:
            api = config.new_client_from_config(config_file=path, context=context)
        except (ConfigException, ValueError, OSError) as e:
            raise ClusterUnreachable(
                f"cannot use kubeconfig {path}: {e}",
                hint="check the file and the context name (kubectl config get-contexts)",
            ) from None
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        api = client.ApiClient(configuration)
    else:
        raise ClusterUnreachable(
            f"no kubeconfig found ({path})",
            hint="set KUBECONFIG or kubernetes.kubeconfig in the profile, e.g. after "
                 "`aws eks update-kubeconfig --name <cluster>`",
        )
    return Kube(api, namespace)


class Kube:
    """The Kubernetes API of one namespace, as plain dicts."""

    def __init__(self, api, namespace: str) -> None:
        from kubernetes import client

        self.api = api
        self.namespace = namespace
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

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
        kind = kind_of(obj)
        name = obj["metadata"]["name"]
        extra = {"field_manager": FIELD_MANAGER, "force": True, "field_validation": "Strict",
                 "_content_type": APPLY_PATCH}
        if dry_run:
            extra["dry_run"] = "All"
        what = f"apply {kind.kind} {self.namespace}/{name}"
        if kind is SERVICEACCOUNT:
            return self._call(what, kind, self.core.patch_namespaced_service_account,
                              name, self.namespace, obj, **extra)
        return self._call(what, kind, self.custom.patch_namespaced_custom_object,
                          kind.group, kind.version, self.namespace, kind.plural, name, obj, **extra)

    def get(self, kind: Kind, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            if kind is SERVICEACCOUNT:
                return self._call(f"read {kind.kind} {name}", kind,
                                  self.core.read_namespaced_service_account,
                                  name, self.namespace)
            return self._call(f"read {kind.kind} {name}", kind,
                              self.custom.get_namespaced_custom_object,
                              kind.group, kind.version, self.namespace, kind.plural, name)
        except NotFound:
            return None

    def list(self, kind: Kind, selector: str | None = None, all_namespaces: bool = False) -> list[dict[str, Any]]:
        """One LIST call: the objects of ``kind`` matching the label ``selector``."""
        where = "all namespaces" if all_namespaces else f"namespace {self.namespace}"
        what = f"list {kind.plural} in {where}"
        if all_namespaces:
            result = self._call(what, kind, self.custom.list_custom_object_for_all_namespaces,
                                kind.group, kind.version, kind.plural, label_selector=selector)
        else:
            result = self._call(what, kind, self.custom.list_namespaced_custom_object,
                                kind.group, kind.version, self.namespace, kind.plural,
                                label_selector=selector)
        return result.get("items", [])

    def delete(self, kind: Kind, name: str) -> bool:
        """Delete in the background (owned objects follow); False when it was not there."""
        try:
            self._call(f"delete {kind.kind} {name}", kind,
                       self.custom.delete_namespaced_custom_object,
                       kind.group, kind.version, self.namespace, kind.plural, name,
                       propagation_policy="Background")
        except NotFound:
            return False
        return True

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return self._call(f"list pods ({selector})", None,
                          self.core.list_namespaced_pod, self.namespace,
                          label_selector=selector).get("items", [])

    def events(self) -> list[dict[str, Any]]:
        return self._call("list events", None, self.core.list_namespaced_event,
                          self.namespace).get("items", [])

    # -- logs ----------------------------------------------------------------------------------

    def log_lines(self, pod: str, container: str | None, *, follow: bool, since_seconds: int | None,
                  read_timeout: float, max_seconds: float | None = None) -> Iterator[str]:
        """Lines of a container's log, each prefixed with its RFC 3339 timestamp.

        Ends quietly when the stream ends, drops, or stays silent for ``read_timeout`` seconds, or
        after ``max_seconds``: the caller decides whether to reconnect (``LogCursor`` skips what it
        has already seen).
        """
        from urllib3.exceptions import HTTPError as Urllib3Error

        kwargs: dict[str, Any] = {"container": container, "follow": follow, "timestamps": True,
                                  "_preload_content": False, "_request_timeout": (5, read_timeout)}
        if since_seconds:
            kwargs["since_seconds"] = since_seconds
        response = self._call(f"read logs of pod {pod}", None, self.core.read_namespaced_pod_log,
                              pod, self.namespace, _raw=True, **kwargs)
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

    # -- the funnel ----------------------------------------------------------------------------

    def _call(self, what: str, kind: Kind | None, method: Callable[..., Any], *args: Any,
              _raw: bool = False, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        kwargs.setdefault("_request_timeout", TIMEOUT)
        if not _raw:
            kwargs["_preload_content"] = False
        try:
            result = method(*args, **kwargs)
        except ApiException as e:
            raise self._translate(e, what, kind) from None
        except (Urllib3Error, OSError) as e:
            raise ClusterUnreachable(
                f"cannot reach the Kubernetes API server at {self.server} to {what}: {_short(e)}",
                hint="check that the cluster is up and the kubeconfig context points at it "
                     "(kubectl cluster-info)",
            ) from None
        if _raw:
            return result  # the urllib3 response, for streaming
        data = result.data  # with _preload_content=False the client hands back the raw response
        return json.loads(data) if data else {}

    def _translate(self, error, what: str, kind: Kind | None) -> SentinelError:
        status = error.status or 0
        body = _body(error)
        message = body.get("message") or error.reason or str(status)
        if status == 0:
            return ClusterUnreachable(
                f"cannot reach the Kubernetes API server at {self.server} to {what}: {_short(error.reason)}",
                hint="check that the cluster is up and the kubeconfig context points at it "
                     "(kubectl cluster-info)")
        if status == 401:
            return ClusterUnreachable(
                f"the Kubernetes API server rejected the credentials to {what}",
                hint="refresh them (for EKS: aws eks update-kubeconfig --name <cluster>)")
        if status == 403:
            verb = what.split()[0]
            resource = kind.plural if kind else "pods/events"
            return Forbidden(
                f"forbidden to {what}: {message}",
                hint=f"ask for an RBAC Role allowing {verb} on {resource} in namespace {self.namespace} "
                     f"(check: kubectl auth can-i {verb} {resource} -n {self.namespace})")
        if status == 404:
            details = body.get("details") or {}
            if details.get("kind") == "namespaces" or (
                    details.get("name") == self.namespace and not details.get("group")
                    and details.get("kind") == "namespaces"):
                return ConfigError(
                    f"namespace {self.namespace} does not exist",
                    hint=f"create it (kubectl create namespace {self.namespace}) or set "
                         "kubernetes.namespace / --namespace")
            if details.get("name"):
                return NotFound(f"{kind.kind if kind else 'object'} {details['name']} not found "
                                f"in namespace {self.namespace}",
                                hint="list what Sentinel manages: sentinel status --target k8s")
            if kind is not None and kind.group == "ray.io":
                return KubeRayMissing(
                    f"the KubeRay CRDs are not installed in the cluster at {self.server} "
                    f"(no {kind.plural}.{kind.group}/{kind.version})",
                    hint="run `sentinel up` to install the KubeRay operator and its CRDs")
            return NotFound(f"not found: {what} ({message})")
        if status in (400, 422):
            return Rejected(
                f"the API server rejected {what}: {message}",
                hint="check the values in the profile and flags; `sentinel render …` shows the objects")
        if status == 409:
            return SentinelError(f"conflict to {what}: {message}", hint="retry the command")
        return SentinelError(f"the Kubernetes API failed to {what}: HTTP {status} {message}",
                             hint="retry; if it persists, check the API server's health")


class NotFound(ConfigError):
    """The named object does not exist."""


def _body(error) -> dict[str, Any]:
    try:
        body = json.loads(error.body or b"{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _short(error: object) -> str:
    text = str(error)
    for marker in ("Failed to establish a new connection: ", "Caused by "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.strip(" ()'\"")[:200]
