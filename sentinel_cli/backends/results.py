"""What the targets return: one typed result per command, the same class whatever the target.

A field that a target does not report holds ``ABSENT`` and is left out of ``-o json|yaml``
(``to_data``), so each target's output keeps exactly the keys it always had; a field that a target
reports as empty holds ``None`` and appears as ``null``. Printers ask the result (``finished``,
``managed``…) instead of looking for keys. Plain data only: no Ray, no Kubernetes client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar


class _Absent:
    """The value of a field the target does not report (falsy; never printed or serialized)."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


def _absent() -> Any:
    return field(default=ABSENT)


def to_data(value: Any) -> Any:
    """``value`` as plain JSON-able data: results and other dataclasses become dicts (their
    ``ABSENT`` fields left out), recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in fields(value)
                if getattr(value, f.name) is not ABSENT}
    if isinstance(value, Mapping):
        return {k: to_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_data(v) for v in value]
    return value


R = TypeVar("R")


def from_data(cls: type[R], data: Mapping[str, Any]) -> R:
    """A result from a dict of its field names (a key it has no field for is a TypeError, so that
    nothing a target reports is lost on the way); missing fields are ``ABSENT``."""
    unknown = set(data) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise TypeError(f"{cls.__name__} has no field for {', '.join(sorted(unknown))}: "
                        "declare it in sentinel_cli/backends/results.py")
    return cls(**data)


def shown(value: Any) -> Any:
    """``value``, or None for ``ABSENT`` (for printers)."""
    return None if value is ABSENT else value


# -- jobs: train and tune ------------------------------------------------------------------------


@dataclass(frozen=True)
class _JobFields:
    """What both targets report of a training or tuning job. Locally: the finished run. On
    Kubernetes: the RayJob (target, namespace, rayjob), then its state, then, once it succeeded
    and its index record could be read, the run as that record tells it (``record``)."""

    run_id: str
    target: str = _absent()
    namespace: str = _absent()
    rayjob: str = _absent()
    dry_run: bool = _absent()
    objects: list[dict[str, Any]] = _absent()  # the dry run's objects, as the API server returned them
    state: str = _absent()  # applied | the RayJob's deployment state
    job_status: str | None = _absent()
    model: str = _absent()
    metrics: dict[str, Any] = _absent()
    checkpoints: dict[str, str] = _absent()
    index_uri: str = _absent()
    mlflow_run_id: str | None = _absent()
    mlflow_error: str | None = _absent()
    restarts: list[dict[str, Any]] = _absent()
    data: dict[str, Any] = _absent()  # dataset, split (the one the test RMSE is on), sizes, duplicates dropped
    record: dict[str, Any] = _absent()  # k8s: the index record itself
    wall_s: float = _absent()

    @property
    def finished(self) -> bool:
        """The run's outcome is known (its metrics and checkpoints), not only that it was applied."""
        return self.metrics is not ABSENT


@dataclass(frozen=True)
class TrainReport(_JobFields):
    history: list[dict[str, float]] = _absent()


@dataclass(frozen=True)
class TuneReport(_JobFields):
    scheduler: str = _absent()
    samples: int = _absent()
    max_epochs: int = _absent()
    split: str = _absent()
    best: dict[str, Any] = _absent()
    trials: list[dict[str, Any]] = _absent()
    counts: dict[str, int] = _absent()
    trial_epochs: int = _absent()
    space: dict[str, Any] = _absent()
    phases: dict[str, float] = _absent()

    @property
    def finished(self) -> bool:
        return self.trials is not ABSENT


# -- serving -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeReport:
    """What is serving. Locally: the application on the detached Ray cluster (its URLs, replicas,
    the model as /recommend/model reports it). On Kubernetes: the RayService and its endpoints."""

    checkpoint: str
    run_id: str | None
    target: str = _absent()
    namespace: str = _absent()
    rayservice: str = _absent()
    endpoint: str = _absent()
    grpc_endpoint: str = _absent()
    dry_run: bool = _absent()
    objects: list[dict[str, Any]] = _absent()
    previous_checkpoint: str | None = _absent()
    state: str = _absent()  # applied | Ready
    applications: dict[str, str] = _absent()
    application: str = _absent()
    url: str = _absent()
    http: str = _absent()
    grpc: str = _absent()
    host: str = _absent()
    port: int = _absent()
    grpc_port: int = _absent()
    ray_address: str = _absent()
    deployed_at: str = _absent()
    args: dict[str, Any] = _absent()
    model_name: str = _absent()
    model_version: str = _absent()
    status: str = _absent()
    message: str | None = _absent()
    replicas: dict[str, int] = _absent()
    auth: str = _absent()  # none | token; never the token
    token_file: str | None = _absent()  # where the token is (a path)
    canary: dict[str, Any] | None = _absent()  # checkpoint, run_id, percent, model_version, versions
    token_secret: str = _absent()  # k8s: the Secret that holds it (a name)


@dataclass(frozen=True)
class CanaryReport:
    """How a canary ended: ``decision`` (promote | rollback), why, and what serves now. With
    ``--auto``: the watch's length, each version's counts in the window, and the seconds from the
    breach's reading to the incumbent serving alone."""

    decision: str
    checkpoint: str
    run_id: str | None
    model_version: str | None
    ended_canary: dict[str, Any]
    reason: str | None = None
    watched_s: float = _absent()
    versions: list[dict[str, Any]] = _absent()
    breach_to_rollback_s: float = _absent()
    state: str = _absent()  # k8s: the RayService's state once the change is applied (Ready, applied)


