"""``sentinel serve promote --auto``: watch a running canary's live per-version metrics for a bounded
window and decide. The rules are ``sentinel_ml.serving.canary.breach``; the metrics and the ending come
from the target (``read`` and ``end``), so this loop keeps no state of its own: the canary lives in the
serving objects, and an interrupted watch leaves it running, for ``status`` to show and
``serve promote`` or ``serve rollback`` to end."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sentinel_ml.serving.canary import Thresholds, VersionStats, breach


@dataclass(frozen=True)
class WatchRequest:
    window_s: float
    limits: Thresholds
    interval_s: float = 5.0


@dataclass(frozen=True)
class Verdict:
    decision: str  # promote | rollback | undecided (too few requests: the canary is left as it is)
    reason: str
    watched_s: float
    versions: list[dict[str, Any]]  # what each version did during the window (VersionStats.summary)
    breach_at: float | None = None  # time.monotonic() of the reading that found the breach


def watch(request: WatchRequest, candidate: str, incumbent: str,
          read: Callable[[], Mapping[str, VersionStats]], say: Callable[[str], None],
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Verdict:
    """Read the metrics every ``interval_s`` and judge what happened since the watch began; the first
    breach ends the watch with ``rollback``, a window without one with ``promote``, or with
    ``undecided`` when the candidate answered fewer than ``min_requests`` (no traffic proves nothing)."""
    start = clock()
    before = dict(read())
    end = start + request.window_s
    say(f"watching canary: candidate {candidate} beside incumbent {incumbent} for "
        f"{_duration(request.window_s)}, reading the metrics every {_duration(request.interval_s)}: promotes "
        f"if it holds, rolls back at the first breach")
    while True:
        sleep(max(0.0, min(request.interval_s, end - clock())))
        now = clock()
        current = read()
        seen = {v: stats.minus(before.get(v)) for v, stats in current.items() if v in (candidate, incumbent)}
        mine, theirs = seen.get(candidate), seen.get(incumbent)
        versions = [s.summary() for s in seen.values()]
        found = breach(mine, theirs, request.limits)
        if found:
            return Verdict("rollback", found, now - start, versions, breach_at=now)
        if now >= end and _counts(mine) < request.limits.min_requests:
            return Verdict("undecided", f"the candidate answered {_counts(mine)} requests in "
                           f"{_duration(request.window_s)}, fewer than --min-requests "
                           f"{request.limits.min_requests}: too few to judge", now - start, versions)
        if now >= end:
            return Verdict("promote", f"the candidate held for {_duration(request.window_s)} "
                           f"({_counts(mine)} requests)", now - start, versions)
        say(f"watching canary: candidate {candidate} {_line(mine)}; incumbent {incumbent} {_line(theirs)}; "
            f"{_duration(end - now)} left: waiting for the window to end or a breach "
            f"(error rate > {request.limits.max_error_rate:.2%}, p99 > {request.limits.max_p99_ratio:g}x; "
            f"judged from {request.limits.min_requests} requests)")


def _counts(stats: VersionStats | None) -> int:
    return int(stats.requests) if stats else 0


def _line(stats: VersionStats | None) -> str:
    if stats is None or not stats.requests:
        return "no requests yet"
    p99 = stats.p99_ms
    return (f"{int(stats.requests)} req, {stats.error_rate:.2%} errors, p99 "
            + (f"{p99:.1f} ms" if p99 is not None else "n/a"))


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1h`` → seconds; ValueError otherwise."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    value = float(number) * unit
    if value <= 0:
        raise ValueError(f"{text} is not a positive duration")
    return value
