"""`sentinel cluster render`: the eksctl ClusterConfig (node groups, labels, IRSA, autoscaler tags) and
the cluster-autoscaler manifest, which the real API server accepts."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_cli.aws import eks


def _render(*args: str) -> list[dict]:
    result = CliRunner().invoke(app, ["cluster", "render", *args])
    assert result.exit_code == 0, result.output
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_cluster_config_node_groups_irsa_and_discovery_tags(sentinel_home) -> None:
    config, *manifest = _render("--name", "ml-prod", "--region", "eu-west-1", "--storage", "s3://ckpt/sentinel",
                                "--namespace", "ml")
    assert (config["apiVersion"], config["kind"]) == ("eksctl.io/v1alpha5", "ClusterConfig")
    assert config["metadata"]["name"] == "ml-prod" and config["metadata"]["region"] == "eu-west-1"
    assert config["iam"]["withOIDC"] is True
    heads, spot = config["managedNodeGroups"]
    assert not heads.get("spot") and heads["labels"] == {"lifecycle": "OnDemand", "intention": "head"}
    assert spot["spot"] is True and spot["labels"] == {"intention": "training", "lifecycle": "Ec2Spot"}
    assert spot["taints"] == [{"key": "lifecycle", "value": "Ec2Spot", "effect": "NoSchedule"}]
    for group in (heads, spot):
        assert group["tags"] == {"k8s.io/cluster-autoscaler/enabled": "true",
                                 "k8s.io/cluster-autoscaler/ml-prod": "owned"}
        assert group["propagateASGTags"] is True
    autoscaler, pods = config["iam"]["serviceAccounts"]
    assert autoscaler["wellKnownPolicies"] == {"autoScaler": True}
    assert pods["metadata"] == {"name": "sentinel", "namespace": "ml",
                                "labels": {"app.kubernetes.io/managed-by": "sentinel"}}
    resources = {s["Sid"]: s["Resource"] for s in pods["attachPolicy"]["Statement"]}
    assert resources == {"ListTheBucket": "arn:aws:s3:::ckpt", "ReadWriteCheckpoints": "arn:aws:s3:::ckpt/sentinel/*"}
    deployment = manifest[-1]
    assert deployment["kind"] == "Deployment"
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert ("--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,"
            "k8s.io/cluster-autoscaler/ml-prod") in command


def test_labels_match_what_the_kubernetes_target_selects(sentinel_home) -> None:
    """The spot group's labels and taint are exactly the training workers' selector and toleration."""
    from sentinel_cli.k8s.settings import KubeSettings

    settings = KubeSettings()
    config = eks.cluster_config(eks.EksCluster())
    heads, spot = config["managedNodeGroups"]
    assert settings.spot.node_selector.items() <= spot["labels"].items()
    assert [t.model_dump() for t in settings.spot.tolerations] == [{**spot["taints"][0], "operator": "Equal"}]
    assert settings.head_node_selector.items() <= heads["labels"].items()


def test_no_bucket_means_no_pods_role_and_bad_names_are_config_errors(sentinel_home) -> None:
    config = eks.cluster_config(eks.EksCluster())
    assert [a["metadata"]["name"] for a in config["iam"]["serviceAccounts"]] == ["cluster-autoscaler"]
    result = CliRunner().invoke(app, ["cluster", "render", "--region", "mars"])
    assert result.exit_code == 2 and "not an AWS region" in result.output


def test_out_dir_writes_both_files(sentinel_home, tmp_path) -> None:
    result = CliRunner().invoke(app, ["cluster", "render", "--out-dir", str(tmp_path), "-o", "yaml"])
    assert result.exit_code == 0, result.output
    assert f"eksctl create cluster -f {tmp_path / 'cluster.yaml'}" in result.stdout
    assert yaml.safe_load((tmp_path / "cluster.yaml").read_text())["kind"] == "ClusterConfig"
    kinds = [d["kind"] for d in yaml.safe_load_all((tmp_path / "cluster-autoscaler.yaml").read_text())]
    assert kinds == ["ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding", "Deployment"]


@pytest.mark.k8s
def test_autoscaler_manifest_passes_api_server_validation(k8s_env, tmp_path) -> None:
    path = tmp_path / "ca.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                "items": eks.autoscaler_objects(eks.EksCluster(name="t"))}))
    result = subprocess.run(["kubectl", "--kubeconfig", str(k8s_env.kubeconfig), "apply", "--server-side",
                             "--dry-run=server", "--field-manager=sentinel", "-f", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("serverside-applied (server dry run)") == 5, result.stdout
