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

# Embedding tables with more rows than this (users + items) train with sparse gradients and SparseAdam
# (``BiasedMF.use_sparse_gradients``): the cost of a step is then that of the rows a batch touches, not
# of the whole table. Below it (ml-100k's 2,625 rows, ML-1M's 9,746) the dense Adam of every run so far
# stays, and so do its results. Measured in docs/data.md (bench/scale.py).
SPARSE_MIN_ROWS = 20_000


def sparse_gradients(net: nn.Module) -> bool:
    """Whether ``net`` trains with sparse gradients: a biased MF whose tables exceed ``SPARSE_MIN_ROWS``."""
    rows = getattr(net, "user_factors", None), getattr(net, "item_factors", None)
    if not hasattr(net, "use_sparse_gradients") or None in rows:
        return False
    return sum(table.num_embeddings for table in rows) > SPARSE_MIN_ROWS


class RowAdam(torch.optim.Optimizer):
    """Adam on the rows a sparse gradient names, with ``torch.optim.SparseAdam``'s arithmetic (moments kept
    per row, updated only where the gradient has rows; one step count per parameter for the bias
    correction) in a few dense row operations: gather the rows' moments, update them, scatter them back
    and add the step to the rows. SparseAdam builds sparse tensors for every intermediate and took about
    three quarters of a step of biased MF at 10M ratings; this takes a fraction of that."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if not grad.is_sparse:
                    raise RuntimeError("RowAdam takes sparse gradients (nn.Embedding(sparse=True))")
                grad = grad.coalesce()  # one row per index, duplicates summed
                rows, values = grad.indices()[0], grad.values()
                state = self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                step = float(state["step"])
                avg = state["exp_avg"].index_select(0, rows).mul_(beta1).add_(values, alpha=1 - beta1)
                avg_sq = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(values, values,
                                                                                         value=1 - beta2)
                state["exp_avg"].index_copy_(0, rows, avg)
                state["exp_avg_sq"].index_copy_(0, rows, avg_sq)
                step_size = group["lr"] * (1 - beta2**step) ** 0.5 / (1 - beta1**step)
                update = avg.div_(avg_sq.sqrt_().add_(group["eps"])).mul_(-step_size)
                param.index_add_(0, rows, update)
        return loss


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
        self.sparse = sparse_gradients(self.net)
        if self.sparse:
            self.net.use_sparse_gradients()
        self._val_sums = [0.0, 0.0, 0]
        self.sum_val_across_ranks = False  # set by a worker group that validates a slice per rank

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
        if self.sum_val_across_ranks:  # each rank scored its slice of the set (training/averaging.py)
            import torch.distributed as dist

            sums = torch.tensor([squared, absolute, float(count)], dtype=torch.float64)
            dist.all_reduce(sums)
            squared, absolute, count = sums[0].item(), sums[1].item(), int(sums[2].item())
        if count:
            self.log("val/rmse", math.sqrt(squared / count))
            self.log("val/mae", absolute / count)

    def configure_optimizers(self):
        if self.sparse:  # Adam's moments and steps, kept and applied per touched row
            optimizer = RowAdam(list(self.parameters()), lr=self.config.lr)
        else:
            optimizer = torch.optim.Adam(self.parameters(), lr=self.config.lr)
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.config.lr_decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
