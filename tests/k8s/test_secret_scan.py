"""The secret scanner (tests/support/secret_scan.py) against the real API server (kwok nodes, the
real operator): Sentinel's objects, applied with known credentials in the user's environment and in
the namespace's Secrets, hold none of them; one value planted (base64) in a ConfigMap is found, so
the scan is not vacuous. The whole lifecycle's scan is tests/node/test_lifecycle.py's."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from sentinel_cli.backends.kubernetes import plan, run
from sentinel_cli.backends.kubernetes.backend import KubernetesBackend
from sentinel_cli.k8s import client as kube_client
from sentinel_cli.k8s import platform_objects
from sentinel_cli.k8s.request import kube_request
from sentinel_ml.serving.config import ServeRequest
from sentinel_ml.training.config import TrainConfig
from tests.support.secret_scan import Scan, SecretWatch
from tests.testenv.process import wait_for

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
KNOWN = {"AWS_ACCESS_KEY_ID": "AKIAKNOWNSCANTEST01", "AWS_SECRET_ACCESS_KEY": "known-secret-key-3f9a1c0e7b",
         "MINIO_ROOT_PASSWORD": "known-minio-root-pw-8d2e"}


def test_sentinels_objects_hold_no_secret_and_a_planted_one_is_found(
        k8s_env, k8s_api, k8s_namespace, kube_env, tmp_path, monkeypatch) -> None:
    namespace, core = k8s_namespace, client.CoreV1Api(k8s_api)
    small = {"cpu": "100m", "memory": "256Mi"}
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"target": "k8s", "kubernetes": {
        "namespace": namespace, "storage": "s3://bucket/sentinel", "workers": 1,
        "s3": {"endpoint": platform_objects.endpoint(namespace), "credentials_secret": platform_objects.SECRET},
        "head": small, "worker": small, "serve_worker": small, "submitter": small,
        "images": {"train": "registry.example/sentinel-train:0.1.0",
                   "serve": "registry.example/sentinel-serve:0.1.0"}}}))
    monkeypatch.setenv("KUBECONFIG", str(k8s_env.kubeconfig))
    monkeypatch.setenv("SENTINEL_PROFILE", str(profile))
    for name, value in KNOWN.items():  # what a user has exported: must not travel into any object
        monkeypatch.setenv(name, value)

    # The credentials a user brings (`up` keeps an existing Secret), the platform, and one of each Ray object.
    with kube_client.connect(namespace=namespace) as kube:
        kube.apply(platform_objects.secret(namespace, KNOWN["AWS_ACCESS_KEY_ID"], KNOWN["MINIO_ROOT_PASSWORD"]))
        for obj in [*platform_objects.minio(namespace, {"type": "kwok"}),
                    *platform_objects.mlflow(namespace, {"type": "kwok"})]:
            kube.apply(obj)
    run.cluster(plan.plan_cluster(kube_request(name="interactive")), kube_request(name="interactive"))
    KubernetesBackend().train(TrainConfig(), kube_request(name="train-scan", wait=False))
    KubernetesBackend().serve(ServeRequest(checkpoint="s3://bucket/sentinel/runs/x/best.pt", auth="token"),
                              kube_request(wait=False))
    wait_for("the RayJob's cluster and its Ray token", lambda: None if len(_ray_tokens(core, namespace)) >= 3
             else f"Ray token Secrets so far: {_ray_tokens(core, namespace)}", 60)

    scan = Scan()
    for name, value in KNOWN.items():
        scan.add(f"env {name}", value)
    SecretWatch(scan, k8s_api, namespace).poll()  # every Secret's values: the Ray tokens, the serving token
    labels = set(scan.secrets)
    assert {f"Secret {t}/auth_token" for t in _ray_tokens(core, namespace)} <= labels, labels
    assert "Secret recommender-serve-token/token" in labels, labels

    outputs = tmp_path / "outputs"
    outputs.mkdir()
    environ = {**os.environ, "PYTHONPATH": str(REPO)}
    for what in (["train"], ["tune"], ["serve", "--checkpoint", "s3://bucket/sentinel/runs/x/best.pt"],
                 ["cluster"]):
        done = subprocess.run([sys.executable, "-m", "sentinel_cli", "render", *what],
                              cwd=REPO, env=environ, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        (outputs / f"render-{what[0]}.yaml").write_text(done.stdout + done.stderr)
    scan.files("output", outputs)
    scan.objects(k8s_api, namespace)
    assert scan.hits == [], scan.report()
    for kind in ("RayJob", "RayService", "RayCluster", "Pod", "Deployment", "Job", "ConfigMap"):
        assert scan.searched[kind] >= 1, scan.report()
    assert scan.searched["output"] == 4

    # Not vacuous: a Ray token planted, base64, in a ConfigMap is found, by where and which.
    token = next(label for label in labels if label.endswith("/auth_token"))
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "planted"}, "data": {
        "note": "x" + base64.b64encode(scan.secrets[token].encode()).decode() + "x"}})
    again = Scan(secrets=dict(scan.secrets))
    again.objects(k8s_api, namespace)
    assert [(h.where, h.secret, h.form) for h in again.hits] == [("ConfigMap/planted", token, "base64")], again.report()


def _ray_tokens(core: client.CoreV1Api, namespace: str) -> list[str]:
    return [s.metadata.name for s in core.list_namespaced_secret(namespace).items
            if "auth_token" in (s.data or {})]
