"""The targets: ``local`` (embedded Ray on this machine) and ``k8s`` (KubeRay).

Each target implements both interfaces of ``base``: ``JobTarget`` (``select``) and
``PlatformTarget`` (``select_platform``). The target is ``--target``, then $SENTINEL_TARGET (through
the option's envvar), then the profile's ``target``, then local. A ``JobTarget`` passed as the target
is used as it is: that is how ``sentinel render`` runs a command against the Kubernetes renderer
instead of a cluster. Commands import no target module: they ask here.
"""

from __future__ import annotations

from sentinel_cli.backends.base import JobTarget, PlatformTarget
from sentinel_ml.errors import ConfigError

TARGETS = ("local", "k8s")


def target_name(target, profile: str | None = None) -> str:
    if isinstance(target, JobTarget):
        return target.name
    name = getattr(target, "value", target)
    if not name:
        from sentinel_cli.k8s.settings import profile_target

        name = profile_target(profile)
    return name or "local"


def select(target, profile: str | None = None) -> JobTarget:
    """The target that runs jobs: train, tune, serve, status, logs, delete."""
    if isinstance(target, JobTarget):
        return target
    name = _known(target_name(target, profile))
    if name == "local":
        from sentinel_cli.backends.local.backend import LocalBackend

        return LocalBackend()
    from sentinel_cli.backends.kubernetes.backend import KubernetesBackend

    return KubernetesBackend()


def select_platform(target, profile: str | None = None) -> PlatformTarget:
    """The target whose platform ``up``, ``down`` and ``doctor`` manage."""
    name = _known(target_name(target, profile))
    if name == "local":
        from sentinel_cli.backends.local.backend import LocalPlatform

        return LocalPlatform()
    from sentinel_cli.backends.kubernetes.backend import KubernetesPlatform

    return KubernetesPlatform()


def renderer() -> JobTarget:
    """The Kubernetes target's stand-in under ``sentinel render``: each job returns the objects it
    would apply (``results.Rendered``) instead of applying them."""
    from sentinel_cli.backends.kubernetes.backend import RenderBackend

    return RenderBackend()


def _known(name: str) -> str:
    if name not in TARGETS:
        raise ConfigError(f"unknown target {name!r}", hint="use --target local or --target k8s")
    return name
