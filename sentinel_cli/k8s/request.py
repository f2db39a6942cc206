"""What a command asks of the Kubernetes target, beside the job itself: a light module (no
pydantic, no kubernetes) so commands can build it at no import cost."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sentinel_ml.errors import ConfigError


@dataclass(frozen=True)
class Overrides:
    """Settings from the command line, on top of the profile and the environment."""

    profile: str | None = None
    namespace: str | None = None
    storage: str | None = None
    mlflow_uri: str | None = None
    sets: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # dotted key -> value, from commands

    def pairs(self) -> list[tuple[str, Any]]:
        named = [("namespace", self.namespace), ("storage", self.storage), ("mlflow_uri", self.mlflow_uri)]
        pairs = [(k, v) for k, v in named if v is not None]
        pairs.extend(self.extra.items())
        pairs.extend(parse_set(item) for item in self.sets)
        return pairs


@dataclass(frozen=True)
class KubeRequest:
    """How to run on Kubernetes: settings overrides, the object's name, and whether to wait."""

    overrides: Overrides = field(default_factory=Overrides)
    name: str | None = None
    wait: bool = True
    dry_run: bool = False
    timeout_s: float | None = None  # None: the profile's wait_timeout_s
    all_namespaces: bool = False

    def with_extra(self, extra: Mapping[str, Any]) -> KubeRequest:
        """This request with more settings (dotted keys), as if given with --set."""
        if not extra:
            return self
        overrides = replace(self.overrides, extra={**self.overrides.extra, **extra})
        return replace(self, overrides=overrides)

    def local_conflicts(self) -> list[str]:
        """Flags that only mean something with --target k8s."""
        o = self.overrides
        flags = [("--profile", o.profile), ("--namespace", o.namespace), ("--set", o.sets),
                 ("--name", self.name), ("--no-wait", not self.wait), ("--dry-run", self.dry_run),
                 ("--timeout", self.timeout_s), ("--all-namespaces", self.all_namespaces)]
        return [flag for flag, value in flags if value]


def check_local(request: KubeRequest) -> None:
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
                 extra: Mapping[str, Any] | None = None, all_namespaces: bool = False) -> KubeRequest:
    """A KubeRequest from a command's options."""
    overrides = Overrides(profile=profile, namespace=namespace, storage=storage, mlflow_uri=mlflow_uri,
                          sets=tuple(sets or ()), extra=dict(extra or {}))
    return KubeRequest(overrides=overrides, name=name, wait=wait, dry_run=dry_run, timeout_s=timeout,
                       all_namespaces=all_namespaces)


def require_k8s(target, command: str) -> None:
    """Commands that exist only for the Kubernetes target refuse an explicit other target."""
    name = getattr(target, "value", target)
    if name not in (None, "k8s"):
        raise ConfigError(f"`sentinel {command}` works on the Kubernetes target only",
                          hint="drop --target, or use --target k8s")
