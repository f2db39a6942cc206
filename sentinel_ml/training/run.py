"""Distributed training with Ray Train: ``train(config) -> TrainResult``.

``workers == 1`` on the embedded default runs Ray Train's local mode (``ScalingConfig(num_workers=0)``):
the Lightning loop runs in this process, with no Ray runtime to start. ``workers >= 2``, or any run
that joins an existing cluster (``RAY_ADDRESS`` set), starts a real Ray Train worker group with
Lightning's DDP over gloo. Rank 0 writes the best and last checkpoints and the driver writes the
checkpoint index record, so ``latest`` and ``best`` resolve the same way for every run.

The RayJob's entrypoint, ``python -m sentinel_ml.train …`` (``sentinel_ml/train.py``), calls ``train``.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sentinel_ml.errors import JobFailed
from sentinel_ml.logs import follow_root_level
from sentinel_ml.paths import storage_root
from sentinel_ml.store import index as checkpoints
from sentinel_ml.store import uri as storage
from sentinel_ml.store.checkpoint import checkpoint_uri, save_checkpoint
from sentinel_ml.tracking import Tracker, resolve_tracking_uri
from sentinel_ml.training.config import TrainConfig
from sentinel_ml.training.loop import LoopResult, run_loop

ProgressHook = Callable[[dict[str, Any]], None]
EpochHook = Callable[[dict[str, float]], None]


@dataclass
class TrainResult:
    run_id: str
    model: str
    metrics: dict[str, float]
    history: list[dict[str, float]]
    checkpoints: dict[str, str]
    index_uri: str
    mlflow_run_id: str | None
    mlflow_error: str | None
    wall_s: float

    def summary(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _WorkerRun:
    """What each worker needs to know: plain data, cheap to pickle."""

    config: TrainConfig
    run_id: str
    root: str


def train(config: TrainConfig, on_progress: ProgressHook | None = None) -> TrainResult:
    """Run one training job end to end: data, Ray Train, checkpoints, index record, MLflow."""
    config.validate()
    started = time.monotonic()
    run = _WorkerRun(config, config.run_id or checkpoints.new_run_id("train"), storage_root(config.storage))
    notify = on_progress or (lambda event: None)
    tracker = Tracker(resolve_tracking_uri(config.mlflow_uri))
    tracker.start("run", run.run_id, _run_params(config),
                  tags={"sentinel.run_id": run.run_id, "sentinel.kind": "train"})
    with tracker.closing_on_failure("run"):
        result = _train_on_ray(run, notify, _epoch_logger(tracker, notify, config.hp.epochs))
    record = _run_record(run, result)
    _finish_tracking(tracker, record)
    index_uri = checkpoints.write_record(run.root, record)
    return TrainResult(
        run_id=run.run_id,
        model=config.hp.model,
        metrics=result["metrics"],
        history=result["history"],
        checkpoints=result["checkpoints"],
        index_uri=index_uri,
        mlflow_run_id=record.mlflow_run_id,
        mlflow_error=tracker.error,
        wall_s=round(time.monotonic() - started, 2),
    )


def _run_params(config: TrainConfig) -> dict[str, Any]:
    return {**asdict(config.hp), "workers": config.workers}


def _epoch_logger(tracker: Tracker, notify: ProgressHook, epochs: int) -> EpochHook:
    """Each epoch's row to MLflow and, as an ``epoch`` event, to the progress hook."""

    def on_epoch(row: dict[str, float]) -> None:
        tracker.log_metrics("run", {k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"]))
        notify({"event": "epoch", "epochs": epochs, **row})

    return on_epoch


def _train_on_ray(run: _WorkerRun, notify: ProgressHook, on_epoch: EpochHook) -> dict[str, Any]:
    """The dataset, then Ray Train in local mode or on a worker group: metrics, history, checkpoints."""
    from sentinel_ml.data.download import ensure_dataset

    dataset_dir = ensure_dataset(run.config.data)  # once here, so workers find a warm cache
    notify({"event": "data", "path": str(dataset_dir)})
    if _local_mode(run.config):
        notify({"event": "start", "message": f"run {run.run_id}: Ray Train local mode, in this process"})
        return _run_local(run, dataset_dir, on_epoch)
    from sentinel_ml.ray_runtime import running_cluster

    where = running_cluster() or "the embedded local Ray"
    notify({"event": "start", "message": f"run {run.run_id}: starting {run.config.workers} Ray Train "
            f"workers (DDP) on {where}"})
    return _run_ray(run, on_epoch)


def _run_record(run: _WorkerRun, result: dict[str, Any]) -> checkpoints.RunRecord:
    return checkpoints.RunRecord(
        run_id=run.run_id,
        kind="train",
        created_at=checkpoints.utc_now_iso(),
        config=_run_params(run.config),
        metrics=result["metrics"],
        checkpoints=result["checkpoints"],
    )


def _finish_tracking(tracker: Tracker, record: checkpoints.RunRecord) -> None:
    """End the MLflow run with the checkpoint URIs as tags and note its id in ``record``."""
    tracker.end("run", "FINISHED", tags={"checkpoint_uri": record.best_checkpoint,
                                         **{f"checkpoint.{k}": v for k, v in record.checkpoints.items()}})
    record.mlflow_run_id = tracker.close().get("run")


def _local_mode(config: TrainConfig) -> bool:
    return config.workers == 1 and not os.environ.get("RAY_ADDRESS")


def _save_checkpoints(run: _WorkerRun, result: LoopResult) -> dict[str, str]:
    uris = {
        "best": checkpoint_uri(run.root, run.run_id, "best"),
        "last": checkpoint_uri(run.root, run.run_id, "last"),
    }
    model_config = asdict(result.model_config)
    save_checkpoint(uris["best"], result.best["state_dict"], model_config,
                    {**result.metrics, "epoch": result.best["epoch"]})
    save_checkpoint(uris["last"], result.last_state_dict, model_config, {**result.history[-1]})
    return uris


def _run_local(run: _WorkerRun, dataset_dir: Path, on_epoch: EpochHook) -> dict[str, Any]:
    """Ray Train local mode: the TorchTrainer API, run in this process with no Ray runtime."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    follow_root_level()
    holder: dict[str, Any] = {}

    def loop(_config: dict) -> None:
        result = run_loop(run.config.hp, dataset_dir, on_epoch=on_epoch)
        holder.update(metrics=result.metrics, history=result.history,
                      checkpoints=_save_checkpoints(run, result))

    trainer = TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=0))
    trainer.fit()
    return holder


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """Entry point of each Ray Train worker: epochs and, from rank 0, the result go to the progress queue."""
    from sentinel_ml.data.download import ensure_dataset
    from sentinel_ml.training.worker_group import RayTrainWorker

    run: _WorkerRun = loop_config["run"]
    progress = loop_config["progress"]
    worker = RayTrainWorker.current()

    def on_epoch(row: dict[str, float]) -> None:
        worker.report(dict(row))
        if worker.is_rank_zero:
            progress.put(row)

    result = worker.run_loop(run.config.hp, ensure_dataset(run.config.data), on_epoch=on_epoch)
    if worker.is_rank_zero:
        progress.put({"event": "result", "metrics": result.metrics, "history": result.history,
                      "checkpoints": _save_checkpoints(run, result)})


def _run_ray(run: _WorkerRun, on_epoch: EpochHook) -> dict[str, Any]:
    """A real worker group: ``workers`` Ray Train workers with DDP, progress through a Ray queue."""
    from ray.train import RunConfig
    from ray.util.queue import Queue

    from sentinel_ml.ray_runtime import ensure_ray
    from sentinel_ml.training.worker_group import worker_group_trainer

    ensure_ray()
    progress = Queue()
    trainer = worker_group_trainer(
        _worker_loop, {"run": run, "progress": progress}, workers=run.config.workers, cpus_per_worker=1,
        run_config=RunConfig(name=run.run_id, storage_path=_ray_storage_path(run.root)))
    errors: list[BaseException] = []
    thread = _fit_in_background(trainer, progress, errors)
    outcome = _relay_progress(progress, thread, on_epoch)
    thread.join()
    if errors:
        raise JobFailed(f"Ray Train failed: {_root_cause(errors[0])}") from errors[0]
    if not outcome:
        raise JobFailed("Ray Train finished without a result from rank 0")
    return outcome


_DONE_MARK = "__sentinel_done__"


def _fit_in_background(trainer, progress, errors: list[BaseException]) -> threading.Thread:
    """Run ``trainer.fit()`` in a thread that keeps its error in ``errors`` and ends ``progress``."""

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as e:  # noqa: BLE001 - re-raised in the driver thread
            errors.append(e)
        finally:
            progress.put(_DONE_MARK)

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    return thread


def _relay_progress(progress, fitting: threading.Thread, on_epoch: EpochHook) -> dict[str, Any]:
    """Pass the workers' epochs to ``on_epoch`` until the fit ends; return rank 0's result event, if any."""
    outcome: dict[str, Any] = {}
    while True:
        try:
            event = progress.get(timeout=1.0)
        except queue.Empty:  # ray.util.queue.Empty is a subclass
            if not fitting.is_alive() and progress.empty():
                return outcome
            continue
        if event == _DONE_MARK:
            return outcome
        if event.get("event") == "result":
            outcome = event
        else:
            on_epoch(event)


def _ray_storage_path(root: str) -> str:
    """Ray Train's own run state lives beside our checkpoints (it needs a shared path on clusters)."""
    if storage.is_s3(root):
        return storage.join(root, "ray")
    path = storage.local_path(root) / "ray"
    path.mkdir(parents=True, exist_ok=True)
    return str(path.resolve())


def _root_cause(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
