"""``sentinel render train|tune|serve|cluster``: print exactly the objects a command would apply.

``render train|tune|serve`` take the very options of ``sentinel train|tune|serve``: they run that
command with ``targets.rendering()`` on, so its options are parsed and its request is built as
always, and the Kubernetes backend renders the request instead of applying it (a named checkpoint is
resolved through the index in S3). The output is a ``v1 List`` (``kubectl apply -f`` takes it too).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer

from sentinel_cli import options
from sentinel_cli.k8s.request import kube_request
from sentinel_cli.output import OutputFormat, emit
from sentinel_cli.targets import call, rendering


class ManifestFormat(str, Enum):
    yaml = "yaml"
    json = "json"


ManifestOpt = Annotated[
    ManifestFormat,
    typer.Option("--output", "-o", help="YAML or JSON on stdout.", case_sensitive=False),
]
# Options of the mirrored command that rendering fixes or makes meaningless.
_FIXED = {"target", "output", "wait", "dry_run", "timeout"}


def mirror(command: Callable[..., Any], what: str) -> Callable[..., None]:
    """A render command with ``command``'s options that renders instead of running it."""
    signature = inspect.signature(command, eval_str=True)
    kept = [p for name, p in signature.parameters.items() if name not in _FIXED]
    output = inspect.Parameter("output", inspect.Parameter.KEYWORD_ONLY, default=ManifestFormat.yaml,
                               annotation=ManifestOpt)
    accepts = set(signature.parameters)

    @functools.wraps(command)
    def render_command(**kwargs: Any) -> None:
        fmt = OutputFormat(kwargs.pop("output").value)
        fixed = {"target": options.Target.k8s, "output": fmt}
        with rendering():
            command(**kwargs, **{k: v for k, v in fixed.items() if k in accepts})

    parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept] + [output]
    render_command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    render_command.__annotations__ = {p.name: p.annotation for p in parameters}
    render_command.__doc__ = (f"Print the objects `sentinel {what} --target k8s` would apply, with the "
                              f"same options. Nothing is sent to a cluster.")
    del render_command.__wrapped__  # typer must read the signature above, not the command's
    return render_command


def cluster(
    profile: options.ProfileOpt = None,
    namespace: options.NamespaceOpt = None,
    name: options.NameOpt = None,
    sets: options.SetOpt = None,
    output: ManifestOpt = ManifestFormat.yaml,
) -> None:
    """Print a standalone RayCluster (head on on-demand nodes, training workers on spot nodes)."""
    deploy = kube_request(profile=profile, namespace=namespace, sets=sets, name=name)
    with rendering():
        emit(call(options.Target.k8s, deploy, "cluster"), OutputFormat(output.value))


def app(commands: dict[str, Callable[..., Any]]) -> typer.Typer:
    """The ``render`` group: a mirror of each command in ``commands``, plus a standalone cluster."""
    group = typer.Typer(help="Print the Kubernetes objects a command would apply (no cluster needed).",
                        no_args_is_help=True)
    for what, command in commands.items():
        group.command(what)(mirror(command, what))
    group.command("cluster")(cluster)
    return group
