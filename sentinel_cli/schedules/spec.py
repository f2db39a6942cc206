"""What a schedule is (``ScheduleRequest``) and the command line each of its runs executes: the same
``sentinel schedule run`` in a CronJob's pod and in a crontab line. Pure."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from sentinel_cli.gate import GATE_METRICS as METRICS  # what `sentinel promote --metric` compares
from sentinel_ml.errors import ConfigError

DEFAULT_NAME = "sentinel-retrain"
NAME_LIMIT = 52  # a CronJob's Jobs are named <cronjob>-<11 characters>: 63 in all


@dataclass(frozen=True)
class ScheduleRequest:
    """A retraining schedule: when, the train flags of each run, and what happens to its result."""

    name: str
    cron: str  # validated (cron.validate)
    train_args: tuple[str, ...] = ()  # `sentinel train` flags, as the user wrote them
    promote_if_better: bool = False  # gate against what serves: promote, or refuse (exit 1)
    metric: str = "rmse"
    tolerance: float | None = None  # None: promote's default
    canary: float | None = None  # percent of users the candidate serves first (serve --canary)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"--metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if self.canary is not None and not 0 < self.canary < 100:
            raise ConfigError(f"--canary {self.canary:g}: the candidate's share of users must be between 0 and "
                              "100 percent", hint="for example --canary 10")
        reserved = sorted({a.split("=", 1)[0] for a in self.train_args} & RESERVED)
        if reserved:
            raise ConfigError(f"{', '.join(reserved)} cannot be a train flag of a schedule: each run sets it",
                              hint="leave it out; the schedule's own --target, --name, -o apply")

    @property
    def action(self) -> str:
        """What a run does with its candidate: promote, canary, or nothing (trained only)."""
        if self.canary is not None:
            return "canary"
        return "promote" if self.promote_if_better else "train"


def describe(request: ScheduleRequest) -> str:
    """What each run does with its candidate, in words (shown by `schedule list` and `status`)."""
    gate = f"if better by {request.metric}" + (f" (tolerance {request.tolerance:g})"
                                              if request.tolerance is not None else "")
    if request.canary is not None:
        return f"canary {request.canary:g}%" + (f" {gate}" if request.promote_if_better else "")
    return f"promote {gate}" if request.promote_if_better else "train only"


# Flags each run gives `sentinel train` itself (the target, JSON output to read the result, the
# RayJob's name from the run id, no capacity preflight: it would need to read every node).
RESERVED = frozenset({"--target", "-o", "--output", "--name", "--wait", "--no-wait", "--dry-run"})


def run_args(request: ScheduleRequest, target: str) -> list[str]:
    """``sentinel``'s arguments for one run of ``request`` on ``target`` (after the executable)."""
    args = ["schedule", "run", "--name", request.name, "--target", target]
    if request.promote_if_better:
        args += ["--promote-if-better", "--metric", request.metric]
        if request.tolerance is not None:
            args += ["--tolerance", f"{request.tolerance:g}"]
    if request.canary is not None:
        args += ["--canary", f"{request.canary:g}"]
    return [*args, "--", *request.train_args]


def crontab_line(request: ScheduleRequest, executable: list[str], workdir: Path, log: Path) -> str:
    """The crontab(5) line that runs ``request`` locally: in ``workdir``, output appended to ``log``.
    Every word is shell-quoted; ``%`` (a newline to cron) is escaped."""
    command = shlex.join([*executable, *run_args(request, "local")])
    line = f"{request.cron} cd {shlex.quote(str(workdir))} && {command} >> {shlex.quote(str(log))} 2>&1"
    return line.replace("%", r"\%")
