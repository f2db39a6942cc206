"""A canary's whole cycle on Kubernetes under load: ``serve --canary``, ``serve promote``, a canary
again and ``serve rollback``, while ``concurrency`` clients keep POSTing /recommend to the RayService's
Service. Every request must succeed, and the answers' ``x-sentinel-model-version`` must show each
change: both versions during a canary, the candidate alone after promote, the incumbent alone after
rollback. Each phase waits only until the answers show its effect.

Callable with any namespace that serves a RayService (the real-node test's own, or the lifecycle's
after its serve step): ``cli`` runs ``sentinel …`` with that namespace's profile and fails on a non-zero
exit; ``url`` is the Service's HTTP address reachable from here; ``token`` the serving token (or None).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.load import RequestLoad, outcomes

ALONE_WINDOW_S = 3.0  # a version serves alone when every answer of this many seconds came from it
ALONE_MIN_ANSWERS = 30  # ... and there were at least this many (c=64: hundreds a second)
POLL_S = 0.25


@dataclass
class CanaryCycle:
    phases: list[tuple[str, float, float]] = field(default_factory=list)  # (name, command s, until seen s)
    versions: dict[str, str] = field(default_factory=dict)  # incumbent, candidate, second
    requests: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    details: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [f"{name}: command {command:.1f}s, answers show it after {seen:.1f}s"
                for name, command, seen in self.phases] + [
            f"{self.requests} requests, {self.failed} failed {self.outcomes}; versions {self.versions}"]


def canary_cycle_under_load(cli: Callable[..., Any], url: str, token: str | None, candidate: str,
                            second: str, percent: float = 50, concurrency: int = 64,
                            settle_timeout_s: float = 240.0) -> CanaryCycle:
    """Run the cycle (see the module); the caller asserts ``failed == 0`` (it is returned, with timings,
    so a failure still reports them). ``candidate`` is promoted, ``second`` rolled back."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    load = RequestLoad(url.rstrip("/") + "/recommend", concurrency=concurrency, duration_s=3600,
                       max_requests=10_000_000, headers=headers)
    cycle = CanaryCycle()
    try:
        began = time.time()
        _until("the served version to answer", lambda: _since(load, began), settle_timeout_s, load)
        incumbent = _alone(load, settle_timeout_s, "the incumbent")
        cycle.versions["incumbent"] = incumbent

        def phase(name: str, args: list[str], shows: Callable[[float], str | None]) -> str | None:
            start = time.time()
            cli(*args)
            ran = time.time() - start
            seen = _until(f"{name} in the answers", lambda: shows(start), settle_timeout_s, load)
            cycle.phases.append((name, ran, time.time() - start))
            return seen

        target = ["--target", "k8s", "-o", "json"]
        cycle.versions["candidate"] = phase(
            "canary start", ["serve", "--checkpoint", candidate, "--canary", f"{percent:g}", *target],
            lambda start: _both(load, start, incumbent))
        promoted = cycle.versions["candidate"]
        phase("promote", ["serve", "promote", *target], lambda start: _only(load, start, promoted))
        cycle.versions["second"] = phase(
            "canary again", ["serve", "--checkpoint", second, "--canary", f"{percent:g}", *target],
            lambda start: _both(load, start, promoted))
        phase("rollback", ["serve", "rollback", *target], lambda start: _only(load, start, promoted))
    finally:
        records = load.stop()
        cycle.requests, cycle.outcomes = len(records), outcomes(records)
        cycle.failed = sum(n for outcome, n in cycle.outcomes.items() if outcome != "ok")
        cycle.details = dict(load.details)
    return cycle


def _since(load: RequestLoad, start: float) -> list[str]:
    return [version for done, version in list(load.versions) if done >= start]


def _both(load: RequestLoad, start: float, incumbent: str) -> str | None:
    """The new version once answers after ``start`` came from it and from ``incumbent``, else None."""
    seen = set(_since(load, start))
    new = seen - {incumbent}
    return sorted(new)[0] if new and incumbent in seen else None


def _only(load: RequestLoad, start: float, version: str) -> str | None:
    """``version`` once every answer of the last ALONE_WINDOW_S seconds (all after ``start``) came from it."""
    now = time.time()
    if now - start < ALONE_WINDOW_S:
        return None
    recent = _since(load, now - ALONE_WINDOW_S)
    return version if len(recent) >= ALONE_MIN_ANSWERS and set(recent) == {version} else None


def _alone(load: RequestLoad, timeout_s: float, what: str) -> str:
    def one() -> str | None:
        recent = _since(load, time.time() - ALONE_WINDOW_S)
        return recent[0] if len(recent) >= ALONE_MIN_ANSWERS and len(set(recent)) == 1 else None

    return _until(f"{what} alone in the answers", one, timeout_s, load)


def _until(what: str, found: Callable[[], Any], timeout_s: float, load: RequestLoad) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"{what}: not within {timeout_s:.0f}s; outcomes so far {outcomes(load.records)}, "
                         f"failures {load.details}")
