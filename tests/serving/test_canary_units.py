"""The canary's pure rules: the stable user split, the metrics' reading, the p99 and the verdicts, the
args that end a canary, and the watch loop's decisions on a scripted sequence of readings."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from sentinel_cli.canary_watch import WatchRequest, parse_duration, watch
from sentinel_ml.serving import canary
from sentinel_ml.serving.canary import Thresholds, VersionStats, breach, quantile_ms
from sentinel_ml.serving.config import ServeArgs


def test_user_buckets_are_pinned_and_independent_of_the_interpreters_hash_seed() -> None:
    # Pinned: a change here moves users between models; the same values in a child with another seed.
    pinned = {1: 2913, "1": 2913, 42: 2637, "alice": 207, "u-9": 7780}
    assert {k: canary.user_bucket(k) for k in pinned} == pinned
    code = "from sentinel_ml.serving import canary; print([canary.user_bucket(k) for k in (1, 42, 'alice')])"
    child = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": "12345"},
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "[2913, 2637, 207]"
    # The rule itself, from its definition: SHA-256 of the id's text, first 8 bytes, modulo BUCKETS.
    assert canary.user_bucket("bob") == int(hashlib.sha256(b"bob").hexdigest()[:16], 16) % canary.BUCKETS


@pytest.mark.parametrize("percent", [1.0, 10.0, 50.0, 12.5])
def test_the_split_serves_the_asked_share_of_users(percent: float) -> None:
    users = range(20_000)
    share = sum(canary.to_candidate(u, percent) for u in users) / len(users) * 100
    assert share == pytest.approx(percent, abs=max(0.5, percent * 0.08))
    # A larger canary keeps every user of a smaller one (the users grow, nobody switches back).
    assert all(canary.to_candidate(u, 50.0) for u in range(2000) if canary.to_candidate(u, percent))


PAGE = """# HELP ray_sentinel_model_requests_total Requests each model version answered.
# TYPE ray_sentinel_model_requests_total counter
ray_sentinel_model_requests_total{application="sentinel",deployment="MovieRecommender",model_version="7",replica="a",role="incumbent"} 90.0
ray_sentinel_model_requests_total{application="sentinel",deployment="MovieRecommender",model_version="7",replica="b",role="incumbent"} 10.0
ray_sentinel_model_requests_total{model_version="8",replica="a",role="candidate"} 40.0
ray_sentinel_model_errors_total{model_version="8",replica="a",role="candidate"} 4.0
ray_sentinel_model_latency_ms_bucket{le="1.0",model_version="7",replica="a",role="incumbent"} 50.0
ray_sentinel_model_latency_ms_bucket{le="2.0",model_version="7",replica="a",role="incumbent"} 90.0
ray_sentinel_model_latency_ms_bucket{le="+Inf",model_version="7",replica="a",role="incumbent"} 90.0
ray_sentinel_model_latency_ms_bucket{le="1.0",model_version="7",replica="b",role="incumbent"} 10.0
ray_sentinel_model_latency_ms_bucket{le="2.0",model_version="7",replica="b",role="incumbent"} 10.0
ray_sentinel_model_latency_ms_bucket{le="+Inf",model_version="7",replica="b",role="incumbent"} 10.0
ray_sentinel_model_latency_ms_count{model_version="7",replica="b",role="incumbent"} 10.0
ray_other_metric{model_version="7"} 5
"""


def test_metrics_are_summed_over_replicas_per_version() -> None:
    stats = canary.parse_metrics(PAGE)
    assert set(stats) == {"7", "8"}
    assert (stats["7"].requests, stats["7"].errors, stats["7"].role) == (100, 0, "incumbent")
    assert (stats["8"].requests, stats["8"].errors, stats["8"].error_rate) == (40, 4, 0.1)
    assert stats["7"].buckets == {1.0: 60, 2.0: 100, float("inf"): 100}
    # 99th of 100 observations: the 39th of the 40 in (1, 2] ms, interpolated as histogram_quantile does.
    assert stats["7"].p99_ms == pytest.approx(1.0 + 39 / 40)
    assert stats["8"].p99_ms is None


def test_quantile_and_window_deltas() -> None:
    assert quantile_ms({1.0: 0, 2.0: 0}, 0.99) is None
    assert quantile_ms({1.0: 10, float("inf"): 20}, 0.99) == 1.0  # beyond the last bound: the last bound
    early = VersionStats("8", "candidate", 100, 1, {1.0: 100, float("inf"): 100})
    late = VersionStats("8", "candidate", 150, 11, {1.0: 100, 10.0: 150, float("inf"): 150})
    window = late.minus(early)
    assert (window.requests, window.errors, window.error_rate) == (50, 10, 0.2)
    assert window.p99_ms == pytest.approx(1.0 + 9 * 49.5 / 50)


def test_breach_names_the_rule_and_needs_enough_requests() -> None:
    limits = Thresholds(max_error_rate=0.05, max_p99_ratio=1.5, min_requests=20)
    fast = {1.0: 100, float("inf"): 100}
    slow = {1.0: 0, 4.0: 100, float("inf"): 100}
    incumbent = VersionStats("7", "incumbent", 100, 0, fast)
    assert breach(VersionStats("8", "candidate", 19, 19, fast), incumbent, limits) is None  # too few to judge
    assert "error rate 10.00% of version 8 is above --max-error-rate 5.00%" in breach(
        VersionStats("8", "candidate", 100, 10, fast), incumbent, limits)
    assert "above --max-p99-ratio 1.5" in breach(VersionStats("8", "candidate", 100, 0, slow), incumbent, limits)
    assert breach(VersionStats("8", "candidate", 100, 0, fast), incumbent, limits) is None


def test_ending_a_canary_keeps_every_other_setting() -> None:
    args = ServeArgs.model_validate({"checkpoint": "/a/best.pt", "run_id": "train-a", "max_batch_size": 8,
                                     "canary_checkpoint": "/b/best.pt", "canary_run_id": "train-b",
                                     "canary_percent": 10, "canary_model_version": 42, "canary_fault_rate": 0.5})
    assert args.canary == {"checkpoint": "/b/best.pt", "run_id": "train-b", "percent": 10, "model_version": 42}
    promoted = args.ended("promote")
    assert (promoted.checkpoint, promoted.run_id, promoted.model_version) == ("/b/best.pt", "train-b", 42)
    rolled = args.ended("rollback")
    assert (rolled.checkpoint, rolled.run_id, rolled.model_version) == ("/a/best.pt", "train-a", None)
    for ended in (promoted, rolled):
        assert ended.canary is None and ended.canary_fault_rate == 0 and ended.max_batch_size == 8
    with pytest.raises(ValueError, match="needs both"):
        ServeArgs.model_validate({"checkpoint": "/a", "canary_checkpoint": "/b"})
    with pytest.raises(ValueError, match="without a canary_checkpoint"):
        ServeArgs.model_validate({"checkpoint": "/a", "canary_fault_rate": 0.5})


def _readings(*steps):
    """A scripted metrics source: each reading is {version: (requests, errors)} with fast latencies."""
    it = iter(steps)

    def read():
        step = next(it)
        return {v: VersionStats(v, "", r, e, {1.0: r, float("inf"): r}) for v, (r, e) in step.items()}
    return read


def test_watch_rolls_back_at_the_first_breach_and_promotes_after_a_quiet_window() -> None:
    clock = [0.0]
    request = WatchRequest(window_s=30, limits=Thresholds(0.05, 1.5, 20), interval_s=10)
    said: list[str] = []

    def sleep(s):
        clock[0] += s

    breach_read = _readings({"7": (0, 0), "8": (5, 5)},  # errors before the watch do not count
                            {"7": (100, 0), "8": (30, 5)},  # 0 of 25 new requests fail
                            {"7": (200, 0), "8": (60, 15)})  # 10 of 55 fail: a breach
    verdict = watch(request, "8", "7", breach_read, said.append, clock=lambda: clock[0], sleep=sleep)
    assert verdict.decision == "rollback" and "version 8" in verdict.reason and verdict.breach_at == 20
    assert len(said) == 2 and "for 30s" in said[0] and "25 req" in said[1] and "left" in said[1]

    clock[0] = 0.0
    quiet = _readings({"7": (0, 0), "8": (0, 0)}, {"7": (50, 0), "8": (20, 0)}, {"7": (100, 0), "8": (40, 0)},
                      {"7": (150, 0), "8": (60, 0)})
    verdict = watch(request, "8", "7", quiet, said.append, clock=lambda: clock[0], sleep=sleep)
    assert verdict.decision == "promote" and verdict.watched_s == 30 and "60 requests" in verdict.reason

    clock[0] = 0.0  # no traffic proves nothing: neither promoted nor rolled back
    idle = _readings({"7": (0, 0), "8": (0, 0)}, {"7": (5, 0), "8": (1, 0)}, {"7": (9, 0), "8": (2, 0)},
                     {"7": (12, 0), "8": (3, 0)})
    verdict = watch(request, "8", "7", idle, said.append, clock=lambda: clock[0], sleep=sleep)
    assert verdict.decision == "undecided" and "answered 3 requests" in verdict.reason


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "10m", "1h")] == [90, 90, 600, 3600]
    with pytest.raises(ValueError):
        parse_duration("-1m")


def test_a_share_outside_0_to_100_percent_is_refused() -> None:
    from sentinel_ml.errors import ConfigError
    from sentinel_ml.serving.config import ServeRequest

    with pytest.raises(ConfigError, match="is not a share of users"):
        ServeRequest(canary_percent=100).validate()
