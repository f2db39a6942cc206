"""The canary on Kubernetes: its state lives in the RayService's spec, in the Serve application's
args inside ``serveConfigV2`` (``ServeArgs.canary_*``), never in the CLI process.

``live_args`` reads those args back from a RayService; ``start_args`` and ``end_args`` are the args of
a canary's start and end, from the live ones (the same rules as the local target: ``ServeArgs``). The
RayService is then applied again with only its serveConfigV2 changed, which KubeRay 1.5 hands to the
running cluster's Serve REST API: the application is updated in place, no new cluster is made.
"""

from __future__ import annotations

from typing import Any

from sentinel_ml.errors import ConfigError
from sentinel_ml.serving.config import NAMES, ServeArgs

START_HINT = "start one with `sentinel serve --target k8s --checkpoint <candidate> --canary 10`"
END_HINT = "end it first with `sentinel serve promote --target k8s` or `sentinel serve rollback --target k8s`"


def live_args(service: dict[str, Any] | None) -> ServeArgs | None:
    """The Serve application's args in ``service``'s serveConfigV2 (no autoscaling: that is the
    deployment's), or None without a RayService or a readable application."""
    import yaml

    if service is None:
        return None
    try:
        config = yaml.safe_load((service.get("spec") or {}).get("serveConfigV2") or "") or {}
        apps = [a for a in config.get("applications") or [] if a.get("name") == NAMES.application]
        return ServeArgs.model_validate(apps[0]["args"]) if apps else None
    except (yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError):
        return None


def app_args(args: ServeArgs) -> dict[str, Any]:
    """``args`` as the RayService carries them (``manifests.serve_values(app_args=…)``)."""
    return args.model_dump(exclude_unset=True, exclude={"autoscaling"})


def start_args(live: ServeArgs | None, where: str, uri: str, run_id: str | None, percent: float,
               fault_rate: float = 0.0) -> ServeArgs:
    """The live args with ``uri`` as the candidate for ``percent`` % of users."""
    if live is None:
        raise ConfigError(f"nothing is serving in {where}: a canary needs an incumbent to serve beside",
                          hint="serve the incumbent first: `sentinel serve --target k8s --checkpoint <run>`")
    return live.with_canary(uri, run_id, percent, fault_rate)


def refuse_replacing(live: ServeArgs | None, where: str) -> None:
    """A plain ``serve --checkpoint`` would end a running canary unjudged: refused."""
    if live is not None and live.canary is not None:
        raise ConfigError(f"a canary is running in {where} ({live.canary_checkpoint} for "
                          f"{live.canary_percent:g}% of users): serving another checkpoint now would end "
                          "it unjudged", hint=END_HINT)


def end_args(live: ServeArgs | None, where: str, decision: str) -> ServeArgs:
    """The live args without the canary: ``promote`` the candidate alone, ``rollback`` the incumbent."""
    if live is None or live.canary is None:
        raise ConfigError(f"no canary is running in {where}", hint=START_HINT)
    return live.ended(decision)
