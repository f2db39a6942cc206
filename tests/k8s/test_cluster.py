"""The Kubernetes target against the real test environment (tests/testenv): kube-apiserver with the
KubeRay CRDs, the KubeRay operator, a scheduler, kwok nodes, and the stand-in Ray dashboard that
decides how Ray jobs end. Checkpoint records live on a real S3-compatible server (moto) on loopback.

Each test runs in its own namespace; every wait is bounded (``wait_for``), never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from kubernetes import client
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_cli.backends.kubernetes import plan, run
from sentinel_cli.backends.kubernetes.backend import KubernetesBackend
from sentinel_cli.backends.results import ServeReport
from sentinel_cli.k8s.request import KubeRequest, kube_request
from sentinel_ml.entrypoint import exit_code
from sentinel_ml.serving.config import ServeRequest
from sentinel_ml.store import index as checkpoints
from sentinel_ml.store import uri as storage
from sentinel_ml.store.checkpoint import checkpoint_uri
from sentinel_ml.tuning.config import StudyConfig
from tests.k8s.proxy import DroppingProxy
from tests.testenv.dashboard import Outcome
from tests.testenv.process import wait_for

pytestmark = pytest.mark.k8s

TIMEOUT_S = 60
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster(k8s_env, k8s_api, k8s_namespace, kube_env, s3_bucket, tmp_path, monkeypatch):
    """The environment, one namespace, one bucket, and a profile pointing at them."""
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"target": "k8s", "kubernetes": {
        "namespace": k8s_namespace, "storage": s3_bucket, "workers": 2,
        # small pods, so that namespaces still being deleted leave room on the three kwok nodes
        "head": {"cpu": "100m", "memory": "256Mi"}, "worker": {"cpu": "100m", "memory": "256Mi"},
        "serve_worker": {"cpu": "100m", "memory": "256Mi"},
        "env": {"AWS_REGION": "us-east-1"},
        "service_account": {"name": "sentinel", "role_arn": "arn:aws:iam::123456789012:role/sentinel"},
        "images": {"train": "registry.example/sentinel-train:0.1.0",
                   "serve": "registry.example/sentinel-serve:0.1.0"},
    }}))
    monkeypatch.setenv("KUBECONFIG", str(k8s_env.kubeconfig))
    monkeypatch.setenv("SENTINEL_PROFILE", str(profile))
    return _Cluster(k8s_env, k8s_api, k8s_namespace, s3_bucket, profile, tmp_path)


class _Cluster:
    def __init__(self, env, api, namespace: str, storage: str, profile: Path, tmp: Path) -> None:
        self.env, self.api, self.namespace, self.storage, self.profile, self.tmp = (
            env, api, namespace, storage, profile, tmp)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object("ray.io", "v1", self.namespace, plural, name)

    def items(self, plural: str) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object("ray.io", "v1", self.namespace, plural)["items"]

    def pods(self, selector: str) -> list[client.V1Pod]:
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def outcome(self, status: str, message: str = "") -> None:
        self.env.dashboard.set_outcome(self.namespace, Outcome(status=status, message=message))

    def write_record(self, run_id: str, val_rmse: float, created_at: str) -> checkpoints.RunRecord:
        """The index record a job writes when it ends (no container runs here)."""
        record = checkpoints.RunRecord(
            run_id=run_id, kind="train", created_at=created_at, config={"epochs": 2},
            metrics={"val_rmse": val_rmse, "test_rmse": val_rmse + 0.01, "best_epoch": 2},
            checkpoints={"best": checkpoint_uri(self.storage, run_id, "best"),
                         "last": checkpoint_uri(self.storage, run_id, "last")})
        checkpoints.write_record(self.storage, record)
        return record

    def append_log(self, text: str) -> None:
        """What every kwok container 'prints' next (kwok serves one shared CRI log file)."""
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        with open(self.env.paths.container_log, "a") as log:
            log.write(f"{stamp} stdout F {text}\n")

    def cli_env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(kubeconfig or self.env.kubeconfig),
                "SENTINEL_PROFILE": str(self.profile), "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    """Output with the console's line wrapping undone."""
    return " ".join(text.split())


def _job_name(prefix: str = "train") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _serve(checkpoint: str, deploy: KubeRequest) -> ServeReport:
    return KubernetesBackend().serve(ServeRequest(checkpoint=checkpoint), deploy)


def _cluster(name: str) -> None:
    """A standalone RayCluster, as `sentinel render cluster` plans it, applied."""
    deploy = kube_request(name=name)
    run.cluster(plan.plan_cluster(deploy), deploy)


# -- apply -------------------------------------------------------------------------------------


