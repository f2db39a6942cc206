"""Typed configuration of training runs and tuning studies: plain dataclasses, cheap to import and to pickle."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from sentinel_ml.errors import ConfigError
from sentinel_ml.models import AUTOREC, MF, STUDY_DEFAULTS, check_model, training_defaults
from sentinel_ml.paths import artifacts_dir
from sentinel_ml.search_space import SearchSpace, default_space


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
    model: str = MF  # sentinel_ml.models; the defaults above are mf's

    @classmethod
    def for_model(cls, model: str, **values: Any) -> Hyperparameters:
        """``model``'s training defaults (sentinel_ml.models) under ``values``; ``None`` keeps a default."""
        given = {k: v for k, v in values.items() if v is not None}
        return cls(**{**training_defaults(model), **given, "model": model})


@dataclass(frozen=True)
class TrainConfig:
    hp: Hyperparameters = field(default_factory=Hyperparameters)
    workers: int = 1
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
            (hp.batch_size >= 1, "--batch-size must be at least 1"),
            (hp.lr > 0, "--lr must be positive"),
            (hp.embedding_dim >= 1, "--embedding-dim must be at least 1"),
            (hp.regularization >= 0, "--regularization must be >= 0"),
            (0 < hp.lr_decay <= 1, "--lr-decay must be in (0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def storage_root(explicit: str | None = None) -> str:
    """Checkpoint root: the flag, then $SENTINEL_STORAGE, then $SENTINEL_HOME/artifacts."""
    return explicit or os.environ.get("SENTINEL_STORAGE") or str(artifacts_dir())


SCHEDULERS = ("asha", "fifo")


@dataclass(frozen=True)
class StudyConfig:
    """A tuning study: the model and its search space, how trials run and which of them stop early.

    ``space``, ``max_epochs``, ``grace_period`` and ``reduction_factor`` left ``None`` take the model's
    defaults (``sentinel_ml.models.STUDY_DEFAULTS``).
    """

    model: str = AUTOREC  # the most accurate on u1; "mf" tunes plain biased MF
    space: SearchSpace | None = None
    samples: int = 20
    max_epochs: int | None = None
    grace_period: int | None = None  # capped at max_epochs
    reduction_factor: int | None = None
    scheduler: str = "asha"  # "fifo": every trial runs max_epochs (no early stopping)
    concurrency: int | None = None  # None: one trial per CPU of the Ray cluster, at most 4
    workers_per_trial: int = 1
    cpus_per_trial: float | None = None  # per trial, or per worker; None: share the CPUs
    seed: int = 42
    split: str = "u1"
    data: str | None = None
    storage: str | None = None
    mlflow_uri: str | None = None
    run_id: str | None = None

    def __post_init__(self) -> None:
        check_model(self.model)
        if self.space is None:
            object.__setattr__(self, "space", default_space(self.model))
        for name, value in STUDY_DEFAULTS[self.model].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

    def validate(self) -> None:
        checks = [
            (self.samples >= 1, "--samples must be at least 1"),
            (self.max_epochs >= 1, "--max-epochs must be at least 1"),
            (self.grace_period >= 1, "--grace-period must be at least 1"),
            (self.reduction_factor >= 2, "--reduction-factor must be at least 2"),
            (self.scheduler in SCHEDULERS, f"--scheduler must be one of: {', '.join(SCHEDULERS)}"),
            (self.concurrency is None or self.concurrency >= 1, "--concurrency must be at least 1"),
            (self.workers_per_trial >= 1, "--workers-per-trial must be at least 1"),
            (self.cpus_per_trial is None or self.cpus_per_trial > 0, "--cpus-per-trial must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
