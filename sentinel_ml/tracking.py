"""MLflow experiment tracking, off the training's critical path.

Importing mlflow and opening a sqlite store costs seconds (more on first use, when the schema is
created). ``Tracker`` therefore runs MLflow in a child process (``python -m sentinel_ml.tracking``)
that starts at once and works on the other core while training runs; the parent only writes JSON
lines to its stdin. ``close()`` waits (bounded) for the child and returns the MLflow run ids.

A tracking failure never fails training: it is reported as a warning and the ids are None.

Protocol, one JSON object per line:
  {"op": "start", "key": K, "name": str, "parent": K|None, "params": {}, "tags": {}}
  {"op": "metrics", "key": K, "metrics": {name: float}, "step": int}
  {"op": "end", "key": K, "status": "FINISHED"|"FAILED"|"KILLED", "tags": {}}
The child answers on stdout with {"key": K, "run_id": str} per started run, or {"error": str}.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from sentinel_ml.paths import default_mlflow_uri

log = logging.getLogger(__name__)

MLFLOW_URI_ENV = "SENTINEL_MLFLOW_URI"
EXPERIMENT = "sentinel"
_CLOSE_TIMEOUT_S = 120
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call


def resolve_tracking_uri(explicit: str | None = None) -> str:
    return explicit or os.environ.get(MLFLOW_URI_ENV) or default_mlflow_uri()


class Tracker:
    """Send tracking events to a child MLflow process. Disabled (all no-ops) when uri is 'off'."""

    def __init__(self, uri: str, experiment: str = EXPERIMENT) -> None:
        self.uri = uri
        self.enabled = uri != "off"
        self.error: str | None = None
        self.run_ids: dict[str, str] = {}
        self._proc: subprocess.Popen | None = None
        if self.enabled:
            if uri.startswith("sqlite:///"):
                os.makedirs(os.path.dirname(uri.removeprefix("sqlite:///")) or ".", exist_ok=True)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "sentinel_ml.tracking", uri, experiment],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

    def start(self, key: str, name: str, params: dict[str, Any], *, parent: str | None = None,
              tags: dict[str, str] | None = None) -> None:
        self._send({"op": "start", "key": key, "name": name, "parent": parent,
                    "params": params, "tags": tags or {}})

    def log_metrics(self, key: str, metrics: dict[str, float], step: int) -> None:
        self._send({"op": "metrics", "key": key, "metrics": metrics, "step": step})

    def end(self, key: str, status: str = "FINISHED", tags: dict[str, str] | None = None) -> None:
        self._send({"op": "end", "key": key, "status": status, "tags": tags or {}})

    @contextlib.contextmanager
    def closing_on_failure(self, key: str, timeout: float = 30) -> Iterator[None]:
        """If the block raises, end run ``key`` as FAILED and close; on success the caller ends it."""
        try:
            yield
        except BaseException:
            self.end(key, "FAILED")
            self.close(timeout=timeout)
            raise

    def close(self, timeout: float = _CLOSE_TIMEOUT_S) -> dict[str, str]:
        """Wait for the child to finish; return key → MLflow run id for the runs it made."""
        if self._proc is None:
            return self.run_ids
        proc, self._proc = self._proc, None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            self.error = f"MLflow did not finish within {timeout:.0f}s"
        except BrokenPipeError:
            out, err = "", ""
        for line in out.splitlines():
            try:
                message = json.loads(line)
            except ValueError:  # not an answer (the child keeps stdout for them; be safe anyway)
                log.debug("MLflow tracking child printed: %s", line)
                continue
            if not isinstance(message, dict):
                continue
            if "error" in message:
                self.error = message["error"]
            else:
                self.run_ids[message["key"]] = message["run_id"]
        if proc.returncode and not self.error:
            self.error = (err.strip().splitlines() or ["MLflow tracking process failed"])[-1]
        if self.error:
            log.warning("MLflow tracking at %s failed: %s", self.uri, self.error)
        return self.run_ids

    def _send(self, message: dict[str, Any]) -> None:
        if self._proc is None or self._proc.stdin is None:
            return
        try:
            self._proc.stdin.write(json.dumps(message, default=str) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._proc.stdin = None  # the child died; close() reports why


def _serve(uri: str, experiment: str) -> int:
    """The child: apply events from stdin to MLflow, report run ids on stdout."""
    import mlflow.entities as entities
    from mlflow import MlflowClient

    try:
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    except Exception as e:  # noqa: BLE001 - any backend failure is reported to the parent
        _answer({"error": f"cannot open MLflow store {uri}: {e}"})
        return 1
    writer = _MlflowWriter(client, experiment_id, entities)
    for events in _arrived(sys.stdin.fileno()):
        writer.apply(events)
    return 0


_PROTOCOL: list[Any] = []  # the child's answer channel: the original stdout (see _own_stdout)


def _own_stdout() -> None:
    """Keep stdout for the protocol alone: MLflow prints to it ("View run … at: http://…" when a run
    ends on a tracking server), which broke the parent's reading of the answers. Everything else
    printed goes to stderr."""
    _PROTOCOL.append(os.fdopen(os.dup(sys.stdout.fileno()), "w"))
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr


def _answer(message: dict[str, Any]) -> None:
    """One line of the protocol's answers to the parent (stdout is the protocol's channel, not a log)."""
    channel = _PROTOCOL[0] if _PROTOCOL else sys.stdout
    channel.write(json.dumps(message) + "\n")
    channel.flush()


class _MlflowWriter:
    """The child's MLflow side: creates and ends runs as events ask, batching each run's metrics."""

    def __init__(self, client, experiment_id: str, entities) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.entities = entities
        self.runs: dict[str, str] = {}  # run key -> MLflow run id
        self.pending: dict[str, list] = {}  # run key -> metrics not yet written

    def apply(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            if event["op"] == "metrics":
                self._queue_metrics(event)
                continue
            self.flush()  # a run's metrics go in before it ends (or before the next run starts)
            try:
                if event["op"] == "start":
                    self._start(event)
                elif event["op"] == "end" and event["key"] in self.runs:
                    self._end(event)
            except Exception as e:  # noqa: BLE001
                _answer({"error": f"MLflow {event['op']} failed: {e}"})
        self.flush()

    def _queue_metrics(self, event: dict[str, Any]) -> None:
        if event["key"] not in self.runs:
            return
        self.pending.setdefault(event["key"], []).extend(
            self.entities.Metric(k.replace("/", "_"), float(v), int(time.time() * 1000), event["step"])
            for k, v in event["metrics"].items()
        )

    def _start(self, event: dict[str, Any]) -> None:
        key = event["key"]
        tags = {k: str(v) for k, v in event["tags"].items()}
        if event.get("parent") in self.runs:
            tags["mlflow.parentRunId"] = self.runs[event["parent"]]
        run = self.client.create_run(self.experiment_id, run_name=event["name"], tags=tags)
        self.runs[key] = run.info.run_id
        params = [self.entities.Param(k, str(v)) for k, v in event["params"].items()]
        self.client.log_batch(self.runs[key], params=params)
        _answer({"key": key, "run_id": self.runs[key]})

    def _end(self, event: dict[str, Any]) -> None:
        run_id = self.runs[event["key"]]
        tags = [self.entities.RunTag(k, str(v)) for k, v in event["tags"].items()]
        if tags:
            self.client.log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, status=event["status"])

    def flush(self) -> None:
        try:
            for key, metrics in self.pending.items():
                for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                    self.client.log_batch(self.runs[key], metrics=metrics[start:start + MAX_METRICS_PER_BATCH])
        except Exception as e:  # noqa: BLE001
            _answer({"error": f"MLflow metrics failed: {e}"})
        finally:
            self.pending.clear()


def _arrived(fd: int):
    """Yield the events that have arrived on ``fd``, as lists: each list is everything readable at
    once, so a backlog (the parent logs every epoch of every trial) is written in a few batches
    instead of one sqlite transaction per epoch."""
    buffer = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        while chunk and select.select([fd], [], [], 0)[0]:
            more = os.read(fd, 1 << 16)
            if not more:
                break
            chunk += more
        if not chunk:
            return
        *lines, buffer = (buffer + chunk).split(b"\n")
        yield [json.loads(line) for line in lines if line.strip()]


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    # Bookkeeping must not compete with training for the CPU: importing mlflow alone is ~2 CPU-s,
    # on a 2-core machine during the seconds Ray and the first trials start up. Niced, the child
    # runs in the gaps and still has the whole backlog written when the job ends.
    os.nice(10)
    _own_stdout()
    code = _serve(sys.argv[1], sys.argv[2])
    # Every write is committed and every answer flushed: skip the interpreter teardown (~0.6 s with
    # mlflow and SQLAlchemy loaded), which the parent would otherwise wait for at the end of each job.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
