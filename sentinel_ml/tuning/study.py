"""Hyperparameter tuning with Ray Tune: ``tune(config) -> TuneResult``.

A study samples ``config.space`` and runs each sample as a trial (``tuning.trial``) that reports val RMSE
every epoch, so ASHA can stop the weak ones at its rungs; FIFO runs them all to ``max_epochs``, for
comparison. The split is parsed once here and shared through Ray's object store. Trials keep one small
checkpoint each in a scratch directory. After the study the best trial's best weights are scored on the
test split and written once, through ``store.checkpoint``, under the storage root with one index record of
kind ``tune``, so ``best`` resolves to them. MLflow gets a parent run for the study and a child run per
trial, recorded from the driver by a Tune callback (``tuning.callback``) that also drives the progress.

The RayJob's entrypoint, ``python -m sentinel_ml.tune …`` (``sentinel_ml/tune.py``), calls ``tune``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentinel_ml.errors import JobFailed
from sentinel_ml.local_capacity import check_cpus, check_gpus
from sentinel_ml.logs import follow_root_level
from sentinel_ml.models.metrics import test_metrics
from sentinel_ml.paths import storage_root
from sentinel_ml.store import index as checkpoints
from sentinel_ml.store import uri as storage
from sentinel_ml.store.checkpoint import (
    checkpoint_uri,
    load_checkpoint,
    save_checkpoint,
)
from sentinel_ml.tracking import Tracker, resolve_tracking_uri
from sentinel_ml.training.run import prepare_for, source_params
from sentinel_ml.tuning.callback import (
    COMPLETED,
    FAILED,
    METRIC,
    STOPPED,
    ProgressHook,
    TrialSummary,
    ranked,
    study_callback,
)
from sentinel_ml.tuning.config import StudyConfig
from sentinel_ml.tuning.trial import (
    BEST_FILE,
    LAST_FILE,
    Study,
    decision_epochs,
    hyperparameters,
    trial,
)

if TYPE_CHECKING:
    from sentinel_ml.data.prepared import Prepared

MAX_DEFAULT_CONCURRENCY = 4

MIN_CPUS_PER_WORKER = 0.25  # the least a trial worker gets when the CPUs are shared out


@dataclass
class TuneResult:
    run_id: str
    model: str
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
    # Where the wall time went: "setup_s" until the first trial started (data, starting or joining
    # Ray, the trial workers' imports), "trials_s" until the last trial ended, "finish_s" after it
    # (scoring the best checkpoint on the test split, the index record, MLflow).
    phases: dict[str, float]
    data: dict[str, Any]  # dataset, split (the one the test RMSE is on), sizes, duplicates dropped

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def tune(config: StudyConfig, on_progress: ProgressHook | None = None) -> TuneResult:
    """Run one tuning study end to end: data, Ray Tune, the best checkpoint, index record, MLflow."""
    config.validate()
    _check_local_capacity(config)
    started = time.monotonic()
    run_id = config.run_id or checkpoints.new_run_id("tune")
    root = storage_root(config.storage)
    notify = on_progress or (lambda event: None)
    # The data first: a bad table or a model too big for it fails here, before any MLflow run or record.
    data = prepare_for(config.source, config.split, config.seed, config.model, notify)
    tracker = Tracker(resolve_tracking_uri(config.mlflow_uri))
    tracker.start("study", run_id, _study_params(config),
                  tags={"sentinel.run_id": run_id, "sentinel.kind": "tune"})
    scratch, owned_scratch = _scratch_path(root, run_id)
    try:
        with tracker.closing_on_failure("study"):
            outcome = _run_study(config, data, run_id, root, scratch, tracker, notify)
    finally:
        if owned_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    record = _run_record(run_id, outcome)
    _finish_tracking(tracker, record, outcome)
    index_uri = checkpoints.write_record(root, record)
    return _tune_result(run_id, outcome, record, index_uri, tracker.error, started)


@dataclass
class _Outcome:
    """A finished study, before its record: what the record, MLflow and the result are made of."""

    config: StudyConfig  # with its concurrency settled
    study: Study
    callback: Any  # the study's Tune callback: trial timings
    trials: list[TrialSummary]
    best: TrialSummary
    saved: dict[str, Any]  # the best trial's test-scored metrics and checkpoint URIs (``_save_best``)
    data: dict[str, Any]  # the data's summary (``Prepared.summary``): dataset, split, sizes

    @property
    def counts(self) -> dict[str, int]:
        return {state: sum(t.state == state for t in self.trials) for state in (COMPLETED, STOPPED, FAILED)}

    @property
    def trial_epochs(self) -> int:
        return sum(t.epochs for t in self.trials)

    @property
    def metrics(self) -> dict[str, Any]:
        return {**self.saved["metrics"], "trials": len(self.trials), "trial_epochs": self.trial_epochs}


def _run_study(config: StudyConfig, data: Prepared, run_id: str, root: str, scratch: str, tracker: Tracker,
               notify: ProgressHook) -> _Outcome:
    """Ray, the trials, and the best trial's checkpoint scored and saved under ``root``."""
    split = data.load_split()
    config, cpus, where = _ensure_ray(config)
    study = Study(config.model, config.max_epochs, config.seed, config.split, config.workers_per_trial, scratch,
                  decision_epochs(config.scheduler, config.max_epochs, config.grace_period, config.reduction_factor),
                  compute=replace(_settle_compute(config), cpus=cpus))  # the CPUs given or shared out
    notify({"event": "start", "message": _start_message(run_id, config, cpus, where)})
    notify({"event": "compute", "message": "trials on " + study.compute.describe(
        "worker" if config.workers_per_trial > 1 else "trial")})
    callback = study_callback(tracker, _prefetch_torch_when_a_core_frees(notify, config.samples), config.max_epochs)
    grid = _run_tuner(config, study, split, callback, run_id)
    trials = callback.finished(grid)
    best = _best_trial(trials)
    saved = _save_best(root, run_id, best, _trial_checkpoint(best, grid, callback, study), split, data)
    return _Outcome(config, study, callback, trials, best, saved, data.summary())


