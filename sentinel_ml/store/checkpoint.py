"""Checkpoint files: where a run's ``best.pt`` and ``last.pt`` live under a storage root, and how
they are written and read (through ``sentinel_ml.store.uri``, on disk or S3)::

    <root>/runs/<run_id>/best.pt     best epoch by val RMSE
    <root>/runs/<run_id>/last.pt     last epoch

A checkpoint is one ``torch.save`` dict: ``state_dict``, ``model_config``, ``metrics`` and, since
issue 25, ``data``: the serving artifact (id maps, item catalogue, each user's seen items; the dict
``Prepared.serving_artifact()`` gives, read by ``sentinel_ml.serving.catalogue``). It holds only
tensors, lists, strings and numbers, so it loads with ``weights_only=True`` like the rest; with it a
replica needs nothing but the checkpoint.
"""

from __future__ import annotations

import io

from sentinel_ml.errors import CheckpointNotFound, ObjectNotFound
from sentinel_ml.store import uri as storage

RUNS_DIR = "runs"


def checkpoint_uri(root: str, run_id: str, which: str) -> str:
    return storage.join(root, RUNS_DIR, run_id, f"{which}.pt")


def save_checkpoint(uri: str, state_dict: dict, model_config: dict, metrics: dict,
                    data: dict | None = None) -> int:
    """Write the checkpoint whole or not at all (``uri.write_bytes``); returns its size in bytes,
    which the run's index record keeps so that a partial file is never resolved. ``data`` is the
    serving artifact (stored as ``saved["data"]``); a checkpoint without it cannot be served."""
    import torch

    saved = {"state_dict": state_dict, "model_config": model_config, "metrics": metrics}
    if data is not None:
        saved["data"] = data
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    data = buffer.getvalue()
    storage.write_bytes(uri, data)
    return len(data)


def load_checkpoint(uri: str) -> dict:
    """The saved dict: ``state_dict``, ``model_config``, ``metrics``, and ``data`` (the serving
    artifact) where the checkpoint carries one."""
    import torch

    try:
        data = storage.read_bytes(uri)
    except ObjectNotFound:
        raise CheckpointNotFound(
            f"checkpoint {uri} does not exist", hint="check `sentinel status` for valid runs"
        ) from None
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_network(uri: str):
    """The served network of the model the checkpoint names (mf where it names none), with its weights,
    in eval mode; and the saved dict."""
    from sentinel_ml.models.config import ModelConfig
    from sentinel_ml.models.served import trained_network

    saved = load_checkpoint(uri)
    return trained_network(ModelConfig.from_saved(saved["model_config"]), saved["state_dict"]), saved
