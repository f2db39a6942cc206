"""The serving API's token on Kubernetes (``serve --target k8s``: ``--auth token`` is the default), against the real API
server and KubeRay operator (kwok nodes; no replica runs here, so the token's check itself is the
serving tests' and the real node's): one Secret per RayService, owned by it and mounted into the serve
pods; the rendered objects and every output name the Secret and the file, never the token; serving
another checkpoint keeps it; the CLI's own calls find it; ``delete`` removes it.
"""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from kubernetes import client
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_cli.k8s import manifests
from tests.support.k8s import read_secret
from tests.testenv.process import wait_for

pytestmark = pytest.mark.k8s

TIMEOUT_S = 60
FIRST, SECOND = "s3://bucket/artifacts/runs/train-a/best.pt", "s3://bucket/artifacts/runs/train-b/best.pt"


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_a_rayservice_gets_its_own_serving_token_secret_and_never_shows_it(
        k8s_env, k8s_api, k8s_namespace, kube_env, tmp_path, monkeypatch) -> None:
    from sentinel_cli import api_client

    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"target": "k8s", "kubernetes": {
        "namespace": k8s_namespace, "head": {"cpu": "100m", "memory": "256Mi"},
        "serve_worker": {"cpu": "100m", "memory": "256Mi"}}}))
    monkeypatch.setenv("KUBECONFIG", str(k8s_env.kubeconfig))
    monkeypatch.setenv("SENTINEL_PROFILE", str(profile))
    core, ns, name = client.CoreV1Api(k8s_api), k8s_namespace, "recommender"
    secret_name = manifests.serve_token_secret(name)

    # token is the default on Kubernetes: no --auth
    outputs = [cli("render", "serve", "--checkpoint", FIRST, "-o", "yaml"),
               cli("serve", "--checkpoint", FIRST, "--no-wait", "-o", "json")]
    served = json.loads(outputs[-1].stdout)
    assert (served["auth"], served["token_secret"]) == ("token", secret_name), outputs[-1].output
    secret = read_secret(core, ns, secret_name)
    token = base64.b64decode(secret.data[manifests.SERVE_TOKEN_KEY]).decode()
    assert len(token) == 43  # secrets.token_urlsafe(32)
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name) == ("RayService", name)
    assert secret.metadata.labels[manifests.MANAGED_BY] == "sentinel"

    service = client.CustomObjectsApi(k8s_api).get_namespaced_custom_object("ray.io", "v1", ns, "rayservices", name)
    args = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"]
    assert (args["auth"], args["token_file"]) == ("token", manifests.SERVE_TOKEN_FILE)

    def head_pod() -> str | None:
        pods = core.list_namespaced_pod(ns, label_selector=f"{manifests.RAYSERVICE_LABEL}={name}").items
        return None if pods else "no serve pod yet"

    wait_for("the RayService's pods", head_pod, TIMEOUT_S)
    for pod in core.list_namespaced_pod(ns, label_selector=f"{manifests.RAYSERVICE_LABEL}={name}").items:
        volumes = {v.name: v for v in pod.spec.volumes}
        assert volumes[manifests.SERVE_TOKEN_VOLUME].secret.secret_name == secret_name
        mounts = {m.name: m for m in pod.spec.containers[0].volume_mounts}
        assert mounts[manifests.SERVE_TOKEN_VOLUME].mount_path == manifests.SERVE_TOKEN_DIR

    outputs.append(cli("serve", "--checkpoint", SECOND, "--auth", "token", "--no-wait", "-o", "json"))
    assert outputs[-1].exit_code == 0, outputs[-1].output
    assert "(kept)" in outputs[-1].stderr and read_secret(core, ns, secret_name).data == secret.data

    # predict, recommend and verify send it without being asked: to a RayService's Service name
    assert api_client.token_for(f"http://{name}-serve-svc.{ns}.svc.cluster.local:8000") == token
    assert api_client.token_for(f"{name}-grpc.{ns}.svc:9000") == token

    other = tmp_path / "other-token"
    other.write_text("another-token\n")
    other.chmod(0o600)
    outputs.append(cli("serve", "--checkpoint", SECOND, "--token-file", str(other), "--no-wait"))
    assert outputs[-1].exit_code == 2 and "already holds another serving token" in flat(outputs[-1].output)

    status = cli("status", "-o", "json")
    rows = {r["name"]: r for r in json.loads(status.stdout)["objects"]}
    assert rows[name]["auth"] == "token", rows
    outputs += [status, cli("status"), cli("delete", name)]
    assert outputs[-1].exit_code == 0, outputs[-1].output
    assert read_secret(core, ns, secret_name) is None
    for result in outputs:
        assert token not in result.output and token not in (result.stderr or "")
