"""Distributed training with Ray Train: ``train(config) -> TrainResult``.

``workers == 1`` on the embedded default runs Ray Train's local mode (``ScalingConfig(num_workers=0)``):
the Lightning loop runs in this process, with no Ray runtime to start. ``workers >= 2``, or any run
that joins an existing cluster (``RAY_ADDRESS`` set), starts a real Ray Train worker group with
Lightning's DDP over gloo. Rank 0 writes the best and last checkpoints and the driver writes the
checkpoint index record, so ``latest`` and ``best`` resolve the same way for every run.

A worker group survives a lost worker: every epoch rank 0 reports a Ray Train checkpoint with the
run's resume state (``training.resume``) to the run's storage (``<root>/ray/<run_id>/``), and Ray
Train's ``FailureConfig(max_failures)`` restarts the group, which resumes after the last reported
epoch. Each attempt's rank 0 says which epoch it starts from, and the controller (``_LostWorkers``)
says which worker was lost, so the summary and the index record list every restart.

The RayJob's entrypoint, ``python -m sentinel_ml.train …`` (``sentinel_ml/train.py``), calls ``train``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sentinel_ml.compute import TRAIN_CPUS_FLAG, TRAIN_WORKER_CPUS
from sentinel_ml.data.shards import RAY_DATA
from sentinel_ml.data.source import DataSource
from sentinel_ml.data.sources import is_table
from sentinel_ml.errors import ConfigError, JobFailed, StorageError
from sentinel_ml.local_capacity import check_cpus
from sentinel_ml.logs import follow_root_level
from sentinel_ml.models.metrics import test_metrics
from sentinel_ml.paths import storage_root
from sentinel_ml.store import index as checkpoints
from sentinel_ml.store import uri as storage
from sentinel_ml.store.checkpoint import checkpoint_uri, save_checkpoint
from sentinel_ml.tracking import Tracker, resolve_tracking_uri
from sentinel_ml.training.config import TrainConfig
from sentinel_ml.training.loop import LoopResult, run_loop

if TYPE_CHECKING:
    from sentinel_ml.data.prepared import Prepared

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
    # One entry per worker-group restart: {"resumed_from_epoch": 3, "lost": "Ray Train worker rank 1 …"}
    restarts: list[dict[str, Any]] = field(default_factory=list)
    # The data it trained on: dataset, split (the one its test RMSE is on), sizes, duplicates dropped.
    data: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _WorkerRun:
    """What each worker needs to know: plain data, cheap to pickle."""

    config: TrainConfig
    run_id: str
    root: str
    data: Prepared  # prepared by the driver; a worker on another machine prepares its own copy

    def prepared(self) -> Prepared:
        """The prepared data in this process: the driver's directory where this machine has it (a local
        Ray cluster, or the same pod), else the same preparation made here (the same key, the same bytes)."""
        if self.data.directory.is_dir():
            return self.data
        from sentinel_ml.data.prepared import prepare

        return prepare(self.config.source, self.config.hp.split, self.config.hp.seed)


def train(config: TrainConfig, on_progress: ProgressHook | None = None) -> TrainResult:
    """Run one training job end to end: data, Ray Train, checkpoints, index record, MLflow."""
    config.validate()
    config = _settle_compute(config, on_progress or (lambda event: None))
    if not _local_mode(config):  # a worker group, its CPUs a worker, placed whole (Ray Train's gang)
        cpus = worker_cpus(config)
        given = f" x {TRAIN_CPUS_FLAG} {cpus:g}" if config.compute.cpus is not None else ""
        check_cpus(config.workers * cpus, f"--workers {config.workers}{given}",
                   hint="use fewer workers (--workers 1 trains in this process), a fraction of a CPU each "
                        "(--cpus-per-worker 0.5), or a bigger cluster (RAY_ADDRESS, or --target k8s)")
    started = time.monotonic()
    notify = on_progress or (lambda event: None)
    # The data first: a bad table or a model too big for it fails here, before any MLflow run or record.
    data = prepare_for(config.source, config.hp.split, config.hp.seed, config.hp.model, notify)
    run = _WorkerRun(config, config.run_id or checkpoints.new_run_id("train"), storage_root(config.storage), data)
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
        restarts=result.get("restarts", []),
        data=run.data.summary(),
    )


def worker_cpus(config: TrainConfig) -> float:
    """Ray's logical CPUs each worker of the group reserves: ``--cpus-per-worker``, else one."""
    return config.compute.cpus_or(TRAIN_WORKER_CPUS)


