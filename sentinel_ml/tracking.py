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

import json
import logging
import os
import select
import subprocess
import sys
import time
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
            message = json.loads(line)
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

    def answer(message: dict[str, Any]) -> None:
        print(json.dumps(message), flush=True)

    try:
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    except Exception as e:  # noqa: BLE001 - any backend failure is reported to the parent
        answer({"error": f"cannot open MLflow store {uri}: {e}"})
        return 1
    runs: dict[str, str] = {}
    pending: dict[str, list] = {}  # run key -> metrics not yet written

    def flush() -> None:
        try:
            for key, metrics in pending.items():
                for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                    client.log_batch(runs[key], metrics=metrics[start:start + MAX_METRICS_PER_BATCH])
        except Exception as e:  # noqa: BLE001
            answer({"error": f"MLflow metrics failed: {e}"})
        finally:
            pending.clear()

    for events in _arrived(sys.stdin.fileno()):
        for event in events:
            key = event["key"]
            if event["op"] == "metrics":
                if key in runs:
                    pending.setdefault(key, []).extend(
                        entities.Metric(k.replace("/", "_"), float(v), int(time.time() * 1000), event["step"])
                        for k, v in event["metrics"].items()
                    )
                continue
            flush()  # a run's metrics go in before it ends (or before the next run starts)
            try:
                if event["op"] == "start":
                    tags = {k: str(v) for k, v in event["tags"].items()}
                    if event.get("parent") in runs:
                        tags["mlflow.parentRunId"] = runs[event["parent"]]
                    run = client.create_run(experiment_id, run_name=event["name"], tags=tags)
                    runs[key] = run.info.run_id
                    params = [entities.Param(k, str(v)) for k, v in event["params"].items()]
                    client.log_batch(runs[key], params=params)
                    answer({"key": key, "run_id": runs[key]})
                elif event["op"] == "end" and key in runs:
                    tags = [entities.RunTag(k, str(v)) for k, v in event["tags"].items()]
                    if tags:
                        client.log_batch(runs[key], tags=tags)
                    client.set_terminated(runs[key], status=event["status"])
            except Exception as e:  # noqa: BLE001
                answer({"error": f"MLflow {event['op']} failed: {e}"})
        flush()
    return 0


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
    code = _serve(sys.argv[1], sys.argv[2])
    # Every write is committed and every answer flushed: skip the interpreter teardown (~0.6 s with
    # mlflow and SQLAlchemy loaded), which the parent would otherwise wait for at the end of each job.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
