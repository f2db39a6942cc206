"""Ray token authentication on the clusters Sentinel makes (sentinel_cli/k8s/ray_auth.py).

Pure: every kind renders ``authOptions: {mode: token}``, ``--insecure-ray`` leaves it out and says
what that opens, the operator check reads KubeRay 1.5.2's real CRD. Against the real API server and
the real KubeRay operator (kwok nodes): the operator makes the per-cluster Secret, owned by the
RayCluster; the pods take the token by ``secretKeyRef``; a re-apply keeps the token; ``delete``
takes the Secret with the cluster; no output of Sentinel holds the token.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_cli.k8s import manifests, ray_auth, render, settings
from sentinel_cli.k8s.request import Overrides
from sentinel_ml.errors import ConfigError
from sentinel_ml.training.config import TrainConfig
from tests.k8s.conftest import PROFILE
from tests.support.k8s import read_secret
from tests.testenv.process import wait_for

TIMEOUT_S = 60
CHECKPOINT = "s3://sentinel-test/artifacts/runs/train-x/best.pt"


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    return " ".join(text.split())


def _settings(*sets: str) -> settings.KubeSettings:
    return settings.load(Overrides(profile=str(PROFILE), sets=sets), environ={})


def _objects(kube: settings.KubeSettings) -> list[dict[str, Any]]:
    values = {"train": manifests.train_values(kube, TrainConfig(), "train-x"),
              "serve": manifests.serve_values(kube, CHECKPOINT, None),
              "cluster": manifests.cluster_values(kube, "sentinel")}
    return [obj for what, v in values.items() for obj in render.render(what, v)]


def test_every_ray_object_renders_token_auth_and_insecure_leaves_it_out(kube_env) -> None:
    objects = _objects(_settings())
    ray = [o for o in objects if o["kind"] in ("RayJob", "RayService", "RayCluster")]
    assert {o["kind"] for o in ray} == {"RayJob", "RayService", "RayCluster"}
    assert ray_auth.uses_token(objects) and ray_auth.open_clusters(objects) == []
    assert "RAY_AUTH_TOKEN" not in yaml.safe_dump(objects)  # KubeRay adds the secretKeyRef; no value here
    opened = _objects(_settings("ray_auth=disabled"))
    assert ray_auth.open_clusters(opened) == ["RayJob/train-x", "RayService/recommender", "RayCluster/sentinel"]


def test_cli_insecure_ray_says_what_it_leaves_open(kube_env) -> None:
    result = cli("render", "cluster", "--insecure-ray", "-o", "json")
    assert result.exit_code == 0, result.output
    assert "authOptions" not in result.stdout
    said = flat(result.stderr)
    assert "RayCluster/sentinel: Ray token authentication is off" in said and "ShadowRay" in said
    assert "(8265)" in said and "(10001)" in said and "(6379)" in said
    secure = cli("render", "cluster", "-o", "json")
    assert '"mode": "token"' in secure.stdout and "warning" not in secure.stderr
    from sentinel_cli.k8s.request import kube_request

    assert kube_request(insecure_ray=True).local_conflicts() == ["--insecure-ray"]  # the local target refuses it


def test_a_ray_too_old_for_tokens_is_refused_before_rendering(kube_env) -> None:
    with pytest.raises(ConfigError) as refused:
        _objects(_settings("ray_version=2.51.0"))
    assert "2.52.0" in refused.value.message and "--insecure-ray" in refused.value.hint
    assert ray_auth.open_clusters(_objects(_settings("ray_version=2.51.0", "ray_auth=disabled")))


@pytest.fixture(scope="module")
def raycluster_crd() -> dict[str, Any]:
    from tests.testenv import build

    try:
        crds = build.locate().crds
    except build.AssetsMissing as error:
        pytest.skip(f"KubeRay's CRDs are not built: {error}")
    return yaml.safe_load(next(Path(p) for p in crds if p.name == "ray.io_rayclusters.yaml").read_text())


def _operator(tag: str) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"image": f"quay.io/kuberay/operator:{tag}"}]}}}}


def test_the_operator_check_reads_kuberays_crd_and_version(raycluster_crd) -> None:
    ok, why = ray_auth.operator_support(raycluster_crd, [_operator("v1.5.2")])
    assert ok and why == "operator v1.5.2; token authentication supported (RayCluster CRD has spec.authOptions)"
    assert ray_auth.operator_support(raycluster_crd, [])[0]  # an operator outside the cluster: the CRD decides
    ok, why = ray_auth.operator_support(raycluster_crd, [_operator("v1.4.2")])
    assert not ok and why == "operator v1.4.2: token authentication needs KubeRay 1.5.1 or newer"
    old = copy.deepcopy(raycluster_crd)  # KubeRay 1.4's CRD: no authOptions
    for version in old["spec"]["versions"]:
        version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"].pop("authOptions", None)
    ok, why = ray_auth.operator_support(old, [])
    assert not ok and "has no spec.authOptions (KubeRay older than 1.5.1)" in why


def test_the_token_secret_is_named_as_kuberay_names_it() -> None:
    assert ray_auth.secret_name("train-x-abcde") == "train-x-abcde"
    long = "a" * 47 + "-abcde"  # a 47-character RayJob name and KubeRay's suffix: 53
    assert ray_auth.secret_name(long) == long[3:] and len(ray_auth.secret_name(long)) == 50
    assert ray_auth.secret_name("7abc") == "rabc"


# -- the real API server and KubeRay operator -------------------------------------------------------


def _env(pod: client.V1Pod) -> dict[str, Any]:
    return {e.name: e for e in pod.spec.containers[0].env or []}


def test_kuberay_makes_one_owned_secret_per_cluster_and_sentinel_never_shows_it(
        k8s_env, k8s_api, k8s_namespace, kube_env, tmp_path, monkeypatch) -> None:
    from sentinel_cli.backends.kubernetes import plan, run
    from sentinel_cli.k8s.client import connect
    from sentinel_cli.k8s.request import kube_request

    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"target": "k8s", "kubernetes": {
        "namespace": k8s_namespace, "storage": "s3://bucket/prefix", "workers": 1,
        "head": {"cpu": "100m", "memory": "256Mi"}, "worker": {"cpu": "100m", "memory": "256Mi"}}}))
    monkeypatch.setenv("KUBECONFIG", str(k8s_env.kubeconfig))
    monkeypatch.setenv("SENTINEL_PROFILE", str(profile))
    core, ns, name = client.CoreV1Api(k8s_api), k8s_namespace, "authn"

    outputs = [cli("render", "cluster", "--name", name, "-o", "yaml")]
    deploy = kube_request(name=name)
    run.cluster(plan.plan_cluster(deploy), deploy)
    wait_for(f"KubeRay's token Secret {name}", lambda: None if read_secret(core, ns, name) else "not yet", TIMEOUT_S)
    secret = read_secret(core, ns, name)
    token = base64.b64decode(secret.data[ray_auth.SECRET_KEY]).decode()
    assert len(token) >= 43  # 32 random bytes, base64
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("RayCluster", name, True)
    with connect(None, None, ns) as kube:  # Sentinel reads it through its client funnel
        assert ray_auth.cluster_token(kube, name) == token

    def pods_reason() -> str | None:
        pods = core.list_namespaced_pod(ns, label_selector=f"ray.io/cluster={name}").items
        return None if len(pods) == 2 else f"{len(pods)} of 2 pods"

    wait_for("the cluster's pods", pods_reason, TIMEOUT_S)
    for pod in core.list_namespaced_pod(ns, label_selector=f"ray.io/cluster={name}").items:
        env = _env(pod)
        assert env["RAY_AUTH_MODE"].value == "token"
        ref = env["RAY_AUTH_TOKEN"].value_from.secret_key_ref
        assert (ref.name, ref.key, env["RAY_AUTH_TOKEN"].value) == (name, ray_auth.SECRET_KEY, None)
        assert token not in str(pod.to_dict())

    run.cluster(plan.plan_cluster(deploy), deploy)  # a re-apply keeps the cluster's token
    assert read_secret(core, ns, name).data == secret.data

    outputs += [cli("status", "--target", "k8s", "-o", "yaml"), cli("logs", name),
                cli("render", "train", "--name", "t-auth", "-o", "yaml"), cli("delete", name)]
    assert outputs[-1].exit_code == 0, outputs[-1].output
    for result in outputs:
        assert token not in result.output and token not in (result.stderr or "")
    wait_for("the Secret to go with its RayCluster (garbage collector)",
             lambda: None if read_secret(core, ns, name) is None else "still there", TIMEOUT_S)