@dataclass(frozen=True)
class ServingModel:
    """The checkpoint a target serves now (what the quality gate compares with; None: nothing serves),
    where, the checkpoint index the target resolves references in, and the serve settings a
    replacement keeps (``ServeRequest`` fields; locally its port, host, auth, replicas)."""

    checkpoint: str | None
    storage: str | None
    run_id: str | None = None
    where: str | None = None  # "the local cluster at http://127.0.0.1:8000", "RayService recommender in namespace ns"
    request: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PromoteReport:
    """``sentinel promote`` and ``serve --gate``: the gate's decision, both models, and what was served."""

    outcome: str  # passed | refused | forced
    reason: str
    metric: str
    tolerance: float
    higher_is_better: bool
    candidate: dict[str, Any]  # checkpoint, run_id, dataset, split, seed, metrics
    serving: dict[str, Any] | None  # the same for what served before; None: nothing
    where: str | None = None
    promoted: bool = False
    serve: ServeReport | None = None


@dataclass(frozen=True)
class StopReport:
    stopped: bool
    message: str


# -- status, delete, logs ------------------------------------------------------------------------


@dataclass(frozen=True)
class ManagedObject:
    """One RayJob, RayService or standalone RayCluster that Sentinel manages."""

    kind: str
    name: str
    namespace: str | None
    state: str
    age: str
    created: str | None
    run_id: str | None
    checkpoint: str | None
    auth: str | None = None  # a RayService's serving API: none | token (never the token)
    canary: dict[str, Any] | None = _absent()  # a RayService's canary (its spec): checkpoint, run_id, percent, …


@dataclass(frozen=True)
class StatusReport:
    """The checkpoint index's newest runs (``storage``, ``runs``) on every target; beside them what
    serves locally (``serving``), or on Kubernetes what Sentinel manages (``objects``)."""

    target: str
    storage: str | None
    runs: list[dict[str, Any]]
    runs_error: str = _absent()  # the index could not be read (k8s: said, not fatal)
    serving: ServeReport | None = _absent()
    namespace: str = _absent()  # "*": every namespace
    objects: list[ManagedObject] = _absent()
    counts: dict[str, int] = _absent()
    shown_jobs: int = _absent()
    schedules: list[ScheduleRow] = _absent()  # k8s: the retraining schedules and their last runs

    @property
    def managed(self) -> bool:
        """Whether this report lists the objects Sentinel manages on a cluster."""
        return self.objects is not ABSENT


@dataclass(frozen=True)
class DeleteReport:
    kind: str
    name: str
    namespace: str
    deleted: bool
    dry_run: bool = _absent()


@dataclass(frozen=True)
class LogsReport:
    """What ``logs`` printed from (the lines themselves go to stderr as they come)."""

    kind: str
    name: str
    state: str = _absent()
    job_status: str | None = _absent()


# -- platform ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckReport:
    """``up``, ``down`` and ``doctor``: one item per component or check (``checks.Item`` as data),
    and what the Kubernetes platform adds (its namespace, the dry run, …)."""

    target: str
    ok: bool
    items: list[dict[str, Any]]
    namespace: str = _absent()
    dry_run: bool = _absent()
    purge: bool = _absent()
    gone_in_s: float | None = _absent()
    iam_policy: dict[str, Any] | None = _absent()
    profile: dict[str, Any] = _absent()  # up on k8s: the profile keys that point jobs at this platform
    gpus: dict[str, Any] = _absent()  # doctor on k8s: GPU nodes, their allocatable GPUs, the device plugins


# -- rendering -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """The objects a command would apply, as a ``v1 List`` (what ``sentinel render`` prints)."""

    apiVersion: str = "v1"  # noqa: N815 - the Kubernetes field names
    kind: str = "List"
    items: list[dict[str, Any]] = field(default_factory=list)


# -- schedules -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleRow:
    """One retraining schedule (a CronJob) and its newest run: the Job's state and what the run did."""

    name: str
    namespace: str
    cron: str
    action: str  # what each run does with its candidate (spec.describe)
    suspended: bool
    last_scheduled: str | None
    last_job: str | None
    job_state: str | None  # Running, Complete, Failed (the Job's conditions)
    outcome: str | None  # promoted, refused, canary, trained, failed (the run's termination message)
    detail: str | None  # the gate's verdict with both numbers, or the failing step's error
    gate: dict[str, Any] | None  # the gate's decision: metric, candidate and serving values, reason
    run_id: str | None
    checkpoint: str | None
    metrics: dict[str, Any] | None


@dataclass(frozen=True)
class ScheduleReport:
    """``schedule train`` (k8s: what was applied; local: the crontab line), ``schedule list|delete``."""

    target: str
    name: str = _absent()
    namespace: str = _absent()
    cron: str = _absent()
    action: str = _absent()
    run: list[str] = _absent()  # one run's command line
    crontab: str = _absent()  # local: the line to add with `crontab -e`
    installed: bool = _absent()  # local: always False (the line is printed, nothing is installed)
    applied: list[str] = _absent()  # k8s: Kind/name of each object
    dry_run: bool = _absent()
    deleted: list[str] = _absent()
    schedules: list[ScheduleRow] = _absent()
