"""The served network of a checkpoint, whichever model trained it: the spec its ``model_config`` names
builds the scorer, and the checkpoint's weights load into it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sentinel_ml.models.registry import get

if TYPE_CHECKING:
    import torch

    from sentinel_ml.models.config import ModelConfig
    from sentinel_ml.models.spec import Scorer


def trained_network(config: ModelConfig, state_dict: dict[str, torch.Tensor]) -> Scorer:
    """``config.model``'s served network holding ``state_dict``'s weights, in eval mode."""
    net = get(config.model).scorer(config)
    net.load_state_dict(state_dict)
    return net.eval()
