"""Hyperparameter tuning with Ray Tune: ``tune(config) -> TuneResult``.

Each trial is a Tune function trainable. With one worker per trial it runs the shared Lightning loop
(``loop.run_loop``) in the trial's own process; with ``workers_per_trial > 1`` it launches a Ray Train
``TorchTrainer`` (DDP over gloo) whose reports reach Tune through ``TuneReportCallback`` (Ray Train V2
cannot hand a TorchTrainer to a Tuner). Every trial reports val RMSE once per epoch, so ASHA can stop
the weak ones at its rungs; FIFO runs them all to ``max_epochs``, for comparison.

The split is parsed once and shared through Ray's object store. A trial saves a small checkpoint
(``best.pt``, plus ``last.pt`` at its final epoch) when its val RMSE improves: ASHA stops trials from
the outside, so the best weights must already be persisted when that happens. Tune keeps one
checkpoint per trial in a scratch directory. After the study the best trial's weights are scored on the
test split and written once, through ``checkpoints``, under the storage root with one index record of
kind ``tune``, so ``best`` resolves to them. MLflow gets a parent run for the study and a child run per
trial, recorded from the driver by a Tune callback that also drives the live progress.

Also runnable as ``python -m sentinel_ml.tune …``: that is what the RayJob's entrypoint runs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sentinel_ml import checkpoints, storage
from sentinel_ml.config import Hyperparameters, StudyConfig, storage_root
from sentinel_ml.entrypoint import add_job_args, run_job
from sentinel_ml.errors import JobFailed
from sentinel_ml.logs import follow_root_level
from sentinel_ml.tracking import Tracker, resolve_tracking_uri

log = logging.getLogger(__name__)

ProgressHook = Callable[[dict[str, Any]], None]
METRIC = "val_rmse"
COMPLETED, STOPPED, FAILED, RUNNING = "completed", "stopped early", "failed", "running"
BEST_FILE, LAST_FILE = "best.pt", "last.pt"
PLACEMENT_GROUP = "placement_group"  # reported by multi-worker trials


@dataclass
class TrialSummary:
    trial_id: str
    config: dict[str, Any]
    state: str = RUNNING
    epochs: int = 0
    val_rmse: float | None = None  # best epoch's
    best_epoch: int | None = None
    error: str | None = None


@dataclass
class TuneResult:
    run_id: str
    scheduler: str
    samples: int
    max_epochs: int
    split: str
    best: dict[str, Any]
    trials: list[dict[str, Any]]
    counts: dict[str, int]
    trial_epochs: int
    metrics: dict[str, float]
    checkpoints: dict[str, str]
    index_uri: str
    space: dict[str, Any]
    mlflow_run_id: str | None
    mlflow_error: str | None
    wall_s: float

    def summary(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Study:
    """What each trial needs to know: plain data, cheap to pickle."""

    max_epochs: int
    seed: int
    split: str
    dataset_dir: str
    workers_per_trial: int
    cpus_per_trial: float
    scratch: str  # Tune's (and Ray Train's) storage path for this study


def tune(config: StudyConfig, on_progress: ProgressHook | None = None) -> TuneResult:
    """Run one tuning study end to end: data, Ray Tune, the best checkpoint, index record, MLflow."""
    from sentinel_ml.data import load_split
    from sentinel_ml.download import ensure_dataset

    config.validate()
    started = time.monotonic()
    run_id = config.run_id or checkpoints.new_run_id("tune")
    root = storage_root(config.storage)
    notify = on_progress or (lambda event: None)
    tracker = Tracker(resolve_tracking_uri(config.mlflow_uri))
    tracker.start("study", run_id, _study_params(config),
                  tags={"sentinel.run_id": run_id, "sentinel.kind": "tune"})
    status = "FAILED"
    scratch, owned_scratch = _scratch_path(root, run_id)
    try:
        dataset_dir = ensure_dataset(config.data)
        notify({"event": "data", "path": str(dataset_dir)})
        split = load_split(dataset_dir, config.split, seed=config.seed)
        cpus = _ensure_ray(config)
        study = _Study(config.max_epochs, config.seed, config.split, str(dataset_dir),
                       config.workers_per_trial, cpus, scratch)
        notify({"event": "start", "message": f"study {run_id}: {config.samples} trials, "
                f"{config.scheduler}, up to {config.max_epochs} epochs, {config.concurrency} at a time, "
                f"{cpus:g} CPU per {'worker' if config.workers_per_trial > 1 else 'trial'}"})
        callback = _StudyCallback(tracker, notify, config.max_epochs)
        grid = _run_tuner(config, study, split, callback, run_id)
        trials = callback.finished(grid)
        best = _best_trial(trials)
        saved = _save_best(root, run_id, best, _trial_checkpoint(best, grid, callback, study), split)
        status = "FINISHED"
    finally:
        if status != "FINISHED":
            tracker.end("study", status)
            tracker.close(timeout=30)
        if owned_scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    counts = {state: sum(t.state == state for t in trials) for state in (COMPLETED, STOPPED, FAILED)}
    trial_epochs = sum(t.epochs for t in trials)
    metrics = {**saved["metrics"], "trials": len(trials), "trial_epochs": trial_epochs}
    record = checkpoints.RunRecord(
        run_id=run_id,
        kind="tune",
        created_at=checkpoints.utc_now_iso(),
        config={**_hp(study, best.config).__dict__, "workers": config.workers_per_trial},
        metrics=metrics,
        checkpoints=saved["checkpoints"],
        extra={"scheduler": config.scheduler, "samples": config.samples, "best_trial": best.trial_id,
               "trial_states": counts, "space": config.space.as_dict()},
    )
    tracker.log_metrics("study", {"best_val_rmse": metrics["val_rmse"], "test_rmse": metrics["test_rmse"],
                                  "trial_epochs": trial_epochs}, 0)
    tracker.end("study", "FINISHED", tags={"best_trial": best.trial_id,
                                           "checkpoint_uri": record.best_checkpoint})
    record.mlflow_run_id = tracker.close().get("study")
    index_uri = checkpoints.write_record(root, record)
    return TuneResult(
        run_id=run_id,
        scheduler=config.scheduler,
        samples=config.samples,
        max_epochs=config.max_epochs,
        split=config.split,
        best={**asdict(best), "test_rmse": metrics["test_rmse"]},
        trials=[asdict(t) for t in _ranked(trials)],
        counts=counts,
        trial_epochs=trial_epochs,
        metrics=metrics,
        checkpoints=record.checkpoints,
        index_uri=index_uri,
        space=config.space.as_dict(),
        mlflow_run_id=record.mlflow_run_id,
        mlflow_error=tracker.error,
        wall_s=round(time.monotonic() - started, 2),
    )


def _study_params(config: StudyConfig) -> dict[str, Any]:
    params = {k: v for k, v in asdict(config).items() if k not in ("space", "run_id", "mlflow_uri")}
    return {**params, **{f"space.{d.name}": d.describe() for d in config.space.dimensions}}


def _hp(study: _Study, sampled: dict[str, Any]) -> Hyperparameters:
    return Hyperparameters(
        epochs=study.max_epochs,
        batch_size=int(sampled["batch_size"]),
        lr=float(sampled["lr"]),
        embedding_dim=int(sampled["embedding_dim"]),
        regularization=float(sampled["regularization"]),
        lr_decay=float(sampled["lr_decay"]),
        seed=study.seed,
        split=study.split,
    )


# --- Ray --------------------------------------------------------------------------------------


def _ensure_ray(config: StudyConfig) -> float:
    """Join the running Ray (tests, a RayJob), else start the embedded one; return CPUs per worker."""
    import ray

    from sentinel_ml.ray_runtime import ensure_ray

    ensure_ray()
    follow_root_level()
    if config.cpus_per_trial:
        return config.cpus_per_trial
    # Share the CPUs between the concurrent trials (fractions are fine: a trial is one thread).
    total = float(ray.cluster_resources().get("CPU", 1.0))
    per_worker = total / (config.concurrency * config.workers_per_trial)
    return max(0.25, min(1.0, round(per_worker, 2)))


def _scratch_path(root: str, run_id: str) -> tuple[str, bool]:
    """Tune's storage path for trial checkpoints: S3 beside the checkpoints (shared by every node),
    else a temporary directory removed after the study. Returns (path, whether we remove it)."""
    if storage.is_s3(root):
        return storage.join(root, "ray", run_id), False
    return tempfile.mkdtemp(prefix=f"sentinel-{run_id}-"), True


def _run_tuner(config: StudyConfig, study: _Study, split, callback, run_id: str):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if config.scheduler == "asha":
        scheduler = ASHAScheduler(time_attr="epoch", max_t=config.max_epochs,
                                  grace_period=min(config.grace_period, config.max_epochs),
                                  reduction_factor=config.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    if study.workers_per_trial > 1:
        # The trial only drives a TorchTrainer (Tune refuses 0 CPUs); its workers hold the CPUs.
        trainable = tune.with_resources(_trial, {"cpu": 0.01})
    else:
        trainable = tune.with_resources(_trial, {"cpu": study.cpus_per_trial})
    tuner = tune.Tuner(
        tune.with_parameters(trainable, study=study, split=split),
        param_space=config.space.to_tune(),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="min",
            scheduler=scheduler,
            search_alg=BasicVariantGenerator(max_concurrent=config.concurrency, random_state=config.seed),
            num_samples=config.samples,
            reuse_actors=study.workers_per_trial == 1,
        ),
        run_config=tune.RunConfig(
            name=run_id,
            storage_path=study.scratch,
            verbose=0,
            callbacks=[callback],
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    # Tune's console reporter would print on stdout, which carries only the result: our callback
    # reports progress instead, and anything Tune still prints goes to stderr.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if logging.getLogger().level > logging.DEBUG:
        os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")  # a failed trial: one line, below
    with contextlib.redirect_stdout(sys.stderr):
        return tuner.fit()


# --- one trial (runs in a Ray actor) -------------------------------------------------------------


def _trial(config: dict[str, Any], *, study: _Study, split) -> None:
    """The Tune function trainable: one Lightning loop, or a TorchTrainer when several workers."""
    from ray import tune

    from sentinel_ml.loop import run_loop

    hp = _hp(study, config)
    if study.workers_per_trial > 1:
        _distributed_trial(hp, study, tune.get_context().get_trial_id())
        return

    def on_state(state) -> None:
        _report_epoch(state, tune.report, tune.Checkpoint, write=True)

    run_loop(hp, Path(study.dataset_dir), split=split, on_state=on_state)


def _report_epoch(state, report, checkpoint_cls, *, write: bool, extra: dict | None = None) -> None:
    """Report the epoch's metrics; with a checkpoint when val RMSE improved or at the final epoch.

    ``write`` is False on Ray Train ranks other than 0: they report metrics only.
    """
    from sentinel_ml.checkpoints import save_checkpoint

    metrics: dict[str, Any] = {k: float(v) for k, v in state.row.items()}
    metrics["epoch"] = int(state.row["epoch"])
    metrics.update(extra or {})
    if not (write and (state.improved or state.final)):
        report(metrics)
        return
    model_config = asdict(state.model_config)
    with tempfile.TemporaryDirectory(prefix="sentinel-trial-") as tmp:
        best_metrics = metrics if state.improved else {}
        save_checkpoint(str(Path(tmp, BEST_FILE)), state.best_state_dict, model_config, best_metrics)
        if state.final:
            last = {k: v.detach().clone() for k, v in state.net.state_dict().items()}
            save_checkpoint(str(Path(tmp, LAST_FILE)), last, model_config, metrics)
        report(metrics, checkpoint=checkpoint_cls.from_directory(tmp))


def _distributed_trial(hp: Hyperparameters, study: _Study, trial_id: str) -> None:
    """``workers_per_trial`` Ray Train workers (DDP) for one trial; their reports reach Tune."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        _distributed_worker,
        train_loop_config={"hp": hp, "study": study},
        scaling_config=ScalingConfig(num_workers=study.workers_per_trial, use_gpu=False,
                                     resources_per_worker={"CPU": study.cpus_per_trial}),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(name=f"trial-{trial_id}", storage_path=study.scratch,
                             callbacks=[TuneReportCallback()],
                             checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )
    trainer.fit()


