"""``sentinel status``: one view of runs, checkpoints and what is serving."""

from __future__ import annotations

from typing import Annotated

import typer

from sentinel_cli import options
from sentinel_cli.output import OutputFormat, emit, records_table
from sentinel_cli.targets import resolve_target

RUN_COLUMNS = [
    ("run id", "run_id"), ("kind", "kind"), ("created", "created_at"), ("val RMSE", "val_rmse"),
    ("test RMSE", "test_rmse"), ("epochs", "epochs"), ("checkpoint", "checkpoint"),
]


def status(
    limit: Annotated[int, typer.Option(min=1, help="How many recent runs to list.")] = 20,
    storage: options.StorageOpt = None,
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """List recent training and tuning runs from the checkpoint index."""
    report = resolve_target(target).status(storage=storage, limit=limit)
    emit(report, output, _table)


def _table(report: dict):
    rows = [
        {**run, "val_rmse": run["metrics"].get("val_rmse"), "test_rmse": run["metrics"].get("test_rmse"),
         "epochs": run["metrics"].get("epochs"), "checkpoint": run["checkpoints"].get("best")}
        for run in report["runs"]
    ]
    return records_table(rows, RUN_COLUMNS, title="runs", empty="no runs yet: run `sentinel train`")
