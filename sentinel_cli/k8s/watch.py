"""Wait for KubeRay objects and follow their logs: bounded, and always saying why it still waits.

The pure half reads objects (dicts) into states and explanations: ``rayjob_state``,
``rayservice_state``, ``explain`` (pod phases, scheduling failures, image pulls, warning events,
each with the next step). The loops (``follow_rayjob``, ``wait_rayservice``, ``follow_pod``) poll
through ``kube.Kube`` and give up with ``WaitTimeout`` after ``timeout_s`` seconds without progress
(a changed status, a pod phase, a new log line). The RayJob's status decides the outcome; the log
stream is best effort and reconnects when it drops, skipping lines it already printed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sentinel_cli.k8s.client import RAYJOB, RAYSERVICE, Kube
from sentinel_cli.k8s.manifests import SUBMITTER_CONTAINER
from sentinel_ml.errors import ConfigError, JobFailed, SentinelError, WaitTimeout

POLL_S = 2.0
HEAD_CONTAINER = "ray-head"

# Known causes in scheduler and kubelet messages -> what to do about them.
HINTS = [
    ("Insufficient cpu", "the pods ask for more CPU than any node has free: lower kubernetes.head.cpu / "
                         "worker.cpu or the worker count, or add nodes (cluster autoscaler, Karpenter)"),
    ("Insufficient memory", "the pods ask for more memory than any node has free: lower the memory "
                            "in the profile or add nodes"),
    ("didn't match Pod's node affinity/selector",
     "no node carries the labels the pods select: label the nodes (training workers: "
     "intention=training, lifecycle=Ec2Spot; head: lifecycle=OnDemand) or change "
     "spot.node_selector / head_node_selector in the profile"),
    ("untolerated taint", "the nodes are tainted and the pods do not tolerate it: add the taint to "
                          "spot.tolerations in the profile"),
    ("ImagePullBackOff", "the image cannot be pulled: check kubernetes.images in the profile (name, tag) "
                         "and that the nodes may pull from the registry (ECR policy, pull secret)"),
    ("ErrImagePull", "the image cannot be pulled: check kubernetes.images in the profile (name, tag) "
                     "and that the nodes may pull from the registry (ECR policy, pull secret)"),
    ("InvalidImageName", "the image reference is malformed: fix kubernetes.images in the profile"),
    ("ErrImageNeverPull", "the image is not on the node and its pull policy is Never: load it onto the "
                          "nodes, or fix kubernetes.images (or images.pull_policy) in the profile"),
    ("CrashLoopBackOff", "a container keeps crashing: read its log (kubectl logs --previous)"),
    ("serviceaccount", "the service account is missing: keep service_account.create: true, or create it"),
    ("exceeded quota", "the namespace's ResourceQuota is exhausted: free resources or raise the quota"),
]
WAITING_REASONS = {"ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName",
                   "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
# Waiting will not help: the kubelet never retries these.
HOPELESS_REASONS = ("ErrImageNeverPull", "InvalidImageName")
# A failing pull alternates between these two; a pull that fails this long is taken as final.
PULL_REASONS = ("ErrImagePull", "ImagePullBackOff")
PULL_GIVE_UP_S = 30.0


def hint_for(text: str) -> str | None:
    return next((hint for needle, hint in HINTS if needle.lower() in text.lower()), None)


# -- states ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobState:
    name: str
    deployment: str  # jobDeploymentStatus; "New" before the operator saw it
    job_status: str  # the Ray job's status: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED or ""
    reason: str
    message: str
    cluster: str | None

    @property
    def terminal(self) -> bool:
        return self.deployment in ("Complete", "Failed", "ValidationFailed")

    @property
    def succeeded(self) -> bool:
        return self.deployment == "Complete" and self.job_status == "SUCCEEDED"

    def describe(self) -> str:
        text = f"RayJob {self.deployment}"
        if self.job_status:
            text += f", Ray job {self.job_status}"
        if self.reason:
            text += f" ({self.reason})"
        if self.message:
            text += f": {self.message}"
        return text


def rayjob_state(obj: dict[str, Any]) -> JobState:
    status = obj.get("status") or {}
    return JobState(
        name=obj["metadata"]["name"],
        deployment=status.get("jobDeploymentStatus") or "New",
        job_status=status.get("jobStatus") or "",
        reason=status.get("reason") or "",
        message=status.get("message") or "",
        cluster=status.get("rayClusterName") or None,
    )


@dataclass(frozen=True)
class ServiceState:
    name: str
    ready: bool
    current: bool  # the status describes the latest spec (observedGeneration)
    reason: str
    message: str
    clusters: tuple[str, ...]  # active first, then pending
    applications: dict[str, tuple[str, str]]  # app -> (status, message)
    upgrading: bool

    @property
    def failed_apps(self) -> dict[str, str]:
        return {app: message for app, (status, message) in self.applications.items()
                if status in ("DEPLOY_FAILED", "UNHEALTHY")}

    @property
    def done(self) -> bool:
        apps_ok = all(status == "RUNNING" for status, _ in self.applications.values())
        return self.ready and self.current and not self.upgrading and apps_ok

    def describe(self) -> str:
        text = "RayService " + ("Ready" if self.ready else "not ready")
        if self.reason:
            text += f" ({self.reason})"
        if self.message:
            text += f": {self.message}"
        if self.upgrading:
            text += "; upgrade in progress"
        if not self.current:
            text += "; the operator has not yet seen the latest spec"
        for app, (status, _) in sorted(self.applications.items()):
            text += f"; application {app} {status}"
        return text


def rayservice_state(obj: dict[str, Any]) -> ServiceState:
    status = obj.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready", {})
    active = status.get("activeServiceStatus") or {}
    pending = status.get("pendingServiceStatus") or {}
    apps: dict[str, tuple[str, str]] = {}
    source = pending if pending.get("rayClusterName") else active
    for app, info in (source.get("applicationStatuses") or {}).items():
        apps[app] = (info.get("status") or "", info.get("message") or "")
    generation = obj["metadata"].get("generation") or 0
    return ServiceState(
        name=obj["metadata"]["name"],
        ready=ready.get("status") == "True" or status.get("serviceStatus") == "Running",
        current=(status.get("observedGeneration") or 0) >= generation,
        reason=ready.get("reason") or "",
        message=ready.get("message") or "",
        clusters=tuple(c for c in (active.get("rayClusterName"), pending.get("rayClusterName")) if c),
        applications=apps,
        upgrading=conditions.get("UpgradeInProgress", {}).get("status") == "True",
    )


# -- explanations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """Why a wait is not over: one line for people, and the next step when a cause is known."""

    summary: str
    problems: tuple[str, ...] = ()
    hint: str | None = None

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        """What counts as a change: a failing pull's alternation between ErrImagePull and
        ImagePullBackOff (and its changing message) is the same problem, not progress."""
        return self.summary, tuple(_pull_failure(p) or p for p in self.problems)

    def hopeless(self) -> str | None:
        """A problem that waiting cannot solve."""
        return next((p for p in self.problems if any(f": {r} (" in p for r in HOPELESS_REASONS)), None)

    def pull_failure(self) -> str | None:
        return next((p for p in self.problems if _pull_failure(p)), None)

    def text(self) -> str:
        return "; ".join((self.summary, *self.problems))


def explain(status: str, pods: list[dict[str, Any]], events: list[dict[str, Any]]) -> Waiting:
    """Why ``status`` (a state's description) is not done yet, from pods and warning events."""
    problems: list[str] = []
    for pod in pods:
        problems.extend(_pod_problems(pod))
    names = {p["metadata"]["name"] for p in pods}
    seen = {(p.split(":", 1)[0]) for p in problems}
    for event in _warnings(events):
        obj = event.get("involvedObject") or {}
        if obj.get("kind") == "Pod" and obj.get("name") not in names:
            continue  # an event of a pod that is gone
        label = f"{obj.get('kind', '?')} {obj.get('name', '?')}"
        line = f"{label}: {event.get('reason')}: {_one_line(event.get('message') or '')}"
        if label not in seen:
            problems.append(line)
            seen.add(label)
    summary = status
    if pods:
        summary += "; pods " + _phases(pods)
    hint = next((h for h in (hint_for(p) for p in problems) if h), None)
    return Waiting(summary, tuple(problems), hint)


def _pod_problems(pod: dict[str, Any]) -> list[str]:
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    out = []
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            out.append(f"Pod {name}: {condition.get('reason') or 'not scheduled'}: "
                       f"{_one_line(condition.get('message') or '')}")
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in WAITING_REASONS:
            message, image = _one_line(waiting.get("message") or ""), container.get("image") or ""
            shown = message if image in message else f"{message} (image {image})".strip()
            out.append(f"Pod {name}: {waiting['reason']} ({container.get('name')}): {shown}")
    return out


def _pull_failure(problem: str) -> str | None:
    """``Pod x: image pull failing`` for a pod's ErrImagePull or ImagePullBackOff line."""
    for reason in PULL_REASONS:
        if f": {reason} (" in problem:
            return problem.split(f": {reason} (", 1)[0] + ": image pull failing"
    return None


def _phases(pods: list[dict[str, Any]]) -> str:
    counts: dict[tuple[str, str], int] = {}
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        role = labels.get("ray.io/node-type") or ("submitter" if "batch.kubernetes.io/job-name" in labels
                                                  or "job-name" in labels else "pod")
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        counts[(role, phase)] = counts.get((role, phase), 0) + 1
    return ", ".join(f"{role} {n}x {phase}" if n > 1 else f"{role} {phase}"
                     for (role, phase), n in sorted(counts.items()))


def _warnings(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    warnings = [e for e in events if e.get("type") == "Warning"]
    return sorted(warnings, key=_event_time, reverse=True)


def _event_time(event: dict[str, Any]) -> str:
    return (event.get("lastTimestamp") or event.get("eventTime")
            or (event.get("metadata") or {}).get("creationTimestamp") or "")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


# -- logs --------------------------------------------------------------------------------------


@dataclass
class LogCursor:
    """Remembers how far a log was printed, so a reconnect prints each line once.

    Lines carry the kubelet's timestamps (RFC 3339, nanoseconds). Logs are append-only, so a
    reconnect skips lines older than the last printed one and, among lines with that same
    timestamp, as many as were already printed.
    """

    last: str = ""
    at_last: int = 0  # lines printed with timestamp == last
    _replayed: int = field(default=0, repr=False)
    last_time: datetime | None = None

    def reconnect(self) -> None:
        self._replayed = 0

    def accept(self, line: str) -> str | None:
        """The line's text if it is new, else None."""
        stamp, _, text = line.partition(" ")
        key = _time_key(stamp)
        if key is None:
            return line
        if key < self.last:
            return None
        if key == self.last:
            if self._replayed < self.at_last:
                self._replayed += 1
                return None
            self.at_last += 1
            self._replayed += 1
            return text
        self.last, self.at_last, self._replayed = key, 1, 1
        self.last_time = _parse_time(stamp)
        return text

    def since_seconds(self, now: datetime | None = None) -> int | None:
        """How far back a reconnect must ask for (a minute of margin for clock skew)."""
        if self.last_time is None:
            return None
        now = now or datetime.now(timezone.utc)
        return max(1, math.ceil((now - self.last_time).total_seconds()) + 60)


def _time_key(stamp: str) -> str | None:
    if len(stamp) < 20 or stamp[4] != "-" or stamp[10] != "T" or not stamp.endswith("Z"):
        return None
    main, _, fraction = stamp[:-1].partition(".")
    return f"{main}.{fraction.ljust(9, '0')}"


def _parse_time(stamp: str) -> datetime | None:
    try:
        return datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def read_log(kube: Kube, pod: str, container: str | None, cursor: LogCursor, on_line: Callable[[str], None],
             *, follow: bool, read_timeout: float = POLL_S, max_seconds: float | None = None) -> int:
    """Print the new lines of one connection; returns how many. A drop just ends it."""
    cursor.reconnect()
    printed = 0
    for line in kube.log_lines(pod, container, follow=follow, since_seconds=cursor.since_seconds(),
                               read_timeout=read_timeout, max_seconds=max_seconds):
        text = cursor.accept(line)
        if text is not None:
            on_line(text)
            printed += 1
    return printed


# -- waits -------------------------------------------------------------------------------------


class Stall:
    """A no-progress timer: expires ``timeout_s`` after the last sign of progress."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self.last = clock()

    def progress(self) -> None:
        self.last = self.clock()

    def expired(self) -> bool:
        return self.clock() - self.last > self.timeout_s


def _newest(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


def _started(pod: dict[str, Any] | None) -> bool:
    return bool(pod) and (pod.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed")


def rayjob_pods(kube: Kube, name: str, cluster: str | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The RayCluster's pods and the submitter's, and the newest submitter pod."""
    submitters = kube.pods(f"batch.kubernetes.io/job-name={name}")
    pods = (kube.pods(f"ray.io/cluster={cluster}") if cluster else []) + submitters
    return pods, _newest(submitters)


def _related_events(kube: Kube, names: set[str]) -> list[dict[str, Any]]:
    return [e for e in kube.events() if (e.get("involvedObject") or {}).get("name") in names]


def follow_rayjob(kube: Kube, name: str, *, timeout_s: float, on_line: Callable[[str], None] | None,
                  on_wait: Callable[[Waiting], None], poll_s: float = POLL_S) -> JobState:
    """Wait for the RayJob to finish, printing the driver's log (``on_line``) as it comes."""
    watch = _Watch(kube, f"RayJob {name}", timeout_s, on_wait,
                   f"it keeps running: `sentinel logs {name} -n {kube.namespace} -f` reattaches, "
                   f"`sentinel delete {name} -n {kube.namespace}` stops it")
    cursor = LogCursor()
    while True:
        obj = kube.get(RAYJOB, name)
        if obj is None:
            raise JobFailed(f"RayJob {name} no longer exists in namespace {kube.namespace}",
                            hint="it was deleted (sentinel delete, or KubeRay's deletion policy)")
        state = rayjob_state(obj)
        pods, submitter = rayjob_pods(kube, name, state.cluster)
        if state.terminal:
            if on_line and _started(submitter):
                _log_round(kube, submitter, cursor, on_line, follow=False, poll_s=poll_s)
            return state
        watch.observe(state.describe(), pods, {name, state.cluster or ""})
        started = time.monotonic()
        if on_line and _started(submitter):
            if _log_round(kube, submitter, cursor, on_line, follow=True, poll_s=poll_s):
                watch.stall.progress()
        _sleep_rest(started, poll_s)


def _log_round(kube: Kube, pod: dict[str, Any], cursor: LogCursor, on_line: Callable[[str], None],
               *, follow: bool, poll_s: float) -> int:
    try:
        return read_log(kube, pod["metadata"]["name"], SUBMITTER_CONTAINER, cursor, on_line,
                        follow=follow, read_timeout=poll_s, max_seconds=poll_s * 5)
    except SentinelError:
        return 0  # logs are best effort (pod gone, container not started): the status decides


def _sleep_rest(started: float, period: float) -> None:
    left = period - (time.monotonic() - started)
    if left > 0:
        time.sleep(left)


def wait_rayservice(kube: Kube, name: str, *, timeout_s: float, on_wait: Callable[[Waiting], None],
                    poll_s: float = POLL_S) -> ServiceState:
    """Wait until the RayService is Ready for its latest spec, its applications RUNNING."""
    watch = _Watch(kube, f"RayService {name}", timeout_s, on_wait,
                   f"it keeps trying: `sentinel status --target k8s -n {kube.namespace}` shows it, "
                   f"`sentinel delete {name} -n {kube.namespace}` removes it")
    while True:
        obj = kube.get(RAYSERVICE, name)
        if obj is None:
            raise JobFailed(f"RayService {name} no longer exists in namespace {kube.namespace}")
        state = rayservice_state(obj)
        if state.current and state.failed_apps:
            detail = "; ".join(f"{app}: {msg}" for app, msg in state.failed_apps.items())
            raise JobFailed(f"RayService {name}: the Serve application failed: {detail}",
                            hint=f"read the head's log: sentinel logs {name} -n {kube.namespace}")
        if state.done:
            return state
        pods = [p for cluster in state.clusters for p in kube.pods(f"ray.io/cluster={cluster}")]
        watch.observe(state.describe(), pods, {name, *state.clusters})
        time.sleep(poll_s)


class _Watch:
    """One bounded wait: says why it waits whenever that changes, gives up after ``timeout_s``
    without any change (``WaitTimeout``, with the cause's next step and ``rest``)."""

    def __init__(self, kube: Kube, what: str, timeout_s: float, on_wait: Callable[[Waiting], None],
                 rest: str) -> None:
        self.kube, self.what, self.timeout_s, self.on_wait, self.rest = kube, what, timeout_s, on_wait, rest
        self.stall = Stall(timeout_s)
        self.last_key: tuple | None = None
        self.pull_failing_since: float | None = None

    def observe(self, status: str, pods: list[dict[str, Any]], names: set[str]) -> None:
        names = names | {p["metadata"]["name"] for p in pods}
        waiting = explain(status, pods, _related_events(self.kube, names))
        if waiting.key != self.last_key:
            self.on_wait(waiting)
            self.last_key = waiting.key
            self.stall.progress()
        self._give_up_on_images(waiting)
        if self.stall.expired():
            hint = f"{waiting.hint}; {self.rest}" if waiting.hint else self.rest
            raise WaitTimeout(f"{self.what} made no progress for {self.timeout_s:g}s: {waiting.text()}",
                              hint=hint)


    def _give_up_on_images(self, waiting: Waiting) -> None:
        """An image that is not there is a configuration error: say so now, not after the timeout."""
        pulling = waiting.pull_failure()
        self.pull_failing_since = (self.pull_failing_since or time.monotonic()) if pulling else None
        failing_long = pulling and time.monotonic() - self.pull_failing_since >= PULL_GIVE_UP_S
        problem = waiting.hopeless() or (pulling if failing_long else None)
        if problem:
            raise ConfigError(f"{self.what} cannot start: {problem}",
                              hint=waiting.hint or "check kubernetes.images in the profile")


def follow_pod(kube: Kube, pod: str, container: str | None, on_line: Callable[[str], None], *,
               follow: bool, poll_s: float = POLL_S) -> None:
    """Print a pod's log; with ``follow``, keep reconnecting until Ctrl-C (like ``kubectl logs -f``)."""
    cursor = LogCursor()
    if not follow:
        read_log(kube, pod, container, cursor, on_line, follow=False, read_timeout=30)
        return
    while True:
        started = time.monotonic()
        try:
            read_log(kube, pod, container, cursor, on_line, follow=True, read_timeout=poll_s,
                     max_seconds=poll_s * 5)
        except SentinelError:
            pass  # reconnect below
        _sleep_rest(started, poll_s)
