"""``sentinel delete NAME``: remove a RayJob, RayService or RayCluster that Sentinel manages."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from sentinel_cli import backends, options
from sentinel_cli.k8s.request import KubeRequest
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
    from sentinel_cli.backends.results import to_data

    report = backends.select(target or "k8s").delete(name, replace(deploy, dry_run=dry_run))
    emit(report, output, lambda r: key_value_table(list(to_data(r).items())))
