"""The quality gate's decision (``sentinel_cli.gate.decide``): a pure function, every rule."""

from __future__ import annotations

import pytest

from sentinel_cli.gate import FORCED, PASSED, REFUSED, Evaluation, GateRule, decide


def _model(name: str, rmse: float | None = 0.94, ndcg: float | None = 0.15, **data) -> Evaluation:
    metrics = {k: v for k, v in (("test_rmse", rmse), ("test_ndcg_at_10", ndcg)) if v is not None}
    where = {"dataset": "ml-100k", "split": "u1", "seed": 42, **data}
    return Evaluation(checkpoint=f"/s/runs/{name}/best.pt", run_id=name, metrics=metrics, **where)


SERVING = _model("a", rmse=0.94, ndcg=0.15)


@pytest.mark.parametrize(("candidate", "rule", "outcome"), [
    (_model("b", rmse=0.93), GateRule("rmse"), PASSED),
    (_model("b", rmse=0.94), GateRule("rmse"), PASSED),  # equal: no worse
    (_model("b", rmse=0.95), GateRule("rmse"), REFUSED),
    (_model("b", rmse=0.95), GateRule("rmse", tolerance=0.02), PASSED),
    (_model("b", rmse=0.95), GateRule("rmse", force=True), FORCED),
    (_model("b", ndcg=0.20, rmse=1.15), GateRule("ndcg@10"), PASSED),  # higher NDCG is better, whatever the RMSE
    (_model("b", ndcg=0.10), GateRule("ndcg@10"), REFUSED),
    (_model("b", ndcg=0.14), GateRule("ndcg@10", tolerance=0.01), PASSED),
])
def test_the_primary_metric_decides(candidate: Evaluation, rule: GateRule, outcome: str) -> None:
    decision = decide(candidate, SERVING, rule)
    assert decision.outcome == outcome, decision.reason
    assert decision.passes == (outcome != REFUSED)
    key = "test_rmse" if rule.metric == "rmse" else "test_ndcg_at_10"
    assert (decision.candidate, decision.serving) == (candidate.metrics[key], SERVING.metrics[key])


def test_a_refusal_names_both_numbers_and_a_forced_pass_says_why() -> None:
    refused = decide(_model("b", rmse=1.1504), _model("a", rmse=0.9391), GateRule("rmse"))
    assert refused.outcome == REFUSED
    assert "1.1504" in refused.reason and "0.9391" in refused.reason and "lower is better" in refused.reason
    forced = decide(_model("b", rmse=1.1504), _model("a", rmse=0.9391), GateRule("rmse", force=True))
    assert forced.outcome == FORCED and forced.reason == f"forced: {refused.reason}"


@pytest.mark.parametrize("other", [{"split": "random"}, {"dataset": "ml-1m"}, {"seed": 7}])
def test_another_dataset_split_or_seed_is_refused_even_if_better(other: dict) -> None:
    decision = decide(_model("b", rmse=0.5, **other), SERVING, GateRule("rmse"))
    assert decision.outcome == REFUSED and "other data" in decision.reason
    assert decide(_model("b", rmse=0.5, **other), SERVING, GateRule("rmse", force=True)).outcome == FORCED


def test_ndcg_of_a_checkpoint_from_before_the_ranking_metrics() -> None:
    decision = decide(_model("b"), _model("a", ndcg=None), GateRule("ndcg@10"))
    assert decision.outcome == REFUSED and decision.serving is None
    assert decision.reason == "the serving model has no NDCG@10 (a checkpoint from before the ranking metrics)"
    assert decide(_model("b"), _model("a", ndcg=None), GateRule("rmse")).outcome == PASSED


def test_nothing_serving_or_the_same_checkpoint_passes() -> None:
    first = decide(_model("b", rmse=3.0), None, GateRule("rmse"))
    assert first.outcome == PASSED and "nothing is serving" in first.reason and first.serving is None
    assert decide(SERVING, SERVING, GateRule("ndcg@10")).outcome == PASSED


def test_bad_rules_are_errors() -> None:
    with pytest.raises(ValueError):
        decide(SERVING, SERVING, GateRule("mae"))
    with pytest.raises(ValueError):
        decide(SERVING, SERVING, GateRule("rmse", tolerance=-1))
