"""The canary's rules, pure (no Ray, no torch): which users the candidate answers, the per-version
metrics the replicas export, their reading from Prometheus text, and the verdict of an automatic watch.

A canary serves a candidate checkpoint beside the incumbent in the same replica (``ServeArgs.canary_*``).
A user goes to the candidate when the stable hash of their id (SHA-256 of the id as text: the same in
every replica, process and run, unlike Python's ``hash``) falls in the first ``percent`` of
``BUCKETS``. A request that names no single user routes by its first user (an OIP or TF-Serving
batch); a request that names a model version gets that version. Each answer names the version that
gave it: ``VERSION_HEADER`` on HTTP, the same key in gRPC's trailing metadata, ``model_version`` in the
JSON bodies. A candidate that fails (an exception, not a client error) counts an error for its version
and the incumbent answers instead: users never see a candidate's failure, the metrics do.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

BUCKETS = 10_000  # percent with two decimals: 0.01 % of users is one bucket
VERSION_HEADER = "x-sentinel-model-version"  # HTTP header and gRPC metadata key (lower case)
ROLES = ("incumbent", "candidate")
DECISIONS = ("promote", "rollback")
# The version that answered the current HTTP request: the ingress' header middleware puts an empty
# dict here before the route runs and ``Replica.answer`` fills it in (a dict, so that a copied
# context still shares it with the middleware).
ANSWERED: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("answered", default=None)

# The replicas' metrics (ray.serve.metrics; Prometheus names carry Ray's `ray_` prefix and, for
# counters, `_total`), each tagged with `model_version` and `role`.
METRIC_REQUESTS = "sentinel_model_requests"
METRIC_ERRORS = "sentinel_model_errors"
METRIC_LATENCY = "sentinel_model_latency_ms"
TAG_KEYS = ("model_version", "role")
# Latency buckets (ms): about 12 % apart from 0.5 ms to 10 s, so a p99 read from them is within ~6 %.
LATENCY_BOUNDARIES_MS = tuple(round(0.5 * 1.12 ** i, 3) for i in range(88))


def user_bucket(user_id: object) -> int:
    """The user's bucket in ``range(BUCKETS)``: SHA-256 of the id as text (an integer id and its decimal
    string share one bucket), so the split is the same everywhere and for ever."""
    digest = hashlib.sha256(str(user_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def to_candidate(user_id: object, percent: float) -> bool:
    """Whether the candidate answers ``user_id`` when it serves ``percent`` % of users."""
    return user_bucket(user_id) < round(percent * BUCKETS / 100)


def check_percent(percent: float) -> None:
    if not 0 < percent < 100:
        raise ValueError(f"canary percent {percent} is not between 0 and 100 (exclusive)")


@dataclass
class VersionStats:
    """One model version's counts (summed over replicas): requests, errors and latency buckets
    (cumulative counts per upper bound in ms, as Prometheus keeps them)."""

    version: str
    role: str = ""
    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float | None:
        return quantile_ms(self.buckets, 0.99)

    def minus(self, before: VersionStats | None) -> VersionStats:
        """What happened since ``before`` (an earlier reading of the same version)."""
        if before is None:
            return self
        return VersionStats(self.version, self.role, max(0.0, self.requests - before.requests),
                            max(0.0, self.errors - before.errors),
                            {le: max(0.0, n - _cumulative_at(before.buckets, le)) for le, n in self.buckets.items()})

    def summary(self) -> dict[str, object]:
        p99 = self.p99_ms
        return {"version": self.version, "role": self.role, "requests": int(self.requests),
                "errors": int(self.errors), "error_rate": round(self.error_rate, 4),
                "p99_ms": round(p99, 2) if p99 is not None else None}


def _cumulative_at(buckets: Mapping[float, float], le: float) -> float:
    """The cumulative count at ``le``: its bucket's, else the largest bound below it's (none: 0)."""
    if le in buckets:
        return buckets[le]
    below = [bound for bound in buckets if bound < le]
    return buckets[max(below)] if below else 0.0


def quantile_ms(buckets: Mapping[float, float], q: float) -> float | None:
    """The ``q`` quantile from cumulative buckets (upper bound → count), interpolated within its bucket
    as Prometheus' ``histogram_quantile`` does; None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            share = (rank - previous_count) / (count - previous_count) if count > previous_count else 1.0
            return previous_bound + (bound - previous_bound) * share
        previous_bound, previous_count = bound, count
    return previous_bound


def parse_metrics(text: str) -> dict[str, VersionStats]:
    """Per-version stats from Prometheus exposition text (one or more Ray metrics agents' pages,
    concatenated), summed over replicas; versions without a sample are absent."""
    stats: dict[str, VersionStats] = {}
    for name, labels, value in _samples(text):
        version = labels.get("model_version")
        if version is None or METRIC_REQUESTS not in name and METRIC_ERRORS not in name \
                and METRIC_LATENCY not in name:
            continue
        entry = stats.setdefault(version, VersionStats(version, labels.get("role", "")))
        if METRIC_LATENCY in name:
            if name.endswith("_bucket") and "le" in labels:
                le = float(labels["le"])
                entry.buckets[le] = entry.buckets.get(le, 0.0) + value
        elif METRIC_REQUESTS in name:
            entry.requests += value
        else:
            entry.errors += value
    return stats


def _samples(text: str) -> Iterable[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of each sample line; comments and malformed lines are skipped."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, _, rest = line.partition("{")
            body, _, tail = rest.rpartition("}")
            labels = _labels(body)
        else:
            name, _, tail = line.partition(" ")
            labels = {}
        try:
            value = float(tail.split()[0])
        except (IndexError, ValueError):
            continue
        yield name, labels, value


def _labels(body: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    i = 0
    while i < len(body):
        eq = body.find("=", i)
        if eq < 0 or eq + 1 >= len(body) or body[eq + 1] != '"':
            break
        key = body[i:eq].strip().lstrip(",").strip()
        j, value = eq + 2, []
        while j < len(body) and body[j] != '"':
            if body[j] == "\\" and j + 1 < len(body):
                j += 1
            value.append(body[j])
            j += 1
        labels[key] = "".join(value)
        i = j + 1
    return labels


@dataclass(frozen=True)
class Thresholds:
    """What the candidate must hold during an automatic watch. ``min_requests``: neither rule judges a
    version with fewer requests in the window (a first error of three requests is no 33 % error rate)."""

    max_error_rate: float
    max_p99_ratio: float
    min_requests: int = 20


def breach(candidate: VersionStats | None, incumbent: VersionStats | None, limits: Thresholds) -> str | None:
    """The first rule the candidate breaks, in words, or None while it holds (or has too few requests
    to be judged)."""
    if candidate is None or candidate.requests < limits.min_requests:
        return None
    if candidate.error_rate > limits.max_error_rate:
        return (f"error rate {candidate.error_rate:.2%} of version {candidate.version} is above "
                f"--max-error-rate {limits.max_error_rate:.2%} ({int(candidate.errors)} errors in "
                f"{int(candidate.requests)} requests)")
    if incumbent is None or incumbent.requests < limits.min_requests:
        return None
    mine, theirs = candidate.p99_ms, incumbent.p99_ms
    if mine is not None and theirs:
        ratio = mine / theirs
        if ratio > limits.max_p99_ratio:
            return (f"p99 latency {mine:.1f} ms of version {candidate.version} is {ratio:.2f}x the "
                    f"incumbent's {theirs:.1f} ms, above --max-p99-ratio {limits.max_p99_ratio:g}")
    return None
