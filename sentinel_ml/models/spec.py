"""What Sentinel knows of a model: its ``ModelSpec``. Pure data and functions that import torch only
when called, so the CLI reads every spec without loading the ML stack.

A model is one module under ``sentinel_ml.models.specs`` holding ``SPEC``, plus its name in
``sentinel_ml.models.registry.REGISTERED``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from sentinel_ml.data.splits import Ratings
    from sentinel_ml.models.config import ModelConfig


class Trainable(Protocol):
    """The network a training run optimizes (an ``nn.Module``)."""

    def __call__(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Unclipped ratings for (user, item) pairs: what validation scores."""

    def training_loss(self, batch: Any, regularization: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective, its value to log) for one of the spec's training batches."""

    def serving_state_dict(self) -> dict[str, torch.Tensor]:
        """The export for serving: the weights of the spec's ``scorer``, detached from training."""


class Scorer(Protocol):
    """The served network (an ``nn.Module`` in eval mode): what checkpoints hold and serving scores with."""

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Ratings for (user, item) pairs, clipped to the rating range."""

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """Unclipped ratings of every item for each user: [len(users), num_items] (ranking metrics)."""


@dataclass(frozen=True)
class StudyDefaults:
    """A tuning study's defaults for this model (``StudyConfig`` fields left ``None``)."""

    max_epochs: int  # the epochs of a trial that is never stopped: enough for the model to converge
    grace_period: int  # ASHA: epochs before a trial can be stopped
    reduction_factor: int  # ASHA: keep the best 1/N of the trials at each rung


@dataclass(frozen=True)
class ModelSpec:
    """One model, everything the CLI, the jobs, tuning and serving need of it.

    - ``defaults``: training defaults by hyperparameter name (``models.hyperparameters``); a
      hyperparameter left out takes the table's own default.
    - ``space``: the default search space, in a space file's shape (``tuning.search_space``); a
      dimension left out is fixed at the model's default.
    - ``meanings``: what a hyperparameter means to this model where models differ (for help text).
    - ``network(config, train)``: the network to train (a ``Trainable``; its ``serving_state_dict()``
      is the export for serving). ``batches(split, batch_size, *, shuffle, seed, rank, world_size)``:
      one rank's training batches, as its ``training_loss`` takes them (a ``sentinel_ml.data.batching``
      iterable: reshuffled each epoch, and a resumed run sets the epoch it starts from).
    - ``scorer(config)``: the served network, before a checkpoint's weights load into it.
    - ``check_size(num_users, num_items)``: raises ``ConfigError`` naming the limit where the model
      cannot train on data of this shape (checked before any worker starts); ``None``: any size.
    """

    name: str  # the --model choice, recorded in checkpoints and run records
    summary: str  # the model in a few words, for --model's help
    defaults: Mapping[str, Any]
    space: Mapping[str, Any]
    study: StudyDefaults
    network: Callable[[ModelConfig, Ratings], Trainable]
    batches: Callable[..., Iterable]
    scorer: Callable[[ModelConfig], Scorer]
    meanings: Mapping[str, str] = field(default_factory=dict)
    check_size: Callable[[int, int], None] | None = None
    # Trains on batches of ratings (``batches`` slices the training part), so on a worker group a large
    # training part can stream to it as Ray Data shards instead (``sentinel_ml.data.shards``).
    streams: bool = False
