"""An EKS cluster for Sentinel, as data: an eksctl ClusterConfig and the cluster-autoscaler manifest.

Pure functions (no I/O). The cluster has an on-demand managed node group for Ray heads and
services (``lifecycle=OnDemand``, ``intention=head``: the head pods' node selector) and a spot
node group for training workers (``intention=training``, ``lifecycle=Ec2Spot``, tainted
``lifecycle=Ec2Spot:NoSchedule``: the workers' node selector and toleration). IRSA is on
(``iam.withOIDC``); eksctl creates two IAM service accounts: ``kube-system/cluster-autoscaler``
(eksctl's well-known autoscaler policy) and, given a bucket, Sentinel's pods' account with the
bucket-scoped policy (``sentinel_cli.aws.iam``). Both node groups carry the cluster-autoscaler's auto-discovery tags, and
propagate their labels and taints as ASG tags so the spot group can scale from zero.

With ``gpu_nodes`` (max > 0) it adds GPU node groups, on-demand and (``gpu_spot``) spot, labelled
``intention=training``, ``accelerator=nvidia`` and ``nvidia.com/gpu.present=true`` (the label NVIDIA's
GPU feature discovery sets, which ``sentinel up``'s device plugin selects) and tainted
``nvidia.com/gpu=true:NoSchedule`` as EKS's GPU recipe does, so only pods that ask for GPUs (and
tolerate the taint) land there. eksctl picks the EKS-optimized accelerated AMI for GPU instance
types; ``sentinel up`` installs the NVIDIA device plugin when no one did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sentinel_ml.errors import ConfigError

AUTOSCALER_VERSION = "v1.34.2"  # the cluster-autoscaler minor follows the Kubernetes minor
KUBERNETES_VERSION = "1.34"
HEAD_LABELS = {"lifecycle": "OnDemand", "intention": "head"}
SPOT_LABELS = {"intention": "training", "lifecycle": "Ec2Spot"}
SPOT_TAINT = {"key": "lifecycle", "value": "Ec2Spot", "effect": "NoSchedule"}
GPU_RESOURCE = "nvidia.com/gpu"
GPU_LABELS = {"intention": "training", "accelerator": "nvidia", "nvidia.com/gpu.present": "true"}
GPU_TAINT = {"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}
_NAME = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]{0,99}$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")


@dataclass(frozen=True)
class EksCluster:
    name: str = "sentinel"
    region: str = "us-east-1"
    kubernetes_version: str = KUBERNETES_VERSION
    head_instance_type: str = "m5.xlarge"
    head_nodes: tuple[int, int] = (1, 3)  # min, max
    spot_instance_types: tuple[str, ...] = ("m5.xlarge", "m5a.xlarge", "m5d.xlarge", "m4.xlarge")
    spot_nodes: tuple[int, int] = (0, 10)
    gpu_instance_types: tuple[str, ...] = ("g5.xlarge",)
    gpu_nodes: tuple[int, int] = (0, 0)  # min, max; max 0: no GPU node group
    gpu_spot: bool = False  # also a spot GPU group (the on-demand one stays, for work that must not be interrupted)
    namespace: str = "default"
    service_account: str = "sentinel"
    bucket: str | None = None
    prefix: str = ""
    tags: dict[str, str] = field(default_factory=lambda: {"app.kubernetes.io/part-of": "sentinel"})

    def validate(self) -> EksCluster:
        checks = [
            (_NAME.match(self.name), f"invalid cluster name {self.name!r}: letters, digits and '-', "
                                     "starting with a letter, at most 100 characters"),
            (_REGION.match(self.region), f"{self.region!r} is not an AWS region such as eu-west-1"),
            (re.match(r"^1\.\d+$", self.kubernetes_version), f"--kubernetes-version {self.kubernetes_version!r} "
                                                              "is not a minor version such as 1.34"),
            (0 <= self.head_nodes[0] <= self.head_nodes[1] and self.head_nodes[1] >= 1,
             "head nodes: need 0 <= min <= max and max >= 1"),
            (0 <= self.spot_nodes[0] <= self.spot_nodes[1] and self.spot_nodes[1] >= 1,
             "spot nodes: need 0 <= min <= max and max >= 1"),
            (self.spot_instance_types, "give at least one spot instance type"),
            (0 <= self.gpu_nodes[0] <= self.gpu_nodes[1], "--gpu-nodes MIN:MAX: need 0 <= MIN <= MAX"),
            (self.gpu_instance_types or not self.gpu_nodes[1], "give at least one --gpu-instance-type"),
            (not self.gpu_spot or self.gpu_nodes[1] > 0, "--gpu-spot needs GPU nodes: --gpu-nodes MIN:MAX with MAX >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message, hint="see `sentinel cluster render --help`")
        return self


def discovery_tags(cluster: str) -> dict[str, str]:
    """The tags the cluster-autoscaler's ``--node-group-auto-discovery`` looks for."""
    return {"k8s.io/cluster-autoscaler/enabled": "true", f"k8s.io/cluster-autoscaler/{cluster}": "owned"}


