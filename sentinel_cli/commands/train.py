"""``sentinel train``: one distributed training run of the recommender."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sentinel_cli import backends, options
from sentinel_cli.k8s.request import KubeRequest
from sentinel_cli.output import OutputFormat, emit, key_value_table
from sentinel_ml.training.config import DEFAULT_MAX_FAILURES


@options.kube_options()
@options.hyperparameter_options(per_run_after="model", tunable_after="max_failures")
def train(
    model: Annotated[options.Model, typer.Option(help=options.MODEL_HELP, case_sensitive=False)] = options.Model.mf,
    workers: Annotated[int | None, typer.Option(min=1, show_default=False, help="Ray Train workers. 1 runs "
                                                "in-process (Ray Train local mode); 2 or more start a DDP "
                                                "worker group. Default: 1; on k8s the profile's workers (4), "
                                                "one pod each.")] = None,
    max_failures: Annotated[int, typer.Option(
        min=0, help="With 2 or more workers: restarts of the worker group after a lost worker (a killed "
                    "process, a preempted spot node), each resuming from the last epoch's checkpoint. "
                    "0: a lost worker ends the run.")] = DEFAULT_MAX_FAILURES,
    seed: options.SeedOpt = 42,
    split: options.SplitOpt = options.Split.u1,
    data: options.DataOpt = None,
    storage: options.StorageOpt = None,
    mlflow_uri: options.MlflowOpt = None,
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
    hyperparameters: dict[str, Any] | None = None,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """Train the recommender (a matrix factorization) with Ray Train + Lightning on MovieLens 100k."""
    from sentinel_ml.training.config import Hyperparameters, TrainConfig

    hp = Hyperparameters.for_model(model.value, **(hyperparameters or {}), seed=seed, split=split.value)
    config = TrainConfig(hp=hp, workers=workers or 1, max_failures=max_failures, data=data, storage=storage,
                         mlflow_uri=mlflow_uri)
    deploy = deploy.with_extra({"workers": workers} if workers else {})  # k8s: pods, else the profile's
    summary = backends.select(target, deploy.overrides.profile).train(config, deploy)
    emit(summary, output, _summary_table)


def _summary_table(summary: dict):
    if "metrics" not in summary:  # k8s: applied, dry run, or no index record to show
        return key_value_table([(k, v) for k, v in summary.items() if k != "objects"])
    metrics = summary["metrics"]
    return key_value_table([
        ("run id", summary["run_id"]),
        ("model", summary["model"]),
        ("best val RMSE", f"{metrics['val_rmse']:.4f} (epoch {metrics['best_epoch']})"),
        ("u1 test RMSE", f"{metrics['test_rmse']:.4f}"),
        ("checkpoint", summary["checkpoints"]["best"]),
        ("last checkpoint", summary["checkpoints"]["last"]),
        ("index record", summary["index_uri"]),
        ("MLflow run", summary["mlflow_run_id"] or f"not recorded ({summary['mlflow_error']})"),
        ("restarts", _restarts(summary.get("restarts") or [])),
        ("wall time", f"{summary['wall_s']:.1f}s"),
    ])


def _restarts(restarts: list[dict]) -> str:
    if not restarts:
        return "0"
    epochs = ", ".join(str(r["resumed_from_epoch"]) for r in restarts)
    return f"{len(restarts)} (resumed from epoch {epochs})"
