"""One tuning trial, as it runs inside Ray: a Tune function trainable.

With one worker it runs the shared Lightning loop (``loop.run_loop``) in the trial's own actor; with
``workers_per_trial > 1`` it launches a Ray Train ``TorchTrainer`` (DDP over gloo) whose reports reach
Tune through ``TuneReportCallback`` (with Ray Train V2 a TorchTrainer cannot be handed to a Tuner).
Either way the split comes from Ray's object store and every epoch is reported to Tune with its val
RMSE. ASHA stops trials from the outside, and only right after a report at one of its rungs, so a
small checkpoint (the best weights so far as ``best.pt``, plus ``last.pt`` at the final epoch) goes with
the reports at those epochs and the last one, when the best changed since the last checkpoint (an
AutoRec trial improves almost every epoch; saving each time wrote ~5 MB per epoch for nothing).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sentinel_ml.training.config import Hyperparameters

BEST_FILE, LAST_FILE = "best.pt", "last.pt"
PLACEMENT_GROUP = "placement_group"  # reported by multi-worker trials


@dataclass(frozen=True)
class Study:
    """What each trial needs to know: plain data, cheap to pickle."""

    model: str
    max_epochs: int
    seed: int
    split: str
    dataset_dir: str
    workers_per_trial: int
    cpus_per_trial: float
    scratch: str  # Tune's (and Ray Train's) storage path for this study
    decision_epochs: tuple[int, ...]  # epochs after which the scheduler may stop a trial


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

    def due(self, state, metrics: dict[str, Any]) -> bool:
        if state.improved:
            self.best_metrics, self._unsaved = metrics, True
        if state.final or (self._unsaved and metrics["epoch"] in self.epochs):
            self._unsaved = False
            return True
        return False


def hyperparameters(study: Study, sampled: dict[str, Any]) -> Hyperparameters:
    return Hyperparameters(
        epochs=study.max_epochs,
        batch_size=int(sampled["batch_size"]),
        lr=float(sampled["lr"]),
        embedding_dim=int(sampled["embedding_dim"]),
        regularization=float(sampled["regularization"]),
        lr_decay=float(sampled["lr_decay"]),
        seed=study.seed,
        split=study.split,
        model=study.model,
    )


def trial(config: dict[str, Any], *, study: Study, split) -> None:
    """The Tune function trainable: one Lightning loop, or a TorchTrainer when several workers."""
    from ray import tune

    from sentinel_ml.training.loop import run_loop

    hp = hyperparameters(study, config)
    if study.workers_per_trial > 1:
        _distributed_trial(hp, study, split, tune.get_context().get_trial_id())
        return

    policy = CheckpointPolicy(study.decision_epochs)

    def on_state(state) -> None:
        _report_epoch(state, tune.report, tune.Checkpoint, policy, write=True)

    run_loop(hp, Path(study.dataset_dir), split=split, on_state=on_state)


def _report_epoch(state, report, checkpoint_cls, policy: CheckpointPolicy, *, write: bool,
                  extra: dict | None = None) -> None:
    """Report the epoch's metrics; with a checkpoint when ``policy`` says it is due.

    ``write`` is False on Ray Train ranks other than 0: they report metrics only.
    """
    from sentinel_ml.store.checkpoint import save_checkpoint

    metrics: dict[str, Any] = {k: float(v) for k, v in state.row.items()}
    metrics["epoch"] = int(state.row["epoch"])
    metrics.update(extra or {})
    if not (policy.due(state, metrics) and write):
        report(metrics)
        return
    model_config = asdict(state.model_config)
    with tempfile.TemporaryDirectory(prefix="sentinel-trial-") as tmp:
        save_checkpoint(str(Path(tmp, BEST_FILE)), state.best_state_dict, model_config, policy.best_metrics)
        if state.final:
            save_checkpoint(str(Path(tmp, LAST_FILE)), state.net.serving_state_dict(), model_config, metrics)
        report(metrics, checkpoint=checkpoint_cls.from_directory(tmp))


def _distributed_trial(hp: Hyperparameters, study: Study, split, trial_id: str) -> None:
    """``workers_per_trial`` Ray Train workers (DDP) for one trial; their reports reach Tune."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        _distributed_worker,
        train_loop_config={"hp": hp, "split": split, "dataset_dir": study.dataset_dir,
                           "decision_epochs": study.decision_epochs},
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

    from sentinel_ml.training.loop import run_loop

    hp: Hyperparameters = loop_config["hp"]
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    # Named in each report so the driver can release the workers' placement group if Tune stops
    # the trial (ASHA, or its last epoch) before Ray Train has shut the group down itself.
    group = ray.util.get_current_placement_group()
    extra = {PLACEMENT_GROUP: group.id.hex()} if group else {}

    policy = CheckpointPolicy(loop_config["decision_epochs"])

    def on_state(state) -> None:
        _report_epoch(state, ray.train.report, ray.train.Checkpoint, policy, write=rank == 0, extra=extra)

    trainer_kwargs = {"devices": "auto", "strategy": RayDDPStrategy(), "plugins": [RayLightningEnvironment()]}
    # The split comes with the loop config (Ray's object store): no worker reads the dataset files.
    run_loop(hp, Path(loop_config["dataset_dir"]), rank=rank, world_size=world_size, trainer_kwargs=trainer_kwargs,
             prepare=prepare_trainer, on_state=on_state, split=loop_config["split"])
