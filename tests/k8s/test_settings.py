"""The Kubernetes target's configuration: defaults < profile < environment < flags, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_cli.backends import select, target_name
from sentinel_cli.k8s import settings
from sentinel_cli.k8s.request import KubeRequest, Overrides, check_local, kube_request
from sentinel_ml.entrypoint import exit_code
from sentinel_ml.errors import ConfigError
from tests.k8s.conftest import PROFILE


def test_defaults_follow_the_design(kube_env) -> None:
    kube = settings.load(environ={})
    assert kube.namespace == "default"
    assert (kube.head.cpu, kube.head.memory) == ("1", "4Gi")
    assert (kube.worker.cpu, kube.worker.memory) == ("1", "2Gi")
    assert (kube.serve_worker.cpu, kube.serve_worker.memory) == ("500m", "2Gi")
    assert kube.spot.node_selector == {"intention": "training", "lifecycle": "Ec2Spot"}
    assert kube.head_node_selector == {"lifecycle": "OnDemand"}
    assert (kube.serve.min_replicas, kube.serve.max_replicas, kube.serve.target_ongoing_requests,
            kube.serve.upscale_delay_s, kube.serve.downscale_delay_s) == (1, 5, 5, 1, 30)
    assert kube.ray_version == settings.installed_ray_version()
    assert kube.rayjob.shutdown_after_job_finishes and kube.rayjob.backoff_limit == 0
    assert kube.storage is None
    with pytest.raises(ConfigError, match="no checkpoint storage") as raised:
        kube.require_storage()
    assert "--storage" in raised.value.hint


def test_profile_then_environment_then_flags(kube_env) -> None:
    from_profile = settings.load(Overrides(profile=str(PROFILE)), environ={})
    assert (from_profile.namespace, from_profile.workers) == ("ml", 2)
    environ = {"SENTINEL_NAMESPACE": "from-env", "SENTINEL_TRAIN_IMAGE": "env/train:2"}
    from_env = settings.load(Overrides(profile=str(PROFILE)), environ=environ)
    assert (from_env.namespace, from_env.images.train) == ("from-env", "env/train:2")
    assert from_env.images.serve.endswith("sentinel-serve:0.1.0")  # the rest of `images` stays
    flags = Overrides(profile=str(PROFILE), namespace="from-flag",
                      sets=("workers=6", "rayjob.backoff_limit=2", "env.EXTRA=1", "spot.node_selector.pool=a",
                            "kubernetes.serve.max_replicas=9"))
    from_flags = settings.load(flags, environ=environ)
    assert (from_flags.namespace, from_flags.workers, from_flags.rayjob.backoff_limit) == ("from-flag", 6, 2)
    assert from_flags.env == {"AWS_REGION": "us-east-1", "EXTRA": "1"}
    assert from_flags.spot.node_selector == {"intention": "training", "lifecycle": "Ec2Spot", "pool": "a"}
    assert from_flags.serve.max_replicas == 9


def test_the_default_profile_is_found_in_sentinel_home(kube_env) -> None:
    (kube_env / "config.yaml").write_text("target: k8s\nkubernetes:\n  namespace: home-ns\n")
    assert settings.load(environ={}).namespace == "home-ns"
    assert target_name(None) == "k8s"
    assert select(None).name == "k8s"
    assert target_name("local") == "local"  # the flag wins


@pytest.mark.parametrize(("sets", "key", "message"), [
    (("namespace=Bad_NS",), "kubernetes.namespace", "RFC 1123"),
    (("workers=0",), "kubernetes.workers", "greater than or equal to 1"),
    (("head.cpu=lots",), "kubernetes.head.cpu", "not a Kubernetes quantity"),
    (("storage=/local/dir",), "kubernetes.storage", "s3://"),
    (("service_account.role_arn=my-role",), "kubernetes.service_account.role_arn", "IAM role ARN"),
    (("env.1BAD=x",), "kubernetes.env", "environment variable names"),
    (("rayjob.shutdown_after_job_finishes=false",), "kubernetes.rayjob", "ttl_seconds_after_finished"),
    (("spot.node_selector.-bad=x",), "kubernetes.spot.node_selector", "label key"),
    (("colour=blue",), "kubernetes.colour", "Extra inputs are not permitted"),
])
def test_invalid_settings_name_the_key_and_the_source(kube_env, sets, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings.load(Overrides(sets=sets), environ={})
    assert key in raised.value.message and message in raised.value.message
    assert "from the command line" in raised.value.message
    assert exit_code(raised.value) == 2


def test_profile_errors_name_the_file(kube_env, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kubernetes:\n  workers: many\n")
    with pytest.raises(ConfigError, match=f"from profile {bad}"):
        settings.load(Overrides(profile=str(bad)), environ={})
    bad.write_text("kubernetes: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot read profile"):
        settings.load(Overrides(profile=str(bad)), environ={})
    bad.write_text("kubernetes: {}\nnamespace: top-level-by-mistake\n")
    with pytest.raises(ConfigError, match="unknown keys namespace"):
        settings.load(Overrides(profile=str(bad)), environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        settings.load(Overrides(profile=str(tmp_path / "missing.yaml")), environ={})
    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        settings.load(Overrides(sets=("workers",)), environ={})


def test_kubernetes_flags_are_refused_for_a_local_run_before_it_starts(kube_env) -> None:
    check_local(KubeRequest())
    check_local(kube_request(storage="/tmp/x", mlflow_uri="off"))  # shared with the local target
    with pytest.raises(ConfigError, match="--namespace, --no-wait only apply to --target k8s"):
        check_local(kube_request(namespace="ml", wait=False))
    result = CliRunner().invoke(app, ["train", "--target", "local", "--dry-run", "--epochs", "1"])
    assert result.exit_code == 2, result.output
    assert "--dry-run only apply to --target k8s" in result.output