def test_every_template_applies_and_the_operator_makes_the_pods_we_expect(cluster) -> None:
    ns = cluster.namespace
    job = _job_name()
    assert cli("train", "--target", "k8s", "--name", job, "--no-wait").exit_code == 0
    tune = KubernetesBackend().tune(StudyConfig(samples=4), kube_request(name=_job_name("tune"), wait=False))
    serve = _serve("s3://bucket/artifacts/runs/train-x/best.pt", kube_request(wait=False))
    _cluster("interactive")

    rayjob = cluster.get("rayjobs", job)
    assert rayjob["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "sentinel"
    assert rayjob["metadata"]["labels"]["sentinel.io/run-id"] == job
    assert cluster.get("rayjobs", tune.rayjob)["spec"]["entrypoint"].startswith("python -m sentinel_ml.tune")
    assert cluster.get("rayservices", serve.rayservice)["metadata"]["annotations"][
        "sentinel.io/checkpoint"] == "s3://bucket/artifacts/runs/train-x/best.pt"
    account = cluster.core.read_namespaced_service_account("sentinel", ns)
    assert account.metadata.annotations["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123456789012:role/sentinel"

    def pods_reason() -> str | None:
        pods = cluster.pods("ray.io/cluster=interactive")
        running = [p for p in pods if p.status.phase == "Running"]
        return None if len(running) == 3 else f"{len(running)} of 3 pods Running"

    wait_for("the standalone RayCluster's pods", pods_reason, TIMEOUT_S)
    pods = {p.metadata.labels["ray.io/node-type"]: p for p in cluster.pods("ray.io/cluster=interactive")}
    head, worker = pods["head"], pods["worker"]
    for pod in (head, worker):
        container = pod.spec.containers[0]
        assert container.image == "registry.example/sentinel-train:0.1.0"
        assert pod.spec.service_account_name == "sentinel"
        assert {"name": "AWS_REGION", "value": "us-east-1"} in [{"name": e.name, "value": e.value}
                                                                 for e in container.env]
        assert container.resources.limits == {"cpu": "100m", "memory": "256Mi"}
    assert head.spec.node_selector == {"lifecycle": "OnDemand"} and head.spec.node_name == "kwok-ondemand-0"
    assert worker.spec.node_selector == {"intention": "training", "lifecycle": "Ec2Spot"}
    assert worker.spec.node_name in ("kwok-spot-0", "kwok-spot-1")
    assert [(t.key, t.value, t.effect) for t in worker.spec.tolerations
            if t.key == "lifecycle"] == [("lifecycle", "Ec2Spot", "NoSchedule")]

    status = cli("status", "--target", "k8s", "-o", "json")
    assert status.exit_code == 0, status.output
    rows = {(r["kind"], r["name"]) for r in json.loads(status.stdout)["objects"]}
    assert rows == {("RayJob", job), ("RayJob", tune.rayjob), ("RayService", "recommender"),
                    ("RayCluster", "interactive")}  # the clusters KubeRay made for them are not listed
    table = cli("status", "--target", "k8s")
    assert job in table.stdout and "interactive" in table.stdout
    everywhere = cli("status", "--target", "k8s", "-A", "-o", "json")
    assert everywhere.exit_code == 0, everywhere.output
    assert (ns, job) in {(r["namespace"], r["name"]) for r in json.loads(everywhere.stdout)["objects"]}


def test_reapplying_changes_nothing_and_dry_run_creates_nothing(cluster) -> None:
    job = _job_name()
    args = ("train", "--target", "k8s", "--name", job, "--no-wait")
    assert cli(*args).exit_code == 0
    _serve("s3://bucket/artifacts/runs/train-x/best.pt", kube_request(wait=False))
    _cluster("interactive")
    objects = [("rayjobs", job), ("rayservices", "recommender"), ("rayclusters", "interactive")]

    def settled_reason() -> str | None:  # the operator has made its own first writes
        pending = [name for plural, name in objects if not cluster.get(plural, name).get("status")]
        return f"no status yet on {pending}" if pending else None

    wait_for("the operator to pick the objects up", settled_reason, TIMEOUT_S)
    before = {name: cluster.get(plural, name)["metadata"] for plural, name in objects}
    again = cli(*args)
    assert again.exit_code == 0, again.output
    _serve("s3://bucket/artifacts/runs/train-x/best.pt", kube_request(wait=False))
    _cluster("interactive")
    for plural, name in objects:
        after = cluster.get(plural, name)["metadata"]
        assert after["generation"] == before[name]["generation"], (plural, name)
        assert [m["manager"] for m in after["managedFields"] if m["operation"] == "Apply"] == ["sentinel"]

    dry = cli("train", "--target", "k8s", "--name", "dry-run-only", "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["dry_run"] is True
    assert "validated (server-side dry run)" in dry.stderr
    assert [j["metadata"]["name"] for j in cluster.items("rayjobs")] == [job]  # nothing new


# -- outcomes ----------------------------------------------------------------------------------


def test_a_succeeded_rayjob_exits_0_and_prints_the_index_record_from_s3(cluster, dataset_dir) -> None:
    job = _job_name()
    # What the RayJob's driver runs, run here against the same S3 (no container runs on kwok nodes):
    # the real training entry point writes the checkpoints and the index record the CLI then reads.
    driver = subprocess.run(
        [sys.executable, "-m", "sentinel_ml.train", "--epochs", "1", "--run-id", job, "--storage", cluster.storage,
         "--mlflow-uri", "off", "--data", str(dataset_dir)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_ADDRESS": ""})
    assert driver.returncode == 0, driver.stderr[-2000:]
    written = json.loads(driver.stdout)
    result = cli("train", "--target", "k8s", "--name", job, "-o", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["state"], summary["job_status"]) == ("Complete", "SUCCEEDED")
    assert summary["record"]["metrics"] == written["metrics"]
    assert summary["data"] == written["data"] and summary["data"]["split"] == "u1"  # the test RMSE's split
    assert summary["index_uri"] == written["index_uri"] == f"{cluster.storage}/index/{job}.json"
    assert summary["checkpoints"]["best"] == written["checkpoints"]["best"]
    assert storage.exists(summary["checkpoints"]["best"])
    assert "no container runs" in flat(result.stderr)  # the driver's log, from the submitter pod
    assert f"RayJob {job} succeeded" in flat(result.stderr)
    table = cli("logs", job)
    assert table.exit_code == 0 and "no container runs" in table.stderr


def test_a_failed_rayjob_exits_1_with_the_reason(cluster) -> None:
    cluster.outcome("FAILED", "Traceback: ValueError: bad split")
    job = _job_name()
    result = cli("train", "--target", "k8s", "--name", job)
    assert result.exit_code == 1, result.output
    assert f"RayJob {job} failed" in flat(result.stderr) and "AppFailed" in flat(result.stderr)
    assert f"sentinel logs {job}" in flat(result.stderr)


@pytest.mark.parametrize(("sets", "cause", "hint"), [
    (["head.cpu=64"], "Insufficient cpu", "kubernetes.head.cpu"),
    (["spot.node_selector.intention=gpu"], "didn't match Pod's node affinity/selector", "spot.node_selector"),
], ids=["insufficient-cpu", "node-selector-mismatch"])
def test_an_unschedulable_rayjob_says_why_and_times_out_with_3(cluster, sets, cause: str, hint: str) -> None:
    """What the wait says when pods stay Pending (the preflight, skipped here, refuses these at once:
    tests/k8s/test_preflight.py)."""
    job = _job_name()
    args = ["train", "--target", "k8s", "--name", job, "--timeout", "8", "--no-preflight"]
    for item in sets:
        args += ["--set", item]
    result = cli(*args)
    assert result.exit_code == 3, result.output
    assert "FailedScheduling" in flat(result.stderr) or "Unschedulable" in flat(result.stderr)
    assert cause in flat(result.stderr)
    assert hint in flat(result.stderr)
    assert "made no progress for 8s" in flat(result.stderr)
    assert f"sentinel logs {job} -n {cluster.namespace} -f" in flat(result.stderr)
    assert cluster.get("rayjobs", job)  # a timeout leaves the job alone


def test_image_pull_failures_are_reported_while_waiting(cluster) -> None:
    cluster.outcome("RUNNING")
    job = _job_name()
    assert cli("train", "--target", "k8s", "--name", job, "--no-wait").exit_code == 0

    def head_reason() -> str | None:
        name = cluster.get("rayjobs", job).get("status", {}).get("rayClusterName")
        heads = [p for p in cluster.pods(f"ray.io/cluster={name},ray.io/node-type=head")
                 if p.status.phase == "Running"] if name else []
        return None if heads else "no running head pod yet"

    wait_for("the head pod", head_reason, TIMEOUT_S)
    name = cluster.get("rayjobs", job)["status"]["rayClusterName"]
    head = cluster.pods(f"ray.io/cluster={name},ray.io/node-type=head")[0]
    cluster.core.patch_namespaced_pod_status(head.metadata.name, cluster.namespace, {"status": {
        "containerStatuses": [{"name": "ray-head", "image": "registry.example/sentinel-train:0.1.0",
                               "imageID": "", "ready": False, "restartCount": 0,
                               "state": {"waiting": {"reason": "ImagePullBackOff",
                                                     "message": "Back-off pulling image"}}}]}})
    result = cli("logs", job, "-f", "--timeout", "6")
    assert result.exit_code == 3, result.output
    assert f"Pod {head.metadata.name}: ImagePullBackOff (ray-head)" in flat(result.stderr)
    assert "kubernetes.images" in flat(result.stderr)


# -- following ---------------------------------------------------------------------------------


class _Reader:
    """Collects a subprocess's stderr lines in a thread, for bounded waits on what it printed."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.process = process
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, what: str, needle: str) -> None:
        wait_for(what, lambda: None if needle in self.text() else f"stderr so far:\n{self.text()}", TIMEOUT_S)


def _sentinel(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """The CLI as a user runs it in a terminal, where Ctrl-C reaches it: SIGINT at its default even when
    this run inherited it ignored (a shell starts background jobs that way, and Python keeps it so)."""
    return subprocess.Popen([sys.executable, "-m", "sentinel_cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_following_survives_a_dropped_stream_and_the_rayjob_decides(cluster) -> None:
    cluster.outcome("RUNNING")  # the Ray job runs until the test says otherwise
    job = _job_name()
    assert cli("train", "--target", "k8s", "--name", job, "--no-wait").exit_code == 0
    proxy = DroppingProxy(cluster.env.ports.apiserver).start()
    try:
        kubeconfig = proxy.kubeconfig(cluster.env.kubeconfig, cluster.tmp / "proxied-kubeconfig")
        follower = _sentinel("logs", job, "-f", "--timeout", "60", env=cluster.cli_env(kubeconfig))
        reader = _Reader(follower)
        first, second = f"epoch 1 {uuid.uuid4().hex}", f"epoch 2 {uuid.uuid4().hex}"
        reader.wait_for("the follower to print the driver's log", "no container runs")
        cluster.append_log(first)
        reader.wait_for("the first line", first)
        assert proxy.drop() >= 1  # the log stream (and any other connection) goes down
        cluster.append_log(second)
        reader.wait_for("the line written after the drop", second)
        cluster.outcome("SUCCEEDED")
        assert follower.wait(TIMEOUT_S) == 0, reader.text()
    finally:
        proxy.stop()
        if follower.poll() is None:
            follower.kill()
    text = reader.text()
    assert text.count(first) == 1 and text.count(second) == 1, text
    assert f"RayJob {job} succeeded" in text


def test_ctrl_c_detaches_and_says_how_to_reattach(cluster) -> None:
    cluster.outcome("RUNNING")
    job = _job_name()
    process = _sentinel("train", "--target", "k8s", "--name", job, env=cluster.cli_env())
    reader = _Reader(process)
    reader.wait_for("the job to be followed", "waiting:")
    process.send_signal(signal.SIGINT)
    assert process.wait(TIMEOUT_S) == 130, reader.text()
    assert f"detached from RayJob {job}" in flat(reader.text())
    assert f"sentinel logs {job} -n {cluster.namespace} -f" in flat(reader.text())
    assert cluster.get("rayjobs", job)["metadata"]["name"] == job  # still there, still running


def test_following_a_cluster_head_until_ctrl_c(cluster) -> None:
    _cluster("interactive")

    def head_reason() -> str | None:
        heads = [p for p in cluster.pods("ray.io/cluster=interactive,ray.io/node-type=head")
                 if p.status.phase == "Running"]
        return None if heads else "no running head pod yet"

    wait_for("the head pod", head_reason, TIMEOUT_S)
    follower = _sentinel("logs", "interactive", "-f", env=cluster.cli_env())
    reader = _Reader(follower)
    reader.wait_for("the head's log", "no container runs")
    line = f"head says {uuid.uuid4().hex}"
    cluster.append_log(line)
    reader.wait_for("a new line of the head's log", line)
    follower.send_signal(signal.SIGINT)
    assert follower.wait(TIMEOUT_S) == 130, reader.text()
    assert reader.text().count(line) == 1


# -- serving -----------------------------------------------------------------------------------


def test_serve_resolves_through_s3_upgrades_in_place_and_waits_for_ready(cluster) -> None:
    cluster.env.dashboard.set_serve_status(cluster.namespace, "DEPLOYING")
    older = cluster.write_record("train-20260101-000000-aaaa", 0.90, "2026-01-01T00:00:00+00:00")
    newer = cluster.write_record("train-20260102-000000-bbbb", 0.95, "2026-01-02T00:00:00+00:00")
    applied = cli("serve", "--target", "k8s", "--checkpoint", "latest", "--no-wait", "-o", "json")
    assert applied.exit_code == 0, applied.output
    latest = json.loads(applied.stdout)
    assert latest["checkpoint"] == newer.best_checkpoint and latest["run_id"] == newer.run_id
    assert f"checkpoint: {newer.best_checkpoint}" in flat(applied.stderr)  # the exact URI, always
    service = cluster.get("rayservices", "recommender")
    assert newer.best_checkpoint in service["spec"]["serveConfigV2"]
    assert service["metadata"]["labels"]["sentinel.io/run-id"] == newer.run_id

    def cluster_reason() -> str | None:
        status = cluster.get("rayservices", "recommender").get("status", {})
        name = (status.get("pendingServiceStatus") or {}).get("rayClusterName") or \
            (status.get("activeServiceStatus") or {}).get("rayClusterName")
        heads = cluster.pods(f"ray.io/cluster={name},ray.io/node-type=head") if name else []
        return None if heads and heads[0].status.phase == "Running" else f"RayService status: {status}"

    wait_for("the RayService's cluster", cluster_reason, TIMEOUT_S)
    clusters_before = {c["metadata"]["name"] for c in cluster.items("rayclusters")}

    best = _serve("best", kube_request(wait=False))  # the other checkpoint: an upgrade
    assert best.checkpoint == older.best_checkpoint
    assert best.previous_checkpoint == newer.best_checkpoint
    service = cluster.get("rayservices", "recommender")
    assert older.best_checkpoint in service["spec"]["serveConfigV2"]
    assert service["metadata"]["generation"] == 2
    assert {c["metadata"]["name"] for c in cluster.items("rayclusters")} == clusters_before  # in place
    # The quality gate reads what the RayService serves (its checkpoint annotation) and refuses a worse run.
    refused = cli("promote", newer.run_id, "--target", "k8s", "--no-wait", "-o", "json")
    assert refused.exit_code == 1, refused.output
    gate = json.loads(refused.stdout)
    assert (gate["outcome"], gate["serving"]["checkpoint"], gate["candidate"]["checkpoint"]) == (
        "refused", older.best_checkpoint, newer.best_checkpoint)
    assert gate["where"] == f"RayService recommender in namespace {cluster.namespace}"
    assert (gate["candidate"]["value"], gate["serving"]["value"]) == pytest.approx(
        (newer.metrics["test_rmse"], older.metrics["test_rmse"]))
    # The real operator takes the update: it submits the new serveConfigV2 to the running cluster's
    # Serve REST API (the stand-in dashboard records it) instead of building another cluster.
    wait_for("the operator to submit the other checkpoint", _submitted(cluster, older.best_checkpoint), TIMEOUT_S)
    rescaled = cli("serve", "--target", "k8s", "--checkpoint", "best", "--min-replicas", "2", "--max-replicas", "3",
                   "--no-wait", "-o", "json")  # an update of the replica settings only
    assert rescaled.exit_code == 0, rescaled.output
    service = cluster.get("rayservices", "recommender")
    assert service["metadata"]["generation"] == 3 and older.best_checkpoint in service["spec"]["serveConfigV2"]
    wait_for("the operator to submit the replica settings", _submitted(cluster, '"min_replicas": 2'), TIMEOUT_S)
    assert _submitted(cluster, '"max_replicas": 3')() is None
    assert {c["metadata"]["name"] for c in cluster.items("rayclusters")} == clusters_before  # still in place

    # The stand-in dashboard holds the Serve application at DEPLOYING, then lets it run: the operator
    # itself then labels the head pod, the serve Service gets its endpoint and the RayService is Ready.
    not_ready = cli("status", "--target", "k8s", "-o", "json")
    row = next(r for r in json.loads(not_ready.stdout)["objects"] if r["kind"] == "RayService")
    assert row["checkpoint"] == older.best_checkpoint and row["state"].startswith("NotReady")
    cluster.env.dashboard.set_serve_status(cluster.namespace, "RUNNING")
    waited = cli("serve", "--target", "k8s", "--checkpoint", "best", "--timeout", "60", "-o", "json")
    assert waited.exit_code == 0, waited.output
    assert "RayService recommender is Ready" in flat(waited.stderr)
    assert json.loads(waited.stdout)["endpoint"] == \
        f"http://recommender-serve-svc.{cluster.namespace}.svc.cluster.local:8000/recommend"

    # A canary joins the RayService: its state is the Serve application's args in the spec (rendered
    # first, then applied in place), so status, promote and rollback read it from there.
    rendered = cli("render", "serve", "--checkpoint", "latest", "--canary", "10")
    assert rendered.exit_code == 0, rendered.output
    assert f"canary_checkpoint: {newer.best_checkpoint}" in rendered.stdout.replace('"', "")
    _canary_promoted_and_rolled_back(cluster, older.best_checkpoint, newer, clusters_before)


def _spec_args(cluster: _Cluster):
    from sentinel_cli.backends.kubernetes.canary import live_args

    service = cluster.get("rayservices", "recommender")
    return live_args(service), service["metadata"]["annotations"]["sentinel.io/checkpoint"]


def _canary_promoted_and_rolled_back(cluster: _Cluster, incumbent: str, candidate, clusters_before: set) -> None:
    started = cli("serve", "--target", "k8s", "--checkpoint", "latest", "--canary", "10", "--timeout", "60",
                  "-o", "json")
    assert started.exit_code == 0, started.output
    report = json.loads(started.stdout)
    assert (report["checkpoint"], report["canary"]["checkpoint"], report["canary"]["percent"]) == (
        incumbent, candidate.best_checkpoint, 10)
    args, annotated = _spec_args(cluster)
    assert (args.checkpoint, args.canary_checkpoint, args.canary_percent, annotated) == (
        incumbent, candidate.best_checkpoint, 10, incumbent)
    wait_for("the operator to submit the canary", _submitted(cluster, '"canary_percent": 10'), TIMEOUT_S)
    assert {c["metadata"]["name"] for c in cluster.items("rayclusters")} == clusters_before  # in place
    row = next(r for r in json.loads(cli("status", "--target", "k8s", "-o", "json").stdout)["objects"]
               if r["kind"] == "RayService")
    assert (row["checkpoint"], row["canary"]["checkpoint"]) == (incumbent, candidate.best_checkpoint)
    table = "".join(cli("status", "--target", "k8s").stdout.split())  # a narrow terminal folds cells anywhere
    assert "canary" in table and "10%" in table, table  # the JSON above has its checkpoint and run
    # The refusals: a second canary, and a plain checkpoint that would end this one unjudged (exit 2).
    again = cli("serve", "--target", "k8s", "--checkpoint", "best", "--canary", "20", "--no-wait")
    assert again.exit_code == 2 and "a canary is already running" in flat(again.output), again.output
    plain = cli("serve", "--target", "k8s", "--checkpoint", "best", "--no-wait")
    assert plain.exit_code == 2 and "a canary is running in RayService recommender" in flat(plain.output)
    auto = cli("serve", "promote", "--auto", "--target", "k8s")
    assert auto.exit_code == 2 and "not available on k8s yet" in flat(auto.output), auto.output
    assert _spec_args(cluster)[0].canary_percent == 10  # nothing changed

    rolled = cli("serve", "rollback", "--target", "k8s", "--timeout", "60", "-o", "json")
    assert rolled.exit_code == 0, rolled.output
    assert (json.loads(rolled.stdout)["decision"], json.loads(rolled.stdout)["checkpoint"]) == ("rollback", incumbent)
    args, annotated = _spec_args(cluster)
    assert (args.checkpoint, args.canary, annotated) == (incumbent, None, incumbent)
    assert "canary" not in cluster.get("rayservices", "recommender")["spec"]["serveConfigV2"]
    nothing = cli("serve", "rollback", "--target", "k8s")
    assert nothing.exit_code == 2 and "no canary is running in RayService recommender" in flat(nothing.output)

    assert cli("serve", "--target", "k8s", "--checkpoint", "latest", "--canary", "25", "--no-wait").exit_code == 0
    promoted = cli("serve", "promote", "--target", "k8s", "--timeout", "60", "-o", "json")
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["checkpoint"] == candidate.best_checkpoint
    args, annotated = _spec_args(cluster)
    assert (args.checkpoint, args.run_id, args.canary, annotated) == (
        candidate.best_checkpoint, candidate.run_id, None, candidate.best_checkpoint)
    assert cluster.get("rayservices", "recommender")["metadata"]["labels"]["sentinel.io/run-id"] == candidate.run_id
    wait_for("the operator to submit the promoted model", _submitted_only(cluster, candidate.best_checkpoint,
                                                                          incumbent), TIMEOUT_S)
    assert {c["metadata"]["name"] for c in cluster.items("rayclusters")} == clusters_before  # still in place


def _submitted(cluster: _Cluster, text: str):
    """A wait_for condition: the last Serve config the operator submitted in the namespace holds ``text``."""
    from tests.testenv.dashboard import _namespace

    dashboard = cluster.env.dashboard

    def reason() -> str | None:
        with dashboard._lock:  # the stand-in keeps the last config PUT to each dashboard host
            configs = [json.dumps(c) for host, c in dashboard._serve_configs.items()
                       if _namespace(host) == cluster.namespace]
        if any(text in config for config in configs):
            return None
        return f"no submitted Serve config holds {text!r}; submitted: {[c[:300] for c in configs]}"

    return reason


def _submitted_only(cluster: _Cluster, text: str, absent: str):
    """A wait_for condition: the last submitted Serve config holds ``text`` and not ``absent``."""
    holds = _submitted(cluster, text)

    def reason() -> str | None:
        return holds() or (_submitted(cluster, absent)() is None and f"the submitted config still holds {absent}"
                           or None)

    return reason


def test_serve_that_never_gets_ready_times_out_with_3(cluster) -> None:
    cluster.env.dashboard.set_serve_status(cluster.namespace, "DEPLOYING")  # and never gets further
    cluster.write_record("train-20260101-000000-cccc", 0.9, "2026-01-01T00:00:00+00:00")
    with pytest.raises(Exception) as raised:
        _serve("latest", kube_request(name="slow", timeout=6))
    assert exit_code(raised.value) == 3
    assert "RayService slow made no progress for 6s" in raised.value.message


def test_serve_whose_application_fails_to_deploy_exits_1_with_the_reason(cluster) -> None:
    cluster.write_record("train-20260101-000000-dddd", 0.9, "2026-01-01T00:00:00+00:00")
    cluster.env.dashboard.set_serve_status(cluster.namespace, "DEPLOY_FAILED")
    with pytest.raises(Exception) as raised:
        _serve("latest", kube_request(name="broken", timeout=60))
    assert exit_code(raised.value) == 1, raised.value
    assert "RayService broken: the Serve application failed" in raised.value.message


def test_serve_with_an_empty_index_says_to_train_first(cluster) -> None:
    with pytest.raises(Exception) as raised:
        _serve("latest", kube_request(wait=False))
    assert exit_code(raised.value) == 2 and "checkpoint index is empty" in raised.value.message
    assert cluster.items("rayservices") == []


# -- status at scale ---------------------------------------------------------------------------


def test_status_of_200_rayjobs_makes_one_list_call_per_kind(cluster, monkeypatch) -> None:
    from kubernetes.client import rest

    from sentinel_cli.k8s import client as kube
    from sentinel_cli.k8s import manifests, render, settings
    from sentinel_ml.training.config import TrainConfig

    kube_settings = settings.load()
    with kube.connect(namespace=cluster.namespace) as api:
        for i in range(200):
            objects = render.render("train", manifests.train_values(kube_settings, TrainConfig(), f"queued-{i:03d}"))
            job = next(o for o in objects if o["kind"] == "RayJob")
            job["spec"]["suspend"] = True  # queued: the operator makes no cluster for it
            api.apply(job)
    requests: list[tuple[str, str]] = []
    original = rest.RESTClientObject.request

    def counting(self, method, url, *args, **kwargs):
        requests.append((method, url))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(rest.RESTClientObject, "request", counting)
    result = cli("status", "--target", "k8s", "--limit", "500", "-o", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"]["RayJob"] == 200 and len(report["objects"]) == 200
    paths = sorted(url.split("?")[0].rsplit("/", 1)[-1] for _, url in requests)
    # The schedules: one LIST of CronJobs (their Jobs and pods only when there is one).
    assert paths == ["cronjobs", "rayclusters", "rayjobs", "rayservices"], requests
    selectors = {unquote(url.split("labelSelector=", 1)[-1]) for _, url in requests}
    assert {method for method, _ in requests} == {"GET"} and selectors == {
        "app.kubernetes.io/managed-by=sentinel", "app.kubernetes.io/managed-by=sentinel,app.kubernetes.io/component=schedule"}


def test_status_lists_the_runs_of_the_storage_given_on_the_command_line(cluster) -> None:
    """`--storage` beats the profile's storage for the runs listed beside the objects."""
    import boto3

    in_profile = cluster.write_record("train-20260101-000000-aaaa", 0.90, "2026-01-01T00:00:00+00:00")
    other = f"s3://{cluster.storage.split('/')[2]}-other/elsewhere"
    boto3.client("s3").create_bucket(Bucket=other.split("/")[2])
    given = checkpoints.RunRecord(
        run_id="train-20260102-000000-bbbb", kind="train", created_at="2026-01-02T00:00:00+00:00",
        config={}, metrics={"val_rmse": 0.8}, checkpoints={"best": checkpoint_uri(other, "train-x", "best")})
    checkpoints.write_record(other, given)

    result = cli("status", "--target", "k8s", "--storage", other, "-o", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["storage"] == other
    assert [r["run_id"] for r in report["runs"]] == [given.run_id]
    assert report["namespace"] == cluster.namespace  # the rest of the profile still applies
    table = cli("status", "--target", "k8s", "--storage", other)
    assert table.exit_code == 0, table.output
    assert given.run_id in table.stdout and in_profile.run_id not in table.stdout
    default = json.loads(cli("status", "--target", "k8s", "-o", "json").stdout)  # no flag: the profile's
    assert (default["storage"], [r["run_id"] for r in default["runs"]]) == (cluster.storage, [in_profile.run_id])


# -- errors ------------------------------------------------------------------------------------


def test_delete_removes_what_sentinel_manages_only(cluster) -> None:
    job = _job_name()
    assert cli("train", "--target", "k8s", "--name", job, "--no-wait").exit_code == 0
    cluster.custom.create_namespaced_custom_object("ray.io", "v1", cluster.namespace, "rayclusters", {
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "not-ours"},
        "spec": {"headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [
            {"name": "ray-head", "image": "rayproject/ray:2.52.0"}]}}}}})
    refused = cli("delete", "not-ours")
    assert refused.exit_code == 2 and "not managed by Sentinel" in refused.output
    deleted = cli("delete", job, "-o", "json")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout) == {"kind": "RayJob", "name": job, "namespace": cluster.namespace,
                                          "deleted": True}
    wait_for("the RayJob to go", lambda: None if not [j for j in cluster.items("rayjobs")
                                                      if j["metadata"]["name"] == job] else "still there",
             TIMEOUT_S)
    missing = cli("delete", job)
    assert missing.exit_code == 2 and "no RayJob, RayService or RayCluster named" in missing.output


