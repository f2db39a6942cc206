"""``sentinel tune``: a hyperparameter study with Ray Tune, ASHA early stopping by default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sentinel_cli import backends, options
from sentinel_cli.backends.results import TuneReport, to_data
from sentinel_cli.k8s.request import KubeRequest
from sentinel_cli.output import OutputFormat, emit, key_value_table, ranking_rows, records_table
from sentinel_ml.compute import Compute
from sentinel_ml.data.source import DataSource
from sentinel_ml.training.config import DEFAULT_MAX_FAILURES
from sentinel_ml.tuning import SCHEDULERS

Scheduler = options.choice("Scheduler", SCHEDULERS)


TRIAL_COLUMNS = [
    ("trial", "trial_id"), ("state", "state"), ("lr", "lr"), ("reg", "regularization"),
    ("dim", "embedding_dim"), ("batch", "batch_size"), ("epochs", "epochs"), ("best epoch", "best_epoch"),
    ("val RMSE", "val_rmse"), ("restarts", "restarts"),
]


@options.kube_options()
@options.compute_options("--gpus-per-trial", "GPUs per trial (per worker with --workers-per-trial > 1), "
                         "fractions allowed: 0.25 runs four trials on one GPU. Default: 0 (auto shares Ray's "
                         "GPUs between the trials running at once).",
                         "--cpus-per-trial", "CPUs per trial (per worker with --workers-per-trial > 1), "
                         "fractions allowed. Default: Ray's CPUs shared by --concurrency, at most 1.")
@options.data_options()
def tune(
    model: Annotated[options.Model, typer.Option(
        help="The model to tune; it picks the default search space (see docs/tuning.md).",
        case_sensitive=False)] = options.Model.autorec,
    samples: Annotated[int, typer.Option(min=1, help="Trials to sample from the search space.")] = 20,
    max_epochs: Annotated[int | None, typer.Option(
        min=1, show_default=False,
        help=f"Epochs of a trial that is never stopped. Default: {options.study_default_help('max_epochs')}.")] = None,
    scheduler: Annotated[Scheduler, typer.Option(
        help="asha stops weak trials at rungs; fifo runs every trial to --max-epochs (no early stopping).",
        case_sensitive=False)] = Scheduler.asha,
    grace_period: Annotated[int | None, typer.Option(
        min=1, show_default=False,
        help=f"ASHA: epochs before a trial can be stopped. Default: {options.study_default_help('grace_period')}.")
    ] = None,
    reduction_factor: Annotated[int | None, typer.Option(
        min=2, show_default=False, help="ASHA: keep the best 1/N of trials at each rung. "
                                        f"Default: {options.study_default_help('reduction_factor')}.")] = None,
    concurrency: Annotated[int | None, typer.Option(
        min=1, show_default=False, help="Trials running at the same time. Default: one per CPU, at most 4.")] = None,
    space: Annotated[Path | None, typer.Option(
        help=f"YAML or TOML file overriding search-space dimensions ({options.SPACE_DIMENSIONS}); "
             "see docs/tuning.md.", show_default=False)] = None,
    workers_per_trial: Annotated[int, typer.Option(
        min=1, help="1 runs the Lightning loop in the trial; 2 or more start a DDP TorchTrainer per trial.")] = 1,
    max_failures: Annotated[int, typer.Option(
        min=0, help="Restarts of a trial after a lost worker (a killed process, a preempted node), each "
                    "resuming from the trial's last checkpoint. 0: a lost worker fails the trial.")
    ] = DEFAULT_MAX_FAILURES,
    seed: options.SeedOpt = 42,
    split: options.SplitOpt = None,
    top: Annotated[int, typer.Option(min=1, help="Trials shown in the table (JSON/YAML list them all).")] = 10,
    source: DataSource = DataSource(),
    compute: Compute = Compute(),
    storage: options.StorageOpt = None,
    mlflow_uri: options.MlflowOpt = None,
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """Tune the recommender's hyperparameters with Ray Tune; the best trial's checkpoint becomes `best`."""
    from sentinel_ml.tuning.config import StudyConfig
    from sentinel_ml.tuning.search_space import load_space

    config = StudyConfig(
        model=model.value, space=load_space(space, model.value), samples=samples, max_epochs=max_epochs,
        grace_period=grace_period, reduction_factor=reduction_factor, scheduler=scheduler.value,
        concurrency=concurrency, workers_per_trial=workers_per_trial,
        max_failures=max_failures, seed=seed,
        split=split.value if split else source.default_split,
        source=source, storage=storage, mlflow_uri=mlflow_uri, compute=compute,
    )
    config.validate()  # every flag and the space file are checked before Ray starts
    report = backends.select(target, deploy.overrides.profile).tune(config, deploy)
    emit(report, output, lambda r: _tables(r, top))


def _tables(report: TuneReport, top: int):
    from rich.console import Group

    if not report.finished:  # k8s: applied, dry run, or no index record to show
        return key_value_table([(k, v) for k, v in to_data(report).items() if k != "objects"])

    rows = [{**t, **{k: _short(v) for k, v in t["config"].items()}, "restarts": _restarts(t)}
            for t in report.trials[:top]]
    shown = f"top {len(rows)} of {len(report.trials)} trials" if len(rows) < len(report.trials) \
        else "trials"
    best, metrics = report.best, report.metrics
    return Group(
        records_table(rows, TRIAL_COLUMNS, title=shown),
        key_value_table([
            ("study", f"{report.run_id} ({report.model}, {report.scheduler}, "
                      f"{report.samples} samples, "
                      f"up to {report.max_epochs} epochs)"),
            ("trials", ", ".join(f"{n} {state}" for state, n in report.counts.items())),
            ("trial-epochs run", report.trial_epochs),
            ("best trial", f"{best['trial_id']}  " + "  ".join(f"{k}={_short(v)}" for k, v in best["config"].items())),
            ("best val RMSE", f"{metrics['val_rmse']:.4f} (epoch {metrics['best_epoch']})"),
            (f"{report.split} test RMSE", f"{metrics['test_rmse']:.4f}"),
            *ranking_rows(report.split, metrics),
            ("checkpoint", report.checkpoints["best"]),
            ("index record", report.index_uri),
            ("MLflow run", report.mlflow_run_id or f"not recorded ({report.mlflow_error})"),
            ("wall time", _wall(report)),
        ]),
    )


def _wall(report: TuneReport) -> str:
    phases = report.phases or {}
    split = ", ".join(f"{name.removesuffix('_s')} {phases[name]:.1f}s"
                      for name in ("setup_s", "trials_s", "finish_s") if name in phases)
    return f"{report.wall_s:.1f}s" + (f" ({split})" if split else "")


def _restarts(trial: dict) -> str:
    """``0``, or ``1 (from 3)``: the restarts and the epoch each resumed from."""
    count, epochs = trial.get("restarts") or 0, trial.get("resumed_from_epochs") or []
    return f"{count} (from {', '.join(map(str, epochs))})" if epochs else str(count)


def _short(value):
    return f"{value:.3g}" if isinstance(value, float) else value
