"""Distributed training with Ray Train: ``train(config) -> TrainResult``.

``workers == 1`` on the embedded default runs Ray Train's local mode (``ScalingConfig(num_workers=0)``):
the Lightning loop runs in this process, with no Ray runtime to start. ``workers >= 2``, or any run
that joins an existing cluster (``RAY_ADDRESS`` set), starts a real Ray Train worker group with
Lightning's DDP over gloo. Rank 0 writes the best and last checkpoints and the driver writes the
checkpoint index record, so ``latest`` and ``best`` resolve the same way for every run.

Also runnable as ``python -m sentinel_ml.train …``: that is what the RayJob's entrypoint runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sentinel_ml.store import index as checkpoints
from sentinel_ml.store.checkpoint import checkpoint_uri, save_checkpoint
from sentinel_ml.store import uri as storage
from sentinel_ml.paths import storage_root
from sentinel_ml.training.config import Hyperparameters, TrainConfig
from sentinel_ml.entrypoint import add_job_args, run_job
from sentinel_ml.errors import JobFailed
from sentinel_ml.logs import follow_root_level
from sentinel_ml.training.loop import LoopResult, run_loop
from sentinel_ml.models.registry import MODELS
from sentinel_ml.tracking import Tracker, resolve_tracking_uri

log = logging.getLogger(__name__)

ProgressHook = Callable[[dict[str, Any]], None]


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


def train(config: TrainConfig, on_progress: ProgressHook | None = None) -> TrainResult:
    """Run one training job end to end: data, Ray Train, checkpoints, index record, MLflow."""
    from sentinel_ml.data.download import ensure_dataset

    config.validate()
    started = time.monotonic()
    run_id = config.run_id or checkpoints.new_run_id("train")
    root = storage_root(config.storage)
    tracker = Tracker(resolve_tracking_uri(config.mlflow_uri))
    tracker.start("run", run_id, {**asdict(config.hp), "workers": config.workers},
                  tags={"sentinel.run_id": run_id, "sentinel.kind": "train"})
    notify = on_progress or (lambda event: None)

    def on_epoch(row: dict[str, float]) -> None:
        tracker.log_metrics("run", {k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"]))
        notify({"event": "epoch", "epochs": config.hp.epochs, **row})

    status = "FAILED"
    try:
        dataset_dir = ensure_dataset(config.data)  # once here, so workers find a warm cache
        notify({"event": "data", "path": str(dataset_dir)})
        run = _WorkerRun(config, run_id, root)
        if _local_mode(config):
            notify({"event": "start", "message": f"run {run_id}: Ray Train local mode, in this process"})
            result = _run_local(run, dataset_dir, on_epoch)
        else:
            from sentinel_ml.ray_runtime import running_cluster

            where = running_cluster() or "the embedded local Ray"
            notify({"event": "start", "message": f"run {run_id}: starting {config.workers} Ray Train "
                    f"workers (DDP) on {where}"})
            result = _run_ray(run, on_epoch)
        status = "FINISHED"
    finally:
        if status != "FINISHED":
            tracker.end("run", status)
            tracker.close(timeout=30)

    record = checkpoints.RunRecord(
        run_id=run_id,
        kind="train",
        created_at=checkpoints.utc_now_iso(),
        config={**asdict(config.hp), "workers": config.workers},
        metrics=result["metrics"],
        checkpoints=result["checkpoints"],
    )
    tracker.end("run", "FINISHED", tags={"checkpoint_uri": record.best_checkpoint,
                                         **{f"checkpoint.{k}": v for k, v in record.checkpoints.items()}})
    mlflow_ids = tracker.close()
    record.mlflow_run_id = mlflow_ids.get("run")
    index_uri = checkpoints.write_record(root, record)
    return TrainResult(
        run_id=run_id,
        model=config.hp.model,
        metrics=result["metrics"],
        history=result["history"],
        checkpoints=result["checkpoints"],
        index_uri=index_uri,
        mlflow_run_id=record.mlflow_run_id,
        mlflow_error=tracker.error,
        wall_s=round(time.monotonic() - started, 2),
    )


def _local_mode(config: TrainConfig) -> bool:
    return config.workers == 1 and not os.environ.get("RAY_ADDRESS")


@dataclass(frozen=True)
class _WorkerRun:
    """What each worker needs to know: plain data, cheap to pickle."""

    config: TrainConfig
    run_id: str
    root: str


def _save_checkpoints(run: _WorkerRun, result: LoopResult) -> dict[str, str]:
    uris = {
        "best": checkpoint_uri(run.root, run.run_id, "best"),
        "last": checkpoint_uri(run.root, run.run_id, "last"),
    }
    model_config = asdict(result.model_config)
    save_checkpoint(uris["best"], result.best["state_dict"], model_config,
                                {**result.metrics, "epoch": result.best["epoch"]})
    save_checkpoint(uris["last"], result.last_state_dict, model_config,
                                {**result.history[-1]})
    return uris


def _run_local(run: _WorkerRun, dataset_dir: Path, on_epoch) -> dict[str, Any]:
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
    """Entry point of each Ray Train worker."""
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, prepare_trainer

    from sentinel_ml.data.download import ensure_dataset

    run: _WorkerRun = loop_config["run"]
    progress = loop_config["progress"]
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()

    def on_epoch(row: dict[str, float]) -> None:
        ray.train.report(dict(row))
        if rank == 0:
            progress.put(row)

    trainer_kwargs = {
        "devices": "auto",
        "strategy": RayDDPStrategy(),
        "plugins": [RayLightningEnvironment()],
    }
    dataset_dir = ensure_dataset(run.config.data)
    result = run_loop(run.config.hp, dataset_dir, rank=rank, world_size=world_size,
                      trainer_kwargs=trainer_kwargs, prepare=prepare_trainer, on_epoch=on_epoch)
    if rank == 0:
        progress.put({"event": "result", "metrics": result.metrics, "history": result.history,
                      "checkpoints": _save_checkpoints(run, result)})


def _run_ray(run: _WorkerRun, on_epoch) -> dict[str, Any]:
    """A real worker group: ``workers`` Ray Train workers with DDP, progress through a Ray queue."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    from sentinel_ml.ray_runtime import ensure_ray

    ensure_ray()
    progress = Queue()
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"run": run, "progress": progress},
        scaling_config=ScalingConfig(num_workers=run.config.workers, use_gpu=False,
                                     resources_per_worker={"CPU": 1}),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(name=run.run_id, storage_path=_ray_storage_path(run.root)),
    )
    outcome: dict[str, Any] = {}
    errors: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as e:  # noqa: BLE001 - re-raised in the driver thread
            errors.append(e)
        finally:
            progress.put(_DONE_MARK)

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    while True:
        try:
            event = progress.get(timeout=1.0)
        except queue.Empty:  # ray.util.queue.Empty is a subclass
            if not thread.is_alive() and progress.empty():
                break
            continue
        if event == _DONE_MARK:
            break
        if event.get("event") == "result":
            outcome = event
        else:
            on_epoch(event)
    thread.join()
    if errors:
        raise JobFailed(f"Ray Train failed: {_root_cause(errors[0])}") from errors[0]
    if not outcome:
        raise JobFailed("Ray Train finished without a result from rank 0")
    return outcome


_DONE_MARK = "__sentinel_done__"


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