def _distributed_worker(loop_config: dict[str, Any]) -> None:
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, prepare_trainer

    from sentinel_ml.download import ensure_dataset
    from sentinel_ml.loop import run_loop

    hp: Hyperparameters = loop_config["hp"]
    study: _Study = loop_config["study"]
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    # Named in each report so the driver can release the workers' placement group if Tune stops
    # the trial (ASHA, or its last epoch) before Ray Train has shut the group down itself.
    group = ray.util.get_current_placement_group()
    extra = {PLACEMENT_GROUP: group.id.hex()} if group else {}

    def on_state(state) -> None:
        _report_epoch(state, ray.train.report, ray.train.Checkpoint, write=rank == 0, extra=extra)

    trainer_kwargs = {"devices": "auto", "strategy": RayDDPStrategy(), "plugins": [RayLightningEnvironment()]}
    run_loop(hp, ensure_dataset(study.dataset_dir), rank=rank, world_size=world_size,
             trainer_kwargs=trainer_kwargs, prepare=prepare_trainer, on_state=on_state)


# --- the driver's view of the trials: progress and MLflow -----------------------------------------


def _make_callback_class():
    """Defined lazily: ``ray.tune.Callback`` must not be imported when this module is."""
    from ray.tune import Callback

    class StudyCallback(Callback):
        def __init__(self, tracker: Tracker, notify: ProgressHook, max_epochs: int) -> None:
            self.tracker = tracker
            self.notify = notify
            self.max_epochs = max_epochs
            self.trials: dict[str, TrialSummary] = {}
            # Multi-worker trials: their Ray Train workers' placement group and latest checkpoint.
            self.groups: dict[str, str] = {}
            self.checkpoint_paths: dict[str, str] = {}

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles its run config to save experiment state; the live callback stays here.
            return {**self.__dict__, "tracker": None, "notify": None}

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            config = dict(trial.config)
            self.trials[trial.trial_id] = TrialSummary(trial.trial_id, config)
            self.tracker.start(trial.trial_id, f"trial-{trial.trial_id}", config, parent="study",
                               tags={"sentinel.kind": "tune-trial", "sentinel.trial_id": trial.trial_id})
            self._emit("trial", trial.trial_id, config=config)

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            summary = self.trials[trial.trial_id]
            epoch = int(result["epoch"])
            summary.epochs = epoch
            if summary.val_rmse is None or result[METRIC] < summary.val_rmse:
                summary.val_rmse, summary.best_epoch = float(result[METRIC]), epoch
            if result.get("checkpoint_path"):
                self.checkpoint_paths[trial.trial_id] = result["checkpoint_path"]
            if result.get(PLACEMENT_GROUP):
                self.groups[trial.trial_id] = result[PLACEMENT_GROUP]
            self.tracker.log_metrics(trial.trial_id, {k: result[k] for k in ("train_loss", METRIC, "val_mae")},
                                     epoch)
            self._emit("trial_epoch", trial.trial_id, epoch=epoch, max_epochs=self.max_epochs,
                       val_rmse=float(result[METRIC]))

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            summary = self.trials[trial.trial_id]
            summary.state = COMPLETED if summary.epochs >= self.max_epochs else STOPPED
            self._end(summary)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            summary = self.trials.setdefault(trial.trial_id, TrialSummary(trial.trial_id, dict(trial.config)))
            summary.state, summary.error = FAILED, _error_text(trial)
            self._end(summary)

        def finished(self, grid) -> list[TrialSummary]:
            """Every trial's summary after ``fit``; a trial that never started shows as failed."""
            for result in grid:
                trial_id = result.metrics.get("trial_id") or Path(result.path).name
                if trial_id not in self.trials and result.error is not None:
                    self.trials[trial_id] = TrialSummary(trial_id, dict(result.config or {}), FAILED,
                                                         error=_root_cause(result.error))
            return list(self.trials.values())

        def _end(self, summary: TrialSummary) -> None:
            _release_placement_group(self.groups.pop(summary.trial_id, None))
            status = "FAILED" if summary.state == FAILED else "FINISHED"
            tags = {"sentinel.state": summary.state, "epochs": summary.epochs}
            if summary.error:
                tags["error"] = summary.error
            self.tracker.end(summary.trial_id, status, tags=tags)
            self._emit("trial", summary.trial_id, error=summary.error)

        def _emit(self, kind: str, trial_id: str, **fields) -> None:
            summary = self.trials[trial_id]
            scored = [t.val_rmse for t in self.trials.values() if t.val_rmse is not None]
            counts = {state: sum(t.state == state for t in self.trials.values())
                      for state in (RUNNING, COMPLETED, STOPPED, FAILED)}
            self.notify({"event": kind, "trial": trial_id, "state": summary.state,
                         "best_val_rmse": min(scored) if scored else None, "counts": counts, **fields})

    return StudyCallback


