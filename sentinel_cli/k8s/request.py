"""What a command asks of the Kubernetes target, beside the job itself: a light module (no
pydantic, no kubernetes) so commands can build it at no import cost."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sentinel_ml.errors import ConfigError

PLATFORM_WAIT_S = 600.0  # up/down: give up waiting after this long without progress


@dataclass(frozen=True)
class ServeOverrides:
    """A serve command's own settings over the profile's ``serve`` section (None: the profile's)."""

    port: int | None = None
    grpc_port: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    gpus: float | None = None  # serve --gpus: per replica
    cpus: float | None = None  # serve --cpus: per replica


@dataclass(frozen=True)
class Overrides:
    """Settings from the command line, on top of the profile and the environment: the named flags
    and request fields as typed values, ``--set key=value`` as the user wrote it (applied last)."""

    profile: str | None = None
    namespace: str | None = None
    storage: str | None = None
    mlflow_uri: str | None = None
    sets: tuple[str, ...] = ()
    workers: int | None = None  # train --workers: Ray Train workers, one pod each
    worker_gpus: int | None = None  # train --gpus, tune --gpus-per-trial: whole GPUs per worker pod
    ray_auth: str | None = None  # --insecure-ray: "disabled"
    serve: ServeOverrides = field(default_factory=ServeOverrides)

    def values(self) -> dict[str, Any]:
        """The typed values that are set, shaped like the profile's ``kubernetes`` section."""
        named = {"namespace": self.namespace, "storage": self.storage, "mlflow_uri": self.mlflow_uri,
                 "workers": self.workers, "ray_auth": self.ray_auth}
        values: dict[str, Any] = {k: v for k, v in named.items() if v is not None}
        if self.worker_gpus is not None:
            values["worker"] = {"gpu": self.worker_gpus}
        serve = {k: v for k, v in asdict(self.serve).items() if v is not None}
        if serve:
            values["serve"] = serve
        return values


@dataclass(frozen=True)
class KubeRequest:
    """How to run on Kubernetes: settings overrides, the object's name, and whether to wait."""

    overrides: Overrides = field(default_factory=Overrides)
    name: str | None = None
    wait: bool = True
    dry_run: bool = False
    timeout_s: float | None = None  # None: the profile's wait_timeout_s
    all_namespaces: bool = False
    preflight: bool = True  # check that the pods fit the nodes before applying (--no-preflight: skip)

    def with_overrides(self, **changes: Any) -> KubeRequest:
        """This request with some settings (``Overrides`` fields) replaced."""
        return replace(self, overrides=replace(self.overrides, **changes))

    def local_conflicts(self) -> list[str]:
        """Flags that only mean something with --target k8s."""
        o = self.overrides
        flags = [("--profile", o.profile), ("--namespace", o.namespace), ("--set", o.sets),
                 ("--name", self.name), ("--no-wait", not self.wait), ("--dry-run", self.dry_run),
                 ("--timeout", self.timeout_s), ("--all-namespaces", self.all_namespaces),
                 ("--no-preflight", not self.preflight),
                 ("--insecure-ray", o.ray_auth == "disabled")]  # until the local target checks Ray's resources
        return [flag for flag, value in flags if value]


@dataclass(frozen=True)
class PlatformRequest:
    """What ``up``, ``down`` and ``doctor`` ask of a target's platform; the Kubernetes-only flags
    are refused by the local target (``local_conflicts``)."""

    profile: str | None = None
    namespace: str | None = None
    data: str | None = None
    storage: str | None = None
    mlflow_uri: str | None = None
    crds: str | None = None  # up: directory or URL of the KubeRay CRDs (helm absent)
    metrics_server: bool = False  # up: install metrics-server when the cluster has none
    role_arn: str | None = None  # up: IRSA role of the pods' service account
    operator: bool = True  # up: False when the cluster already runs a KubeRay operator
    purge: bool = False  # down: the data too
    dry_run: bool = False
    wait: bool = True
    timeout_s: float = PLATFORM_WAIT_S
    advise: bool = False  # up: say on stderr which profile keys point jobs at the platform

    def local_conflicts(self) -> list[str]:
        flags = [("--namespace", self.namespace), ("--crds", self.crds), ("--metrics-server", self.metrics_server),
                 ("--role-arn", self.role_arn), ("--purge", self.purge), ("--dry-run", self.dry_run),
                 ("--no-operator", not self.operator)]
        return [flag for flag, value in flags if value]


def check_local(request: KubeRequest | PlatformRequest) -> None:
    """Reject Kubernetes-only flags before a local run starts."""
    conflicts = request.local_conflicts()
    if conflicts:
        raise ConfigError(f"{', '.join(conflicts)} only apply to --target k8s",
                          hint="add --target k8s (or set target: k8s in the profile), or drop them")


def parse_set(item: str) -> tuple[str, str]:
    """``--set key=value`` -> (dotted key inside ``kubernetes``, raw string value)."""
    key, sep, value = item.partition("=")
    key = key.strip().removeprefix("kubernetes.")
    if not sep or not key or not re.match(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_.\-/]+)*$", key):
        raise ConfigError(f"--set {item!r} is not KEY=VALUE",
                          hint="for example --set workers=8 or --set images.train=repo/train:1")
    return key, value


def kube_request(*, profile: str | None = None, namespace: str | None = None, sets: list[str] | None = None,
                 name: str | None = None, wait: bool = True, dry_run: bool = False,
                 timeout: float | None = None, storage: str | None = None, mlflow_uri: str | None = None,
                 all_namespaces: bool = False, preflight: bool = True, insecure_ray: bool = False) -> KubeRequest:
    """A KubeRequest from a command's options."""
    overrides = Overrides(profile=profile, namespace=namespace, storage=storage, mlflow_uri=mlflow_uri,
                          sets=tuple(sets or ()), ray_auth="disabled" if insecure_ray else None)
    return KubeRequest(overrides=overrides, name=name, wait=wait, dry_run=dry_run, timeout_s=timeout,
                       all_namespaces=all_namespaces, preflight=preflight)
