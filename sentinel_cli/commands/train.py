"""``sentinel train``: one distributed training run of the recommender."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sentinel_cli import backends, options
from sentinel_cli.backends.results import TrainReport, shown, to_data
from sentinel_cli.k8s.request import KubeRequest
from sentinel_cli.output import OutputFormat, emit, key_value_table, ranking_rows
from sentinel_ml.compute import Compute
from sentinel_ml.data.shards import INGESTIONS
from sentinel_ml.data.source import DataSource
from sentinel_ml.training.config import DEFAULT_MAX_FAILURES

Ingestion = options.choice("Ingestion", INGESTIONS)


@options.kube_options()
@options.compute_options("--gpus", "GPUs per Ray Train worker (a fraction shares one GPU); on k8s each worker "
                         "pod asks for nvidia.com/gpu (whole GPUs) and tolerates the GPU nodes' taint. Default: 0.",
                         "--cpus-per-worker", "Ray's CPUs per Ray Train worker, fractions allowed (0.5 runs two "
                         "workers on one core). Locally the workers must fit Ray's CPUs; on k8s each worker pod "
                         "requests exactly this (Ray's num-cpus: it rounded up). Default: 1 (k8s: pods sized by "
                         "the profile's worker.cpu).")
@options.data_options()
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
    ingestion: Annotated[Ingestion, typer.Option(
        case_sensitive=False, help="How the workers read the training data: in-memory (each holds the whole "
        "part), ray-data (each streams its own Ray Data shard; on a worker group, biased MF), or auto: "
        "ray-data above 2M training ratings on a worker group (docs/data.md).")] = Ingestion.auto,
    seed: options.SeedOpt = 42,
    split: options.SplitOpt = None,
    source: DataSource = DataSource(),
    compute: Compute = Compute(),
    storage: options.StorageOpt = None,
    mlflow_uri: options.MlflowOpt = None,
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
    hyperparameters: dict[str, Any] | None = None,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """Train the recommender with Ray Train + Lightning on MovieLens (100k by default) or your own ratings."""
    from sentinel_ml.training.config import Hyperparameters, TrainConfig

    hp = Hyperparameters.for_model(model.value, **(hyperparameters or {}), seed=seed,
                                   split=split.value if split else source.default_split)
    config = TrainConfig(hp=hp, workers=workers or 1, max_failures=max_failures, ingestion=ingestion.value,
                         source=source, storage=storage, mlflow_uri=mlflow_uri, compute=compute)
    deploy = deploy.with_overrides(workers=workers)  # k8s: pods; None: the profile's
    report = backends.select(target, deploy.overrides.profile).train(config, deploy)
    emit(report, output, _summary_table)


def _summary_table(report: TrainReport):
    if not report.finished:  # k8s: applied, dry run, or no index record to show
        return key_value_table([(k, v) for k, v in to_data(report).items() if k != "objects"])
    metrics = report.metrics
    data = shown(report.data) or {}
    return key_value_table([
        ("run id", report.run_id),
        ("model", shown(report.model)),
        *([("data", data_line(data))] if data else []),
        ("best val RMSE", f"{metrics['val_rmse']:.4f} (epoch {metrics['best_epoch']})"),
        (f"{data.get('split', 'u1')} test RMSE", f"{metrics['test_rmse']:.4f}"),
        *ranking_rows(data.get('split', 'u1'), metrics),
        ("checkpoint", report.checkpoints["best"]),
        ("last checkpoint", report.checkpoints["last"]),
        ("index record", report.index_uri),
        ("MLflow run", report.mlflow_run_id or f"not recorded ({report.mlflow_error})"),
        ("restarts", _restarts(report.restarts or [])),
        ("wall time", f"{report.wall_s:.1f}s"),
    ])


def _restarts(restarts: list[dict]) -> str:
    if not restarts:
        return "0"
    epochs = ", ".join(str(r["resumed_from_epoch"]) for r in restarts)
    return f"{len(restarts)} (resumed from epoch {epochs})"


def data_line(data: dict) -> str:
    """``ml-1m: 1,000,209 ratings, 6,040 users, 3,706 items (3 duplicates dropped)``"""
    dropped = data.get("duplicates_dropped") or 0
    return (f"{data['dataset']}: {data['ratings']:,} ratings, {data['users']:,} users, {data['items']:,} items"
            + (f" ({dropped:,} duplicates dropped)" if dropped else ""))
