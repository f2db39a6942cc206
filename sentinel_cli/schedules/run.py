"""One run of a schedule: ``sentinel train`` on the current data, then, as the schedule asks,
``sentinel promote`` (the quality gate: promoted, or refused with both numbers) or ``sentinel serve
--canary`` (gated with --promote-if-better). Each step is the CLI's own command in a child process,
so a run does exactly what an operator typing them would, with their exit codes. The outcome is one
JSON object: printed on stdout and, in a CronJob's pod, written to the termination log, where
``status`` reads it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sentinel_cli.schedules.spec import ScheduleRequest

PROMOTED, REFUSED, CANARY, TRAINED, FAILED = "promoted", "refused", "canary", "trained", "failed"
GATE_REFUSED = 1  # promote's (and serve --gate's) exit code for a worse candidate
MESSAGE_LIMIT = 4096  # the kubelet keeps this much of a termination message
DETAIL_LIMIT = 1500


@dataclass(frozen=True)
class Outcome:
    schedule: str
    outcome: str  # promoted, refused, canary, trained, failed
    step: str  # the last step run: train, promote, serve
    exit_code: int
    run_id: str | None = None
    checkpoint: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    detail: str = ""  # the gate's verdict (both numbers) or the failing step's error, as it printed it
    # The gate's decision (promote's -o json): metric, candidate and serving values, reason, verdict.
    gate: dict[str, Any] = field(default_factory=dict)
    finished_at: str = ""
    wall_s: float = 0.0

    def to_json(self) -> str:
        data = asdict(self)
        data["detail"] = self.detail[-DETAIL_LIMIT:]
        text = json.dumps(data, sort_keys=True)
        return text if len(text) <= MESSAGE_LIMIT else json.dumps({**data, "metrics": {}}, sort_keys=True)


def sentinel(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``sentinel ARGS`` in a child process, stdout captured, stderr captured and passed on."""
    process = subprocess.run([sys.executable, "-m", "sentinel_cli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    sys.stderr.write(process.stderr)
    sys.stderr.flush()
    return process


def execute(request: ScheduleRequest, target: str, termination_log: Path | None = None) -> Outcome:
    """Train, then gate, promote or start a canary as ``request`` asks; never raises for a failed step."""
    started = time.monotonic()
    done = _run(request, target)
    outcome = Outcome(**{**done, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "wall_s": round(time.monotonic() - started, 1)})
    if termination_log is not None and termination_log.parent.is_dir():
        try:
            termination_log.write_text(outcome.to_json())
        except OSError:
            pass  # not in a pod (no writable termination log): stdout carries it
    return outcome


def _run(request: ScheduleRequest, target: str) -> dict[str, Any]:
    base = {"schedule": request.name}
    preflight = ["--no-preflight"] if target == "k8s" else []  # it would read every node: not the runs' RBAC
    train = sentinel(["train", "--target", target, "-o", "json", *preflight, *request.train_args])
    if train.returncode != 0:
        return {**base, "outcome": FAILED, "step": "train", "exit_code": train.returncode,
                "detail": _error(train)}
    report = json.loads(train.stdout)
    checkpoint = (report.get("checkpoints") or {}).get("best")
    found = {**base, "run_id": report.get("run_id"), "checkpoint": checkpoint, "metrics": report.get("metrics") or {}}
    if not checkpoint:
        return {**found, "outcome": FAILED, "step": "train", "exit_code": 1,
                "detail": "the training run reported no checkpoint (its index record could not be read)"}
    if request.action == "train":
        return {**found, "outcome": TRAINED, "step": "train", "exit_code": 0}
    step, args = _next_step(request, target, checkpoint)
    done = sentinel([*args, "-o", "json"])
    gate = _gate(done.stdout) if request.promote_if_better else {}
    found["gate"] = gate
    if done.returncode == 0:
        return {**found, "outcome": PROMOTED if step == "promote" else CANARY, "step": step, "exit_code": 0,
                "detail": gate.get("reason", "")}
    refused = gate.get("verdict") == "refused" and done.returncode == GATE_REFUSED
    return {**found, "outcome": REFUSED if refused else FAILED, "step": step, "exit_code": done.returncode,
            "detail": _error(done)}


def _next_step(request: ScheduleRequest, target: str, checkpoint: str) -> tuple[str, list[str]]:
    gate = ["--metric", request.metric] + (["--tolerance", f"{request.tolerance:g}"]
                                           if request.tolerance is not None else [])
    if request.canary is None:
        return "promote", ["promote", checkpoint, "--target", target, *gate]
    canary = ["serve", "--checkpoint", checkpoint, "--target", target, "--canary", f"{request.canary:g}"]
    return "serve", canary + (["--gate", *gate] if request.promote_if_better else [])


def _gate(stdout: str) -> dict[str, Any]:
    """The gate's decision from promote's (or serve --gate's) JSON: both numbers and why; {} if none."""
    try:
        report = json.loads(stdout)
    except ValueError:
        return {}
    if not isinstance(report, dict) or "reason" not in report:
        return {}
    return {"verdict": report.get("outcome"), "metric": report.get("metric"), "reason": report.get("reason"),
            "tolerance": report.get("tolerance"),
            "candidate": (report.get("candidate") or {}).get("value"),
            "serving": (report.get("serving") or {}).get("value")}


def _error(process: subprocess.CompletedProcess[str]) -> str:
    """What a failed step said: its `error:` and `next:` lines (the whole stderr's end otherwise)."""
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(("error:", "next:"))]
    return "\n".join(said or lines[-5:])