def cluster_config(c: EksCluster) -> dict[str, Any]:
    """The eksctl ClusterConfig (``eksctl create cluster -f``)."""
    from sentinel_cli.aws.iam import bucket_policy

    c.validate()
    accounts: list[dict[str, Any]] = [
        {"metadata": {"name": "cluster-autoscaler", "namespace": "kube-system",
                      "labels": {"k8s-app": "cluster-autoscaler"}},
         "wellKnownPolicies": {"autoScaler": True}},
    ]
    if c.bucket:  # without a bucket, no account for the pods rather than a broad policy
        accounts.append({"metadata": {"name": c.service_account, "namespace": c.namespace,
                                      "labels": {"app.kubernetes.io/managed-by": "sentinel"}},
                         "attachPolicy": bucket_policy(c.bucket, c.prefix)})
    return {
        "apiVersion": "eksctl.io/v1alpha5",
        "kind": "ClusterConfig",
        "metadata": {"name": c.name, "region": c.region, "version": c.kubernetes_version, "tags": dict(c.tags)},
        "iam": {"withOIDC": True, "serviceAccounts": accounts},
        "managedNodeGroups": [
            {
                "name": "ondemand-heads",
                "instanceType": c.head_instance_type,
                "minSize": c.head_nodes[0], "maxSize": c.head_nodes[1],
                "desiredCapacity": max(c.head_nodes[0], 1),
                "labels": dict(HEAD_LABELS),
                "tags": discovery_tags(c.name),
                "propagateASGTags": True,
                "privateNetworking": True,
            },
            {
                "name": "spot-workers",
                "instanceTypes": list(c.spot_instance_types),
                "spot": True,
                "minSize": c.spot_nodes[0], "maxSize": c.spot_nodes[1],
                "desiredCapacity": c.spot_nodes[0],
                "labels": dict(SPOT_LABELS),
                "taints": [dict(SPOT_TAINT)],
                "tags": discovery_tags(c.name),
                "propagateASGTags": True,
                "privateNetworking": True,
            },
            *gpu_node_groups(c),
        ],
    }


def gpu_node_groups(c: EksCluster) -> list[dict[str, Any]]:
    """The GPU node groups: on-demand, and with ``gpu_spot`` spot too (each sized ``gpu_nodes``).
    The spot group carries the spot label and taint as well, so only pods that tolerate both go there."""
    if not c.gpu_nodes[1]:
        return []
    low, high = c.gpu_nodes
    groups = []
    for spot in (False, True) if c.gpu_spot else (False,):
        labels = {**GPU_LABELS, "lifecycle": "Ec2Spot" if spot else "OnDemand"}
        group: dict[str, Any] = {
            "name": "gpu-spot" if spot else "gpu-ondemand",
            "instanceTypes": list(c.gpu_instance_types),
            "minSize": low, "maxSize": high, "desiredCapacity": low,
            "labels": labels,
            "taints": [dict(GPU_TAINT), *([dict(SPOT_TAINT)] if spot else [])],
            "tags": discovery_tags(c.name),
            "propagateASGTags": True,
            "privateNetworking": True,
        }
        if spot:
            group["spot"] = True
        groups.append(group)
    return groups