def _StudyCallback(tracker: Tracker, notify: ProgressHook, max_epochs: int):  # noqa: N802 - a factory
    return _make_callback_class()(tracker, notify, max_epochs)


def _release_placement_group(group_id: str | None) -> None:
    """Remove a stopped multi-worker trial's Ray Train placement group.

    Tune ends a trial by killing its actor, and with it the Ray Train controller it owns, before the
    controller can remove its workers' placement group; Ray's detached cleaner needs the State API
    (the dashboard), which the embedded Ray runs without. Left alone, each stopped trial would hold
    its CPUs until the driver exits and the next trials would wait forever. Removing a group that
    Ray Train already removed is harmless.
    """
    if not group_id:
        return
    from ray import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    try:
        remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(group_id)))
    except Exception as e:  # noqa: BLE001 - best effort: a leak must not fail the study
        log.debug("placement group %s: %s", group_id, e)


def _error_text(trial) -> str:
    """The failed trial's exception line (e.g. ``JobFailed: training diverged …``), not its traceback."""
    try:
        text = Path(trial.error_file).read_text(encoding="utf-8", errors="replace")
    except (OSError, TypeError):
        return "the trial failed (no error recorded)"
    return _last_line(text)


def _root_cause(error: BaseException) -> str:
    return _last_line(str(getattr(error, "cause", None) or error)) or type(error).__name__


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "the trial failed (no error recorded)"
    qualified, sep, message = lines[-1].partition(": ")
    if sep and re.fullmatch(r"[\w.]+", qualified):
        return f"{qualified.rsplit('.', 1)[-1]}: {message}"
    return lines[-1]


