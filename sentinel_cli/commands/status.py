"""``sentinel status``: one view of runs, checkpoints and what is serving."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from sentinel_cli import backends, options
from sentinel_cli.k8s.request import KubeRequest
from sentinel_cli.output import OutputFormat, emit, records_table

RUN_COLUMNS = [
    ("run id", "run_id"), ("kind", "kind"), ("model", "model"), ("created", "created_at"), ("val RMSE", "val_rmse"),
    ("test RMSE", "test_rmse"), ("epochs", "epochs"), ("checkpoint", "checkpoint"),
]


@options.kube_options("profile", "namespace")
def status(
    limit: Annotated[int, typer.Option(min=1, help="How many recent runs to list.")] = 20,
    storage: options.StorageOpt = None,
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Every namespace.",
                                                 rich_help_panel=options.KUBE_PANEL)] = False,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """List recent training and tuning runs from the checkpoint index; on k8s, what Sentinel manages."""
    deploy = replace(deploy, all_namespaces=all_namespaces)
    report = backends.select(target, deploy.overrides.profile).status(storage, limit, deploy)
    emit(report, output, _table)


def _table(report: dict):
    if report.get("target") == "k8s":
        return _kube_table(report)
    return _with_serving(_runs_table(report, "run `sentinel train`"), report.get("serving"))


def _runs_table(report: dict, next_step: str):
    rows = [
        {**run, "val_rmse": run["metrics"].get("val_rmse"), "test_rmse": run["metrics"].get("test_rmse"),
         "epochs": run["metrics"].get("epochs"), "checkpoint": run["checkpoints"].get("best"),
         "model": (run.get("config") or {}).get("model", "mf")}  # records before --model: mf
        for run in report["runs"]
    ]
    return records_table(rows, RUN_COLUMNS, title=f"runs in {report.get('storage')}",
                         empty=f"no runs yet: {next_step}")


def _with_serving(runs, serving: dict | None):
    from rich.console import Group

    from sentinel_cli.commands.serve import SUMMARY_ROWS, summary_table

    if not serving:
        return Group(runs, "serving: nothing (start it with `sentinel serve --checkpoint latest`)")
    return Group(runs, "", "[bold]serving[/]", summary_table({k: serving.get(k) for _, k in SUMMARY_ROWS}))


KUBE_COLUMNS = [
    ("name", "name"), ("kind", "kind"), ("namespace", "namespace"), ("state", "state"), ("age", "age"),
    ("run id", "run_id"), ("checkpoint", "checkpoint"),
]


def _kube_table(report: dict):
    counts = report["counts"]
    hidden = counts["RayJob"] - report["shown_jobs"]
    title = f"managed by Sentinel in namespace {report['namespace']}" + (
        f" ({hidden} older RayJobs not shown: --limit)" if hidden else "")
    columns = KUBE_COLUMNS if report["namespace"] == "*" else [c for c in KUBE_COLUMNS if c[1] != "namespace"]
    objects = records_table(report["objects"], columns, title=title,
                            empty=f"nothing managed by Sentinel in namespace {report['namespace']}: "
                                  "run `sentinel train --target k8s`")
    if not report.get("storage"):
        return objects
    from rich.console import Group
    from rich.text import Text

    if report.get("runs_error"):
        return Group(objects, "", Text(f"runs in {report['storage']}: cannot read the index: {report['runs_error']}"))
    return Group(objects, "", _runs_table(report, "run `sentinel train --target k8s`"))
