"""The names of what a run reports on its test split (no torch: the CLI and the gate read them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

K = 10  # the length of a recommendation list the ranking metrics score


def ranking_names(k: int = K) -> tuple[str, str, str]:
    """The keys of NDCG@k, Recall@k and coverage@k in records, checkpoints and MLflow (which refuses '@')."""
    return f"test_ndcg_at_{k}", f"test_recall_at_{k}", f"test_coverage_at_{k}"


NDCG, RECALL, COVERAGE = ranking_names()
RANKING = (NDCG, RECALL, COVERAGE)
RANKING_USERS = "ranking_users"  # how many test users the ranking metrics average over
TEST_RMSE = "test_rmse"
TEST_METRICS = (TEST_RMSE, *RANKING, RANKING_USERS)
LABELS = {TEST_RMSE: "test RMSE", NDCG: f"NDCG@{K}", RECALL: f"Recall@{K}", COVERAGE: f"coverage@{K}"}


def test_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The test-split metrics among ``metrics`` (a run's), those it has."""
    return {name: metrics[name] for name in TEST_METRICS if name in metrics}
