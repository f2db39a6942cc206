"""The replica's one batching path (pure asyncio: no Ray, no torch).

Every protocol's predictions (``/recommend``, TF-Serving ``:predict``, OIP ``infer`` over REST and gRPC)
go through one ``MicroBatcher``: callers ``submit`` their (users, movies) and await their share of one
forward pass for the whole batch.

When to run a batch is the whole question, and no fixed wait suits every load (measured with
bench/serve.py on 2 cores, docs/serving.md "Throughput"):

* no wait: a batch holds whatever queued while the previous one ran. HTTP requests reach the replica
  together, so that is already a good batch. Serve's gRPC server admits one call per turn of the
  event loop, so under gRPC load at concurrency 64 batches held 1.1 requests on average: every request
  paid a whole batch cycle and the replica spent ~1.4 ms of CPU per request, twice the plain grpcio
  server's. The calls also wait outside the user code, where Serve's autoscaler does not count them,
  so the deployment never scaled past one replica;
* a fixed wait of a few ms (Ray's ``@serve.batch(batch_wait_timeout_s=…)``): gRPC batches of 4-10 and
  35-40% less CPU per request, but HTTP batches idle for the rest of the wait after their burst, and a
  lone caller (concurrency 1) waits the whole time for company that never comes.

So a batch here waits for company only while company keeps coming: up to ``max_wait_s`` in all, and
no longer than ``gap_s`` after the last arrival (HTTP: the burst is in, release; gRPC: calls trickle in
every fraction of a millisecond, keep collecting). ``AdaptiveWait`` turns the waiting off for a lone
caller: after ``LONELY`` batches in a row of one request each it stops waiting, and every
``PROBE_EVERY_S`` it tries again, so a lone caller pays one gap (1 ms) on ``LONELY`` requests a second.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

GAP_S = 0.001  # release a batch once no request arrived for this long (HTTP bursts end; gRPC trickles faster)


class AdaptiveWait:
    """Whether batches wait for company, from the sizes of the batches that ran."""

    # Batches in a row of one request each that end the waiting. Not 3: under gRPC load on a busy
    # machine calls can come more than a gap apart, and a few batches of one in a row happen there too.
    LONELY = 16
    PROBE_EVERY_S = 1.0  # how long batches go without waiting before they try again

    def __init__(self, wait_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.wait_s = max(0.0, wait_s)  # the configured wait (ServeArgs.batch_wait_timeout_s); 0: never wait
        self._clock = clock
        self._lonely = 0
        self._probe_at = 0.0
        self.waiting = self.wait_s > 0

    @property
    def current_s(self) -> float:
        """The longest the next batch waits."""
        return self.wait_s if self.waiting else 0.0

    def after_batch(self, size: int) -> float | None:
        """Record a batch of ``size`` requests; the new wait when it changes, else None."""
        if self.wait_s <= 0:
            return None
        if self.waiting:
            self._lonely = self._lonely + 1 if size <= 1 else 0
            if self._lonely >= self.LONELY:
                self.waiting, self._lonely = False, 0
                self._probe_at = self._clock() + self.PROBE_EVERY_S
                return 0.0
            return None
        if self._clock() >= self._probe_at:
            self.waiting = True
            return self.wait_s
        return None


class MicroBatcher(Generic[T, R]):
    """Callers ``await submit(item)``; ``run`` gets the items of a batch (at most ``max_size``, in
    arrival order) and returns one result per item. ``run`` is synchronous: it holds the event loop
    for the batch, as one forward pass does. An exception from ``run`` goes to every caller of that
    batch; a caller that gave up (cancelled) before its batch ran is left out of it."""

    def __init__(self, run: Callable[[list[T]], Sequence[R]], max_size: int, wait: AdaptiveWait,
                 gap_s: float = GAP_S) -> None:
        self.run = run
        self.max_size = max_size
        self.wait = wait
        self.gap_s = gap_s
        self._pending: deque[tuple[T, asyncio.Future]] = deque()
        self._arrivals = 0
        self._wakeup: asyncio.Future | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, future))
        self._arrivals += 1
        self._wake()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work())
        return await future

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _sleep(self, timeout_s: float | None) -> None:
        """Until a request arrives (or ``timeout_s`` passes)."""
        loop = asyncio.get_running_loop()
        self._wakeup = loop.create_future()
        timer = loop.call_later(timeout_s, self._wake) if timeout_s is not None else None
        try:
            await self._wakeup
        finally:
            if timer is not None:
                timer.cancel()
            self._wakeup = None

    async def _work(self) -> None:
        while True:
            if not self._pending:
                await self._sleep(None)
                continue
            await self._fill()
            batch = [self._pending.popleft() for _ in range(min(self.max_size, len(self._pending)))]
            batch = [(item, future) for item, future in batch if not future.done()]
            if batch:
                self._run(batch)
            await asyncio.sleep(0)  # the callers of this batch answer before the next one starts

    async def _fill(self) -> None:
        """A batch of one waits for company while it keeps coming: at most the current wait in all, at
        most ``gap_s`` after the last arrival. A batch that already has company goes at once."""
        wait_s = self.wait.current_s
        if wait_s <= 0 or len(self._pending) > 1:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while len(self._pending) < self.max_size:
            left = deadline - loop.time()
            if left <= 0:
                return
            seen = self._arrivals
            await self._sleep(min(self.gap_s, left))
            if self._arrivals == seen:
                return  # nobody came for a whole gap

    def _run(self, batch: list[tuple[T, asyncio.Future]]) -> None:
        try:
            results = list(self.run([item for item, _ in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} requests got {len(results)} results")
        except Exception as e:  # noqa: BLE001 - every caller of the batch gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
        else:
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
        self.wait.after_batch(len(batch))
