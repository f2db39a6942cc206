"""GPU nodes and device plugins as one LIST of nodes and one of DaemonSets return them (pure)."""

from __future__ import annotations

from sentinel_cli.k8s import gpus
from sentinel_cli.k8s import platform_objects as po


def _node(name: str, labels=None, taints=None, gpu: str | None = None) -> dict:
    amounts = {"cpu": "4", **({"nvidia.com/gpu": gpu} if gpu else {})}
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []},
            "status": {"capacity": amounts, "allocatable": amounts}}


def test_a_gpu_node_advertises_gpus_or_carries_the_taint_or_a_gpu_label() -> None:
    found = gpus.gpu_nodes([
        _node("cpu"),
        _node("advertises", {"eks.amazonaws.com/nodegroup": "g"}, gpu="8"),
        _node("tainted", taints=[{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]),
        _node("karpenter", {"karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia"}),
    ])
    assert [(n.name, n.group, n.allocatable, n.labelled, n.tainted) for n in found] == [
        ("advertises", "g", 8, False, False), ("tainted", "tainted", 0, False, True),
        ("karpenter", "karpenter", 0, True, False)]
    assert gpus.unlabelled(found) == ["advertises", "tainted"]


def test_device_plugins_are_found_by_nvidias_image_in_any_namespace() -> None:
    ours = po.device_plugin()[0]
    theirs = {"metadata": {"name": "nvdp", "namespace": "gpu-operator"},
              "spec": {"template": {"spec": {"containers": [{"image": "nvcr.io/nvidia/k8s-device-plugin:v0.17.1"}]}}},
              "status": {"desiredNumberScheduled": 2, "numberReady": 1}}
    other = {"metadata": {"name": "kube-proxy", "namespace": "kube-system"},
             "spec": {"template": {"spec": {"containers": [{"image": "kube-proxy:v1.34"}]}}}}
    found = gpus.device_plugins([ours, theirs, other])
    assert [(p.name, p.managed_by_sentinel, p.ready) for p in found] == [(po.DEVICE_PLUGIN, True, 0), ("nvdp", False, 1)]
    assert str(found[1]) == ("DaemonSet gpu-operator/nvdp (nvcr.io/nvidia/k8s-device-plugin:v0.17.1), "
                             "ready on 1 of 2 node(s)")


def test_the_device_plugin_runs_only_on_gpu_nodes_and_tolerates_their_taints() -> None:
    pod = po.device_plugin()[0]["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert [(t["matchExpressions"][0]["key"], t["matchExpressions"][0]["values"]) for t in terms] == [
        (k, [v]) for k, v in gpus.GPU_NODE_LABELS]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["containers"][0]["image"] == "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"
