"""Batching from in-memory tensors and the biased MF network."""

from __future__ import annotations

import numpy as np
import torch

from sentinel_ml.data.batching import TensorBatches
from sentinel_ml.data.splits import Ratings
from sentinel_ml.models.biased_mf import BiasedMF


def ratings(n: int) -> Ratings:
    return Ratings(np.arange(n) % 5 + 1, np.arange(n) % 7 + 1, np.full(n, 3.0, dtype=np.float32))


def test_batches_cover_every_row_once_per_epoch_in_index_tensors() -> None:
    batches = TensorBatches(ratings(10), batch_size=4, shuffle=True, seed=3)
    assert len(batches) == 3
    first = list(batches)
    assert [len(b[0]) for b in first] == [4, 4, 2]
    assert all(isinstance(t, torch.Tensor) for t in first[0])
    rows = sorted(torch.cat([b[0] * 100 + b[1] for b in first]).tolist())
    assert rows == sorted((np.arange(10) % 5 + 1) * 100 + np.arange(10) % 7 + 1)
    second = list(batches)
    assert not torch.equal(first[0][0], second[0][0])  # a new permutation each epoch


def test_ranks_take_disjoint_equal_shards() -> None:
    data = ratings(11)
    shards = [list(TensorBatches(data, 2, shuffle=True, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    sizes = [sum(len(b[0]) for b in shard) for shard in shards]
    assert sizes == [5, 5]  # equal step counts keep DDP in lockstep
    assert len(TensorBatches(data, 2, rank=1, world_size=2)) == 3


def test_predictions_are_clipped_to_the_rating_range() -> None:
    net = BiasedMF(3, 3, 2, global_mean=3.5)
    with torch.no_grad():
        net.user_bias.weight.fill_(10.0)
    assert torch.all(net.predict(torch.tensor([1, 2]), torch.tensor([1, 2])) == 5.0)
    with torch.no_grad():
        net.user_bias.weight.fill_(-10.0)
    assert torch.all(net.predict(torch.tensor([1]), torch.tensor([1])) == 1.0)


def test_untrained_network_predicts_the_global_mean() -> None:
    net = BiasedMF(4, 4, 8, global_mean=3.53)
    prediction = net.predict(torch.tensor([1, 2, 3]), torch.tensor([3, 2, 1]))
    assert torch.allclose(prediction, torch.full((3,), 3.53), atol=1e-2)
