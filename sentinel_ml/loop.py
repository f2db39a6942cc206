"""The Lightning training loop of one process: shared by local training, each Ray Train worker and
each Ray Tune trial. It knows nothing of Ray; callers pass rank, world size and a per-epoch hook."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sentinel_ml.batching import TensorBatches
from sentinel_ml.config import Hyperparameters
from sentinel_ml.data import Ratings, Split, load_split
from sentinel_ml.logs import follow_root_level
from sentinel_ml.network import BiasedMF, ModelConfig

EpochHook = Callable[[dict[str, float]], None]
VAL_BATCH_SIZE = 8192


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
) -> LoopResult:
    """Train with Lightning and return the history, the best and last weights and u1 test RMSE.

    ``trainer_kwargs`` and ``prepare`` let a distributed caller add its strategy and plugins. The global batch
    size stays ``hp.batch_size`` whatever the world size, so results do not depend on it.
    """
    import lightning.pytorch as pl

    from sentinel_ml.model import MFModule

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
    )
    module = MFModule(model_config)
    per_rank_batch = max(1, hp.batch_size // world_size)
    train_batches = TensorBatches(
        split.train, per_rank_batch, shuffle=True, seed=hp.seed, rank=rank, world_size=world_size
    )
    val_batches = TensorBatches(split.val, VAL_BATCH_SIZE)
    recorder = _EpochRecorder(on_epoch)
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

    best_net = copy.deepcopy(module.net)
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
        last_state_dict={k: v.detach().clone() for k, v in module.net.state_dict().items()},
        model_config=model_config,
        test_rmse=test_rmse,
        metrics=metrics,
    )


class _EpochRecorder:
    """Keeps the per-epoch history and a copy of the best weights; calls the hook each epoch.

    The Lightning callback class is created on first use so importing this module stays cheap.
    """

    def __init__(self, on_epoch: EpochHook | None) -> None:
        self.on_epoch = on_epoch
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
        self.history.append(row)
        if self.best is None or row["val_rmse"] < self.best["val_rmse"]:
            state = {k: v.detach().clone() for k, v in module.net.state_dict().items()}
            self.best = {**row, "state_dict": state}
        if self.on_epoch is not None:
            self.on_epoch(row)
