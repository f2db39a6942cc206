"""GPU nodes and the NVIDIA device plugin, pure: what ``up`` and ``doctor`` read from one LIST of
nodes and one of DaemonSets.

A node is a GPU node when it advertises ``nvidia.com/gpu`` (capacity or allocatable), carries the
GPU taint (``nvidia.com/gpu``, any value) or one of the GPU labels that node groups and GPU feature
discovery set (``GPU_NODE_LABELS``). Its GPUs are schedulable only once a device plugin on it
registered them: ``allocatable`` then says how many. A device plugin is a DaemonSet running NVIDIA's
``k8s-device-plugin`` image, in any namespace (``up``'s, eksctl's, the GPU operator's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sentinel_cli.k8s.capacity import GPU, GPU_NODE_LABELS, NODE_GROUP_LABELS, quantity

GPU_TAINT_KEY = GPU
DEVICE_PLUGIN_IMAGE = "k8s-device-plugin"  # NVIDIA's image name, whoever installed it


@dataclass(frozen=True)
class GpuNode:
    name: str
    group: str  # its node group (or instance type)
    capacity: int  # GPUs the node reports
    allocatable: int  # GPUs the scheduler can hand out (0 until a device plugin registered them)
    labelled: bool  # carries a label of GPU_NODE_LABELS: the device plugin's DaemonSet selects it
    tainted: bool

    def as_data(self) -> dict[str, Any]:
        return {"name": self.name, "group": self.group, "capacity": self.capacity,
                "allocatable": self.allocatable, "labelled": self.labelled, "tainted": self.tainted}


def gpu_nodes(node_items: Iterable[dict[str, Any]]) -> list[GpuNode]:
    found = []
    for item in node_items:
        meta, status = item["metadata"], item.get("status") or {}
        labels = meta.get("labels") or {}
        capacity = _count((status.get("capacity") or {}).get(GPU))
        allocatable = _count((status.get("allocatable") or {}).get(GPU))
        labelled = any(labels.get(k) == v for k, v in GPU_NODE_LABELS)
        tainted = any(t.get("key") == GPU_TAINT_KEY for t in (item.get("spec") or {}).get("taints") or [])
        if capacity or allocatable or labelled or tainted:
            group = next((labels[k] for k in NODE_GROUP_LABELS if labels.get(k)), meta["name"])
            found.append(GpuNode(meta["name"], group, capacity, allocatable, labelled, tainted))
    return found


def _count(value: Any) -> int:
    return int(quantity(value)) if value not in (None, "") else 0


@dataclass(frozen=True)
class DevicePlugin:
    namespace: str
    name: str
    image: str
    desired: int  # nodes it should run on
    ready: int  # nodes where it runs and is ready
    managed_by_sentinel: bool

    def __str__(self) -> str:
        return f"DaemonSet {self.namespace}/{self.name} ({self.image}), ready on {self.ready} of {self.desired} node(s)"

    def as_data(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "image": self.image, "desired": self.desired,
                "ready": self.ready, "managed_by_sentinel": self.managed_by_sentinel}


def device_plugins(daemonsets: Iterable[dict[str, Any]]) -> list[DevicePlugin]:
    """The DaemonSets that run NVIDIA's device plugin."""
    found = []
    for ds in daemonsets:
        containers = ((((ds.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or [])
        image = next((c.get("image", "") for c in containers if DEVICE_PLUGIN_IMAGE in c.get("image", "")), None)
        if image is None:
            continue
        meta, status = ds["metadata"], ds.get("status") or {}
        ours = (meta.get("labels") or {}).get("app.kubernetes.io/managed-by") == "sentinel"
        found.append(DevicePlugin(meta.get("namespace", ""), meta["name"], image,
                                  int(status.get("desiredNumberScheduled") or 0), int(status.get("numberReady") or 0),
                                  ours))
    return found


def unlabelled(nodes: Iterable[GpuNode]) -> list[str]:
    """GPU nodes the device plugin's DaemonSet does not select (no GPU label): it will not run there."""
    return [n.name for n in nodes if not n.labelled]


LABEL_FIX = "label them: kubectl label node <node> nvidia.com/gpu.present=true (or give their node group that label)"
