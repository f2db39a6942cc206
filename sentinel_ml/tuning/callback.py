"""The driver's view of a study's trials: a Ray Tune callback that keeps each trial's summary, drives the
live progress and records MLflow child runs (params, per-epoch metrics, final state)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentinel_ml.tracking import Tracker
from sentinel_ml.tuning.trial import PLACEMENT_GROUP, RESUMED_FROM

log = logging.getLogger(__name__)

ProgressHook = Callable[[dict[str, Any]], None]
METRIC = "val_rmse"
COMPLETED, STOPPED, FAILED, RUNNING = "completed", "stopped early", "failed", "running"


@dataclass
class TrialSummary:
    trial_id: str
    config: dict[str, Any]
    state: str = RUNNING
    epochs: int = 0
    val_rmse: float | None = None  # best epoch's
    best_epoch: int | None = None
    error: str | None = None
    restarts: int = 0  # after a lost worker (or a retry of a failed trial), each from its last checkpoint
    resumed_from_epochs: list[int] = field(default_factory=list)  # the first epoch each restart trained


class _StudyRecorder:
    """What the study's Tune callback does, with Tune's hook signatures; plain Python, so importing
    this module does not import ``ray.tune`` (``study_callback`` mixes it into a ``Callback``)."""

    def __init__(self, tracker: Tracker, notify: ProgressHook, max_epochs: int) -> None:
        self.tracker = tracker
        self.notify = notify
        self.max_epochs = max_epochs
        self.trials: dict[str, TrialSummary] = {}
        # Multi-worker trials: their Ray Train workers' placement group and latest checkpoint.
        self.groups: dict[str, str] = {}
        self.checkpoint_paths: dict[str, str] = {}
        # When the first trial started and the last one ended (time.monotonic()).
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.recovering: set[str] = set()  # restarted by Tune, first result not seen yet

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config to save experiment state; the live callback stays here.
        return {**self.__dict__, "tracker": None, "notify": None}

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if trial.trial_id in self.trials:  # Tune started a restarted trial's new actor
            return
        config = dict(trial.config)
        self.first_start = self.first_start or time.monotonic()
        self.trials[trial.trial_id] = TrialSummary(trial.trial_id, config)
        self.tracker.start(trial.trial_id, f"trial-{trial.trial_id}", config, parent="study",
                           tags={"sentinel.kind": "tune-trial", "sentinel.trial_id": trial.trial_id})
        self._emit("trial", trial.trial_id, config=config)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        """Tune restarts the trial (its actor was lost, or it failed): it resumes from its last checkpoint."""
        summary = self.trials.setdefault(trial.trial_id, TrialSummary(trial.trial_id, dict(trial.config)))
        summary.restarts += 1
        self.recovering.add(trial.trial_id)
        self._emit("trial_restart", trial.trial_id, restarts=summary.restarts, lost=_error_text(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        epoch = int(result["epoch"])
        self._note_resumption(self.trials[trial.trial_id], epoch, result)
        self._score(self.trials[trial.trial_id], epoch, float(result[METRIC]))
        self._keep_distributed_state(trial.trial_id, result)
        self.tracker.log_metrics(trial.trial_id, {k: result[k] for k in ("train_loss", METRIC, "val_mae")}, epoch)
        self._emit("trial_epoch", trial.trial_id, epoch=epoch, max_epochs=self.max_epochs,
                   val_rmse=float(result[METRIC]), pid=result.get("pid"))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        summary = self.trials[trial.trial_id]
        summary.state = COMPLETED if summary.epochs >= self.max_epochs else STOPPED
        self._end(summary)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        summary = self.trials.setdefault(trial.trial_id, TrialSummary(trial.trial_id, dict(trial.config)))
        summary.state, summary.error = FAILED, _error_text(trial)
        self._end(summary)

    def finished(self, grid) -> list[TrialSummary]:
        """Every trial's summary after ``fit``; a trial that never started shows as failed."""
        for result in grid:
            trial_id = result.metrics.get("trial_id") or Path(result.path).name
            if trial_id not in self.trials and result.error is not None:
                self.trials[trial_id] = TrialSummary(trial_id, dict(result.config or {}), FAILED,
                                                     error=_root_cause(result.error))
        return list(self.trials.values())

    def _note_resumption(self, summary: TrialSummary, epoch: int, result: dict[str, Any]) -> None:
        """The first result after a restart: the epoch it resumed from. A multi-worker trial's worker
        group restarts inside its TorchTrainer, unseen by Tune: its first report says so itself."""
        if summary.trial_id in self.recovering:
            self.recovering.discard(summary.trial_id)
            summary.resumed_from_epochs.append(int(result.get(RESUMED_FROM) or epoch))
        elif result.get(RESUMED_FROM):
            summary.restarts += 1
            summary.resumed_from_epochs.append(int(result[RESUMED_FROM]))

    @staticmethod
    def _score(summary: TrialSummary, epoch: int, val_rmse: float) -> None:
        summary.epochs = epoch
        if summary.val_rmse is None or val_rmse < summary.val_rmse:
            summary.val_rmse, summary.best_epoch = val_rmse, epoch

    def _keep_distributed_state(self, trial_id: str, result: dict[str, Any]) -> None:
        """A multi-worker trial's checkpoint path and placement group, as its reports name them."""
        if result.get("checkpoint_path"):
            self.checkpoint_paths[trial_id] = result["checkpoint_path"]
        if result.get(PLACEMENT_GROUP):
            self.groups[trial_id] = result[PLACEMENT_GROUP]

    def _end(self, summary: TrialSummary) -> None:
        self.last_end = time.monotonic()
        _release_placement_group(self.groups.pop(summary.trial_id, None))
        status = "FAILED" if summary.state == FAILED else "FINISHED"
        tags = {"sentinel.state": summary.state, "epochs": summary.epochs}
        if summary.error:
            tags["error"] = summary.error
        self.tracker.end(summary.trial_id, status, tags=tags)
        self._emit("trial", summary.trial_id, error=summary.error)

    def _emit(self, kind: str, trial_id: str, **fields) -> None:
        summary = self.trials[trial_id]
        scored = [t.val_rmse for t in self.trials.values() if t.val_rmse is not None]
        counts = {state: sum(t.state == state for t in self.trials.values())
                  for state in (RUNNING, COMPLETED, STOPPED, FAILED)}
        self.notify({"event": kind, "trial": trial_id, "state": summary.state,
                     "best_val_rmse": min(scored) if scored else None, "counts": counts, **fields})


