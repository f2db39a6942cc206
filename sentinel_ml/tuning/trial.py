"""One tuning trial, as it runs inside Ray: a Tune function trainable.

With one worker it runs the shared Lightning loop (``loop.run_loop``) in the trial's own actor; with
``workers_per_trial > 1`` it launches a Ray Train ``TorchTrainer`` (DDP over gloo) whose reports reach
Tune through ``TuneReportCallback`` (with Ray Train V2 a TorchTrainer cannot be handed to a Tuner).
Either way the split comes from Ray's object store and every epoch is reported to Tune with its val
RMSE. ASHA stops trials from the outside, and only right after a report at one of its rungs, so a
small checkpoint (the best weights so far as ``best.pt``, plus ``last.pt`` at the final epoch) goes with
the reports at those epochs and the last one, when the best changed since the last checkpoint (an
AutoRec trial improves almost every epoch; saving each time wrote ~5 MB per epoch for nothing).

A trial survives a lost worker. Its checkpoints also hold the loop's resume state (``resume.pt``,
``training.resume``; from epoch ``RESUME_FROM_EPOCH`` on). Tune restarts a trial whose actor died
(``FailureConfig(max_failures)``) and hands it its latest checkpoint (``tune.get_checkpoint()``). A
multi-worker trial fails when one of its Ray Train workers is lost; Tune restarts it, and its new
TorchTrainer (same name, same storage) resumes from the run's last checkpoint (``ray.train.get_checkpoint()``).
The loop then goes on after that epoch. A trial that failed by itself (it diverged) leaves a mark in its
directory, so Tune's retries of it fail at once instead of training to the same end again.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sentinel_ml.compute import TRAIN_WORKER_CPUS, Compute
from sentinel_ml.errors import JobFailed
from sentinel_ml.models.hyperparameters import SEARCH_ORDER
from sentinel_ml.training.config import Hyperparameters

BEST_FILE, LAST_FILE = "best.pt", "last.pt"
FAILED_MARK = "sentinel-failed.json"  # in the trial's directory: the JobFailed that ended it
# The resume state (as large as the network and its optimizer: ~16 MB for AutoRec) goes into checkpoints
# from this epoch on; before it, redoing the epochs costs less than writing it.
RESUME_FROM_EPOCH = 2
RESUMED_FROM = "resumed_from_epoch"  # in the first report of a multi-worker trial's restarted group
PLACEMENT_GROUP = "placement_group"  # reported by multi-worker trials
Report = Callable[..., None]  # report(metrics, checkpoint_dir=None): to Tune, or to Ray Train from a worker


@dataclass(frozen=True)
class Study:
    """What each trial needs to know: plain data, cheap to pickle."""

    model: str
    max_epochs: int
    seed: int
    split: str
    workers_per_trial: int
    scratch: str  # Tune's (and Ray Train's) storage path for this study
    decision_epochs: tuple[int, ...]  # epochs after which the scheduler may stop a trial
    compute: Compute = field(default_factory=Compute)  # settled: the device, CPUs and GPUs per trial (worker)

    @property
    def cpus_per_trial(self) -> float:
        """CPUs per trial (per worker with more than one): ``compute.cpus``, which the study resolves before
        it starts (given, or the CPUs shared out); a training worker's default where it is left unset."""
        return self.compute.cpus_or(TRAIN_WORKER_CPUS)


def decision_epochs(scheduler: str, max_epochs: int, grace_period: int, reduction_factor: int) -> tuple[int, ...]:
    """The epochs after whose report a trial may be stopped: ASHA's rungs (as Ray's ``ASHAScheduler``
    places them: grace · factor^k below max_t) and the last epoch."""
    rungs: list[int] = []
    if scheduler == "asha":
        milestone = min(grace_period, max_epochs)
        while milestone < max_epochs:
            rungs.append(milestone)
            milestone *= reduction_factor
    return (*rungs, max_epochs)


class CheckpointPolicy:
    """Decides which epoch reports carry a checkpoint, and keeps the best epoch's metrics for it."""

    def __init__(self, epochs: tuple[int, ...]) -> None:
        self.epochs = frozenset(epochs)
        self.best_metrics: dict[str, Any] = {}
        self._unsaved = False

    def resume_from(self, resume: dict[str, Any] | None) -> None:
        """After a restart: the best epoch so far (its metrics go with ``best.pt``) is the resumed one's."""
        if resume and resume.get("best"):
            best = resume["best"]
            self.best_metrics = {k: float(v) for k, v in best.items() if k != "state_dict"}
            self.best_metrics["epoch"] = int(best["epoch"])

    def due(self, state, metrics: dict[str, Any]) -> bool:
        if state.improved:
            self.best_metrics, self._unsaved = metrics, True
        if state.final or (self._unsaved and metrics["epoch"] in self.epochs):
            self._unsaved = False
            return True
        return False


def hyperparameters(study: Study, sampled: dict[str, Any]) -> Hyperparameters:
    """A trial's hyperparameters: the sampled ones (each of its type), ``max_epochs`` epochs, the rest
    the model's defaults."""
    values = {h.name: h.type(sampled[h.name]) for h in SEARCH_ORDER}
    return Hyperparameters.for_model(study.model, **values, epochs=study.max_epochs, seed=study.seed,
                                     split=study.split)


def trial(config: dict[str, Any], *, study: Study, split) -> None:
    """The Tune function trainable: one Lightning loop, or a TorchTrainer when several workers."""
    from ray import tune

    hp = hyperparameters(study, config)
    failed_mark = Path(tune.get_context().get_trial_dir(), FAILED_MARK)
    _fail_again_if_marked(failed_mark)
    try:
        if study.workers_per_trial > 1:
            _distributed_trial(hp, study, split, tune.get_context().get_trial_id())
        else:
            _one_worker_trial(hp, study, split)
    except JobFailed as e:
        failed_mark.write_text(json.dumps({"message": e.message, "hint": e.hint}))
        raise


