"""The Lightning training loop of one process: shared by local training, each Ray Train worker and
each Ray Tune trial. It knows nothing of Ray; callers pass rank, world size and a per-epoch hook."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sentinel_ml.data.batching import ItemBatches, TensorBatches
from sentinel_ml.training.config import Hyperparameters
from sentinel_ml.data.movielens import Ratings, Split, load_split
from sentinel_ml.errors import JobFailed
from sentinel_ml.logs import follow_root_level
from sentinel_ml.models.registry import AUTOREC
from sentinel_ml.models.biased_mf import BiasedMF, ModelConfig, build_network

EpochHook = Callable[[dict[str, float]], None]
VAL_BATCH_SIZE = 8192


@dataclass
class EpochState:
    """What ``on_state`` sees after each validated epoch: enough to save the best and last weights."""

    row: dict[str, float]
    improved: bool  # this epoch's val RMSE is the best so far
    final: bool  # the run's last epoch
    best_state_dict: dict[str, torch.Tensor]  # a served BiasedMF's, whichever model trains
    net: torch.nn.Module  # the live network: ``net.serving_state_dict()`` gives this epoch's ("last") weights
    model_config: ModelConfig


StateHook = Callable[[EpochState], None]


@dataclass
class LoopResult:
    history: list[dict[str, float]]
    best: dict[str, Any]  # {"epoch", "val_rmse", "state_dict"}
    last_state_dict: dict[str, torch.Tensor]
    model_config: ModelConfig
    test_rmse: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def rmse(net: BiasedMF, ratings: Ratings) -> float:
    users = torch.from_numpy(ratings.users)
    items = torch.from_numpy(ratings.items)
    target = torch.from_numpy(ratings.ratings)
    squared = 0.0
    for start in range(0, len(target), VAL_BATCH_SIZE):
        end = start + VAL_BATCH_SIZE
        error = net.predict(users[start:end], items[start:end]) - target[start:end]
        squared += float(error.pow(2).sum())
    return math.sqrt(squared / max(1, len(target)))


def run_loop(
    hp: Hyperparameters,
    dataset_dir: Path,
    *,
    rank: int = 0,
    world_size: int = 1,
    trainer_kwargs: dict[str, Any] | None = None,
    prepare: Callable[[Any], Any] | None = None,
    on_epoch: EpochHook | None = None,
    split: Split | None = None,
    on_state: StateHook | None = None,
) -> LoopResult:
    """Train with Lightning and return the history, the best and last weights and u1 test RMSE.

    Weights are always those of the served ``BiasedMF`` (an AutoRec run exports its factorization).

    ``trainer_kwargs`` and ``prepare`` let a distributed caller add its strategy and plugins. The global batch
    size stays ``hp.batch_size`` whatever the world size, so results do not depend on it.
    ``on_state`` is for callers that save weights as they go (a Tune trial may be stopped from the
    outside at any epoch). A non-finite loss or val RMSE ends the run with ``JobFailed``.
    """
    import lightning.pytorch as pl

    from sentinel_ml.models.module import MFModule

    # The model's ops are tiny: extra intra-op threads only add synchronisation, and on a busy
    # 2-core machine they made an epoch ten times slower. Data parallelism uses processes instead.
    torch.set_num_threads(1)
    follow_root_level()
    torch.manual_seed(hp.seed)
    split = split or load_split(dataset_dir, hp.split, seed=hp.seed)
    model_config = ModelConfig(
        num_users=split.num_users,
        num_items=split.num_items,
        global_mean=split.global_mean,
        embedding_dim=hp.embedding_dim,
        lr=hp.lr,
        regularization=hp.regularization,
        lr_decay=hp.lr_decay,
        model=hp.model,
    )
    module = MFModule(model_config, split.train)
    per_rank_batch = max(1, hp.batch_size // world_size)
    sharding = {"shuffle": True, "seed": hp.seed, "rank": rank, "world_size": world_size}
    if hp.model == AUTOREC:
        train_batches = ItemBatches(split.num_items, per_rank_batch, **sharding)
    else:
        train_batches = TensorBatches(split.train, per_rank_batch, **sharding)
    val_batches = TensorBatches(split.val, VAL_BATCH_SIZE)
    recorder = _EpochRecorder(on_epoch, on_state, model_config)
    trainer = pl.Trainer(
        max_epochs=hp.epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[recorder.as_callback()],
        **(trainer_kwargs or {"devices": 1}),
    )
    if prepare is not None:
        trainer = prepare(trainer)
    trainer.fit(module, train_dataloaders=train_batches, val_dataloaders=val_batches)
    if recorder.best is None:
        raise RuntimeError("training finished without a validation epoch")

    best_net = build_network(model_config)
    best_net.load_state_dict(recorder.best["state_dict"])
    test_rmse = rmse(best_net.eval(), split.test)
    metrics = {
        "val_rmse": recorder.best["val_rmse"],
        "val_mae": recorder.best["val_mae"],
        "best_epoch": recorder.best["epoch"],
        "test_rmse": test_rmse,
        "epochs": len(recorder.history),
        "train_loss": recorder.history[-1]["train_loss"],
    }
    return LoopResult(
        history=recorder.history,
        best=recorder.best,
        last_state_dict=module.net.serving_state_dict(),
        model_config=model_config,
        test_rmse=test_rmse,
        metrics=metrics,
    )


class _EpochRecorder:
    """Keeps the per-epoch history and a copy of the best weights; calls the hook each epoch.

    The Lightning callback class is created on first use so importing this module stays cheap.
    """

    def __init__(self, on_epoch: EpochHook | None, on_state: StateHook | None = None,
                 model_config: ModelConfig | None = None) -> None:
        self.on_epoch = on_epoch
        self.on_state = on_state
        self.model_config = model_config
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] | None = None

    def as_callback(self):
        import lightning.pytorch as pl

        recorder = self

        class _Callback(pl.Callback):
            def on_train_epoch_end(self, trainer, module) -> None:
                recorder.record(trainer, module)

        return _Callback()

    def record(self, trainer, module) -> None:
        metrics = trainer.callback_metrics
        if "val/rmse" not in metrics:
            return
        row = {
            "epoch": trainer.current_epoch + 1,
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
            final = trainer.current_epoch + 1 >= trainer.max_epochs
            self.on_state(EpochState(row, improved, final, self.best["state_dict"], module.net,
                                     self.model_config))
