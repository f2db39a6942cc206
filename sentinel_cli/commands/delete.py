"""``sentinel delete NAME``: remove a RayJob, RayService or RayCluster that Sentinel manages."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from sentinel_cli import options
from sentinel_cli.k8s.request import KubeRequest, require_k8s
from sentinel_cli.output import OutputFormat, emit, key_value_table


@options.kube_options("profile", "namespace")
def delete(
    name: Annotated[str, typer.Argument(help="The RayJob, RayService or RayCluster to delete.")],
    target: Annotated[options.Target | None, typer.Option(help="Only k8s (accepted for symmetry with the "
                                                          "other commands).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be deleted; delete nothing.")] = False,
    output: options.OutputOpt = OutputFormat.table,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """Delete a Sentinel-managed object on Kubernetes; KubeRay removes its clusters and pods."""
    from sentinel_cli.backends.kubernetes import backend as kubernetes

    require_k8s(target, "delete")

    result = kubernetes.delete(name, deploy=replace(deploy, dry_run=dry_run))
    emit(result, output, lambda r: key_value_table(list(r.items())))
