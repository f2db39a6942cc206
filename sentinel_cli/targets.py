"""Pick the backend for a command: ``--target``, then $SENTINEL_TARGET, then the profile's
``target``, then local; and call it (``call``), or render instead (``rendering``).

``sentinel render train|tune|serve`` runs the very command it names with ``rendering(...)`` set:
the command parses its options and builds its request as always, and ``call`` hands the request to
the Kubernetes backend's ``render_objects`` instead of running it. So what is rendered is exactly
what the command would apply.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import ModuleType
from typing import Any

from sentinel_ml.errors import ConfigError

_RENDERING: ContextVar[bool] = ContextVar("sentinel_rendering", default=False)


def target_name(target, profile: str | None = None) -> str:
    name = getattr(target, "value", target)
    if not name:
        from sentinel_cli.k8s.settings import profile_target

        name = profile_target(profile)
    return name or "local"


def resolve_target(target, profile: str | None = None) -> ModuleType | _Renderer:
    if _RENDERING.get():
        return _Renderer(None)
    name = target_name(target, profile)
    if name == "local":
        from sentinel_cli.backends.local import backend as local

        return local
    if name == "k8s":
        from sentinel_cli.backends.kubernetes import backend as kubernetes

        return kubernetes
    raise ConfigError(f"unknown target {name!r}", hint="use --target local or --target k8s")


def call(target, deploy, method: str, *args: Any, **kwargs: Any) -> Any:
    """``backend.<method>(*args, **kwargs)``; the Kubernetes backend also gets ``deploy`` (a KubeRequest).

    Kubernetes-only flags are rejected before a local run starts.
    """
    from sentinel_cli.k8s.request import check_local

    if _RENDERING.get():
        return getattr(_Renderer(deploy), method)(*args, **kwargs)
    backend = resolve_target(target, deploy.overrides.profile if deploy else None)
    if backend.__name__.endswith(".kubernetes"):
        return getattr(backend, method)(*args, deploy=deploy, **kwargs)
    if deploy is not None:
        check_local(deploy)
    return getattr(backend, method)(*args, **kwargs)


@contextmanager
def rendering() -> Iterator[None]:
    token = _RENDERING.set(True)
    try:
        yield
    finally:
        _RENDERING.reset(token)


class _Renderer:
    """Stands in for a backend while rendering: ``<method>(request)`` returns the objects the
    Kubernetes backend would apply for it, as a ``v1 List``."""

    def __init__(self, deploy) -> None:
        self.deploy = deploy

    def __getattr__(self, method: str):
        from sentinel_cli.backends.kubernetes import backend as kubernetes
        from sentinel_cli.k8s.request import KubeRequest

        def render(request=None, **_ignored: Any) -> dict[str, Any]:
            objects = kubernetes.render_objects(method, self.deploy or KubeRequest(), request)
            return {"apiVersion": "v1", "kind": "List", "items": objects}

        return render