def _start_message(run_id: str, config: StudyConfig, cpus: float, where: str) -> str:
    return (f"study {run_id}: {config.model}, {config.samples} trials, {config.scheduler}, up to "
            f"{config.max_epochs} epochs, {config.concurrency} at a time, {cpus:g} CPU per "
            f"{'worker' if config.workers_per_trial > 1 else 'trial'}, on {where}")


def _run_record(run_id: str, outcome: _Outcome) -> checkpoints.RunRecord:
    config = outcome.config
    return checkpoints.RunRecord(
        run_id=run_id,
        kind="tune",
        created_at=checkpoints.utc_now_iso(),
        config={**asdict(hyperparameters(outcome.study, outcome.best.config)), "workers": config.workers_per_trial},
        metrics=outcome.metrics,
        checkpoints=outcome.saved["checkpoints"],
        extra={"model": config.model, "scheduler": config.scheduler, "samples": config.samples,
               "best_trial": outcome.best.trial_id, "trial_states": outcome.counts, "space": config.space.as_dict(),
               "restarts": {t.trial_id: {"restarts": t.restarts, "resumed_from_epochs": t.resumed_from_epochs}
                            for t in outcome.trials if t.restarts}, "data": outcome.data},
        sizes=outcome.saved["sizes"],
    )


def _finish_tracking(tracker: Tracker, record: checkpoints.RunRecord, outcome: _Outcome) -> None:
    """Log the study's metrics, end its MLflow run and note the run's id in ``record``."""
    metrics = record.metrics
    tracker.log_metrics("study", {"best_val_rmse": metrics["val_rmse"], **test_metrics(metrics),
                                  "trial_epochs": outcome.trial_epochs}, 0)
    tracker.end("study", "FINISHED", tags={"best_trial": outcome.best.trial_id,
                                           "checkpoint_uri": record.best_checkpoint})
    record.mlflow_run_id = tracker.close().get("study")


def _tune_result(run_id: str, outcome: _Outcome, record: checkpoints.RunRecord, index_uri: str,
                 mlflow_error: str | None, started: float) -> TuneResult:
    config = outcome.config
    return TuneResult(
        run_id=run_id,
        model=config.model,
        scheduler=config.scheduler,
        samples=config.samples,
        max_epochs=config.max_epochs,
        split=config.split,
        best={**asdict(outcome.best), **test_metrics(record.metrics)},
        trials=[asdict(t) for t in ranked(outcome.trials)],
        counts=outcome.counts,
        trial_epochs=outcome.trial_epochs,
        metrics=record.metrics,
        checkpoints=record.checkpoints,
        index_uri=index_uri,
        space=config.space.as_dict(),
        mlflow_run_id=record.mlflow_run_id,
        mlflow_error=mlflow_error,
        wall_s=round(time.monotonic() - started, 2),
        phases=_phases(started, outcome.callback),
        data=outcome.data,
    )