def study_callback(tracker: Tracker, notify: ProgressHook, max_epochs: int):
    """The study's ``ray.tune.Callback`` (``_StudyRecorder``'s hooks)."""
    from ray.tune import Callback

    class StudyCallback(_StudyRecorder, Callback):
        pass

    return StudyCallback(tracker, notify, max_epochs)


def _release_placement_group(group_id: str | None) -> None:
    """Remove a stopped multi-worker trial's Ray Train placement group.

    Tune ends a trial by killing its actor, and with it the Ray Train controller it owns, before the
    controller can remove its workers' placement group; Ray's detached cleaner needs the State API
    (the dashboard), which the embedded Ray runs without. Left alone, each stopped trial would hold
    its CPUs until the driver exits and the next trials would wait forever. Removing a group that
    Ray Train already removed is harmless.
    """
    if not group_id:
        return
    from ray import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    try:
        remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(group_id)))
    except Exception as e:  # noqa: BLE001 - best effort: a leak must not fail the study
        log.debug("placement group %s: %s", group_id, e)


def _error_text(trial) -> str:
    """The failed trial's exception line (e.g. ``JobFailed: training diverged …``), not its traceback."""
    try:
        text = Path(trial.error_file).read_text(encoding="utf-8", errors="replace")
    except (OSError, TypeError):
        return "the trial failed (no error recorded)"
    return _last_line(text)


def _root_cause(error: BaseException) -> str:
    return _last_line(str(getattr(error, "cause", None) or error)) or type(error).__name__


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "the trial failed (no error recorded)"
    qualified, sep, message = lines[-1].partition(": ")
    if sep and re.fullmatch(r"[\w.]+", qualified):
        return f"{qualified.rsplit('.', 1)[-1]}: {message}"
    return lines[-1]


def ranked(trials: list[TrialSummary]) -> list[TrialSummary]:
    return sorted(trials, key=lambda t: (t.val_rmse is None, t.val_rmse or 0.0, t.trial_id))
