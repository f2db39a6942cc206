"""Pick the backend for a command: ``--target``, then $SENTINEL_TARGET, then local."""

from __future__ import annotations

from types import ModuleType

from sentinel_ml.errors import ConfigError


def resolve_target(target) -> ModuleType:
    name = getattr(target, "value", target) or "local"
    if name == "local":
        from sentinel_cli.backends import local

        return local
    raise ConfigError(f"target {name!r} is not available in this version", hint="use --target local")
