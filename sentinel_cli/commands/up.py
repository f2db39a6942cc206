"""``sentinel up`` / ``down`` / ``doctor``: bring the platform up, take it down, check it.

Each asks the target's platform (``backends.select_platform``). Locally there is nothing to install:
``up`` checks the prerequisites. On Kubernetes ``up`` installs the KubeRay operator, MLflow with
MinIO, and monitoring objects. Each prints one row per component or check; a failed one makes the
exit code 1.
"""

from __future__ import annotations

from typing import Annotated

import typer

from sentinel_cli import options
from sentinel_cli.backends import select_platform
from sentinel_cli.backends.results import CheckReport
from sentinel_cli.k8s.request import PLATFORM_WAIT_S, PlatformRequest
from sentinel_cli.output import OutputFormat, emit

PLATFORM_PANEL = "Platform on Kubernetes (--target k8s)"
WaitTimeoutOpt = Annotated[float, typer.Option(
    min=1, help="Stop waiting after this many seconds without progress.", rich_help_panel=PLATFORM_PANEL)]


def up(
    target: options.TargetOpt = None,
    data: options.DataOpt = None,
    storage: options.StorageOpt = None,
    mlflow_uri: options.MlflowOpt = None,
    profile: options.ProfileOpt = None,
    namespace: options.NamespaceOpt = None,
    crds: Annotated[str | None, typer.Option(
        help="KubeRay CRDs to apply when helm is absent: a directory of YAML files or an http(s) URL. "
             "Default: the pinned release's CRDs, downloaded and checked against their SHA-256.",
        show_default=False, rich_help_panel=PLATFORM_PANEL)] = None,
    metrics_server: Annotated[bool, typer.Option(
        "--metrics-server", help="Install metrics-server when the cluster has none.",
        rich_help_panel=PLATFORM_PANEL)] = False,
    role_arn: Annotated[str | None, typer.Option(
        help="IAM role for the pods' service account (IRSA annotation).", show_default=False,
        rich_help_panel=PLATFORM_PANEL)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.",
                                          rich_help_panel=PLATFORM_PANEL)] = False,
    operator: Annotated[bool, typer.Option(
        "--operator/--no-operator", help="Install the KubeRay operator; --no-operator when the cluster "
        "already runs one (its CRDs are checked).", rich_help_panel=PLATFORM_PANEL)] = True,
    wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="Wait until MinIO, its buckets and MLflow are ready.",
        rich_help_panel=PLATFORM_PANEL)] = True,
    timeout: WaitTimeoutOpt = PLATFORM_WAIT_S,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """Bring the platform up (idempotent) and print each component and its state."""
    request = PlatformRequest(profile=profile, namespace=namespace, data=data, storage=storage,
                              mlflow_uri=mlflow_uri, crds=crds, metrics_server=metrics_server, role_arn=role_arn,
                              dry_run=dry_run, operator=operator, wait=wait, timeout_s=timeout,
                              advise=output is OutputFormat.table)
    _finish(select_platform(target, profile).up(request), output)


def down(
    target: options.TargetOpt = None,
    profile: options.ProfileOpt = None,
    namespace: options.NamespaceOpt = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the data: MinIO's and MLflow's volumes "
                                        "and the CRDs.", rich_help_panel=PLATFORM_PANEL)] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be removed; remove nothing.",
                                          rich_help_panel=PLATFORM_PANEL)] = False,
    wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="Wait until what was deleted is gone (pods stopped, claims released).",
        rich_help_panel=PLATFORM_PANEL)] = True,
    timeout: WaitTimeoutOpt = PLATFORM_WAIT_S,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """Remove what `sentinel up` created; data is kept unless --purge."""
    request = PlatformRequest(profile=profile, namespace=namespace, purge=purge, dry_run=dry_run, wait=wait,
                              timeout_s=timeout)
    _finish(select_platform(target, profile).down(request), output)


def doctor(
    target: options.TargetOpt = None,
    data: options.DataOpt = None,
    storage: options.StorageOpt = None,
    mlflow_uri: options.MlflowOpt = None,
    profile: options.ProfileOpt = None,
    namespace: options.NamespaceOpt = None,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """Run the troubleshooting checklist: pass or fail, with the fix for each failure (exit 1 if any)."""
    request = PlatformRequest(profile=profile, namespace=namespace, data=data, storage=storage, mlflow_uri=mlflow_uri)
    _finish(select_platform(target, profile).doctor(request), output)


def _finish(result: CheckReport, output: OutputFormat) -> None:
    from sentinel_cli.backends.results import to_data
    from sentinel_cli.checks import table

    emit(result, output, lambda r: table(to_data(r)))
    if not result.ok:
        raise typer.Exit(1)