# --- after the study ------------------------------------------------------------------------------


def _ranked(trials: list[TrialSummary]) -> list[TrialSummary]:
    return sorted(trials, key=lambda t: (t.val_rmse is None, t.val_rmse or 0.0, t.trial_id))


def _best_trial(trials: list[TrialSummary]) -> TrialSummary:
    scored = [t for t in trials if t.state != FAILED and t.val_rmse is not None]
    if not scored:
        failed = [t for t in trials if t.error]
        first = f"; first error: {failed[0].error}" if failed else ""
        raise JobFailed(f"all {len(trials)} trials failed{first}",
                        hint="narrow the search space (e.g. a lower lr range) and retry")
    return _ranked(scored)[0]


def _save_best(root: str, run_id: str, best: TrialSummary, checkpoint, split) -> dict[str, Any]:
    """Score the best trial's best weights on the test split and write them under the storage root."""
    from sentinel_ml.loop import rmse
    from sentinel_ml.network import ModelConfig, build_network

    with checkpoint.as_directory() as directory:
        saved = {name: checkpoints.load_checkpoint(str(Path(directory, name)))
                 for name in (BEST_FILE, LAST_FILE) if Path(directory, name).is_file()}
    if BEST_FILE not in saved:
        raise JobFailed(f"trial {best.trial_id} left no checkpoint", hint="rerun the study")
    net = build_network(ModelConfig(**saved[BEST_FILE]["model_config"]))
    net.load_state_dict(saved[BEST_FILE]["state_dict"])
    test_rmse = rmse(net.eval(), split.test)
    metrics = {"val_rmse": best.val_rmse, "best_epoch": best.best_epoch, "epochs": best.epochs,
               "test_rmse": test_rmse}
    for name, data in saved.items():
        data["metrics"] = {**data["metrics"], "trial_id": best.trial_id,
                           **({"test_rmse": test_rmse} if name == BEST_FILE else {})}
    best_metrics = saved[BEST_FILE]["metrics"]
    metrics["val_mae"] = best_metrics.get("val_mae")
    uris = {}
    for which, name in (("best", BEST_FILE), ("last", LAST_FILE)):
        if name in saved:
            uris[which] = checkpoints.checkpoint_uri(root, run_id, which)
            checkpoints.save_checkpoint(uris[which], saved[name]["state_dict"], saved[name]["model_config"],
                                        saved[name]["metrics"])
    return {"metrics": {k: v for k, v in metrics.items() if v is not None}, "checkpoints": uris}


