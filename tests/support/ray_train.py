"""What Ray Train's controller has taken in, read from the state it keeps in storage.

The controller registers a reported checkpoint at its next poll (every 2 s), after the epoch's line
is printed, and writes its bookkeeping to ``<storage>/ray/<run id>/checkpoint_manager_snapshot.json``
(``storage`` being the run's artifacts root): a restarted worker group resumes from the latest
checkpoint listed there. A fault test waits for it before killing a worker, so that the kill lands
after a known checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

SNAPSHOT = "checkpoint_manager_snapshot.json"


def checkpointed_epoch(snapshot: str | None) -> int | None:
    """The epoch of the latest checkpoint a snapshot's text lists (None: no snapshot or no checkpoint yet)."""
    if not snapshot:
        return None
    latest = json.loads(snapshot).get("latest_checkpoint_result")
    return int(latest["metrics"]["epoch"]) if latest else None


def local_snapshot(root: Path) -> Callable[[], str | None]:
    """A reader of the snapshot of the one run under the local artifacts root ``root``."""

    def read() -> str | None:
        found = sorted((root / "ray").glob(f"*/{SNAPSHOT}"))
        if len(found) > 1:
            raise RuntimeError(f"more than one Ray Train run under {root / 'ray'}: {found}")
        return found[0].read_text() if found else None

    return read


def checkpoint_taken(read: Callable[[], str | None], epoch: int) -> Callable[[], str | None]:
    """A check for ``tests.testenv.process.wait_for``: None once the controller's snapshot (``read()``)
    lists a checkpoint of ``epoch`` or later, else what it lists so far."""

    def check() -> str | None:
        taken = checkpointed_epoch(read())
        if taken is not None and taken >= epoch:
            return None
        return f"its latest checkpoint is of epoch {taken}" if taken is not None else "no checkpoint taken in yet"

    return check
