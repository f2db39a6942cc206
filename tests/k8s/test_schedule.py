"""Scheduled retraining on a real API server (kwok nodes, the real CronJob and Job controllers):
the objects `schedule train` applies, the runs' RBAC (what the ServiceAccount may and may not do,
asked of the API server and tried with its own token), a run's outcome in `schedule list` and
`status`, and `schedule delete`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_cli.k8s import client as kinds
from sentinel_cli.schedules import objects
from sentinel_cli.schedules import run as runs
from tests.testenv.process import wait_for

pytestmark = pytest.mark.k8s
NAME = "nightly"
# What a run does (objects.RULES), as (verb, group, resource, subresource).
ALLOWED = [("create", "ray.io", "rayjobs", ""), ("patch", "ray.io", "rayjobs", ""), ("get", "ray.io", "rayjobs", ""),
           ("get", "ray.io", "rayservices", ""), ("patch", "ray.io", "rayservices", ""),
           ("patch", "", "services", ""), ("list", "", "pods", ""), ("get", "", "pods", "log"),
           ("list", "", "events", ""), ("patch", "networking.k8s.io", "networkpolicies", "")]
DENIED = [("create", "", "pods", ""), ("get", "", "secrets", ""), ("list", "", "secrets", ""),
          ("get", "", "configmaps", ""), ("delete", "ray.io", "rayservices", ""), ("create", "ray.io", "rayclusters", ""),
          ("patch", "batch", "cronjobs", ""), ("create", "rbac.authorization.k8s.io", "roles", ""),
          ("create", "", "services", "proxy"), ("create", "", "pods", "exec"), ("list", "", "nodes", ""),
          ("delete", "networking.k8s.io", "networkpolicies", "")]


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def profile(k8s_env, k8s_namespace, kube_env, tmp_path, monkeypatch) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump({"target": "k8s", "kubernetes": {
        "namespace": k8s_namespace, "storage": "s3://bucket/sentinel", "workers": 1,
        "head": {"cpu": "100m", "memory": "256Mi"}, "worker": {"cpu": "100m", "memory": "256Mi"},
        "s3": {"endpoint": "http://sentinel-minio:9000", "credentials_secret": "sentinel-minio"},
        "images": {"train": "registry.example/sentinel-train:0.1.0", "cli": "registry.example/sentinel-cli:0.1.0"},
    }}))
    monkeypatch.setenv("KUBECONFIG", str(k8s_env.kubeconfig))
    monkeypatch.setenv("SENTINEL_PROFILE", str(path))
    return path


def test_a_schedule_its_least_privilege_runner_its_last_run_and_delete(k8s_env, k8s_api, k8s_namespace, profile,
                                                                        tmp_path, monkeypatch) -> None:
    ns = k8s_namespace
    made = cli("schedule", "train", "--cron", "*/5 * * * *", "--name", NAME, "--promote-if-better", "--tolerance",
               "0.01", "-o", "json", "--", "--epochs", "2", "--split", "temporal")
    assert made.exit_code == 0, made.output
    report = json.loads(made.stdout)
    assert report["applied"] == ["ServiceAccount/sentinel", f"ServiceAccount/{NAME}", f"Role/{NAME}",
                                 f"RoleBinding/{NAME}", f"ConfigMap/{NAME}", f"CronJob/{NAME}"]
    with kinds.connect(namespace=ns) as kube:
        cronjob = kube.get(kinds.CRONJOB, NAME)
        spec = cronjob["spec"]
        assert (spec["schedule"], spec["concurrencyPolicy"], spec["successfulJobsHistoryLimit"],
                spec["failedJobsHistoryLimit"]) == ("*/5 * * * *", "Forbid", 3, 3)
        job_spec = spec["jobTemplate"]["spec"]
        assert job_spec["backoffLimit"] == 0 and 0 < job_spec["activeDeadlineSeconds"] <= 7200 + 600 + 1800
        pod = job_spec["template"]["spec"]
        assert pod["serviceAccountName"] == NAME
        container = pod["containers"][0]
        assert container["image"] == "registry.example/sentinel-cli:0.1.0"
        assert container["command"] + container["args"] == [
            "sentinel", "schedule", "run", "--name", NAME, "--target", "k8s", "--promote-if-better", "--metric",
            "rmse", "--tolerance", "0.01", "--", "--epochs", "2", "--split", "temporal"]
        assert {e["name"] for e in container["env"]} >= {"SENTINEL_PROFILE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"}
        in_pod = yaml.safe_load(kube.get(kinds.CONFIGMAP, NAME)["data"][objects.PROFILE_FILE])
        assert in_pod["kubernetes"]["namespace"] == ns and in_pod["kubernetes"]["service_account"]["create"] is False

    # RBAC: the API server's own answer for the runner, for what it does and for what it must not.
    authz = client.AuthorizationV1Api(k8s_api)
    user = f"system:serviceaccount:{ns}:{NAME}"

    def allowed(verb: str, group: str, resource: str, sub: str) -> bool:
        review = authz.create_subject_access_review({"spec": {"user": user, "groups": [
            "system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
            "resourceAttributes": {"namespace": ns, "verb": verb, "group": group, "resource": resource,
                                   "subresource": sub}}})
        return review.status.allowed

    assert [a for a in ALLOWED if not allowed(*a)] == []
    assert [d for d in DENIED if allowed(*d)] == []

    # With the runner's own token and the profile its pods mount: the first step of a run works, and
    # reading the S3 Secret through the API does not.
    core = client.CoreV1Api(k8s_api)
    token = core.create_namespaced_service_account_token(NAME, ns, {"spec": {"expirationSeconds": 600}}).status.token
    config = yaml.safe_load(k8s_env.kubeconfig.read_text())
    for entry in config["users"]:
        entry["user"] = {"token": token}
    (tmp_path / "runner-kubeconfig").write_text(yaml.safe_dump(config))
    (tmp_path / "in-pod.yaml").write_text(yaml.safe_dump(in_pod))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "runner-kubeconfig"))
    monkeypatch.setenv("SENTINEL_PROFILE", str(tmp_path / "in-pod.yaml"))
    trained = cli("train", "--target", "k8s", "--no-preflight", "--no-wait", "--name", "scheduled-1", "--epochs", "2")
    assert trained.exit_code == 0, trained.output
    with kinds.connect(namespace=ns) as runner:
        assert runner.get(kinds.RAYJOB, "scheduled-1") is not None
        with pytest.raises(kinds.Forbidden):
            runner.get(kinds.SECRET, "sentinel-minio")
    monkeypatch.setenv("KUBECONFIG", str(k8s_env.kubeconfig))
    monkeypatch.setenv("SENTINEL_PROFILE", str(profile))

    # A run (as `kubectl create job --from=cronjob/nightly`): the Job controller and kwok finish it; its
    # pod's termination message is the outcome a refused run writes.
    batch = client.BatchV1Api(k8s_api)
    template = cronjob["spec"]["jobTemplate"]
    batch.create_namespaced_job(ns, {"metadata": {
        "name": f"{NAME}-manual", "labels": template["metadata"]["labels"],
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": NAME,
                             "uid": cronjob["metadata"]["uid"], "controller": True}]}, "spec": template["spec"]})

    def pod_done() -> str | None:
        pods = core.list_namespaced_pod(ns, label_selector=f"job-name={NAME}-manual").items
        return None if pods and pods[0].status.phase == "Succeeded" else "the run's pod to finish"

    wait_for("the run's pod", pod_done, timeout_s=60)
    outcome = runs.Outcome(schedule=NAME, outcome=runs.REFUSED, step="promote", exit_code=1, run_id="train-x",
                           checkpoint="s3://bucket/sentinel/checkpoints/train-x/best.pt", metrics={"test_rmse": 1.2},
                           detail="error: the gate refused train-x: test RMSE 1.2000 is worse than 0.9400 (serving)",
                           gate={"verdict": "refused", "metric": "rmse", "candidate": 1.2, "serving": 0.94})
    pod = core.list_namespaced_pod(ns, label_selector=f"job-name={NAME}-manual").items[0]
    core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {"containerStatuses": [{
        "name": "sentinel", "image": "registry.example/sentinel-cli:0.1.0", "imageID": "", "ready": False,
        "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                    "message": outcome.to_json()}}}]}})
    wait_for("the Job to complete", lambda: None if any(
        c.type == "Complete" and c.status == "True"
        for c in batch.read_namespaced_job(f"{NAME}-manual", ns).status.conditions or []) else "running", 60)

    listed = cli("schedule", "list", "-o", "json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)["schedules"]
    assert (row["name"], row["cron"], row["action"], row["last_job"], row["job_state"], row["outcome"]) == (
        NAME, "*/5 * * * *", "promote if better by rmse (tolerance 0.01)", f"{NAME}-manual", "Complete", "refused")
    assert "1.2000" in row["detail"] and "0.9400" in row["detail"]
    assert (row["gate"]["candidate"], row["gate"]["serving"]) == (1.2, 0.94)
    status = cli("status", "--target", "k8s")
    assert status.exit_code == 0, status.output
    assert "refused" in status.stdout and NAME in status.stdout
    assert json.loads(cli("status", "--target", "k8s", "-o", "json").stdout)["schedules"][0]["outcome"] == "refused"

    deleted = cli("schedule", "delete", NAME, "-o", "json")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout)["deleted"] == [f"CronJob/{NAME}", f"ConfigMap/{NAME}", f"RoleBinding/{NAME}",
                                                     f"Role/{NAME}", f"ServiceAccount/{NAME}"]
    wait_for("the CronJob's Job to go with it", lambda: None if not batch.list_namespaced_job(
        ns, label_selector=f"{objects.SCHEDULE_LABEL}={NAME}").items else
             "its Job is still there", 60)
    assert json.loads(cli("schedule", "list", "-o", "json").stdout)["schedules"] == []
    missing = cli("schedule", "delete", NAME)
    assert missing.exit_code == 2 and "no schedule nightly" in missing.output
