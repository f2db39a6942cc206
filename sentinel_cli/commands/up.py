"""``sentinel up`` / ``down`` / ``doctor``: bring the platform up, take it down, check it.

Locally there is nothing to install: ``up`` checks the prerequisites. On Kubernetes ``up`` installs
the KubeRay operator, MLflow with MinIO, and monitoring objects (``sentinel_cli.backends.kubernetes.platform``).
Each prints one row per component or check; a failed one makes the exit code 1.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sentinel_cli import options
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
    timeout: WaitTimeoutOpt = 600.0,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """Bring the platform up (idempotent) and print each component and its state."""
    if _is_local(target, profile):
        from sentinel_cli.backends.local import platform as local_platform

        _reject_kube_flags(namespace=namespace, crds=crds, metrics_server=metrics_server, role_arn=role_arn,
                           dry_run=dry_run, no_operator=not operator)
        _finish(_report("local", local_platform.prerequisites(data, storage, mlflow_uri)), output)
        return
    from sentinel_cli.backends.kubernetes import platform as kube_platform

    request = kube_platform.UpRequest(crds=crds, metrics_server=metrics_server, role_arn=role_arn,
                                      dry_run=dry_run, operator=operator, wait=wait, timeout_s=timeout)
    settings = _settings(profile, namespace, storage)
    result = kube_platform.up(settings, request)
    _suggest_profile(settings, result["profile"], output)
    _finish(result, output)


def _suggest_profile(settings, wanted: dict[str, Any], output: OutputFormat) -> None:
    """Say which profile keys point jobs at this platform's MinIO and MLflow, when they do not yet."""
    from sentinel_cli.progress import kube_say

    current = {"s3": settings.s3.model_dump(), "mlflow_uri": settings.mlflow_uri}
    if output != OutputFormat.table or current == wanted:
        return
    keys = [f"kubernetes.s3.endpoint: {wanted['s3']['endpoint']}",
            f"kubernetes.s3.credentials_secret: {wanted['s3']['credentials_secret']}",
            f"kubernetes.mlflow_uri: {wanted['mlflow_uri']}"]
    kube_say("to keep checkpoints in this platform's MinIO and track runs in its MLflow, set in the "
             "profile: " + "; ".join(keys) + " (and kubernetes.storage: s3://<bucket>/<prefix>)")


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
    timeout: WaitTimeoutOpt = 600.0,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """Remove what `sentinel up` created; data is kept unless --purge."""
    from sentinel_cli.checks import SKIP, Item

    if _is_local(target, profile):
        _reject_kube_flags(namespace=namespace, purge=purge, dry_run=dry_run)
        item = Item("platform", SKIP, "nothing installed on the local target; data stays in $SENTINEL_HOME")
        _finish(_report("local", [item]), output)
        return
    from sentinel_cli.backends.kubernetes import platform as kube_platform

    _finish(kube_platform.down(_settings(profile, namespace, None), purge=purge, dry_run=dry_run, wait=wait,
                               timeout_s=timeout), output)


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
    if _is_local(target, profile):
        from sentinel_cli.backends.local import platform as local_platform

        _reject_kube_flags(namespace=namespace)
        _finish(_report("local", local_platform.doctor(data, storage, mlflow_uri)), output)
        return
    from sentinel_cli.backends.kubernetes import platform as kube_platform

    _finish(kube_platform.doctor(_settings(profile, namespace, storage)), output)


def _is_local(target, profile: str | None) -> bool:
    from sentinel_cli.backends import target_name

    return target_name(target, profile) == "local"


def _settings(profile: str | None, namespace: str | None, storage: str | None):
    from sentinel_cli.k8s import settings
    from sentinel_cli.k8s.request import Overrides

    return settings.load(Overrides(profile=profile, namespace=namespace, storage=storage))


def _reject_kube_flags(**flags: Any) -> None:
    from sentinel_ml.errors import ConfigError

    given = ["--" + name.replace("_", "-") for name, value in flags.items() if value]
    if given:
        raise ConfigError(f"{', '.join(given)} only apply to --target k8s",
                          hint="add --target k8s (or set target: k8s in the profile), or drop them")


def _report(target: str, items) -> dict[str, Any]:
    from sentinel_cli.checks import report

    return report(target, items)


def _finish(result: dict[str, Any], output: OutputFormat) -> None:
    from sentinel_cli.checks import table

    emit(result, output, table)
    if not result["ok"]:
        raise typer.Exit(1)