def _nobody_kubeconfig(cluster) -> Path:
    """A kubeconfig for a ServiceAccount that RBAC allows nothing (its token, the same server)."""
    ns = cluster.namespace
    cluster.core.create_namespaced_service_account(ns, {"metadata": {"name": "nobody"}})
    token = cluster.core.create_namespaced_service_account_token(
        "nobody", ns, {"spec": {"expirationSeconds": 600}}).status.token
    config = yaml.safe_load(cluster.env.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    kubeconfig = cluster.tmp / "nobody-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    return kubeconfig


def _dead_kubeconfig(cluster, folder: Path) -> tuple[Path, int]:
    """A kubeconfig whose server is a loopback port nothing listens on, and that port."""
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = yaml.safe_load(cluster.env.kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{port}"
    (folder / "dead").write_text(yaml.safe_dump(config))
    return folder / "dead", port


def test_forbidden_names_the_missing_permission(cluster, monkeypatch) -> None:
    ns = cluster.namespace
    monkeypatch.setenv("KUBECONFIG", str(_nobody_kubeconfig(cluster)))
    result = cli("status", "--target", "k8s")
    assert result.exit_code == 2, result.output
    assert "forbidden to list rayjobs" in flat(result.output)
    assert f"kubectl auth can-i list rayjobs -n {ns}" in flat(result.output)


def test_unreachable_cluster_and_missing_kubeconfig_say_what_to_check(cluster, tmp_path, monkeypatch) -> None:
    dead, port = _dead_kubeconfig(cluster, tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(dead))
    result = cli("status", "--target", "k8s")
    assert result.exit_code == 2, result.output
    assert f"cannot reach the Kubernetes API server at https://127.0.0.1:{port}" in flat(result.output)
    assert "kubectl cluster-info" in flat(result.output)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    result = cli("status", "--target", "k8s")
    assert result.exit_code == 2 and "no kubeconfig found" in flat(result.output)


def _doctor(kubeconfig: Path, monkeypatch) -> tuple[int, dict[str, dict[str, Any]]]:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    result = cli("doctor", "--target", "k8s", "-o", "json")
    report = json.loads(result.stdout)
    return result.exit_code, {item["name"]: item for item in report["items"]}


DOCTOR_CHECKS = ["kubeconfig", "cluster reachable", "namespace access", "kuberay crds", "ray token auth",
                 "node labels", "pod sizes fit", "gpu nodes", "prometheus monitors", "s3 reachable", "checkpoint index"]


def test_doctor_lists_its_whole_checklist_when_the_cluster_is_out_of_reach(cluster, tmp_path, monkeypatch) -> None:
    code, items = _doctor(tmp_path / "missing", monkeypatch)
    assert code == 1 and list(items) == DOCTOR_CHECKS
    assert items["kubeconfig"]["state"] == "fail" and "aws eks update-kubeconfig" in items["kubeconfig"]["fix"]
    assert {items[name]["state"] for name in DOCTOR_CHECKS[1:9]} == {"skip"}

    dead, port = _dead_kubeconfig(cluster, tmp_path)
    code, items = _doctor(dead, monkeypatch)
    assert code == 1 and list(items) == DOCTOR_CHECKS
    assert items["kubeconfig"]["state"] == "pass"
    reachable = items["cluster reachable"]
    assert reachable["state"] == "fail" and f"127.0.0.1:{port}" in reachable["detail"]
    assert "kubectl cluster-info" in reachable["fix"]
    assert {items[name]["state"] for name in DOCTOR_CHECKS[2:9]} == {"skip"}


def test_doctor_names_a_forbidden_namespace(cluster, monkeypatch) -> None:
    ns = cluster.namespace
    code, items = _doctor(_nobody_kubeconfig(cluster), monkeypatch)
    assert code == 1 and list(items) == DOCTOR_CHECKS
    access = items["namespace access"]
    assert access["state"] == "fail" and "forbidden to list pods" in access["detail"], access
    assert f"-n {ns}" in access["fix"]


def test_doctor_names_missing_kuberay_crds(bare_apiserver, kube_env, monkeypatch) -> None:
    code, items = _doctor(bare_apiserver, monkeypatch)
    assert code == 1 and list(items) == DOCTOR_CHECKS
    assert items["cluster reachable"]["state"] == "pass"
    crds = items["kuberay crds"]
    assert crds["state"] == "fail" and "rayjobs.ray.io" in crds["detail"] and "sentinel up" in crds["fix"]


def test_a_missing_namespace_is_named(cluster) -> None:
    result = cli("train", "--target", "k8s", "-n", "no-such-namespace", "--no-wait")
    assert result.exit_code == 2, result.output
    assert "namespace no-such-namespace does not exist" in flat(result.output)
    assert "kubectl create namespace no-such-namespace" in flat(result.output)


@pytest.fixture(scope="module")
def bare_apiserver(tmp_path_factory) -> Path:
    """A real kube-apiserver (and its etcd) without the KubeRay CRDs: a cluster before `sentinel up`."""
    from tests.testenv import build, commands, pki, probes
    from tests.testenv.process import start, stop

    try:
        assets = build.locate()
    except build.AssetsMissing as error:
        pytest.skip(f"Kubernetes test environment not built: {error}")
    paths, ports = commands.Paths(tmp_path_factory.mktemp("bare")), commands.Ports.pick()
    paths.logs.mkdir()
    paths.etcd_data.mkdir()
    certs = pki.create(paths.pki)
    url = f"https://127.0.0.1:{ports.apiserver}"
    pki.write_kubeconfig(paths.kubeconfig, url, certs)
    environ = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    processes = [start("etcd", commands.etcd(assets, paths, ports), paths.logs, environ)]
    try:
        wait_for("etcd", probes.http(f"http://127.0.0.1:{ports.etcd_client}/health"), TIMEOUT_S, processes)
        processes.append(start("kube-apiserver", commands.kube_apiserver(assets, paths, ports, certs),
                               paths.logs, environ))
        wait_for("kube-apiserver", probes.http(f"{url}/readyz", probes.trusted(certs, client_cert=True)),
                 TIMEOUT_S, processes)
        yield paths.kubeconfig
    finally:
        for process in reversed(processes):
            stop(process)


def test_missing_kuberay_crds_say_to_run_sentinel_up(bare_apiserver, kube_env, monkeypatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(bare_apiserver))
    status = cli("status", "--target", "k8s")
    assert status.exit_code == 2, status.output
    assert "the KubeRay CRDs are not installed" in flat(status.output)
    assert "run `sentinel up`" in flat(status.output)
    # A bare API server has no nodes either: the capacity preflight says so first, once.
    train = cli("train", "--target", "k8s", "--storage", "s3://bucket/prefix", "--no-wait")
    assert train.exit_code == 2 and flat(train.output).count("the cluster has no nodes") == 1, train.output
    train = cli("train", "--target", "k8s", "--storage", "s3://bucket/prefix", "--no-wait", "--no-preflight")
    assert train.exit_code == 2 and "no rayjobs.ray.io/v1" in flat(train.output)