def _phases(started: float, callback) -> dict[str, float]:
    now = time.monotonic()
    first, last = callback.first_start or now, callback.last_end or now
    return {"setup_s": round(first - started, 2), "trials_s": round(last - first, 2),
            "finish_s": round(now - last, 2)}


def _prefetch_torch_when_a_core_frees(notify: ProgressHook, samples: int) -> ProgressHook:
    """Pass progress on; the first time a trial ends after the last one has started, import torch
    in a background thread for scoring the best checkpoint (~1.5 s of CPU). From then on a trial
    slot stays free, so the import runs on an idle core instead of after the last trial (or, earlier,
    against the trial workers' own imports and the GIL that Tune's driver loop needs)."""
    started = False

    def hook(event: dict[str, Any]) -> None:
        nonlocal started
        counts = event.get("counts") or {}
        if (not started and event.get("event") == "trial" and event.get("state") in (COMPLETED, STOPPED, FAILED)
                and sum(counts.values()) >= samples):
            started = True
            threading.Thread(target=importlib.import_module, args=("sentinel_ml.models.evaluation",), daemon=True,
                             name="import-torch").start()
        notify(event)

    return hook


def _study_params(config: StudyConfig) -> dict[str, Any]:
    params = {k: v for k, v in asdict(config).items() if k not in ("space", "run_id", "mlflow_uri", "source")}
    return {**params, **source_params(config.source), **{f"space.{d.name}": d.describe() for d in config.space.dimensions}}


# --- Ray --------------------------------------------------------------------------------------


def _ensure_ray(config: StudyConfig) -> tuple[StudyConfig, float, str]:
    """Join the running Ray (tests, a RayJob, ``ray start``), else start the embedded one.

    Returns the config with its concurrency settled, the CPUs each worker reserves, and where it runs.
    """
    import ray

    from sentinel_ml.ray_runtime import ensure_ray

    # Tune's import (~0.8 s of driver CPU) overlaps ray.init, which mostly waits for Ray's processes.
    threading.Thread(target=importlib.import_module, args=("ray.tune",), daemon=True, name="import-tune").start()
    joined = ensure_ray(lambda: _warm_trial_workers(config))
    follow_root_level()
    total = float(ray.cluster_resources().get("CPU", 1.0))
    config = replace(config, concurrency=config.concurrency or default_concurrency(total, config.workers_per_trial))
    where = f"the Ray cluster at {joined}" if joined else "the embedded local Ray"
    if config.cpus_per_trial:
        return config, config.cpus_per_trial, where
    # Share the CPUs between the concurrent trials (fractions are fine: a trial is one thread).
    return config, shared_cpus_per_worker(total, config.concurrency, config.workers_per_trial), where


def _settle_compute(config: StudyConfig):
    """The study's device and GPUs per trial worker (``Compute.settle``): Ray's GPUs shared by the
    trial workers running at once."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0))
    return config.compute.settle(gpus, units=config.concurrency * config.workers_per_trial)


def shared_cpus_per_worker(total: float, concurrency: int, workers_per_trial: int) -> float:
    """Each trial worker's share of ``total`` CPUs, in hundredths rounded down, between MIN_CPUS_PER_WORKER
    and 1. Rounded down: 3 workers on 2 CPUs at round(2/3, 2) = 0.67 asked 2.01 CPUs, which the trial's
    placement group could never get, and the study waited forever."""
    share = math.floor(total / (concurrency * workers_per_trial) * 100) / 100
    return max(MIN_CPUS_PER_WORKER, min(1.0, share))


def _warm_trial_workers(config: StudyConfig):
    """The trial actors Tune will start on the embedded Ray: one per concurrent single-worker trial
    (reused by the trials after them), in the runtime env Tune gives its trainables. Multi-worker
    trials start Ray Train controllers and workers of their own, which are left to start cold."""
    from sentinel_ml.ray_runtime import WarmWorkers

    if config.workers_per_trial > 1:
        return None
    count = config.concurrency or default_concurrency(len(os.sched_getaffinity(0)), 1)
    return WarmWorkers(min(count, config.samples), _trial_runtime_env)


def _trial_runtime_env() -> dict[str, Any]:
    """What Tune's actor cache gives each trainable (``ray.tune.execution.class_cache``)."""
    from ray.tune.execution.class_cache import DEFAULT_ENV_VARS, ENV_VARS_TO_PROPAGATE

    return {"env_vars": {**DEFAULT_ENV_VARS, **{k: os.environ[k] for k in ENV_VARS_TO_PROPAGATE if k in os.environ}}}


