"""Load on POST /recommend from a bounded asyncio client that records every request, and what the
records say: each outcome's count, and what a stop under load did to the requests around it."""

from __future__ import annotations

import threading
import time

# httpcore's messages for a connection closed before any byte of the response arrived, and for one
# closed after the status line and headers but before the whole body (a replica killed mid-answer:
# HAProxy had already passed the 200 on, so it cannot replay the request; its log says SD--).
UNANSWERED = "Server disconnected without sending a response"
HALF_ANSWERED = "peer closed connection without sending complete message body"
VERSION_HEADER = "x-sentinel-model-version"  # sentinel_ml.serving.canary's (this module imports no Sentinel)


class RequestLoad:
    """A bounded asyncio client (httpx) keeping ``concurrency`` POST /recommend requests in flight; every
    request is recorded as (sent, done, outcome), outcome one of ok, status <code>, refused, reset,
    timeout. It stops by itself after ``duration_s`` or ``max_requests``, or when ``stop()`` is called.

    ``retry_unanswered``: send a request once more, on a new connection, when its connection was
    closed before a whole answer arrived: before any byte of it, or after the headers but before the
    whole body (RFC 9112 §9.3.1 allows a client to resend such an aborted request when it knows it is
    idempotent; every call of this API is). HAProxy closes a reused client connection unanswered, with
    no log line, when the replica's connection it reused dies before answering: its signal that it
    never processed the request and the client may send it again (haproxy/haproxy#1423, #3414). A
    replica killed after its headers left but before its body did cannot be replayed by HAProxy at
    all (the 200 is already on its way; HAProxy logs SD--): only the client can. ``client_retries``
    counts the resends; ``details`` counts every failure by its exception's text."""

    def __init__(self, url: str, concurrency: int = 64, duration_s: float = 60.0, max_requests: int = 200_000,
                 timeout_s: float = 30.0, retry_unanswered: bool = False,
                 headers: dict[str, str] | None = None) -> None:
        self.url, self.concurrency, self.duration_s = url, concurrency, duration_s
        self.headers = headers or {}  # sent with every request (e.g. the serving token)
        self.versions: list[tuple[float, str]] = []  # (done, x-sentinel-model-version) of each 200
        self.max_requests, self.timeout_s, self.retry_unanswered = max_requests, timeout_s, retry_unanswered
        self.records: list[tuple[float, float, str]] = []
        self.details: dict[str, int] = {}
        self.resent: dict[str, int] = {}  # the resends by what the connection met: unanswered, half-answered
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._main, name="request-load", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        import asyncio

        asyncio.run(self._run())

    async def _run(self) -> None:
        import asyncio
        import random

        import httpx

        rng = random.Random(42)
        end = time.monotonic() + self.duration_s
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits) as client:
            async def worker() -> None:
                while not self._halt.is_set() and time.monotonic() < end and len(self.records) < self.max_requests:
                    body = {"user_id": rng.randint(1, 943), "movie_ids": [rng.randint(1, 1682) for _ in range(10)]}
                    sent = time.time()
                    error: Exception | None = None
                    try:
                        response = await self._post(client, body)
                        outcome = "ok" if response.status_code == 200 else f"status {response.status_code}"
                        if outcome == "ok" and VERSION_HEADER in response.headers:
                            self.versions.append((time.time(), response.headers[VERSION_HEADER]))
                    except httpx.ConnectError as e:
                        outcome, error = "refused", e
                    except httpx.TimeoutException as e:
                        outcome, error = "timeout", e
                    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as e:
                        outcome, error = "reset", e
                    except httpx.HTTPError as e:
                        outcome, error = type(e).__name__, e
                    self.records.append((sent, time.time(), outcome))
                    if error is not None:
                        detail = f"{outcome}: {type(error).__name__}: {error}"
                        self.details[detail] = self.details.get(detail, 0) + 1
                    if outcome != "ok":
                        await asyncio.sleep(0.05)  # a refused connect returns at once: no busy loop

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _post(self, client, body: dict):
        import httpx

        try:
            return await client.post(self.url, json=body, headers=self.headers)
        except httpx.RemoteProtocolError as e:
            if not (self.retry_unanswered and (UNANSWERED in str(e) or HALF_ANSWERED in str(e))):
                raise
            kind = "unanswered" if UNANSWERED in str(e) else "half-answered"
            self.resent[kind] = self.resent.get(kind, 0) + 1
            return await client.post(self.url, json=body, headers=self.headers)

    def answered(self) -> int:
        """Requests answered 200 so far."""
        return sum(1 for _, _, outcome in list(self.records) if outcome == "ok")

    @property
    def client_retries(self) -> int:
        return sum(self.resent.values())

    def stop(self, timeout_s: float = 60.0) -> list[tuple[float, float, str]]:
        """Stop sending; wait (bounded) for the requests in flight; every record."""
        self._halt.set()
        self._thread.join(timeout_s)
        return list(self.records)

    def wait(self) -> list[tuple[float, float, str]]:
        self._thread.join(self.duration_s + self.timeout_s + 30)
        return self.stop()


def outcomes(records: list[tuple[float, float, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, _, outcome in records:
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def drain_report(records: list[tuple[float, float, str]], stop_at: float) -> dict:
    """Requests sent before ``stop_at`` and after it. A request the server accepted must succeed
    (a reset or an error fails it); one whose connection was refused was never accepted: one sent
    just before ``stop_at`` may still meet the closed listener."""
    before = [r for r in records if r[0] < stop_at]
    after = [r for r in records if r[0] >= stop_at]
    return {"before": outcomes(before), "after": outcomes(after),
            "before_failed": sum(1 for r in before if r[2] not in ("ok", "refused")),
            "in_flight_at_stop": sum(1 for r in before if r[1] >= stop_at),
            "last_ok_s": max((r[1] for r in records if r[2] == "ok"), default=stop_at) - stop_at}
