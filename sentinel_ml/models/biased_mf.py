"""The biased matrix-factorization network: plain PyTorch, shared by training, serving and benchmarks.
What ``mf`` trains and serves, and what ``autorec`` exports for serving (``sentinel_ml.models.specs``)."""

from __future__ import annotations

import torch
from torch import nn


class BiasedMF(nn.Module):
    """rating(u, i) = mu + b_u + b_i + <p_u, q_i>"""

    def __init__(self, num_users: int, num_items: int, embedding_dim: int, global_mean: float,
                 scale: tuple[float, float] = (1.0, 5.0)):
        super().__init__()
        self.scale = (float(scale[0]), float(scale[1]))  # the data's rating range (not a buffer: not in checkpoints)
        self.user_factors = nn.Embedding(num_users, embedding_dim)
        self.item_factors = nn.Embedding(num_items, embedding_dim)
        self.user_bias = nn.Embedding(num_users, 1)
        self.item_bias = nn.Embedding(num_items, 1)
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))
        nn.init.normal_(self.user_factors.weight, std=0.01)
        nn.init.normal_(self.item_factors.weight, std=0.01)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)

    @property
    def sparse(self) -> bool:
        """Whether backward makes sparse (row-wise) gradients of the embedding tables."""
        return self.user_factors.sparse

    def use_sparse_gradients(self, sparse: bool = True) -> None:
        """Backward gives each table a sparse gradient of only the rows a batch touched, for an optimizer
        that updates those rows alone (``torch.optim.SparseAdam``) and a DDP allreduce of those rows
        alone. A large table otherwise costs a dense gradient, a dense Adam step and a dense allreduce
        of every row at every step, whatever the batch size. Weights and checkpoints are unchanged."""
        for table in (self.user_factors, self.item_factors, self.user_bias, self.item_bias):
            table.sparse = sparse

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.user_factors(users) * self.item_factors(items)).sum(dim=1)
        bias = self.user_bias(users).squeeze(1) + self.item_bias(items).squeeze(1)
        return self.global_mean + bias + dot

    @torch.no_grad()
    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """Unclipped ratings of every item for each of ``users``: [len(users), num_items], one matrix product."""
        scores = self.user_factors(users) @ self.item_factors.weight.T
        return scores + self.user_bias(users) + self.item_bias.weight.T + self.global_mean

    @torch.no_grad()
    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Predictions clipped to the rating range."""
        return self(users, items).clamp(*self.scale)

    def training_loss(self, batch, regularization: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective, its value to log): the MSE plus ``regularization`` times ``penalty``."""
        users, items, ratings = batch
        # Each table is looked up once and the penalty is taken from the same rows: the same objective
        # as ``self(users, items)`` plus ``penalty``, with one gather and one gradient per table.
        p, q = self.user_factors(users), self.item_factors(items)
        bias = self.user_bias(users).squeeze(1) + self.item_bias(items).squeeze(1)
        predictions = self.global_mean + bias + (p * q).sum(dim=1)
        penalty = (p.pow(2).sum(1) + q.pow(2).sum(1)).mean()
        loss = nn.functional.mse_loss(predictions, ratings) + regularization * penalty
        return loss, loss.detach()

    def serving_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.state_dict().items()}  # served on CPUs too

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """L2 on the factors the batch touched, averaged over the batch (biases stay free)."""
        terms = self.user_factors(users).pow(2).sum(1) + self.item_factors(items).pow(2).sum(1)
        return terms.mean()

