"""Mini-batches sliced from in-memory tensors: one index tensor per batch, no per-sample collation."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from sentinel_ml.data.splits import Ratings

Batch = tuple[torch.Tensor, ...]


class _IndexBatches:
    """Iterates batches of rows of some equally long tensors, held whole in memory.

    Shuffling uses a fresh permutation each epoch from a seeded generator. Under data parallelism
    each rank takes a disjoint, equally long shard of the permutation (``rank``/``world_size``), so
    every rank runs the same number of steps.
    """

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, *, shuffle: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self._epoch = 0

    @property
    def rows(self) -> int:
        return len(self.tensors[0])

    def _indices(self) -> torch.Tensor:
        n = self.rows
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self._epoch)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            per_rank = n // self.world_size
            order = order[self.rank * per_rank : (self.rank + 1) * per_rank]
        return order

    def __len__(self) -> int:
        n = self.rows // self.world_size if self.world_size > 1 else self.rows
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = self._indices()
        self._epoch += 1
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield tuple(t[index] for t in self.tensors)


class TensorBatches(_IndexBatches):
    """(users, items, ratings) batches over a whole split: what biased MF trains and validates on."""

    def __init__(self, ratings: Ratings, batch_size: int, **kwargs) -> None:
        tensors = (torch.from_numpy(ratings.users).long(), torch.from_numpy(ratings.items).long(),
                   torch.from_numpy(ratings.ratings).float())
        super().__init__(tensors, batch_size, **kwargs)


class ItemBatches(_IndexBatches):
    """(movie ids,) batches over every row of the item table: what AutoRec trains on."""

    def __init__(self, num_items: int, batch_size: int, **kwargs) -> None:
        super().__init__((torch.arange(num_items),), batch_size, **kwargs)
