"""The ranking metrics (``sentinel_ml.models.ranking``) against a hand computation and against a plain
Python reference of their definitions (docs/training.md, "Ranking metrics")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sentinel_ml.data.splits import Ratings
from sentinel_ml.models import ranking
from sentinel_ml.models.biased_mf import BiasedMF
from sentinel_ml.models.ranking import ranking_metrics, relevance_threshold


def _ratings(rows: list[tuple[int, int, float]]) -> Ratings:
    users, items, values = zip(*rows) if rows else ((), (), ())
    return Ratings(np.array(users, np.int64), np.array(items, np.int64), np.array(values, np.float32))


def _fixed(scores: list[list[float]]):
    table = torch.tensor(scores)
    return lambda users: table[users]


def test_hand_computed_example() -> None:
    # 3 users, 6 items, lists of k = 3 on a 1-5 scale (relevant: rated >= 4).
    scores = _fixed([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
                     [0.1, 0.2, 0.3, 0.9, 0.5, 0.6],
                     [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]])
    seen = _ratings([(0, 0, 5.0), (1, 5, 3.0)])  # user 0 rated item 0, user 1 item 5: never listed
    test = _ratings([(0, 1, 5.0), (0, 3, 4.0), (0, 4, 3.0),  # user 0: relevant {1, 3}
                     (1, 4, 4.5), (1, 0, 4.0), (1, 2, 2.0),  # user 1: relevant {4, 0}
                     (2, 2, 3.0)])  # user 2: nothing relevant, not evaluated
    result = ranking_metrics(scores, seen, test, num_items=6, scale=(1.0, 5.0), k=3)
    # user 0's list [1, 2, 3]: hits at positions 1 and 3; user 1's list [3, 4, 2]: a hit at position 2.
    ndcg_0 = (1 / math.log2(2) + 1 / math.log2(4)) / (1 / math.log2(2) + 1 / math.log2(3))
    ndcg_1 = (1 / math.log2(3)) / (1 / math.log2(2) + 1 / math.log2(3))
    assert result.users == 2
    assert result.ndcg == pytest.approx((ndcg_0 + ndcg_1) / 2)  # (0.9197 + 0.3869) / 2
    assert result.recall == pytest.approx((2 / 2 + 1 / 2) / 2)
    assert result.coverage == pytest.approx(4 / 6)  # items 1, 2, 3, 4
    assert result.metrics() == {"test_ndcg_at_3": result.ndcg, "test_recall_at_3": result.recall,
                                "test_coverage_at_3": result.coverage, "ranking_users": 2}


def test_relevance_threshold_is_the_top_quarter_of_the_scale() -> None:
    assert relevance_threshold((1.0, 5.0)) == 4.0
    assert relevance_threshold((0.5, 5.0)) == 3.875  # ml-latest: 4.0 and up
    assert relevance_threshold((1.0, 10.0)) == 7.75


def _reference(scores: np.ndarray, seen: Ratings, test: Ratings, scale, k: int) -> tuple[float, float, float, int]:
    """The definitions, one user at a time in plain Python."""
    threshold = relevance_threshold(scale)
    seen_by = {}
    for u, i in zip(seen.users.tolist(), seen.items.tolist()):
        seen_by.setdefault(u, set()).add(i)
    relevant = {}
    for u, i, r in zip(test.users.tolist(), test.items.tolist(), test.ratings.tolist()):
        if r >= threshold:
            relevant.setdefault(u, set()).add(i)
    ndcgs, recalls, covered = [], [], set()
    for u in sorted(relevant):
        candidates = [i for i in range(scores.shape[1]) if i not in seen_by.get(u, set())]
        listed = sorted(candidates, key=lambda i: -scores[u, i])[:k]
        covered.update(listed)
        dcg = sum(1 / math.log2(p + 2) for p, i in enumerate(listed) if i in relevant[u])
        ideal = sum(1 / math.log2(p + 2) for p in range(min(k, len(relevant[u]))))
        ndcgs.append(dcg / ideal)
        recalls.append(sum(i in relevant[u] for i in listed) / len(relevant[u]))
    return sum(ndcgs) / len(ndcgs), sum(recalls) / len(recalls), len(covered) / scores.shape[1], len(ndcgs)


@pytest.mark.parametrize("block_cells", [ranking.BLOCK_CELLS, 200])  # one block, and many (3 users each)
def test_matches_the_plain_python_reference(monkeypatch, block_cells: int) -> None:
    rng = np.random.default_rng(7)
    users, items = 40, 60
    scores = rng.standard_normal((users, items)).astype(np.float32)  # no ties
    pairs = rng.permutation(users * items)[:900]
    seen_pairs, test_pairs = pairs[:700], pairs[700:]
    seen = Ratings(seen_pairs // items, seen_pairs % items, np.ones(700, np.float32))
    # user 0 has rated all but 4 items: a list shorter than k
    extra = np.setdiff1d(np.arange(4, items), seen.items[seen.users == 0])
    extra = extra[~np.isin(extra, test_pairs[test_pairs // items == 0] % items)]
    seen = Ratings(np.concatenate([seen.users, np.zeros(len(extra), np.int64)]),
                   np.concatenate([seen.items, extra]), np.ones(len(seen.users) + len(extra), np.float32))
    test = Ratings(test_pairs // items, test_pairs % items,
                   rng.choice([0.5, 1.5, 2.5, 3.5, 4.0, 4.5, 5.0], len(test_pairs)).astype(np.float32))
    test = Ratings(np.append(test.users, 0), np.append(test.items, 1), np.append(test.ratings, 5.0))
    monkeypatch.setattr(ranking, "BLOCK_CELLS", block_cells)
    result = ranking_metrics(_fixed(scores.tolist()), seen, test, items, (0.5, 5.0), k=10)
    ndcg, recall, coverage, evaluated = _reference(scores, seen, test, (0.5, 5.0), 10)
    assert (result.ndcg, result.recall, result.coverage, result.users) == pytest.approx(
        (ndcg, recall, coverage, evaluated), abs=1e-9)


def test_biased_mf_scores_every_item_as_its_forward_does() -> None:
    torch.manual_seed(0)
    net = BiasedMF(5, 7, 4, global_mean=3.5)
    torch.nn.init.normal_(net.user_bias.weight)
    torch.nn.init.normal_(net.item_bias.weight)
    users = torch.tensor([3, 0, 4])
    pairs = net(users.repeat_interleave(7), torch.arange(7).repeat(3)).reshape(3, 7)
    assert torch.allclose(net.score_all(users), pairs, atol=1e-6)


def test_above_max_users_a_fixed_draw_of_them_is_evaluated() -> None:
    rng = np.random.default_rng(3)
    scores = _fixed(rng.standard_normal((40, 30)).tolist())
    test = Ratings(np.arange(40), rng.integers(0, 30, 40), np.full(40, 5.0, np.float32))
    seen = Ratings.empty()
    sampled = ranking_metrics(scores, seen, test, 30, (1.0, 5.0), k=10, max_users=12)
    assert sampled.users == 12
    assert ranking_metrics(scores, seen, test, 30, (1.0, 5.0), k=10, max_users=12) == sampled  # the same draw
    assert ranking_metrics(scores, seen, test, 30, (1.0, 5.0), k=10).users == 40
