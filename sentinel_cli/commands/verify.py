"""``sentinel verify``: the platform's smoke test, as a user runs it against their staging cluster."""

from __future__ import annotations

import typer

from sentinel_cli import backends, options
from sentinel_cli.k8s.request import KubeRequest
from sentinel_cli.output import OutputFormat, emit
from sentinel_ml.data.source import DataSource


@options.kube_options("profile", "namespace", "sets", "timeout", "insecure_ray")
@options.data_options()
def verify(
    target: options.TargetOpt = None,
    source: DataSource = DataSource(),
    storage: options.StorageOpt = None,
    output: options.OutputOpt = OutputFormat.table,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """Train one epoch, serve it, check one prediction against the checkpoint, then remove all of it.
    One row per step; exit 0 when every step passed, 1 otherwise."""
    from sentinel_cli import checks, smoke

    test = smoke.select(backends.target_name(target, deploy.overrides.profile), deploy, source, storage)
    result = smoke.run(test)
    emit(result, output, checks.table)
    if not result["ok"]:
        raise typer.Exit(1)
