"""The quality gate of ``sentinel promote`` and ``serve --gate``: whether a candidate checkpoint may
replace what is serving. Pure: typed inputs, a typed decision, no I/O (``commands/promote.py`` reads
the two models' evaluations and acts on the decision).

The rule (docs/serving.md, "The quality gate"):

- Nothing serving: pass (the candidate is the first model).
- The two must have been measured on the same evaluation: the same dataset, split and seed (the seed
  draws the random split and every split's validation holdout). Otherwise: refused.
- The primary metric (``rmse``: the test RMSE, lower is better; ``ndcg@10``: higher is better) must be
  known for both. A checkpoint from before the ranking metrics has no NDCG@10: refused, saying so.
- The candidate passes when it is no worse than the serving model by more than ``tolerance``
  (absolute, in the metric's units): ``candidate <= serving + tolerance`` for RMSE,
  ``candidate >= serving - tolerance`` for NDCG.
- ``force`` turns any refusal into a pass, and the decision says it was forced and why it would
  have been refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sentinel_ml.models.metrics import NDCG, TEST_RMSE

# --metric choice -> (the key runs record, whether higher is better, how it is shown)
METRICS: dict[str, tuple[str, bool, str]] = {
    "rmse": (TEST_RMSE, False, "test RMSE"),
    "ndcg@10": (NDCG, True, "NDCG@10"),
}
GATE_METRICS = tuple(METRICS)
DEFAULT_METRIC = "rmse"
EVALUATION_KEYS = ("dataset", "split", "seed")  # what "the same evaluation" compares

PASSED, REFUSED, FORCED = "passed", "refused", "forced"


@dataclass(frozen=True)
class Evaluation:
    """One model as the gate sees it: its checkpoint, the data it was measured on, its test metrics."""

    checkpoint: str
    run_id: str | None
    dataset: str | None
    split: str | None
    seed: int | None
    metrics: dict[str, float] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in EVALUATION_KEYS}

    def describe(self) -> str:
        """``ml-100k, split u1, seed 42``"""
        return f"{self.dataset or '?'}, split {self.split or '?'}, seed {self.seed if self.seed is not None else '?'}"


@dataclass(frozen=True)
class GateRule:
    metric: str = DEFAULT_METRIC
    tolerance: float = 0.0
    force: bool = False


@dataclass(frozen=True)
class GateDecision:
    outcome: str  # passed | refused | forced
    reason: str  # one sentence: why
    metric: str  # the --metric choice
    candidate: float | None
    serving: float | None
    tolerance: float
    higher_is_better: bool

    @property
    def passes(self) -> bool:
        return self.outcome != REFUSED


def decide(candidate: Evaluation, serving: Evaluation | None, rule: GateRule) -> GateDecision:
    """The gate's decision for ``candidate`` against ``serving`` (None: nothing serves) under ``rule``."""
    if rule.metric not in METRICS:
        raise ValueError(f"unknown gate metric {rule.metric!r}; one of {', '.join(GATE_METRICS)}")
    if rule.tolerance < 0:
        raise ValueError("the gate's tolerance cannot be negative")
    key, higher, label = METRICS[rule.metric]
    mine = _number(candidate.metrics.get(key))
    theirs = _number(serving.metrics.get(key)) if serving is not None else None

    def outcome(passed: bool, reason: str) -> GateDecision:
        if not passed and rule.force:
            return GateDecision(FORCED, f"forced: {reason}", rule.metric, mine, theirs, rule.tolerance, higher)
        return GateDecision(PASSED if passed else REFUSED, reason, rule.metric, mine, theirs, rule.tolerance, higher)

    if serving is None:
        return outcome(True, "nothing is serving: the candidate is the first model")
    if candidate.checkpoint == serving.checkpoint:
        return outcome(True, "the candidate is the checkpoint already serving")
    if candidate.data() != serving.data():
        return outcome(False, f"measured on other data: the candidate on {candidate.describe()}, the serving "
                              f"model on {serving.describe()}; their {label}s are not comparable")
    missing = [who for who, value in (("the candidate", mine), ("the serving model", theirs)) if value is None]
    if missing:
        why = " (a checkpoint from before the ranking metrics)" if key == NDCG else ""
        return outcome(False, f"{' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no {label}{why}")
    margin = (mine - theirs) if higher else (theirs - mine)  # > 0: the candidate is better
    if margin >= -rule.tolerance:
        if margin >= 0:
            return outcome(True, f"{label} {_f(mine)} is no worse than the serving model's {_f(theirs)}")
        return outcome(True, f"{label} {_f(mine)} is worse than the serving model's {_f(theirs)} by "
                             f"{_f(-margin)}, within the tolerance {_f(rule.tolerance)}")
    return outcome(False, f"{label} {_f(mine)} is worse than the serving model's {_f(theirs)} by {_f(-margin)} "
                          f"(tolerance {_f(rule.tolerance)}; {'higher' if higher else 'lower'} is better)")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _f(value: float) -> str:
    return f"{value:.4f}"
