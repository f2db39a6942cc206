"""``sentinel render train|tune|serve|cluster``: print exactly the objects a command would apply.

``render train|tune|serve`` take the very options of ``sentinel train|tune|serve``: each runs that
command with the Kubernetes renderer (``RenderBackend``) as its target, so its options are parsed and
its request is built as always, and the backend's ``plan`` (the one ``--target k8s`` applies) is
printed instead of applied (a named checkpoint is resolved through the index in S3). The output is a
``v1 List`` (``kubectl apply -f`` takes it too): the ``Rendered`` result.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer

from sentinel_cli import options
from sentinel_cli.k8s.request import KubeRequest
from sentinel_cli.output import OutputFormat, emit


class ManifestFormat(str, Enum):
    yaml = "yaml"
    json = "json"


ManifestOpt = Annotated[
    ManifestFormat,
    typer.Option("--output", "-o", help="YAML or JSON on stdout.", case_sensitive=False),
]
# Options of the mirrored command that rendering fixes or makes meaningless.
_FIXED = {"target", "output", "wait", "dry_run", "timeout"}


def _renderer():
    from sentinel_cli.backends import renderer

    return renderer()


def mirror(command: Callable[..., Any], what: str) -> Callable[..., None]:
    """A render command with ``command``'s options that renders instead of running it."""
    signature = inspect.signature(command, eval_str=True)
    kept = [p for name, p in signature.parameters.items() if name not in _FIXED]
    output = inspect.Parameter("output", inspect.Parameter.KEYWORD_ONLY, default=ManifestFormat.yaml,
                               annotation=ManifestOpt)

    @functools.wraps(command)
    def render_command(**kwargs: Any) -> None:
        fmt = OutputFormat(kwargs.pop("output").value)
        command(**kwargs, target=_renderer(), output=fmt)

    render_command.__doc__ = (f"Print the objects `sentinel {what} --target k8s` would apply, with the "
                              f"same options. Nothing is sent to a cluster.")
    return options.with_options(render_command, signature, [*kept, output])


@options.kube_options("profile", "namespace", "name", "sets", "insecure_ray")
def cluster(output: ManifestOpt = ManifestFormat.yaml, deploy: KubeRequest = KubeRequest()) -> None:
    """Print a standalone RayCluster (head on on-demand nodes, training workers on spot nodes)."""
    emit(_renderer().cluster(deploy), OutputFormat(output.value))


def app(commands: dict[str, Callable[..., Any]]) -> typer.Typer:
    """The ``render`` group: a mirror of each command in ``commands``, plus a standalone cluster."""
    group = typer.Typer(help="Print the Kubernetes objects a command would apply (no cluster needed).",
                        no_args_is_help=True)
    for what, command in commands.items():
        group.command(what)(mirror(command, what))
    group.command("cluster")(cluster)
    return group
