"""``sentinel logs NAME [-f]``: the driver log of a RayJob, or the head's log of a RayService."""

from __future__ import annotations

from typing import Annotated

import typer

from sentinel_cli import backends, options
from sentinel_cli.k8s.request import KubeRequest


@options.kube_options("profile", "namespace", "timeout")
def logs(
    name: Annotated[str, typer.Argument(help="A RayJob (e.g. a run id), RayService or RayCluster name.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends "
                                         "(then exit 0 succeeded / 1 failed); Ctrl-C detaches.")] = False,
    target: Annotated[options.Target | None, typer.Option(help="Only k8s (accepted for symmetry with the "
                                                          "other commands).", show_default=False)] = None,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """Print the logs of a RayJob's driver (its submitter pod) or of a RayService's head, on stderr."""
    backends.select(target or "k8s").logs(name, follow, deploy)
