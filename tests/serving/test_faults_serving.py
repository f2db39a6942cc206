"""Serving survives its faults (issue 16, items 3-5), on a real detached local Ray with real Serve and
HAProxy, under real load on loopback (``wrk`` when installed, else the bounded asyncio client of
tests/support/load.py), faults injected by killing real processes:

* a rollout (`sentinel serve --checkpoint <other>`, then a change of the replica settings) under load
  fails no request, and every answer after it comes from the new checkpoint;
* a SIGKILLed replica process is replaced by Serve (2 RUNNING again), and HAProxy replays the requests
  that were inside it (or were sent to it before it was marked down) on the other replica; the few it
  cannot replay (closed unanswered, or cut after the replica's headers had left) the client sends
  again (RFC 9112 §9.3.1);
* `sentinel serve stop` under load lets every request sent before the stop finish, then stops.

Each test collects HAProxy's own request log, so a failure names what HAProxy saw. The figures at
concurrency 64 come from ``python bench/faults.py --only rollout,replica-kill --repeat 10 --haproxy-log``.
"""

from __future__ import annotations

import shutil
import time

import pytest

from tests.support.cli import sentinel_env
from tests.support.load import RequestLoad, drain_report, outcomes
from tests.support.processes import REPLICA, group_ended, kill_one
from tests.support.serving import HaproxyLog, ReplicaWatch, Served
from tests.support.wrk import Wrk
from tests.testenv.process import wait_for

pytestmark = pytest.mark.slow

CONCURRENCY = 64


class Load:
    """wrk where installed, else the asyncio client; ``result()``: requests and failed (and the detail).

    ``retry_unanswered`` takes the asyncio client even where wrk is installed: only it resends a request
    that HAProxy closed unanswered (see RequestLoad)."""

    def __init__(self, url: str, workdir, duration_s: float, retry_unanswered: bool = False) -> None:
        use_wrk = shutil.which("wrk") and not retry_unanswered
        self.wrk = Wrk(url, workdir, CONCURRENCY, duration_s) if use_wrk else None
        self.client = None if self.wrk else RequestLoad(url, CONCURRENCY, duration_s,
                                                        retry_unanswered=retry_unanswered)

    def result(self) -> dict:
        """requests, failed, errors (the detail) and http_errors (answers with an error status); from the
        asyncio client also resent (requests sent again) and details (each failure's exception)."""
        if self.wrk:
            result = self.wrk.result()
            return {**result, "http_errors": result["errors"]["status"]}
        counts = outcomes(self.client.wait())
        return {"requests": sum(counts.values()), "failed": sum(n for k, n in counts.items() if k != "ok"),
                "errors": counts, "http_errors": sum(n for k, n in counts.items() if k.startswith("status")),
                "resent": self.client.client_retries, "resent_after": self.client.resent,
                "details": self.client.details}

    def stop(self) -> None:
        if self.wrk:
            self.wrk.stop()
        else:
            self.client.stop()

    def answered(self) -> int:
        """Requests answered 200 so far (the asyncio client's count: wrk gives its figures at its end)."""
        if self.client is None:
            raise RuntimeError("wrk counts its answers only when it ends; use the asyncio client")
        return self.client.answered()


def _under_load(load, answers: int = 100, timeout_s: float = 60) -> None:
    """Wait until ``load`` has had ``answers`` requests answered: the load runs before the fault."""
    wait_for(f"{answers} requests answered under load",
             lambda: None if load.answered() >= answers else f"{load.answered()} answered so far", timeout_s)


@pytest.fixture
def haproxy_log():
    """HAProxy's own request log, so that a failure names what HAProxy saw (status, termination state,
    replayed or not, replica or fallback proxy)."""
    log = HaproxyLog()
    yield log
    log.stop()


@pytest.fixture
def served(tmp_path, trained_run, dataset_dir, haproxy_log):
    env = sentinel_env(tmp_path / "home", dataset_dir)
    env["SENTINEL_STORAGE"] = trained_run.storage_root
    env["RAY_SERVE_HAPROXY_LOG_TARGET"] = haproxy_log.target
    app = Served(env)
    yield app
    if (tmp_path / "home" / "ray" / "cluster.json").exists():
        app.stop()