def _settle_compute(config: TrainConfig, notify: ProgressHook) -> TrainConfig:
    """``config`` with its device settled (``Compute.settle``): in this process, CUDA as torch sees it;
    on a worker group, Ray's GPUs shared by the workers, which must fit the embedded Ray. Says which."""
    from sentinel_ml.compute import cuda_devices
    from sentinel_ml.local_capacity import check_gpus, ray_gpus

    local = _local_mode(config)
    compute = config.compute.settle(cuda_devices() if local else ray_gpus(), units=config.workers)
    if not local:
        check_gpus(config.workers * compute.gpus, f"--workers {config.workers} x --gpus {compute.gpus:g}",
                   hint="ask for fewer GPUs (--gpus, --workers) or none (--device cpu), or run where the "
                        "GPUs are (RAY_ADDRESS, or --target k8s)")
    elif compute.on_gpu and not cuda_devices():
        raise ConfigError(f"--gpus {compute.gpus:g}, but torch sees no CUDA device on this machine",
                          hint="drop --gpus (or use --device cpu), or run where a GPU is (--target k8s)")
    notify({"event": "compute", "message": f"training on {compute.describe('worker')}"})
    return replace(config, compute=compute)


def prepare_for(source: DataSource, split: str, seed: int, model: str, notify: ProgressHook) -> Prepared:
    """``source`` prepared for ``split`` and ``seed`` (cached), checked against ``model``'s size limit."""
    from sentinel_ml.data.prepared import prepare
    from sentinel_ml.models.registry import get

    data = prepare(source, split, seed, notify=lambda message: notify({"event": "data", "message": message}))
    meta = data.meta
    notify({"event": "data", "path": str(data.directory),
            "message": f"{meta.dataset}: {meta.num_ratings:,} ratings, {meta.num_users:,} users, "
                       f"{meta.num_items:,} items; split {meta.split} (train {meta.counts['train']:,}, "
                       f"val {meta.counts['val']:,}, test {meta.counts['test']:,})"
                       + (f"; {meta.duplicates_dropped:,} duplicate ratings dropped" if meta.duplicates_dropped else "")})
    check_size = get(model).check_size
    if check_size is not None:
        check_size(meta.num_users, meta.num_items)
    return data


def _run_params(config: TrainConfig) -> dict[str, Any]:
    return {**asdict(config.hp), "workers": config.workers, "max_failures": config.max_failures,
            **source_params(config.source)}


def source_params(source: DataSource) -> dict[str, Any]:
    """What a run records of its data source (MLflow parameters, the index record)."""
    return {"dataset": source.dataset if not is_table(source.data) else "table", "data": source.data or "",
            "columns": source.columns.as_text(), "rating_scale":
            f"{source.rating_scale[0]:g}:{source.rating_scale[1]:g}" if source.rating_scale else ""}


