"""A training run's typed configuration: plain dataclasses, cheap to import and to pickle."""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

from sentinel_ml.compute import Compute
from sentinel_ml.data.shards import INGESTIONS, RAY_DATA
from sentinel_ml.data.source import DataSource
from sentinel_ml.errors import ConfigError
from sentinel_ml.models import registry
from sentinel_ml.models.hyperparameters import HYPERPARAMETERS, problems
from sentinel_ml.models.registry import MF, check_model, training_defaults


def _for_model(cls, model: str, **values: Any):
    """``model``'s training defaults (its spec, ``sentinel_ml.models.specs``) under ``values``; ``None``
    keeps a default."""
    given = {k: v for k, v in values.items() if v is not None}
    return cls(**{**training_defaults(model), **given, "model": model})


# One field per hyperparameter (sentinel_ml.models.hyperparameters), with mf's defaults, then the run's
# seed, split and model: ``asdict`` gives what a run records and MLflow logs.
_MF_DEFAULTS = training_defaults(MF)
Hyperparameters = make_dataclass(
    "Hyperparameters",
    [*[(h.name, h.type, field(default=_MF_DEFAULTS[h.name])) for h in HYPERPARAMETERS],
     ("seed", int, field(default=42)), ("split", str, field(default="u1")), ("model", str, field(default=MF))],
    frozen=True,
    namespace={"for_model": classmethod(_for_model)},
)
Hyperparameters.__module__ = __name__  # where pickle finds it
Hyperparameters.__doc__ = "A run's hyperparameters (mf's defaults), seed, split and model."


# Restarts of a Ray Train worker group after a lost worker, from the last per-epoch checkpoint, before a
# run fails; the same locally and on Kubernetes. Three survive a few spot preemptions in one run and
# still end a run whose workers keep dying (say, of memory) after at most three repeated epochs each.
DEFAULT_MAX_FAILURES = 3


@dataclass(frozen=True)
class TrainConfig:
    hp: Hyperparameters = field(default_factory=Hyperparameters)
    workers: int = 1
    max_failures: int = DEFAULT_MAX_FAILURES  # worker-group restarts (``--workers`` >= 2); 0: none
    ingestion: str = "auto"  # how workers read the training part (``sentinel_ml.data.shards.INGESTIONS``)
    source: DataSource = field(default_factory=DataSource)  # the ratings: a dataset by name or the user's table
    storage: str | None = None  # checkpoint root; None: $SENTINEL_HOME/artifacts
    mlflow_uri: str | None = None  # "off" disables tracking
    run_id: str | None = None
    compute: Compute = field(default_factory=Compute)  # device, GPUs per worker, precision

    def validate(self) -> None:
        check_model(self.hp.model)
        self.source.validate()
        self.compute.validate("--gpus")
        checks = [
            (self.workers >= 1, "--workers must be at least 1"),
            (self.max_failures >= 0, "--max-failures must be at least 0"),
            (self.ingestion in INGESTIONS, f"--ingestion must be one of: {', '.join(INGESTIONS)}"),
            (self.ingestion != RAY_DATA or registry.get(self.hp.model).streams,
             f"--ingestion {RAY_DATA} streams batches of ratings, which {self.hp.model} does not train on"),
        ]
        messages = [*problems(self.hp), *(message for ok, message in checks if not ok)]
        if messages:
            raise ConfigError(messages[0])