def node_range(text: str) -> tuple[int, int]:
    """``MIN:MAX`` (``0:4``) or ``MAX`` (``4``, meaning ``0:4``) as two integers."""
    low, sep, high = text.partition(":")
    try:
        return (int(low), int(high)) if sep else (0, int(low))
    except ValueError:
        raise ConfigError(f"{text!r} is not MIN:MAX (such as 0:4) or MAX",
                          hint="see `sentinel cluster render --help`") from None


def autoscaler_objects(c: EksCluster, image_version: str = AUTOSCALER_VERSION) -> list[dict[str, Any]]:
    """RBAC and the Deployment of the cluster-autoscaler with auto-discovery for cluster ``c.name``.

    Its ServiceAccount (with the IRSA role annotation) is made by eksctl from the ClusterConfig.
    """
    c.validate()
    name, ns = "cluster-autoscaler", "kube-system"
    labels = {"k8s-app": name, "app.kubernetes.io/managed-by": "sentinel"}
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": ns}]
    read = ["watch", "list", "get"]
    cluster_rules = [
        {"apiGroups": [""], "resources": ["events", "endpoints"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["endpoints"], "resourceNames": [name], "verbs": ["get", "update"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": [*read, "update"]},
        {"apiGroups": [""], "resources": ["namespaces", "pods", "services", "replicationcontrollers",
                                           "persistentvolumeclaims", "persistentvolumes"], "verbs": read},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["watch", "list"]},
        {"apiGroups": ["apps"], "resources": ["statefulsets", "replicasets", "daemonsets"], "verbs": read},
        {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses", "csinodes", "csidrivers",
                                                         "csistoragecapacities"], "verbs": read},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": [*read, "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [name],
         "verbs": ["get", "update"]},
    ]
    role_rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps"],
         "resourceNames": ["cluster-autoscaler-status", "cluster-autoscaler-priority-expander"],
         "verbs": ["delete", "get", "update", "watch"]},
    ]
    command = [
        "./cluster-autoscaler", "--v=4", "--stderrthreshold=info", "--cloud-provider=aws",
        "--skip-nodes-with-local-storage=false", "--expander=least-waste",
        "--node-group-auto-discovery=asg:tag=" + ",".join(discovery_tags(c.name)),
        "--balance-similar-node-groups", "--skip-nodes-with-system-pods=false",
    ]
    meta = {"name": name, "labels": labels}
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta,
         "rules": cluster_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {**meta, "namespace": ns},
         "rules": role_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {**meta, "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": subject},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {**meta, "namespace": ns},
         "spec": {
             "replicas": 1,
             "selector": {"matchLabels": {"k8s-app": name}},
             "template": {
                 "metadata": {"labels": labels,
                              "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8085"}},
                 "spec": {
                     "priorityClassName": "system-cluster-critical",
                     "serviceAccountName": name,
                     "nodeSelector": dict(HEAD_LABELS),  # never on a spot node it might remove
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "fsGroup": 65534,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{
                         "name": name,
                         "image": f"registry.k8s.io/autoscaling/cluster-autoscaler:{image_version}",
                         "imagePullPolicy": "IfNotPresent",
                         "command": command,
                         "resources": {"limits": {"cpu": "100m", "memory": "600Mi"},
                                       "requests": {"cpu": "100m", "memory": "600Mi"}},
                         "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                             "capabilities": {"drop": ["ALL"]}},
                     }],
                 },
             },
         }},
    ]
