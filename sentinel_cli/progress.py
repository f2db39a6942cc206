"""Live progress on stderr: one line per event, so it reads the same in a terminal and in CI logs."""

from __future__ import annotations

from typing import Any

from sentinel_cli import console


def train_progress(event: dict[str, Any]) -> None:
    stderr = console.err()
    kind = event.get("event")
    if kind == "data":
        stderr.print(f"[dim]data:[/] {event['path']}")
    elif kind == "start":
        stderr.print(f"[dim]{event['message']}[/]")
    elif kind == "epoch":
        stderr.print(
            f"epoch {event['epoch']:>3}/{event['epochs']}  "
            f"train_loss {event['train_loss']:.4f}  "
            f"val_rmse {event['val_rmse']:.4f}  val_mae {event['val_mae']:.4f}"
        )


def serve_progress(message: str) -> None:
    from rich.markup import escape

    console.err().print(f"[dim]{escape(message)}[/]", highlight=False)
