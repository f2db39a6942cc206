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


def test_gpu_node_groups_on_demand_and_spot_sized_by_flags(sentinel_home) -> None:
    config, *_ = _render("--gpu-nodes", "1:4", "--gpu-instance-type", "g5.2xlarge", "--gpu-instance-type",
                         "g6.2xlarge", "--gpu-spot")
    groups = {g["name"]: g for g in config["managedNodeGroups"]}
    assert list(groups) == ["ondemand-heads", "spot-workers", "gpu-ondemand", "gpu-spot"]
    on_demand, spot = groups["gpu-ondemand"], groups["gpu-spot"]
    gpu_taint = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
    for group in (on_demand, spot):
        assert group["instanceTypes"] == ["g5.2xlarge", "g6.2xlarge"]
        assert (group["minSize"], group["maxSize"], group["desiredCapacity"]) == (1, 4, 1)
        assert group["labels"].items() >= {"accelerator": "nvidia", "nvidia.com/gpu.present": "true"}.items()
        assert group["taints"][0] == gpu_taint
        assert group["tags"]["k8s.io/cluster-autoscaler/sentinel"] == "owned" and group["propagateASGTags"]
    assert "spot" not in on_demand and on_demand["labels"]["lifecycle"] == "OnDemand"
    assert on_demand["taints"] == [gpu_taint]
    assert spot["spot"] is True and spot["labels"]["lifecycle"] == "Ec2Spot"
    assert spot["taints"] == [gpu_taint, {"key": "lifecycle", "value": "Ec2Spot", "effect": "NoSchedule"}]
    # the default: no GPU group; MAX alone means 0:MAX; bad sizes are usage errors (exit 2)
    assert [g["name"] for g in eks.cluster_config(eks.EksCluster())["managedNodeGroups"]] == [
        "ondemand-heads", "spot-workers"]
    only_max = {g["name"]: g for g in _render("--gpu-nodes", "2")[0]["managedNodeGroups"]}
    assert (only_max["gpu-ondemand"]["minSize"], only_max["gpu-ondemand"]["maxSize"]) == (0, 2)
    assert "gpu-spot" not in only_max
    for bad, said in ((["--gpu-nodes", "4:1"], "need 0 <= MIN <= MAX"), (["--gpu-nodes", "x"], "is not MIN:MAX"),
                      (["--gpu-spot"], "--gpu-spot needs GPU nodes")):
        result = CliRunner().invoke(app, ["cluster", "render", *bad])
        assert result.exit_code == 2 and said in " ".join(result.output.split()), result.output


def test_the_gpu_spot_group_admits_what_the_preflight_admits(sentinel_home) -> None:
    """A worker with the spot toleration and the GPU one fits the spot GPU group's nodes; without the
    GPU toleration the preflight names the GPU taint (the group's labels and taints as nodes carry them)."""
    from sentinel_cli.k8s import capacity

    spot = {g["name"]: g for g in eks.cluster_config(eks.EksCluster(gpu_nodes=(0, 2), gpu_spot=True))[
        "managedNodeGroups"]}["gpu-spot"]
    node = capacity.Node("n", "gpu-spot", spot["labels"],
                         tuple(capacity.Taint(t["key"], t["value"], t["effect"]) for t in spot["taints"]),
                         {capacity.GPU: capacity.quantity(1)}, {capacity.GPU: capacity.quantity(1)})
    spot_toleration = capacity.Toleration("lifecycle", "Equal", "Ec2Spot", "NoSchedule")
    gpu_toleration = capacity.Toleration(capacity.GPU, "Exists", None, "NoSchedule")
    need = capacity.PodNeed("worker", {capacity.GPU: capacity.quantity(1)}, 1,
                            {"intention": "training", "lifecycle": "Ec2Spot"}, (spot_toleration, gpu_toleration))
    assert need.admitted_by(node)
    untolerated = capacity.PodNeed("worker", need.requests, 1, need.node_selector, (spot_toleration,))
    assert [str(t) for t in untolerated.untolerated(node)] == ["nvidia.com/gpu=true:NoSchedule"]
