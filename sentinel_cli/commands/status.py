"""``sentinel status``: one view of runs, checkpoints and what is serving."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from sentinel_cli import backends, options
from sentinel_cli.backends.results import ABSENT, ServeReport, StatusReport, to_data
from sentinel_cli.k8s.request import KubeRequest
from sentinel_cli.output import OutputFormat, emit, records_table
from sentinel_ml.models.metrics import NDCG

RUN_COLUMNS = [
    ("run id", "run_id"), ("kind", "kind"), ("model", "model"), ("data", "data"), ("created", "created_at"),
    ("val RMSE", "val_rmse"), ("test RMSE", "test_rmse"), ("NDCG@10", "ndcg"), ("split", "split"), ("epochs", "epochs"),
    ("checkpoint", "checkpoint"),
]


@options.kube_options("profile", "namespace")
def status(
    limit: Annotated[int, typer.Option(min=1, help="How many recent runs to list.")] = 20,
    storage: options.StorageOpt = None,
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
    all_namespaces: options.AllNamespacesOpt = False,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """List recent training and tuning runs from the checkpoint index; on k8s, what Sentinel manages."""
    deploy = replace(deploy, all_namespaces=all_namespaces)
    report = backends.select(target, deploy.overrides.profile).status(storage, limit, deploy)
    emit(report, output, _table)


def _table(report: StatusReport):
    """What Sentinel manages (when the target lists it), then the runs (when there is a checkpoint
    store), then what serves locally (when the target reports it)."""
    from rich.console import Group

    parts = [_objects_table(report)] if report.managed else []
    if report.schedules:  # k8s: the retraining schedules, each with its newest run's outcome
        from sentinel_cli.commands.schedule import schedules_table

        parts += ["", schedules_table(report.schedules, report.namespace, title="schedules")]
    if report.storage:  # a cluster's profile may name no checkpoint store
        parts += ["", _runs_table(report)] if parts else [_runs_table(report)]
    if report.serving is not ABSENT:
        parts.append(_serving(report.serving))
    return Group(*parts) if len(parts) > 1 else parts[0]


def _runs_table(report: StatusReport):
    from rich.text import Text

    if report.runs_error:
        return Text(f"runs in {report.storage}: cannot read the index: {report.runs_error}")
    next_step = f"run `sentinel train --target {report.target}`" if report.managed else "run `sentinel train`"
    rows = [
        {**run, "val_rmse": run["metrics"].get("val_rmse"), "test_rmse": run["metrics"].get("test_rmse"),
         "ndcg": run["metrics"].get(NDCG),  # runs from before the ranking metrics: none
         "epochs": run["metrics"].get("epochs"), "checkpoint": run["checkpoints"].get("best"),
         "model": (run.get("config") or {}).get("model", "mf"),  # records before --model: mf
         # The split the test RMSE is on, and the data; records before issue 25 were all ml-100k's u1.
         "split": _data(run).get("split") or (run.get("config") or {}).get("split", "u1"),
         "data": _data(run).get("dataset", "ml-100k")}
        for run in report.runs
    ]
    return records_table(rows, RUN_COLUMNS, title=f"runs in {report.storage}",
                         empty=f"no runs yet: {next_step}")


def _serving(serving: ServeReport | None):
    from rich.console import Group

    from sentinel_cli.commands.serve import summary_table

    if serving is None:
        return "serving: nothing (start it with `sentinel serve --checkpoint latest`)"
    return Group("", "[bold]serving[/]", summary_table(serving))


KUBE_COLUMNS = [
    ("name", "name"), ("kind", "kind"), ("namespace", "namespace"), ("state", "state"), ("age", "age"),
    ("run id", "run_id"), ("checkpoint", "checkpoint"), ("auth", "auth"),
]


def _objects_table(report: StatusReport):
    hidden = report.counts["RayJob"] - report.shown_jobs
    title = f"managed by Sentinel in namespace {report.namespace}" + (
        f" ({hidden} older RayJobs not shown: --limit)" if hidden else "")
    columns = KUBE_COLUMNS if report.namespace == "*" else [c for c in KUBE_COLUMNS if c[1] != "namespace"]
    rows = [to_data(o) for o in report.objects]
    for row in rows:  # a RayService's canary, from its spec: the candidate's share and run (or checkpoint)
        if row.get("canary"):
            row["canary"] = f"{row['canary']['percent']:g}% {row['canary']['run_id'] or row['canary']['checkpoint']}"
    if any(row.get("canary") for row in rows):
        columns = [*columns, ("canary", "canary")]
    return records_table(rows, columns, title=title,
                         empty=f"nothing managed by Sentinel in namespace {report.namespace}: "
                               f"run `sentinel train --target {report.target}`")


def _data(run: dict) -> dict:
    """A run record's data summary (``extra.data``; ``Prepared.summary``), or {} for older records."""
    return (run.get("extra") or {}).get("data") or {}
