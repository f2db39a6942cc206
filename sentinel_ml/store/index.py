"""The checkpoint index: one small record per run, and the one resolver of ``latest``, ``best``,
a run id or a URI.

Layout under a storage root (local directory or ``s3://bucket/prefix``)::

    <root>/runs/<run_id>/best.pt     best epoch by val RMSE
    <root>/runs/<run_id>/last.pt     last epoch
    <root>/index/<run_id>.json       one small record per training or tuning run

Resolution is a pure function over the records; reading and writing them is at the edges.

Nothing half-written resolves. A run writes its checkpoints first and its record last, each whole or
not at all (``uri.write_bytes``), and the record keeps each checkpoint's size. ``read_records`` skips
a record whose checkpoint is missing or not of that size, so ``latest`` and ``best`` only ever see
complete runs; ``resolve_checkpoint`` also skips, for ``latest`` and ``best``, an older record (one
without sizes) whose checkpoint file is gone.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from sentinel_ml.errors import CheckpointNotFound, StorageError
from sentinel_ml.paths import absolute
from sentinel_ml.store import uri as storage
from sentinel_ml.store.checkpoint import RUNS_DIR

INDEX_DIR = "index"


@dataclass
class RunRecord:
    run_id: str
    kind: str  # "train" or "tune"
    created_at: str  # ISO 8601, UTC
    config: dict[str, Any]
    metrics: dict[str, float]
    checkpoints: dict[str, str]  # "best" / "last" -> URI
    mlflow_run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # "best" / "last" -> bytes, as written

    @property
    def best_checkpoint(self) -> str:
        return self.checkpoints.get("best") or self.checkpoints["last"]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def new_run_id(kind: str, now: datetime | None = None) -> str:
    """Sortable, unique, and a valid Kubernetes name: ``train-20261127-115300-3f9a``."""
    now = now or datetime.now(timezone.utc)
    return f"{kind}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_record(root: str, record: RunRecord) -> str:
    """Write the run's record: the last thing a run writes, once its checkpoints are complete."""
    uri = storage.join(root, INDEX_DIR, f"{record.run_id}.json")
    storage.write_bytes(uri, record.to_json().encode())
    return uri


def read_records(root: str, *, include_incomplete: bool = False) -> list[RunRecord]:
    """The index records under ``root``, newest first. A damaged record is skipped, not fatal, and so
    is one whose checkpoint is missing or partial (not the size its record says), unless
    ``include_incomplete``."""
    records = _parse_records(root)
    if include_incomplete:
        return records
    problems = incomplete_runs(root, records)
    return [r for r in records if r.run_id not in problems]


def _parse_records(root: str) -> list[RunRecord]:
    records = []
    for uri in storage.list_names(storage.join(root, INDEX_DIR), suffix=".json"):
        try:
            records.append(RunRecord.from_dict(json.loads(storage.read_bytes(uri))))
        except (ValueError, TypeError, KeyError, StorageError):
            continue
    return sorted(records, key=lambda r: (r.created_at, r.run_id), reverse=True)


def incomplete_runs(root: str, records: list[RunRecord]) -> dict[str, str]:
    """Run id -> what is wrong, for the records whose checkpoints are missing or partial.

    Only records that carry their checkpoints' sizes are checked here (every run writes them); on S3
    one listing of ``<root>/runs/`` answers for all of them.
    """
    sized = [r for r in records if r.sizes]
    if not sized:
        return {}
    runs = storage.join(root, RUNS_DIR)
    listed = storage.sizes_under(runs) if storage.is_s3(root) else None
    problems = {}
    for record in sized:
        for which, expected in record.sizes.items():
            uri = record.checkpoints.get(which)
            if uri is None:
                continue
            if listed is not None and uri.startswith(runs.rstrip("/") + "/"):
                actual = listed.get(uri)
            else:
                actual = storage.size(uri)
            if actual is None:
                problems[record.run_id] = f"its {which} checkpoint {uri} is missing"
                break
            if actual != expected:
                problems[record.run_id] = (f"its {which} checkpoint {uri} is partial "
                                           f"({actual} of {expected} bytes)")
                break
    return problems


