"""The LightningModule around the network a model's spec builds (``sentinel_ml.models.specs``): loss,
metrics, optimizer."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
from torch import nn

from sentinel_ml.data.splits import Ratings
from sentinel_ml.models.config import ModelConfig
from sentinel_ml.models.registry import get


class MFModule(pl.LightningModule):
    """Logs ``train/loss`` per epoch and ``val/rmse``, ``val/mae`` on clipped predictions.

    Every rank validates the whole (small) validation split, so validation metrics need no
    cross-rank reduction and are identical on all ranks.
    """

    def __init__(self, config: ModelConfig, train: Ratings):
        super().__init__()
        self.config = config
        self.save_hyperparameters(config.as_dict())
        self.net: nn.Module = get(config.model).network(config, train)
        self._val_sums = [0.0, 0.0, 0]

    def model_step(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        users, items, ratings = batch
        return self.net(users, items), ratings

    def training_step(self, batch, batch_idx):
        loss, shown = self.net.training_loss(batch, self.config.regularization)
        self.log("train/loss", shown, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(batch[0]))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_sums = [0.0, 0.0, 0]

    def validation_step(self, batch, batch_idx):
        predictions, ratings = self.model_step(batch)
        error = predictions.clamp(*self.config.scale) - ratings
        self._val_sums[0] += float(error.pow(2).sum())
        self._val_sums[1] += float(error.abs().sum())
        self._val_sums[2] += len(ratings)

    def on_validation_epoch_end(self) -> None:
        squared, absolute, count = self._val_sums
        if count:
            self.log("val/rmse", math.sqrt(squared / count))
            self.log("val/mae", absolute / count)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.config.lr)
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.config.lr_decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
