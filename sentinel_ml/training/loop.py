"""The Lightning training loop of one process: shared by local training, each Ray Train worker and
each Ray Tune trial. It knows nothing of Ray; callers pass rank, world size and a per-epoch hook."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from sentinel_ml.data.batching import TensorBatches
from sentinel_ml.data.splits import Ratings, Split
from sentinel_ml.errors import JobFailed
from sentinel_ml.logs import follow_root_level
from sentinel_ml.models.config import ModelConfig
from sentinel_ml.models.evaluation import EVAL_BATCH_SIZE, served_test_metrics
from sentinel_ml.models.registry import get
from sentinel_ml.training.averaging import averaging_callback, uses_averaging, val_slice
from sentinel_ml.training.config import Hyperparameters

if TYPE_CHECKING:
    from sentinel_ml.data.prepared import Prepared

EpochHook = Callable[[dict[str, float]], None]


@dataclass
class EpochState:
    """What ``on_state`` sees after each validated epoch: enough to save the best and last weights."""

    row: dict[str, float]
    improved: bool  # this epoch's val RMSE is the best so far
    final: bool  # the run's last epoch
    best_state_dict: dict[str, torch.Tensor]  # the served network's (the spec's scorer), whichever model trains
    net: torch.nn.Module  # the live network: ``net.serving_state_dict()`` gives this epoch's ("last") weights
    model_config: ModelConfig
    resume_state: Callable[[], dict[str, Any]]  # what a restarted run resumes from (see ``resume_state``)


StateHook = Callable[[EpochState], None]


@dataclass
class LoopResult:
    history: list[dict[str, float]]
    best: dict[str, Any]  # {"epoch", "val_rmse", "val_mae", "train_loss", "state_dict"}
    last_state_dict: dict[str, torch.Tensor]
    model_config: ModelConfig
    metrics: dict[str, float]  # the best epoch's val metrics, its test RMSE and ranking metrics, the run's length


def run_loop(
    hp: Hyperparameters,
    data: Prepared | None,
    *,
    rank: int = 0,
    world_size: int = 1,
    trainer_kwargs: dict[str, Any] | None = None,
    prepare: Callable[[Any], Any] | None = None,
    on_epoch: EpochHook | None = None,
    split: Split | None = None,
    on_state: StateHook | None = None,
    resume: dict[str, Any] | None = None,
    train_batches: Any = None,
) -> LoopResult:
    """Train with Lightning on ``data`` (or on ``split``, already in memory) and return the history, the
    best and last weights and the test RMSE on the split's test part. ``train_batches``: this rank's
    training batches when they stream (``data.shards.ShardBatches``); then ``split`` holds no training
    part (``Prepared.load_split(train=False)``).

    Weights are always those of the model's served network (its spec's ``scorer``): the trained network
    exports them (``serving_state_dict``; an AutoRec run exports its factorization).

    ``trainer_kwargs`` and ``prepare`` let a distributed caller add its strategy and plugins (DDP), except
    for a network with large sparse tables: its workers train apart and merge their weights every few steps
    (``averaging.py``; no DDP). The global batch size stays ``hp.batch_size`` whatever the world size, so
    results do not depend on it.
    ``on_state`` is for callers that save weights as they go (a Tune trial may be stopped from the
    outside at any epoch, a Ray Train worker may be lost). A non-finite loss or val RMSE ends the run
    with ``JobFailed``.

    ``resume`` is an ``EpochState.resume_state()`` of an earlier attempt of the same run: the loop
    continues after that epoch with its weights, optimizer, learning-rate schedule, RNG, history and
    best epoch, so the run ends as it would have without the interruption.
    """
    _set_up_process(hp.seed)
    split = split or data.load_split(train=train_batches is None)
    model_config = _model_config(hp, split)
    module = _lightning_module(model_config, split.train)
    train_batches = train_batches or _train_batches(hp, split, rank, world_size)
    recorder = _EpochRecorder(on_epoch, on_state, model_config, hp.epochs)
    if resume is not None:
        recorder.resume_from(resume, module)
        train_batches._epoch = recorder.start_epoch  # the same shuffles as an uninterrupted run
    callbacks, val = [], split.val
    if uses_averaging(module, world_size):  # large sparse tables: the workers merge weights, no DDP
        # no DDP strategy or Ray plugins: the device and precision (Compute.lightning_kwargs) stay
        kept = {k: v for k, v in (trainer_kwargs or {}).items() if k in ("accelerator", "precision")}
        trainer_kwargs, prepare, callbacks = kept, None, [averaging_callback(module.net)]
        # After the merge before each validation every rank holds the same weights: each validates its
        # own slice and the sums are added across ranks, so the RMSE is the whole set's, for 1/N the work.
        val = split.val.take(val_slice(len(split.val), rank, world_size))
        module.sum_val_across_ranks = True
    if recorder.start_epoch < hp.epochs:
        trainer = _trainer(hp.epochs - recorder.start_epoch, recorder, trainer_kwargs, prepare, callbacks)
        trainer.fit(module, train_dataloaders=train_batches, val_dataloaders=TensorBatches(val, EVAL_BATCH_SIZE))
    result = _loop_result(recorder, module.net, model_config, split, data)
    if callbacks and callbacks[0].averaging is not None:
        result.metrics["weight_merges"] = callbacks[0].averaging.merges  # the workers' merges (averaging.py)
    return result


def _set_up_process(seed: int) -> None:
    """One torch thread, quiet library loggers, seeded weights."""
    # Imported before follow_root_level: importing Lightning sets its loggers back to INFO.
    import lightning.pytorch  # noqa: F401

    # The model's ops are tiny: extra intra-op threads only add synchronisation, and on a busy
    # 2-core machine they made an epoch ten times slower. Data parallelism uses processes instead.
    torch.set_num_threads(1)
    follow_root_level()
    torch.manual_seed(seed)


def _model_config(hp: Hyperparameters, split: Split) -> ModelConfig:
    return ModelConfig.for_data(hp, num_users=split.num_users, num_items=split.num_items,
                                global_mean=split.global_mean, scale=split.scale)


def _lightning_module(model_config: ModelConfig, train: Ratings):
    from sentinel_ml.models.module import MFModule

    return MFModule(model_config, train)


def _train_batches(hp: Hyperparameters, split: Split, rank: int, world_size: int):
    """This rank's shard of the training batches, as the model's spec makes them (ratings for mf,
    movies for AutoRec)."""
    per_rank_batch = max(1, hp.batch_size // world_size)
    return get(hp.model).batches(split, per_rank_batch, shuffle=True, seed=hp.seed, rank=rank,
                                 world_size=world_size)


def _trainer(epochs: int, recorder: _EpochRecorder, trainer_kwargs: dict[str, Any] | None,
             prepare: Callable[[Any], Any] | None, callbacks: list[Any] = ()):
    import lightning.pytorch as pl

    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[*callbacks, recorder.as_callback()],
        **{"accelerator": "cpu", "devices": 1, **(trainer_kwargs or {})},  # Compute.lightning_kwargs
    )
    return prepare(trainer) if prepare is not None else trainer


def _loop_result(recorder: _EpochRecorder, net: torch.nn.Module, model_config: ModelConfig,
                 split: Split, data: Prepared | None) -> LoopResult:
    best = recorder.best
    if best is None:
        raise RuntimeError("training finished without a validation epoch")
    metrics = {
        "val_rmse": best["val_rmse"],
        "val_mae": best["val_mae"],
        "best_epoch": best["epoch"],
        **served_test_metrics(model_config, best["state_dict"], split, data),  # test RMSE, ranking metrics
        "epochs": len(recorder.history),
        "train_loss": recorder.history[-1]["train_loss"],
    }
    return LoopResult(history=recorder.history, best=best, last_state_dict=net.serving_state_dict(),
                      model_config=model_config, metrics=metrics)


RESUME_FORMAT = 1


class _EpochRecorder:
    """Keeps the per-epoch history and a copy of the best weights; calls the hook each epoch.

    After a resume, Lightning's epochs count from 0 again: ``start_epoch`` (the epochs already done)
    is added to them. The Lightning callback class is created on first use so importing this module
    stays cheap.
    """

    def __init__(self, on_epoch: EpochHook | None, on_state: StateHook | None, model_config: ModelConfig,
                 epochs: int) -> None:
        self.on_epoch = on_epoch
        self.on_state = on_state
        self.model_config = model_config
        self.epochs = epochs
        self.start_epoch = 0
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] | None = None
        self._optimizer_state: dict[str, Any] | None = None  # loaded once Lightning made the optimizer

    def as_callback(self):
        import lightning.pytorch as pl

        recorder = self

        class _Callback(pl.Callback):
            def on_train_start(self, trainer, module) -> None:
                recorder.restore_optimizer(trainer)

            def on_train_epoch_end(self, trainer, module) -> None:
                recorder.record(trainer, module)

        return _Callback()

    def resume_from(self, state: dict[str, Any], module) -> None:
        """Take an earlier attempt's history, best epoch and weights; the optimizer follows at train start."""
        if state.get("format") != RESUME_FORMAT:
            raise JobFailed(f"cannot resume from a checkpoint of format {state.get('format')!r}",
                            hint="start a new run")
        self.start_epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best = state["best"]
        module.net.load_state_dict(state["net"])
        self._optimizer_state = state

    def restore_optimizer(self, trainer) -> None:
        """The optimizer and schedule as they were after epoch ``start_epoch``, and the RNG."""
        state, self._optimizer_state = self._optimizer_state, None
        if state is None:
            return
        import warnings

        trainer.optimizers[0].load_state_dict(state["optimizer"])
        schedule = trainer.lr_scheduler_configs[0].scheduler
        schedule.load_state_dict(state["scheduler"])
        # The schedule steps once per epoch. The state was taken in on_train_epoch_end, which this
        # Lightning runs after that step; should a version run it before, the step is made up here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
            while schedule.last_epoch < self.start_epoch:
                schedule.step()
        _set_rng_state(state["rng"])

    def resume_state(self, trainer, module) -> dict[str, Any]:
        """Everything a restarted run needs to go on after this epoch."""
        return {
            "format": RESUME_FORMAT,
            "epoch": self.history[-1]["epoch"],
            "net": module.net.state_dict(),
            "optimizer": trainer.optimizers[0].state_dict(),
            "scheduler": trainer.lr_scheduler_configs[0].scheduler.state_dict(),
            "rng": _rng_state(),
            "history": list(self.history),
            "best": self.best,
        }

    def record(self, trainer, module) -> None:
        metrics = trainer.callback_metrics
        if "val/rmse" not in metrics:
            return
        row = {
            "epoch": self.start_epoch + trainer.current_epoch + 1,
            "train_loss": float(metrics["train/loss"]),
            "val_rmse": float(metrics["val/rmse"]),
            "val_mae": float(metrics["val/mae"]),
        }
        if not (math.isfinite(row["train_loss"]) and math.isfinite(row["val_rmse"])):
            raise JobFailed(
                f"training diverged at epoch {row['epoch']}: train loss {row['train_loss']}, "
                f"val RMSE {row['val_rmse']}",
                hint="lower the learning rate or raise the regularization",
            )
        self.history.append(row)
        improved = self.best is None or row["val_rmse"] < self.best["val_rmse"]
        if improved:
            self.best = {**row, "state_dict": module.net.serving_state_dict()}
        if self.on_epoch is not None:
            self.on_epoch(row)
        if self.on_state is not None:
            final = row["epoch"] >= self.epochs
            self.on_state(EpochState(row, improved, final, self.best["state_dict"], module.net,
                                     self.model_config, lambda: self.resume_state(trainer, module)))


def _rng_state() -> dict[str, Any]:
    import random

    import numpy as np

    name, keys, position, has_gauss, gauss = np.random.get_state()
    # Plain lists and numbers, so the state loads with ``torch.load(weights_only=True)``.
    return {"torch": torch.get_rng_state(), "numpy": [name, keys.tolist(), position, has_gauss, gauss],
            "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    random.setstate(state["python"])