def resolve(reference: str, records: list[RunRecord]) -> tuple[str, RunRecord | None]:
    """Map ``latest``, ``best``, a run id (or unique prefix) or a URI to a checkpoint URI.

    Returns the URI and the record it came from (None for a URI given directly).
    """
    if looks_like_uri(reference):
        match = next((r for r in records if reference in r.checkpoints.values()), None)
        return reference, match
    if not records:
        raise CheckpointNotFound(
            "no checkpoints yet: the checkpoint index is empty",
            hint="run `sentinel train` first",
        )
    if reference == "latest":
        record = max(records, key=lambda r: (r.created_at, r.run_id))
    elif reference == "best":
        scored = [r for r in records if "val_rmse" in r.metrics]
        if not scored:
            raise CheckpointNotFound("no run in the index has a val_rmse", hint="run `sentinel train`")
        record = min(scored, key=lambda r: r.metrics["val_rmse"])
    else:
        matches = [r for r in records if r.run_id == reference] or [
            r for r in records if r.run_id.startswith(reference)
        ]
        if not matches:
            raise CheckpointNotFound(
                f"no run {reference!r} in the checkpoint index",
                hint="use latest, best, a run id from `sentinel status`, or a checkpoint URI",
            )
        if len(matches) > 1:
            raise CheckpointNotFound(
                f"{reference!r} matches {len(matches)} runs",
                hint="give more of the run id: " + ", ".join(r.run_id for r in matches[:5]),
            )
        record = matches[0]
    return record.best_checkpoint, record


def looks_like_uri(reference: str) -> bool:
    """A path or URL, as opposed to ``latest``, ``best`` or a run id."""
    return "/" in reference or reference.endswith(".pt") or "://" in reference


def resolve_checkpoint(reference: str, root: str | None, *, must_exist: bool = True) -> tuple[str, str | None]:
    """The exact checkpoint URI for ``latest | best | <run id> | <URI>`` and the run it came from.

    The one resolver every target uses: a named reference is looked up in the index under ``root``;
    a URI is taken as given (its run id read from the layout). With ``must_exist`` the file itself
    must be there, so a half-written run never resolves.
    """
    if looks_like_uri(reference):
        reference = absolute(reference)
    if root is None and not looks_like_uri(reference):
        raise CheckpointNotFound(f"no checkpoint store to look {reference!r} up in",
                                 hint="pass --storage, or give a checkpoint URI")
    everything = _parse_records(root) if root is not None else []
    problems = incomplete_runs(root, everything) if everything else {}
    records = [r for r in everything if r.run_id not in problems]
    _refuse_incomplete_run(reference, everything, problems)
    while True:
        uri, record = resolve(reference, records)
        if not must_exist or storage.exists(uri):
            return uri, record.run_id if record else run_id_from_uri(uri)
        if record is None or reference not in ("latest", "best"):
            raise CheckpointNotFound(f"checkpoint {uri} does not exist",
                                     hint="run `sentinel train` first, or pick a run from `sentinel status`")
        # An older record without sizes whose checkpoint is gone: `latest`/`best` take the next one.
        records = [r for r in records if r.run_id != record.run_id]
        if not records:
            raise CheckpointNotFound(f"no complete run for {reference!r}: the checkpoint {uri} of the "
                                     f"last candidate does not exist", hint="run `sentinel train`")


def _refuse_incomplete_run(reference: str, records: list[RunRecord], problems: dict[str, str]) -> None:
    """A run id (or its unique prefix) that names only an incomplete run: say so, not "no such run"."""
    if not problems or reference in ("latest", "best") or looks_like_uri(reference):
        return
    matches = [r for r in records if r.run_id == reference] or [r for r in records if r.run_id.startswith(reference)]
    complete = [r for r in matches if r.run_id not in problems]
    if matches and not complete:
        run_id = matches[0].run_id
        raise CheckpointNotFound(f"run {run_id} is incomplete: {problems[run_id]}",
                                 hint="its writer stopped before it finished; train again or pick another run "
                                      "from `sentinel status`")


_RUN_ID_IN_URI = re.compile(rf"/{RUNS_DIR}/([^/]+)/[^/]+\.pt$")


def run_id_from_uri(uri: str) -> str | None:
    """``…/runs/<run_id>/best.pt`` → ``<run_id>`` (the layout of ``sentinel_ml.store.checkpoint``)."""
    match = _RUN_ID_IN_URI.search(uri.replace("\\", "/"))
    return match.group(1) if match else None