def _check_local_capacity(config: StudyConfig) -> None:
    """On the embedded Ray: a trial's workers must fit the machine (a multi-worker trial is placed
    whole), and so must ``--concurrency`` trials at once when ``--cpus-per-trial`` fixes their size
    (without it the CPUs are shared out, at least MIN_CPUS_PER_WORKER each)."""
    per_worker = config.cpus_per_trial or MIN_CPUS_PER_WORKER
    check_cpus(config.workers_per_trial * per_worker,
               f"a trial of --workers-per-trial {config.workers_per_trial} x {per_worker:g} CPU",
               hint="lower --workers-per-trial or --cpus-per-trial, or run against a bigger cluster "
                    "(RAY_ADDRESS, or --target k8s)")
    gpus = config.compute.asked
    check_gpus(config.workers_per_trial * gpus, f"a trial of --workers-per-trial {config.workers_per_trial} x "
               f"--gpus-per-trial {gpus:g}", hint="lower --gpus-per-trial (fractions share a GPU) or "
               "--workers-per-trial, use --device cpu, or run where the GPUs are (RAY_ADDRESS, or --target k8s)")
    if config.concurrency and gpus:
        check_gpus(config.concurrency * config.workers_per_trial * gpus,
                   f"--concurrency {config.concurrency} trials of {config.workers_per_trial} x {gpus:g} GPU",
                   hint="lower --concurrency or --gpus-per-trial (fractions share a GPU)")
    if config.concurrency and config.cpus_per_trial:
        check_cpus(config.concurrency * config.workers_per_trial * config.cpus_per_trial,
                   f"--concurrency {config.concurrency} trials of {config.workers_per_trial} x "
                   f"{config.cpus_per_trial:g} CPU", hint="lower --concurrency or --cpus-per-trial (or leave "
                   "--cpus-per-trial out: the CPUs are then shared between the trials)")


