"""A training run's typed configuration: plain dataclasses, cheap to import and to pickle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sentinel_ml.errors import ConfigError
from sentinel_ml.models.registry import MF, check_model, training_defaults


@dataclass(frozen=True)
class Hyperparameters:
    epochs: int = 5
    batch_size: int = 512
    lr: float = 1e-2
    embedding_dim: int = 32
    regularization: float = 0.08
    lr_decay: float = 0.6
    seed: int = 42
    split: str = "u1"
    model: str = MF  # sentinel_ml.models.registry; the defaults above are mf's

    @classmethod
    def for_model(cls, model: str, **values: Any) -> Hyperparameters:
        """``model``'s training defaults (sentinel_ml.models.registry) under ``values``; ``None`` keeps a default."""
        given = {k: v for k, v in values.items() if v is not None}
        return cls(**{**training_defaults(model), **given, "model": model})


# Restarts of a Ray Train worker group after a lost worker, from the last per-epoch checkpoint, before a
# run fails; the same locally and on Kubernetes. Three survive a few spot preemptions in one run and
# still end a run whose workers keep dying (say, of memory) after at most three repeated epochs each.
DEFAULT_MAX_FAILURES = 3


@dataclass(frozen=True)
class TrainConfig:
    hp: Hyperparameters = field(default_factory=Hyperparameters)
    workers: int = 1
    max_failures: int = DEFAULT_MAX_FAILURES  # worker-group restarts (``--workers`` >= 2); 0: none
    data: str | None = None  # dataset source; None: $SENTINEL_DATA or GroupLens
    storage: str | None = None  # checkpoint root; None: $SENTINEL_HOME/artifacts
    mlflow_uri: str | None = None  # "off" disables tracking
    run_id: str | None = None

    def validate(self) -> None:
        hp = self.hp
        check_model(hp.model)
        checks = [
            (hp.epochs >= 1, "--epochs must be at least 1"),
            (self.workers >= 1, "--workers must be at least 1"),
            (self.max_failures >= 0, "--max-failures must be at least 0"),
            (hp.batch_size >= 1, "--batch-size must be at least 1"),
            (hp.lr > 0, "--lr must be positive"),
            (hp.embedding_dim >= 1, "--embedding-dim must be at least 1"),
            (hp.regularization >= 0, "--regularization must be >= 0"),
            (0 < hp.lr_decay <= 1, "--lr-decay must be in (0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