def _epoch_logger(tracker: Tracker, notify: ProgressHook, epochs: int) -> EpochHook:
    """Each epoch's row to MLflow and, as an ``epoch`` event, to the progress hook."""

    def on_epoch(row: dict[str, float]) -> None:
        tracker.log_metrics("run", {k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"]))
        notify({"event": "epoch", "epochs": epochs, **row})

    return on_epoch


def _train_on_ray(run: _WorkerRun, notify: ProgressHook, on_epoch: EpochHook) -> dict[str, Any]:
    """Ray Train in local mode or on a worker group: metrics, history, checkpoints."""
    if _local_mode(run.config):
        notify({"event": "start", "message": f"run {run.run_id}: Ray Train local mode, in this process"})
        return _run_local(run, on_epoch)
    from sentinel_ml.ray_runtime import running_cluster

    where = running_cluster() or "the embedded local Ray"
    notify({"event": "start", "message": f"run {run.run_id}: starting {run.config.workers} Ray Train "
            f"workers (DDP) on {where}"})
    return _run_ray(run, on_epoch, notify)


def _run_record(run: _WorkerRun, result: dict[str, Any]) -> checkpoints.RunRecord:
    return checkpoints.RunRecord(
        run_id=run.run_id,
        kind="train",
        created_at=checkpoints.utc_now_iso(),
        config=_run_params(run.config),
        metrics=result["metrics"],
        checkpoints=result["checkpoints"],
        sizes=result["sizes"],
        extra={"restarts": result.get("restarts", []), "data": run.data.summary()},
    )


def _finish_tracking(tracker: Tracker, record: checkpoints.RunRecord) -> None:
    """Log the test split's metrics (RMSE, ranking), end the MLflow run with the checkpoint URIs as tags
    and note its id in ``record``."""
    tracker.log_metrics("run", test_metrics(record.metrics), int(record.metrics.get("epochs", 0)))
    tracker.end("run", "FINISHED", tags={"checkpoint_uri": record.best_checkpoint,
                                         **{f"checkpoint.{k}": v for k, v in record.checkpoints.items()}})
    record.mlflow_run_id = tracker.close().get("run")


def _local_mode(config: TrainConfig) -> bool:
    """One worker, no cluster to join, and nothing to stream: Ray Train's local mode, in this process."""
    return config.workers == 1 and not os.environ.get("RAY_ADDRESS") and config.ingestion != RAY_DATA


def _save_checkpoints(run: _WorkerRun, data: Prepared, result: LoopResult) -> dict[str, Any]:
    """``best.pt`` and ``last.pt``, each whole or not at all and each self-contained for serving (the
    data's id maps, catalogue and seen items: ``Prepared.serving_artifact``); their URIs and sizes for
    the record, which the driver writes after them."""
    uris = {
        "best": checkpoint_uri(run.root, run.run_id, "best"),
        "last": checkpoint_uri(run.root, run.run_id, "last"),
    }
    model_config = asdict(result.model_config)
    artifact = data.serving_artifact()
    sizes = {
        "best": save_checkpoint(uris["best"], result.best["state_dict"], model_config,
                                {**result.metrics, "epoch": result.best["epoch"]}, data=artifact),
        "last": save_checkpoint(uris["last"], result.last_state_dict, model_config, {**result.history[-1]},
                                data=artifact),
    }
    return {"checkpoints": uris, "sizes": sizes}


def _run_local(run: _WorkerRun, on_epoch: EpochHook) -> dict[str, Any]:
    """Ray Train local mode: the TorchTrainer API, run in this process with no Ray runtime."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    follow_root_level()
    holder: dict[str, Any] = {}

    def loop(_config: dict) -> None:
        result = run_loop(run.config.hp, run.data, on_epoch=on_epoch,
                          trainer_kwargs=run.config.compute.lightning_kwargs())
        holder.update(metrics=result.metrics, history=result.history, **_save_checkpoints(run, run.data, result))

    trainer = TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=0))
    trainer.fit()
    return holder


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """Entry point of each Ray Train worker (on every attempt): resume from the last checkpoint if
    there is one; report each epoch with a checkpoint (rank 0 writes it); epochs and, from rank 0,
    the result go to the progress queue."""
    import ray.train

    from sentinel_ml.data.shards import RAY_DATA, worker_batches
    from sentinel_ml.training.resume import read_resume, resumed_from
    from sentinel_ml.training.worker_group import RayTrainWorker

    run: _WorkerRun = loop_config["run"]
    progress = loop_config["progress"]
    worker = RayTrainWorker.current()
    resume = read_resume(ray.train.get_checkpoint())
    if worker.is_rank_zero:
        progress.put({"event": _ATTEMPT, "resumed_from_epoch": resumed_from(resume)})

    def on_state(state) -> None:
        worker.report_epoch(dict(state.row), state.resume_state if worker.is_rank_zero else None)
        if worker.is_rank_zero:
            progress.put(dict(state.row))

    try:
        data = run.prepared()
        streamed = {}
        if loop_config.get("ingestion") == RAY_DATA:  # this worker's Ray Data shard, not the whole part
            per_rank_batch = max(1, run.config.hp.batch_size // worker.world_size)
            streamed = {"train_batches": worker_batches(per_rank_batch, run.config.hp.seed + worker.rank)}
        result = worker.run_loop(run.config.hp, data, run.config.compute, on_state=on_state, resume=resume,
                                 **streamed)
    except JobFailed as e:
        # Every rank sees the same metrics, so all stop here; a restart would only fail the same way.
        if worker.is_rank_zero:
            progress.put({"event": _JOB_FAILED, "message": e.message, "hint": e.hint})
        return
    if worker.is_rank_zero:
        progress.put({"event": "result", "metrics": result.metrics, "history": result.history,
                      **_save_checkpoints(run, data, result)})


def _run_ray(run: _WorkerRun, on_epoch: EpochHook, notify: ProgressHook) -> dict[str, Any]:
    """A real worker group: ``workers`` Ray Train workers with DDP, progress through a Ray queue,
    restarted from the last epoch's checkpoint after a lost worker (``max_failures`` times)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.util.queue import Queue

    from sentinel_ml.data.shards import RAY_DATA, TRAIN, ingestion, train_dataset
    from sentinel_ml.models.registry import get
    from sentinel_ml.ray_runtime import ensure_ray
    from sentinel_ml.training.worker_group import worker_group_trainer

    ensure_ray()
    progress = Queue(actor_options=_beside_the_driver())
    run_config = RunConfig(
        name=run.run_id, storage_path=_ray_storage_path(run.root),
        failure_config=FailureConfig(max_failures=run.config.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=1),  # the resume state of the last epoch
        callbacks=[_lost_workers_callback(progress)],
    )
    how = ingestion(run.data, asked=run.config.ingestion, worker_group=True,
                    streams=get(run.config.hp.model).streams)
    notify({"event": "data", "message": f"training data: {how}"})
    trainer = worker_group_trainer(_worker_loop, {"run": run, "progress": progress, "ingestion": how},
                                   workers=run.config.workers, cpus_per_worker=worker_cpus(run.config),
                                   gpus_per_worker=run.config.compute.gpus, run_config=run_config,
                                   datasets={TRAIN: train_dataset(run.data)} if how == RAY_DATA else None)
    errors: list[BaseException] = []
    relay = _Relay(on_epoch, notify)
    # stdout carries only the result. Ray's driver prints the raylet's error reports there (such as
    # "A worker died or was killed …" right after a lost worker): they go to stderr with the progress.
    with contextlib.redirect_stdout(sys.stderr):
        thread = _fit_in_background(trainer, progress, errors)
        _relay_progress(progress, thread, relay)
        thread.join()
    if errors:
        raise _failure(errors[0], relay, run.config.max_failures) from errors[0]
    if relay.job_failed:
        raise JobFailed(relay.job_failed["message"], hint=relay.job_failed.get("hint"))
    if not relay.outcome:
        raise JobFailed("Ray Train finished without a result from rank 0")
    _remove_resume_state(run)
    return {**relay.outcome, "restarts": relay.restarts}


def _remove_resume_state(run: _WorkerRun) -> None:
    """After a run that succeeded, its Ray Train state and last resume checkpoint are of no more use
    (~16 MB for AutoRec); best.pt and last.pt are what stays. A failed run keeps them."""
    try:
        storage.remove_tree(storage.join(_ray_storage_path(run.root), run.run_id))
    except StorageError:
        pass  # best effort: a leftover costs space, never correctness


_DONE_MARK = "__sentinel_done__"
_ATTEMPT, _LOST, _JOB_FAILED = "attempt", "worker_lost", "job_failed"


class _Relay:
    """The driver's side of the progress queue: epochs to ``on_epoch``, restarts counted and notified."""

    def __init__(self, on_epoch: EpochHook, notify: ProgressHook) -> None:
        self.on_epoch = on_epoch
        self.notify = notify
        self.attempts = 0
        self.lost: str | None = None  # what the controller last said was lost
        self.restarts: list[dict[str, Any]] = []
        self.outcome: dict[str, Any] = {}
        self.job_failed: dict[str, Any] | None = None

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == _LOST:
            self.lost = event["lost"]
        elif kind == _ATTEMPT:
            self.attempts += 1
            if self.attempts > 1:
                restart = {"resumed_from_epoch": event["resumed_from_epoch"],
                           "lost": self.lost or "a Ray Train worker"}
                self.restarts.append(restart)
                self.notify({"event": "restart", "restart": len(self.restarts), **restart})
        elif kind == _JOB_FAILED:
            self.job_failed = event
        elif kind == "result":
            self.outcome = event
        else:
            self.on_epoch(event)


def _lost_workers_callback(progress):
    """A Ray Train ``UserCallback`` (it runs in the controller): which workers were lost, to the queue."""
    from ray.train import UserCallback

    class _LostWorkers(UserCallback):
        def after_exception(self, run_context, worker_exceptions: dict[int, Exception]) -> None:
            progress.put({"event": _LOST, "lost": describe_lost_workers(worker_exceptions)})

    return _LostWorkers()


def describe_lost_workers(worker_exceptions: dict[int, BaseException]) -> str:
    """``Ray Train worker rank 1 (ActorDiedError: …)``: the workers that died; the others' errors (a
    peer's gloo connection closing, say) only follow from that and are named only when none died."""
    died = {rank: e for rank, e in worker_exceptions.items() if _is_worker_death(e)}
    shown = died or worker_exceptions
    ranks = ", ".join(str(rank) for rank in sorted(shown))
    first = shown[min(shown)]
    noun = "worker" if len(shown) == 1 else "workers"
    return f"Ray Train {noun} rank {ranks} ({_error_line(_death_cause(first))})"


def _is_worker_death(error: BaseException) -> bool:
    from ray.exceptions import RayActorError

    return isinstance(_death_cause(error), RayActorError)


def _death_cause(error: BaseException) -> BaseException:
    return getattr(error, "health_check_failure", None) or error


def _error_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _failure(error: BaseException, relay: _Relay, max_failures: int) -> JobFailed:
    """The run's end after a lost worker it could not survive: what was lost and after how many restarts."""
    failures = getattr(error, "worker_failures", None)
    if not failures:
        return JobFailed(f"Ray Train failed: {_root_cause(error)}")
    lost = describe_lost_workers(failures)
    if max_failures == 0:
        return JobFailed(f"lost {lost}; --max-failures 0 allows no restart",
                         hint="rerun with --max-failures N to resume from the last epoch's checkpoint")
    return JobFailed(f"lost {lost} after {len(relay.restarts)} restart(s), the most --max-failures "
                     f"{max_failures} allows", hint="check why the workers die (memory, node preemption), "
                                                    "or raise --max-failures")


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


def _beside_the_driver() -> dict[str, Any]:
    """Actor options that keep the progress queue on the driver's node, with no CPU. By default an
    actor needs a CPU to be placed, and a cluster's head offers none (``num-cpus: 0``), so the queue
    landed on a worker: losing that worker (a spot preemption) lost the queue and failed the run
    that Ray Train was about to restart. Ray Train pins its controller the same way."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    driver_node = ray.get_runtime_context().get_node_id()
    return {"num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(driver_node, soft=False)}


def _relay_progress(progress, fitting: threading.Thread, relay: _Relay) -> None:
    """Pass the workers' and the controller's events to ``relay`` until the fit ends."""
    from ray.exceptions import RayActorError

    while True:
        try:
            event = progress.get(timeout=1.0)
        except queue.Empty:  # ray.util.queue.Empty is a subclass
            if not fitting.is_alive() and progress.empty():
                return
            continue
        except RayActorError as e:  # its node went: the driver's node, so the cluster is going
            raise JobFailed(f"lost the run's progress queue: {_error_line(e)}",
                            hint="check the Ray head's pod (memory, restarts) and rerun") from e
        if event == _DONE_MARK:
            return
        relay.handle(event)


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
