"""Item-based AutoRec (Sedhain et al., WWW 2015), trained as a factorization we can serve as one.

Each movie's column of training ratings (one entry per user, 0 where unrated) is encoded to
``hidden`` sigmoid units and decoded linearly back to a rating for every user; only observed
entries count in the loss. Because the decoder is linear, the trained model *is* a factorization:

    rating(u, i) = decoder.bias[u] + <decoder.weight[u], code(i)>,   code(i) = sigmoid(encoder(column_i))

so ``export()`` writes it as a ``BiasedMF`` (user factors = decoder rows, item factors = the codes,
user bias = decoder bias, no global mean or item bias), and serving, checkpoints and the index
handle it exactly like the plain model. On u1 it reaches a test RMSE of about 0.90 where plain
biased MF stops near 0.92 (docs/tuning.md has the measurements).
"""

from __future__ import annotations

import torch
from torch import nn

from sentinel_ml.data.splits import Ratings
from sentinel_ml.models.biased_mf import BiasedMF


class ItemAutoRec(nn.Module):
    def __init__(self, train: Ratings, num_users: int, num_items: int, hidden: int,
                 scale: tuple[float, float] = (1.0, 5.0)):
        super().__init__()
        self.scale = (float(scale[0]), float(scale[1]))
        self.encoder = nn.Linear(num_users, hidden)
        self.decoder = nn.Linear(hidden, num_users)
        # Plain attributes, not buffers: DDP would broadcast buffers on every step, and each rank
        # builds the same matrix from the same split anyway. Never part of a checkpoint.
        # (``dense_cells`` bounds their size: ``specs.autorec.check_size``.)
        items, users = torch.from_numpy(train.items).long(), torch.from_numpy(train.users).long()
        columns = torch.zeros(num_items, num_users)
        columns[items, users] = torch.from_numpy(train.ratings).float()
        observed = torch.zeros(num_items, num_users, dtype=torch.bool)
        observed[items, users] = True  # not ``columns > 0``: a scale may hold 0 or less
        self.columns = columns
        self.observed = observed

    def _apply(self, fn, recurse: bool = True):
        """``.to(device)`` (Lightning on a GPU) moves the plain ``columns`` and ``observed`` too."""
        super()._apply(fn, recurse)
        self.columns, self.observed = fn(self.columns), fn(self.observed)
        return self

    @property
    def num_items(self) -> int:
        return self.columns.shape[0]

    def codes(self, items: torch.Tensor | None = None) -> torch.Tensor:
        columns = self.columns if items is None else self.columns[items]
        return torch.sigmoid(self.encoder(columns))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Unclipped predictions for (user, item) pairs, encoding each distinct item once."""
        unique, inverse = torch.unique(items, return_inverse=True)
        codes = self.codes(unique)[inverse]
        return (codes * self.decoder.weight[users]).sum(1) + self.decoder.bias[users]

    @torch.no_grad()
    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self(users, items).clamp(*self.scale)

    def training_loss(self, batch: tuple[torch.Tensor], regularization: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective, mean squared error on the observed entries) for a batch of movie ids (``ItemBatches``).

        The objective is AutoRec's: the summed squared error on observed ratings plus
        ``regularization / 2`` times the squared weights, charged to each batch in proportion to
        the share of movies it holds (so an epoch charges it once, whatever the batch size).
        """
        (items,) = batch
        target = self.columns[items]
        mask = self.observed[items]
        errors = (self.decoder(torch.sigmoid(self.encoder(target))) - target)[mask]
        squared = errors.pow(2).sum()
        share = len(items) / self.num_items
        penalty = self.encoder.weight.pow(2).sum() + self.decoder.weight.pow(2).sum()
        objective = squared + share * regularization / 2 * penalty
        return objective, squared.detach() / max(1, int(mask.sum()))

    @torch.no_grad()
    def export(self) -> BiasedMF:
        """The trained model as the factorization it is (see the module docstring)."""
        num_users, hidden = self.decoder.weight.shape
        net = BiasedMF(num_users, self.num_items, hidden, global_mean=0.0, scale=self.scale)
        net.user_factors.weight.copy_(self.decoder.weight)
        net.item_factors.weight.copy_(self.codes())
        net.user_bias.weight.copy_(self.decoder.bias.unsqueeze(1))
        net.item_bias.weight.zero_()
        return net

    def serving_state_dict(self) -> dict[str, torch.Tensor]:
        return self.export().state_dict()


BYTES_PER_CELL = 5  # the dense ratings (float32) and the observed mask (bool) of each (item, user)


def dense_bytes(num_users: int, num_items: int) -> int:
    """Memory of the dense items x users matrices one AutoRec process holds."""
    return num_users * num_items * BYTES_PER_CELL