def default_concurrency(cpus: float, workers_per_trial: int) -> int:
    """One single-threaded trial worker per CPU, at most 4 trials. Measured on 2 cores (bench/tune.py):
    4 trials on 2 CPUs made each epoch ~20% slower than 2, and let more trials past ASHA's rungs
    before it had seen enough of them to stop them."""
    return max(1, min(MAX_DEFAULT_CONCURRENCY, int(cpus // workers_per_trial)))


def _scratch_path(root: str, run_id: str) -> tuple[str, bool]:
    """Tune's storage path for trial checkpoints: S3 beside the checkpoints (shared by every node),
    else a temporary directory removed after the study. Returns (path, whether we remove it)."""
    if storage.is_s3(root):
        return storage.join(root, "ray", run_id), False
    return tempfile.mkdtemp(prefix=f"sentinel-{run_id}-"), True


def _run_tuner(config: StudyConfig, study: Study, split, callback, run_id: str):
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from sentinel_ml.ray_runtime import await_warm_workers

    _count_callbacks_by_name()
    tuner = tune.Tuner(
        tune.with_parameters(_trainable(study), study=study, split=split),
        param_space=config.space.to_tune(),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="min",
            scheduler=_scheduler(config),
            search_alg=BasicVariantGenerator(max_concurrent=config.concurrency, random_state=config.seed),
            num_samples=config.samples,
            reuse_actors=study.workers_per_trial == 1,
        ),
        run_config=tune.RunConfig(
            name=run_id,
            storage_path=study.scratch,
            verbose=0,
            callbacks=[callback, JsonLoggerCallback()],
            # A trial whose worker is lost restarts from its last checkpoint; one that fails by itself
            # fails its retries at once (tuning.trial).
            failure_config=tune.FailureConfig(max_failures=config.max_failures, fail_fast=False),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    _keep_tune_off_stdout()
    await_warm_workers()
    with contextlib.redirect_stdout(sys.stderr):
        return tuner.fit()


def _scheduler(config: StudyConfig):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if config.scheduler != "asha":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="epoch", max_t=config.max_epochs,
                         grace_period=min(config.grace_period, config.max_epochs),
                         reduction_factor=config.reduction_factor)


def _trainable(study: Study):
    from ray import tune

    if study.workers_per_trial > 1:
        # The trial only drives a TorchTrainer (Tune refuses 0 CPUs); its workers hold the CPUs.
        return tune.with_resources(trial, {"cpu": 0.01})
    return tune.with_resources(trial, {"cpu": study.cpus_per_trial, "gpu": study.compute.gpus})


def _keep_tune_off_stdout() -> None:
    """Tune's own console output, loggers and trial-error reports, pared down to what the study needs."""
    # Tune's console reporter would print on stdout, which carries only the result: our callback
    # reports progress instead, and anything Tune still prints goes to stderr.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Of Tune's default loggers only the JSON one is needed (the result grid reads it back); the
    # TensorBoard one imports torch in the driver, 2 s before the first trial starts.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if logging.getLogger().level > logging.DEBUG:
        # A failed trial gets one line from our callback, not Tune's traceback and summary (-v shows them).
        os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
        logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)  # "Trials did not complete: …"


_INTEGRATION_CALLBACKS = ("WandbLoggerCallback", "MLflowLoggerCallback", "CometLoggerCallback", "AimLoggerCallback")


def _count_callbacks_by_name() -> None:
    """Ray's usage telemetry counts a study's callbacks by class name, but first imports its W&B,
    MLflow, Comet and Aim integrations to learn those names: mlflow alone is ~1 s of driver CPU right
    before the first trial starts, while the trial workers are still importing on the same cores.
    Count the same names without the imports. If Ray changed this private hook, leave it alone."""
    import collections

    from ray.air._internal import usage

    if not callable(getattr(usage, "_count_callbacks", None)):
        return

    def count(callbacks):
        from ray.tune import Callback
        from ray.tune.logger import LoggerCallback
        from ray.tune.utils.callback import DEFAULT_CALLBACK_CLASSES

        known = {*_INTEGRATION_CALLBACKS, *(cls.__name__ for cls in DEFAULT_CALLBACK_CLASSES)}
        counts = collections.defaultdict(int)
        for callback in callbacks or []:
            if not isinstance(callback, Callback):
                continue
            name = type(callback).__name__
            if name in known:
                counts[name] += 1
            else:
                counts["CustomLoggerCallback" if isinstance(callback, LoggerCallback) else "CustomCallback"] += 1
        return counts

    usage._count_callbacks = count


# --- after the study ------------------------------------------------------------------------------


def _best_trial(trials: list[TrialSummary]) -> TrialSummary:
    scored = [t for t in trials if t.state != FAILED and t.val_rmse is not None]
    if not scored:
        failed = [t for t in trials if t.error]
        first = f"; first error: {failed[0].error}" if failed else ""
        raise JobFailed(f"all {len(trials)} trials failed{first}",
                        hint="narrow the search space (e.g. a lower lr range) and retry")
    return ranked(scored)[0]


def _save_best(root: str, run_id: str, best: TrialSummary, checkpoint, split, data: Prepared) -> dict[str, Any]:
    """Score the best trial's best weights on the test split and write them under the storage root,
    each with the data's serving artifact (``Prepared.serving_artifact``)."""
    from sentinel_ml.models.config import ModelConfig
    from sentinel_ml.models.evaluation import served_test_metrics

    saved = _read_trial_checkpoint(best, checkpoint)
    best_file = saved[BEST_FILE]
    tested = served_test_metrics(ModelConfig.from_saved(best_file["model_config"]), best_file["state_dict"], split)
    metrics = {"val_rmse": best.val_rmse, "best_epoch": best.best_epoch, "epochs": best.epochs, **tested}
    for name, checkpoint_file in saved.items():
        checkpoint_file["metrics"] = {**checkpoint_file["metrics"], "trial_id": best.trial_id,
                                      **(tested if name == BEST_FILE else {})}
    metrics["val_mae"] = best_file["metrics"].get("val_mae")
    uris, sizes = {}, {}
    artifact = data.serving_artifact()
    for which, name in (("best", BEST_FILE), ("last", LAST_FILE)):
        if name in saved:
            uris[which] = checkpoint_uri(root, run_id, which)
            sizes[which] = save_checkpoint(uris[which], saved[name]["state_dict"], saved[name]["model_config"],
                                           saved[name]["metrics"], data=artifact)
    return {"metrics": {k: v for k, v in metrics.items() if v is not None}, "checkpoints": uris, "sizes": sizes}


def _read_trial_checkpoint(best: TrialSummary, checkpoint) -> dict[str, dict]:
    """The trial checkpoint's files by name: always ``best.pt``, ``last.pt`` when the trial completed."""
    with checkpoint.as_directory() as directory:
        saved = {name: load_checkpoint(str(Path(directory, name)))
                 for name in (BEST_FILE, LAST_FILE) if Path(directory, name).is_file()}
    if BEST_FILE not in saved:
        raise JobFailed(f"trial {best.trial_id} left no checkpoint", hint="rerun the study")
    return saved


def _trial_checkpoint(best: TrialSummary, grid, callback, study: Study):
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
