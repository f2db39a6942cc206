"""``autorec``: item-based AutoRec (``sentinel_ml.models.autorec``) trained on mini-batches of movies and
served as the factorization it exports (``mf``'s network). Slower to converge (30 epochs, about as long
in wall time as mf's 5), u1 test RMSE about 0.90 with these defaults."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sentinel_ml.models.spec import ModelSpec, StudyDefaults
from sentinel_ml.models.specs import mf

if TYPE_CHECKING:
    from sentinel_ml.data.batching import ItemBatches
    from sentinel_ml.data.splits import Ratings, Split
    from sentinel_ml.models.autorec import ItemAutoRec
    from sentinel_ml.models.config import ModelConfig


def network(config: ModelConfig, train: Ratings) -> ItemAutoRec:
    from sentinel_ml.models.autorec import ItemAutoRec

    return ItemAutoRec(train, config.num_users, config.num_items, config.embedding_dim, config.scale)


# AutoRec's input is each item's column of ratings by every user, held dense in every process: it fits
# MovieLens 100k (1.6M cells) and 1M (22M cells, 0.1 GiB); 10M's 10,677 x 69,878 (3.5 GiB) would not
# leave a worker room to train on a 2-core, few-GiB machine, let alone 20M and beyond.
MAX_DENSE_BYTES = 2 << 30


def check_size(num_users: int, num_items: int) -> None:
    from sentinel_ml.errors import ConfigError
    from sentinel_ml.models.autorec import dense_bytes

    need = dense_bytes(num_users, num_items)
    if need > MAX_DENSE_BYTES:
        raise ConfigError(
            f"autorec holds a dense items x users matrix in every process: {num_items:,} x {num_users:,} "
            f"needs {need / (1 << 30):.1f} GiB, over its limit of {MAX_DENSE_BYTES / (1 << 30):.0f} GiB",
            hint="train this dataset with --model mf (biased MF works at every size)")


def batches(split: Split, batch_size: int, **sharding: Any) -> ItemBatches:
    from sentinel_ml.data.batching import ItemBatches

    return ItemBatches(split.num_items, batch_size, **sharding)


SPEC = ModelSpec(
    name="autorec",
    summary="item-based AutoRec exported as a factorization (~0.90)",
    defaults={"epochs": 30, "batch_size": 128, "embedding_dim": 500, "regularization": 100.0, "lr_decay": 0.85},
    meanings={"batch_size": "movies", "embedding_dim": "its hidden units", "regularization": "on the network weights"},
    # Measured on u1 (docs/tuning.md): lr ~0.003-0.01 with a 0.85-0.9 decay, 250-500 hidden units,
    # 64-128 movies a batch, regularization ~50-150 (test RMSE 0.900-0.905 there); the space reaches
    # beyond that region on every side.
    space={
        "lr": {"lower": 1e-3, "upper": 3e-2},
        "embedding_dim": [250, 500],
        "batch_size": [64, 128, 256],
        "regularization": {"lower": 20.0, "upper": 500.0},
        "lr_decay": [0.8, 0.85, 0.9],
    },
    # The val RMSE after one epoch already ranks AutoRec's configurations well enough (a replay of a
    # 20-trial study's learning curves through Ray's ASHA: the same best trial, 172 trial-epochs with
    # grace 1 / factor 4 against 244 with 2 / 3).
    study=StudyDefaults(max_epochs=30, grace_period=1, reduction_factor=4),
    network=network,
    batches=batches,
    scorer=mf.scorer,
    check_size=check_size,
)
