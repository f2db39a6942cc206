"""The names of what a run reports on its test split (no torch: the CLI and the gate read them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

K = 10  # the length of a recommendation list the ranking metrics score
NDCG, RECALL, COVERAGE = f"ndcg@{K}", f"recall@{K}", f"coverage@{K}"
RANKING = (NDCG, RECALL, COVERAGE)
TEST_RMSE = "test_rmse"
TEST_METRICS = (TEST_RMSE, *RANKING, "ranking_users")


def test_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The test-split metrics among ``metrics`` (a run's), those it has."""
    return {name: metrics[name] for name in TEST_METRICS if name in metrics}
