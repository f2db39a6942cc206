"""The resume state of a run (``loop.EpochState.resume_state()``) as a file in a Ray checkpoint.

A Ray Train worker (every epoch) and a Tune trial (at its checkpoint epochs) put ``resume.pt`` in the
directory they report; after a lost worker, Ray hands the latest reported checkpoint to the restarted
worker group or trial (``ray.train.get_checkpoint()``, ``ray.tune.get_checkpoint()``), and the loop
goes on after that epoch (``loop.run_loop(resume=...)``). Ray registers a checkpoint only once its
upload is complete, so a worker lost while writing one leaves the previous one in force.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

RESUME_FILE = "resume.pt"


def write_resume(directory: str, state: dict[str, Any]) -> None:
    """``state`` as ``<directory>/resume.pt``."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    Path(directory, RESUME_FILE).write_bytes(buffer.getvalue())


def read_resume(checkpoint) -> dict[str, Any] | None:
    """The resume state in a Ray ``Checkpoint`` (None: no checkpoint, or one without a resume state)."""
    if checkpoint is None:
        return None
    import torch

    with checkpoint.as_directory() as directory:
        path = Path(directory, RESUME_FILE)
        if not path.is_file():
            return None
        return torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)


def resumed_from(state: dict[str, Any] | None) -> int:
    """The first epoch a run with this resume state trains: 1 for a fresh start."""
    return int(state["epoch"]) + 1 if state else 1
