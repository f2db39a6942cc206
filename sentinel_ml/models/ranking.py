"""Ranking metrics of a served network on a run's test split: NDCG@10, Recall@10 and catalogue
coverage@10, reported beside the test RMSE by every training and tuning run (docs/training.md,
"Ranking metrics").

The rules, in one place:

- **Candidates.** Every item of the catalogue except those the user rated in the training or
  validation part (what the model saw; serving leaves a user's rated items out the same way). Test
  items stay candidates: they are what the list should find.
- **Relevant.** A user's test items rated at least ``relevance_threshold(scale)``: the top quarter of
  the rating scale, ``low + 0.75 * (high - low)`` (4 on MovieLens' 1-5, 3.875 on 0.5-5, so 4.0 and
  up; 7.75 on 1-10).
- **Evaluated users.** Users with at least one relevant test item; each metric is the mean over them.
  Above ``MAX_USERS`` of them, a fixed draw of that many (the same for every run on the split).
- **The list.** The ``k`` candidates with the highest unclipped score (the network's forward; serving
  clips to the scale, which only ties items at the top), fewer where a user has fewer candidates.
- ``recall@k``: relevant items in the list / the user's relevant items.
- ``ndcg@k``: binary gains, ``DCG = sum over list positions i (1-based) of rel_i / log2(i + 1)``,
  divided by the ideal DCG of ``min(k, relevant)`` hits at the top.
- ``coverage@k``: distinct items in the evaluated users' lists / items in the catalogue.

Vectorized: one [users, items] score block per batch of users (``score_all``: a matrix product for
the factorization every model serves), seen items masked to -inf, ``torch.topk``, and the hits
gathered from a dense relevance block of the same batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from sentinel_ml.data.splits import Ratings, Split
from sentinel_ml.models.metrics import RANKING_USERS, K, ranking_names

RELEVANT_QUANTILE = 0.75  # relevant: a test rating in the top quarter of the scale (>= 4 on 1-5)
BLOCK_CELLS = 1 << 23  # users * items per score block: 32 MB of float32, whatever the catalogue
# Above this many evaluated users, a fixed draw of them (seed 0: the same users for every run on the same
# split, so the gate compares like with like). The cost grows with users x items: ML-25M's 162k x 59k
# would take about 10 minutes of one thread in full, 20k users about 80 s (at the rate measured at 1M).
MAX_USERS = 20_000


def relevance_threshold(scale: tuple[float, float]) -> float:
    """The lowest rating that counts as relevant on a ``(low, high)`` scale."""
    low, high = float(scale[0]), float(scale[1])
    return low + RELEVANT_QUANTILE * (high - low)


@dataclass(frozen=True)
class RankingResult:
    ndcg: float
    recall: float
    coverage: float
    users: int  # evaluated users (with at least one relevant test item)
    k: int = K

    def metrics(self) -> dict[str, float]:
        """As runs record them: ``test_ndcg_at_10``, ``test_recall_at_10``, ``test_coverage_at_10``,
        ``ranking_users`` (``models.metrics``)."""
        ndcg, recall, coverage = ranking_names(self.k)
        return {ndcg: self.ndcg, recall: self.recall, coverage: self.coverage, RANKING_USERS: self.users}


ScoreAll = Callable[[torch.Tensor], torch.Tensor]  # user indices [b] -> scores [b, num_items]


def ranking_metrics(score_all: ScoreAll, seen: Ratings, test: Ratings, num_items: int,
                    scale: tuple[float, float], k: int = K, max_users: int = MAX_USERS) -> RankingResult:
    """NDCG@k, Recall@k and coverage@k of ``score_all``'s lists over ``test`` (module docstring).
    ``seen``: the pairs to leave out of every list (training and validation). More than ``max_users``
    evaluated users: a fixed draw of that many (``MAX_USERS``)."""
    relevant = test.ratings >= relevance_threshold(scale)
    rel_users, rel_items = test.users[relevant], test.items[relevant]
    users = np.unique(rel_users)
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(0).choice(users, max_users, replace=False))
    if len(users) == 0 or num_items == 0:
        return RankingResult(ndcg=0.0, recall=0.0, coverage=0.0, users=0, k=k)
    seen_ptr, seen_items = _by_user(seen.users, seen.items, users)
    rel_ptr, rel_sorted = _by_user(rel_users, rel_items, users)
    n_relevant = torch.from_numpy(np.diff(rel_ptr))
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    ideal = torch.cumsum(discounts, 0)
    covered = torch.zeros(num_items, dtype=torch.bool)
    ndcg_sum = recall_sum = 0.0
    batch = max(1, BLOCK_CELLS // num_items)
    with torch.no_grad():
        for start in range(0, len(users), batch):
            end = min(start + batch, len(users))
            scores = score_all(torch.from_numpy(users[start:end])).to(torch.float32)
            _fill(scores, seen_ptr[start:end + 1], seen_items, -torch.inf)
            rel = torch.zeros(scores.shape, dtype=torch.bool)
            _fill(rel, rel_ptr[start:end + 1], rel_sorted, True)
            top = torch.topk(scores, min(k, num_items), dim=1)
            listed = torch.isfinite(top.values)  # fewer than k candidates: the rest is no recommendation
            hits = rel.gather(1, top.indices) & listed
            covered[top.indices[listed]] = True
            count = n_relevant[start:end]
            dcg = (hits.to(torch.float64) * discounts[:hits.shape[1]]).sum(1)
            ndcg_sum += float((dcg / ideal[count.clamp(max=k) - 1]).sum())
            recall_sum += float((hits.sum(1).to(torch.float64) / count).sum())
    n = len(users)
    return RankingResult(ndcg=ndcg_sum / n, recall=recall_sum / n, coverage=float(covered.sum()) / num_items,
                         users=n, k=k)


def _by_user(users: np.ndarray, items: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR rows for ``wanted`` (sorted user indices): ``items[ptr[j]:ptr[j+1]]`` belong to ``wanted[j]``."""
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    lo = np.searchsorted(users, wanted, side="left")
    hi = np.searchsorted(users, wanted, side="right")
    lengths = hi - lo
    ptr = np.zeros(len(wanted) + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    rows = np.repeat(lo - ptr[:-1], lengths) + np.arange(ptr[-1])  # positions in the sorted arrays
    return ptr, items[rows].astype(np.int64)


def _fill(block: torch.Tensor, ptr: np.ndarray, items: np.ndarray, value) -> None:
    """``block[j, items of row j] = value`` for the rows of ``ptr`` (a slice of a CSR pointer)."""
    lengths = np.diff(ptr)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = items[ptr[0]:ptr[-1]]
    block[torch.from_numpy(rows), torch.from_numpy(cols)] = value


def split_ranking(net, split: Split, seen: Ratings | None = None, k: int = K) -> RankingResult:
    """``ranking_metrics`` of a served network (``score_all``) on ``split``'s test part, leaving out the
    training and validation pairs (``seen``, where the training part is not in memory)."""
    seen = seen if seen is not None else concat(split.train, split.val)
    return ranking_metrics(net.score_all, seen, split.test, split.num_items, split.scale, k)


def concat(*parts: Ratings) -> Ratings:
    return Ratings(np.concatenate([p.users for p in parts]), np.concatenate([p.items for p in parts]),
                   np.concatenate([p.ratings for p in parts]))