def test_rollout_under_load_fails_nothing(served, trained_run, tmp_path, haproxy_log):
    best, last = trained_run.checkpoints["best"], trained_run.checkpoints["last"]
    assert best != last
    served.serve("--checkpoint", best, "--min-replicas", "1", "--max-replicas", "2", timeout=240)
    assert set(served.models(10)) == {best}

    load_started = time.time()
    # The documented client: it resends, once, a request whose connection closed before a whole
    # answer (RFC 9112 §9.3.1; docs/serving.md "Faults"). A cold CI run met one such close during a
    # rollout (`reset`, 1 of 3,348) that a plain client counts as failed.
    load = Load(served.url, tmp_path, duration_s=30, retry_unanswered=True)
    try:
        _under_load(load)
        updated = served.serve("--checkpoint", last, "--min-replicas", "1", "--max-replicas", "2", timeout=180)
        assert updated["checkpoint"] == last
        assert set(served.models()) == {last}  # every answer after the update: the new checkpoint

        rescaled = served.serve("--checkpoint", last, "--min-replicas", "2", "--max-replicas", "2", timeout=180)
        assert rescaled["replicas"].get("RUNNING", 0) >= 1
        assert set(served.models()) == {last}
    finally:
        result = load.result()
    result["haproxy"] = haproxy_log.unusual(load_started)
    assert result["requests"] > 100, str(result)
    assert result["failed"] == 0, str(result)  # a str: pytest prints it whole (HAProxy's log, the details)


def test_killed_replica_is_replaced_under_load(served, trained_run, tmp_path, haproxy_log):
    served.serve("--checkpoint", trained_run.checkpoints["best"], "--min-replicas", "2", "--max-replicas", "2",
                 timeout=240)
    watch = ReplicaWatch(served.env, duration_s=150)
    try:
        watch.wait_running(2, 60)
        load_started = time.time()
        load = Load(served.url, tmp_path, duration_s=20, retry_unanswered=True)
        try:
            _under_load(load)
            killed_at = time.time()
            kill_one(served.leader(), REPLICA, timeout=10)
        finally:
            result = load.result()
        wait_for("2 RUNNING replicas again after the kill (Serve's replacement)",
                 lambda: None if watch.recovered_after(killed_at, 2)[1] is not None
                 else f"last samples: {watch.samples[-3:]}", timeout_s=90)
        back = watch.recovered_after(killed_at, 2)[1]
    finally:
        watch.stop()
    result["haproxy"] = haproxy_log.unusual(load_started)
    recovery = back - killed_at
    print(f"replica kill: {result['failed']} failed of {result['requests']} ({result['errors']}; "
          f"{result['resent']} sent again by the client after their connection closed before a whole answer: "
          f"{result['resent_after']}); "
          f"2 RUNNING again after {recovery:.1f}s; HAProxy's log: {result['haproxy']}")
    assert result["requests"] > 100, str(result)
    # HAProxy replays on the other replica every request that was inside the killed process (closed
    # without an answer) or sent to it before it was marked down (refused): no error answer at all.
    # Ray's default (retry-on conn-failure only) answered 500 for those, and reset the callers of the
    # ones inside (docs/serving.md "Faults": 43 of 116,490). The few it cannot replay (sent on a reused
    # connection to the replica when it died) it closes unanswered, by design, for the client to send
    # again; RequestLoad does, once. So every request is answered, and answered 200.
    assert result["http_errors"] == 0, str(result)
    assert result["failed"] == 0, str(result)


def test_stop_under_load_drains_accepted_requests(served, trained_run, tmp_path):
    served.serve("--checkpoint", trained_run.checkpoints["best"], "--min-replicas", "2", "--max-replicas", "2",
                 timeout=240)
    leader = served.leader()
    load = RequestLoad(served.url, CONCURRENCY, duration_s=90)
    try:
        # Steady state before the stop, as the 5 s sleep this wait replaced gave: stopped after the first
        # 100 answers, the stop met the ramp-up (64 connections opening at once, some refused) and one
        # request sent before it was reset (a full run on 2026-12-07). 512 answers: about 5 s here.
        _under_load(load, answers=8 * CONCURRENCY)
        stop_at = time.time()
        stopped = served.stop()
    finally:
        records = load.stop()
    report = drain_report(records, stop_at)
    print(f"stop under load: {report}")
    assert stopped["stopped"] is True
    assert report["before"].get("ok", 0) > 50, report
    assert report["before_failed"] == 0, report  # no reset for a request sent before the stop
    wait_for("the end of the local Ray cluster's processes", lambda: group_ended(leader), timeout_s=30)