def _trial_checkpoint(best: TrialSummary, grid, callback, study: _Study):
    """The best trial's latest checkpoint: Tune's own, or the path Ray Train reported."""
    import ray.train

    for result in grid:
        if result.metrics.get("trial_id") == best.trial_id and result.checkpoint is not None:
            return result.checkpoint
    path = callback.checkpoint_paths.get(best.trial_id)
    if path:
        if storage.is_s3(study.scratch) and not path.startswith("s3://"):
            path = f"s3://{path}"
        return ray.train.Checkpoint(path)
    raise JobFailed(f"trial {best.trial_id} left no checkpoint", hint="rerun the study")


# --- python -m sentinel_ml.tune ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    defaults = StudyConfig()
    p = argparse.ArgumentParser(prog="python -m sentinel_ml.tune", description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=defaults.samples)
    p.add_argument("--max-epochs", type=int, default=defaults.max_epochs)
    p.add_argument("--grace-period", type=int, default=defaults.grace_period)
    p.add_argument("--reduction-factor", type=int, default=defaults.reduction_factor)
    p.add_argument("--scheduler", choices=("asha", "fifo"), default=defaults.scheduler)
    p.add_argument("--concurrency", type=int, default=defaults.concurrency)
    p.add_argument("--workers-per-trial", type=int, default=defaults.workers_per_trial)
    p.add_argument("--cpus-per-trial", type=float, default=defaults.cpus_per_trial)
    p.add_argument("--space", default=None, help="YAML or TOML file overriding search-space dimensions")
    add_job_args(p, seed=defaults.seed, split=defaults.split)
    return p


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    from sentinel_ml.search_space import load_space

    values = {k: v for k, v in vars(args).items() if k != "space"}
    return replace(StudyConfig(), space=load_space(args.space), **values)


def main(argv: list[str] | None = None) -> int:
    """The container entrypoint: progress as JSON lines on stderr, the summary as JSON on stdout."""
    return run_job(tune, lambda: config_from_args(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
