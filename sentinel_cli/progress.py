"""Live progress on stderr: one line per event, so it reads the same in a terminal and in CI logs.

The backends report through these; text from other systems (pod logs, API messages) is printed
literally."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from sentinel_cli import console
from sentinel_ml.models.hyperparameters import HYPERPARAMETERS


def train_progress(event: dict[str, Any]) -> None:
    stderr = console.err()
    kind = event.get("event")
    if kind == "data":
        stderr.print(f"[dim]data:[/] {escape(str(event.get('message') or event.get('path')))}", highlight=False)
    elif kind in ("start", "compute"):
        stderr.print(f"[dim]{escape(event['message'])}[/]")
    elif kind == "restart":
        stderr.print(f"[yellow]restart {event['restart']}[/]: lost {escape(str(event['lost']))}; "
                     f"resuming from epoch {event['resumed_from_epoch']}", highlight=False)
    elif kind == "epoch":
        stderr.print(
            f"epoch {event['epoch']:>3}/{event['epochs']}  "
            f"train_loss {event['train_loss']:.4f}  "
            f"val_rmse {event['val_rmse']:.4f}  val_mae {event['val_mae']:.4f}"
        )


def tune_progress(event: dict[str, Any]) -> None:
    """A line per trial start, epoch and end; epochs and ends carry the study's counts and best val RMSE."""
    kind = event.get("event")
    if kind not in ("trial", "trial_epoch", "trial_restart"):
        train_progress(event)  # data, start
        return
    trial = f"trial {event['trial']}"
    if kind == "trial_restart":
        console.err().print(f"{trial} [yellow]restart {event['restarts']}[/]: {escape(str(event.get('lost')))}; "
                            "resuming from its last checkpoint", highlight=False)
        return
    if kind == "trial" and event["state"] == "running":
        config = "  ".join(f"{_SHORT.get(k, k)} {v:.3g}" if isinstance(v, float) else f"{_SHORT.get(k, k)} {v}"
                           for k, v in event.get("config", {}).items())
        console.err().print(f"{trial} started  [dim]{config}[/]", highlight=False)
        return
    if kind == "trial_epoch":
        line = f"{trial} epoch {event['epoch']:>3}/{event['max_epochs']}  val_rmse {event['val_rmse']:.4f}"
    elif event["state"] == "failed":
        line = f"{trial} [red]failed[/]: {escape(str(event.get('error')))}"
    else:
        line = f"{trial} {event['state']}"
    counts, best = event["counts"], event["best_val_rmse"]
    status = (f"{counts['running']} running · {counts['stopped early']} stopped · {counts['completed']} done · "
              f"{counts['failed']} failed · best {'-' if best is None else f'{best:.4f}'}")
    console.err().print(f"{line}  [dim]\\[{status}][/]", highlight=False)


_SHORT = {h.name: h.short for h in HYPERPARAMETERS}  # a trial's sampled values, by their short names


def serve_progress(message: str) -> None:
    console.err().print(f"[dim]{escape(message)}[/]", highlight=False)


def kube_say(message: str) -> None:
    """A step of the Kubernetes target (applied, upgrading, succeeded)."""
    console.err().print(message, markup=False, highlight=False)


def kube_warning(message: str) -> None:
    console.err().print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def kube_waiting(waiting) -> None:
    """What a bounded wait still waits for (a ``k8s.watch`` Waiting), and the hint that would end it."""
    stderr = console.err()
    stderr.print(f"[dim]waiting:[/] {escape(waiting.text())}", highlight=False)
    if waiting.hint:
        stderr.print(f"[dim]  hint:[/] {escape(waiting.hint)}", highlight=False)


def kube_line(line: str) -> None:
    """A line of a pod's log: a job's progress event (a JSON line from the entrypoint) as the local
    target shows it, anything else as it is."""
    event = _progress_event(line)
    if event is not None:
        try:
            tune_progress(event)  # train's events too
            return
        except (KeyError, TypeError, ValueError):
            pass  # not an event of ours after all
    console.err().print(line, markup=False, highlight=False, soft_wrap=True)


def _progress_event(line: str) -> dict[str, Any] | None:
    if not (line.startswith("{") and '"event"' in line):
        return None
    import json

    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None