def _one_worker_trial(hp: Hyperparameters, study: Study, split) -> None:
    """The Lightning loop in this actor, resumed from the trial's last checkpoint after a restart."""
    from ray import tune

    from sentinel_ml.training.loop import run_loop
    from sentinel_ml.training.resume import read_resume

    resume = read_resume(tune.get_checkpoint())
    policy = CheckpointPolicy(study.decision_epochs)
    policy.resume_from(resume)

    def on_state(state) -> None:
        _report_epoch(state, _report_to_tune, policy, write=True)

    run_loop(hp, None, split=split, on_state=on_state, resume=resume,
             trainer_kwargs=study.compute.lightning_kwargs())


def _fail_again_if_marked(mark: Path) -> None:
    """A retry of a trial that failed by itself: the same error, without training again."""
    try:
        failure = json.loads(mark.read_text())
    except (OSError, ValueError):
        return
    raise JobFailed(failure["message"], hint=failure.get("hint"))


def _report_to_tune(metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
    from ray import tune

    checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
    tune.report(metrics, checkpoint=checkpoint)


def _report_epoch(state, report: Report, policy: CheckpointPolicy, *, write: bool,
                  extra: dict | None = None) -> None:
    """Report the epoch's metrics; with a checkpoint when ``policy`` says it is due.

    ``write`` is False on Ray Train ranks other than 0: they report metrics only.
    """
    metrics: dict[str, Any] = {k: float(v) for k, v in state.row.items()}
    metrics["epoch"] = int(state.row["epoch"])
    metrics.update(extra or {})
    if not (policy.due(state, metrics) and write):
        report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="sentinel-trial-") as tmp:
        _write_trial_checkpoint(tmp, state, policy.best_metrics, metrics)
        report(metrics, checkpoint_dir=tmp)


def _write_trial_checkpoint(directory: str, state, best_metrics: dict[str, Any], metrics: dict[str, Any]) -> None:
    """``best.pt`` (the best weights so far), ``last.pt`` too at the final epoch, and the resume state
    before the final epoch (from ``RESUME_FROM_EPOCH`` on)."""
    from sentinel_ml.store.checkpoint import save_checkpoint
    from sentinel_ml.training.resume import write_resume

    model_config = asdict(state.model_config)
    save_checkpoint(str(Path(directory, BEST_FILE)), state.best_state_dict, model_config, best_metrics)
    if state.final:
        save_checkpoint(str(Path(directory, LAST_FILE)), state.net.serving_state_dict(), model_config, metrics)
    elif metrics["epoch"] >= RESUME_FROM_EPOCH:
        write_resume(directory, state.resume_state())


def _distributed_trial(hp: Hyperparameters, study: Study, split, trial_id: str) -> None:
    """``workers_per_trial`` Ray Train workers (DDP) for one trial; their reports reach Tune."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    from sentinel_ml.training.worker_group import worker_group_trainer

    loop_config = {"hp": hp, "split": split, "compute": study.compute,
                   "decision_epochs": study.decision_epochs}
    # A lost worker fails this fit (no restarts in here: one budget, Tune's), Tune restarts the trial,
    # and the TorchTrainer of the same name finds the run's last checkpoint in storage and resumes.
    run_config = RunConfig(name=f"trial-{trial_id}", storage_path=study.scratch, callbacks=[TuneReportCallback()],
                           checkpoint_config=CheckpointConfig(num_to_keep=1),
                           failure_config=FailureConfig(max_failures=0))
    trainer = worker_group_trainer(_distributed_worker, loop_config, workers=study.workers_per_trial,
                                   cpus_per_worker=study.cpus_per_trial, gpus_per_worker=study.compute.gpus,
                                   run_config=run_config)
    try:
        trainer.fit()
    except Exception as e:  # a worker's own JobFailed becomes the trial's (not retried)
        failure = _workers_job_failed(e)
        if failure is None:
            raise
        raise failure from e


def _workers_job_failed(error: BaseException) -> JobFailed | None:
    """The ``JobFailed`` a Ray Train worker raised (it diverged), out of the fit's ``WorkerGroupError``."""
    for failure in (getattr(error, "worker_failures", None) or {}).values():
        cause = getattr(failure, "_base_exc", failure)
        if isinstance(cause, JobFailed):
            return JobFailed(cause.message, hint=cause.hint)
    return None


def _distributed_worker(loop_config: dict[str, Any]) -> None:
    import ray.train

    from sentinel_ml.training.resume import read_resume, resumed_from
    from sentinel_ml.training.worker_group import RayTrainWorker

    worker = RayTrainWorker.current()
    extra = _placement_group_report()
    resume = read_resume(ray.train.get_checkpoint())
    policy = CheckpointPolicy(loop_config["decision_epochs"])
    policy.resume_from(resume)
    first = {RESUMED_FROM: resumed_from(resume)} if resume else {}

    def on_state(state) -> None:
        _report_epoch(state, worker.report, policy, write=worker.is_rank_zero, extra={**extra, **first})
        first.clear()

    # The split comes with the loop config (Ray's object store): no worker reads the dataset files.
    worker.run_loop(loop_config["hp"], None, loop_config["compute"], on_state=on_state,
                    split=loop_config["split"], resume=resume)


def _placement_group_report() -> dict[str, str]:
    """Named in each report so the driver can release the workers' placement group if Tune stops
    the trial (ASHA, or its last epoch) before Ray Train has shut the group down itself."""
    import ray.util

    group = ray.util.get_current_placement_group()
    return {PLACEMENT_GROUP: group.id.hex()} if group else {}
