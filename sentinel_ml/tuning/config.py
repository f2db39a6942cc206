"""A tuning study's typed configuration: a plain dataclass, cheap to import and to pickle."""

from __future__ import annotations

from dataclasses import dataclass, field

from sentinel_ml.compute import TUNE_CPUS_FLAG, Compute
from sentinel_ml.data.source import DataSource
from sentinel_ml.errors import ConfigError
from sentinel_ml.models.registry import AUTOREC, check_model, study_defaults
from sentinel_ml.training.config import DEFAULT_MAX_FAILURES
from sentinel_ml.tuning import SCHEDULERS
from sentinel_ml.tuning.search_space import SearchSpace, default_space


@dataclass(frozen=True)
class StudyConfig:
    """A tuning study: the model and its search space, how trials run and which of them stop early.

    ``space``, ``max_epochs``, ``grace_period`` and ``reduction_factor`` left ``None`` take the model's
    defaults (its spec's ``space`` and ``study``, ``sentinel_ml.models.specs``).
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
    max_failures: int = DEFAULT_MAX_FAILURES  # restarts of a trial after a lost worker, from its last checkpoint
    seed: int = 42
    split: str = "u1"
    source: DataSource = field(default_factory=DataSource)
    storage: str | None = None
    mlflow_uri: str | None = None
    run_id: str | None = None
    # The device, CPUs and GPUs per trial (per worker with --workers-per-trial > 1) and precision;
    # compute.cpus None: the Ray cluster's CPUs shared between the trials running at once
    compute: Compute = field(default_factory=Compute)

    def __post_init__(self) -> None:
        check_model(self.model)
        if self.space is None:
            object.__setattr__(self, "space", default_space(self.model))
        for name, value in study_defaults(self.model).items():
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
            (self.max_failures >= 0, "--max-failures must be at least 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self.compute.validate("--gpus-per-trial", TUNE_CPUS_FLAG)

    @property
    def cpus_per_trial(self) -> float | None:
        """``--cpus-per-trial``: CPUs per trial (per worker), or None to share the CPUs out."""
        return self.compute.cpus
