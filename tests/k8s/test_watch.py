"""The pure half of waiting and following: states, explanations with next steps, log dedup."""

from __future__ import annotations

from datetime import datetime, timezone

from sentinel_cli.k8s.watch import (
    LogCursor,
    explain,
    hint_for,
    rayjob_state,
    rayservice_state,
)


def _pod(name: str, phase: str = "Pending", node_type: str = "head", **status) -> dict:
    return {"metadata": {"name": name, "labels": {"ray.io/node-type": node_type}},
            "status": {"phase": phase, **status}}


def test_log_cursor_prints_each_line_once_across_reconnects() -> None:
    lines = [f"2026-01-01T00:00:0{i}.000000000Z line {i}" for i in range(4)]
    same = ["2026-01-01T00:00:05.000000000Z twin", "2026-01-01T00:00:05.000000000Z twin"]
    cursor = LogCursor()
    printed = [cursor.accept(line) for line in lines[:2] + same[:1]]
    cursor.reconnect()  # the stream dropped; the server resends from a little earlier
    printed += [cursor.accept(line) for line in lines[:2] + same + ["2026-01-01T00:00:06.000000000Z new"]]
    assert [p for p in printed if p is not None] == ["line 0", "line 1", "twin", "twin", "new"]
    assert cursor.accept("no timestamp here") == "no timestamp here"


def test_log_cursor_asks_for_enough_history_on_reconnect() -> None:
    cursor = LogCursor()
    assert cursor.since_seconds() is None  # nothing read yet: the whole log
    cursor.accept("2026-01-01T00:00:00.000000000Z first")
    now = datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone.utc)
    assert cursor.since_seconds(now) == 90  # 30 s since the last line, plus a minute of margin


def test_unschedulable_pods_are_explained_with_the_next_step() -> None:
    cpu = _pod("job-head", conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available."}])
    selector = _pod("job-worker", node_type="worker", conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."}])
    waiting = explain("RayJob Initializing", [cpu, selector], [])
    assert waiting.summary == "RayJob Initializing; pods head Pending, worker Pending"
    assert "Pod job-head: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu." in waiting.text()
    assert "kubernetes.head.cpu" in waiting.hint
    assert "spot.node_selector" in hint_for(waiting.problems[1])


def test_image_pull_failures_and_warning_events_are_explained() -> None:
    pulling = _pod("svc-head", containerStatuses=[{
        "name": "ray-head", "image": "nope:1",
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope:1\""}}}])
    events = [
        {"type": "Warning", "reason": "FailedCreate", "message": "serviceaccount \"x\" not found",
         "involvedObject": {"kind": "Job", "name": "job"}, "lastTimestamp": "2026-01-01T00:00:01Z"},
        {"type": "Warning", "reason": "FailedScheduling", "message": "old pod",
         "involvedObject": {"kind": "Pod", "name": "gone"}},
        {"type": "Normal", "reason": "Scheduled", "message": "fine",
         "involvedObject": {"kind": "Pod", "name": "svc-head"}},
    ]
    waiting = explain("RayService not ready", [pulling], events)
    assert waiting.problems == (
        'Pod svc-head: ImagePullBackOff (ray-head): Back-off pulling image "nope:1"',
        'Job job: FailedCreate: serviceaccount "x" not found',
    )
    assert "kubernetes.images" in waiting.hint


def test_rayjob_states() -> None:
    job = {"metadata": {"name": "j"}, "status": {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}}
    state = rayjob_state(job)
    assert state.terminal and state.succeeded
    failed = rayjob_state({"metadata": {"name": "j"}, "status": {
        "jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed", "message": "boom"}})
    assert failed.terminal and not failed.succeeded
    assert failed.describe() == "RayJob Failed, Ray job FAILED (AppFailed): boom"
    assert rayjob_state({"metadata": {"name": "j"}}).describe() == "RayJob New"


def test_rayservice_is_done_only_when_ready_for_its_latest_spec() -> None:
    def service(generation: int, observed: int, ready: str, app_status: str = "RUNNING") -> dict:
        return {"metadata": {"name": "s", "generation": generation}, "status": {
            "observedGeneration": observed,
            "conditions": [{"type": "Ready", "status": ready, "reason": "NonZeroServeEndpoints"}],
            "activeServiceStatus": {"rayClusterName": "s-abc", "applicationStatuses": {
                "sentinel": {"status": app_status, "message": "x"}}}}}

    assert rayservice_state(service(2, 2, "True")).done
    assert not rayservice_state(service(3, 2, "True")).done  # an upgrade not yet seen
    assert not rayservice_state(service(2, 2, "False")).done
    broken = rayservice_state(service(2, 2, "True", "DEPLOY_FAILED"))
    assert not broken.done and broken.failed_apps == {"sentinel": "x"}
    assert rayservice_state(service(2, 2, "True")).clusters == ("s-abc",)


def test_a_jobs_progress_lines_read_as_on_the_local_target(capsys) -> None:
    """The entrypoint writes its progress as JSON lines; followed from a pod they read as the local
    target prints them, and any other line (or a JSON line of someone else's) stays as it is."""
    import json

    from sentinel_cli.progress import kube_line

    epoch = {"event": "epoch", "epoch": 2, "epochs": 4, "train_loss": 0.8, "val_rmse": 0.95, "val_mae": 0.75}
    kube_line(json.dumps(epoch))
    kube_line('{"event": "trial_epoch", "trial": "t1"}')  # not ours: fields missing
    kube_line("[/__w/gloo/pair.cc:545] Connection closed by peer")  # markup-like text, literally
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].split() == ["epoch", "2/4", "train_loss", "0.8000", "val_rmse", "0.9500", "val_mae", "0.7500"]
    assert lines[1] == '{"event": "trial_epoch", "trial": "t1"}'
    assert lines[2] == "[/__w/gloo/pair.cc:545] Connection closed by peer"
