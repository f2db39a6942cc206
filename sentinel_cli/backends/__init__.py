"""The targets: ``local`` (embedded Ray on this machine) and ``k8s`` (KubeRay), both ``Backend``s.

``select`` picks one: ``--target``, then $SENTINEL_TARGET (through the option's envvar), then the
profile's ``target``, then local. A ``Backend`` passed as the target is used as it is: that is how
``sentinel render`` runs a command against the Kubernetes renderer instead of a cluster.
"""

from __future__ import annotations

from sentinel_cli.backends.base import Backend
from sentinel_ml.errors import ConfigError

TARGETS = ("local", "k8s")


def target_name(target, profile: str | None = None) -> str:
    if isinstance(target, Backend):
        return target.name
    name = getattr(target, "value", target)
    if not name:
        from sentinel_cli.k8s.settings import profile_target

        name = profile_target(profile)
    return name or "local"


def select(target, profile: str | None = None) -> Backend:
    if isinstance(target, Backend):
        return target
    name = target_name(target, profile)
    if name == "local":
        from sentinel_cli.backends.local.backend import LocalBackend

        return LocalBackend()
    if name == "k8s":
        from sentinel_cli.backends.kubernetes.backend import KubernetesBackend

        return KubernetesBackend()
    raise ConfigError(f"unknown target {name!r}", hint="use --target local or --target k8s")
