"""Capacity preflight, pure: will the pods a plan asks for fit on the cluster's nodes?

Input is plain data: the objects a plan renders (RayJob, RayService, RayCluster), and the items of
one LIST of nodes, one LIST of pods, and what says whether an autoscaler runs (its Deployments,
Karpenter NodePools). Output is typed: one ``PodCheck`` per kind of pod (the head, each worker
group, the RayJob's submitter) with a ``Verdict``:

- ``FITS``: every replica has room on a node that admits it, now;
- ``WAITS``: some replica has no room now, but would fit on an existing kind of node once other
  pods finish or the node group grows;
- ``NEVER``: no node that admits the pod (labels, taints, not cordoned) is large enough, or none
  admits it at all.

A node admits a pod when the pod's nodeSelector matches its labels, the pod tolerates each of its
NoSchedule/NoExecute taints, and it is not cordoned. Room is allocatable minus the requests of the
pods already bound to the node, neither finished nor being deleted (the scheduler counts the
latter until they are gone, which is seconds). Replicas are placed
first-fit, largest pods first, so several pods of one plan compete for the same room.

Quantities are kept exact (``Fraction``), in the resource's base unit: cores for cpu, bytes for
memory, devices for ``nvidia.com/gpu``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from typing import Any

from sentinel_cli.k8s import client  # its kinds only: the kubernetes package loads when it connects
from sentinel_ml.errors import ConfigError

CPU, MEMORY, GPU = "cpu", "memory", "nvidia.com/gpu"
RAY_KINDS = tuple(k.kind for k in client.RAY_KINDS)  # the objects that create pods
NODE_GROUP_LABELS = (  # the first of these a node carries names its group; else its instance type
    "eks.amazonaws.com/nodegroup", "alpha.eksctl.io/nodegroup-name", "karpenter.sh/nodepool",
    "cloud.google.com/gke-nodepool", "kubernetes.azure.com/agentpool", "node.kubernetes.io/instance-type")
# Labels a GPU node carries (Sentinel's EKS GPU groups and NVIDIA's GPU feature discovery, Sentinel's
# groups, Karpenter on AWS): with the GPU taint, what marks a node as a GPU node before any device
# plugin registered its GPUs as nvidia.com/gpu.
GPU_NODE_LABELS = (("nvidia.com/gpu.present", "true"), ("accelerator", "nvidia"),
                   ("karpenter.k8s.aws/instance-gpu-manufacturer", "nvidia"))
BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})  # PreferNoSchedule only discourages
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})  # their requests no longer count on the node
# What KubeRay's Ray autoscaler container requests unless autoscalerOptions.resources says otherwise
# (ray-operator BuildAutoscalerContainer).
AUTOSCALER_SIDECAR = {"cpu": "500m", "memory": "512Mi"}
CLUSTER_AUTOSCALER = "cluster-autoscaler"
KARPENTER = "Karpenter"

_SUFFIX = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
           "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
           "P": Fraction(10**15), "E": Fraction(10**18),
           "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
           "Pi": Fraction(2**50), "Ei": Fraction(2**60)}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$")


def quantity(value: str | int | float) -> Fraction:
    """A Kubernetes quantity (``500m``, ``2Gi``, ``1.5``, ``1e3``, ``4``) as an exact number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Fraction(value)
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ConfigError(f"{value!r} is not a Kubernetes quantity",
                          hint="write it like 500m, 2, 1.5, 512Mi, 2Gi or 1G")
    number, exponent, suffix = match.groups()
    scale = Fraction(10) ** int(exponent[1:]) if exponent else _SUFFIX[suffix or ""]
    return Fraction(number) * scale


def show(resource: str, amount: Fraction) -> str:
    """An amount as people write it: ``1.5`` CPUs, ``2Gi`` of memory, ``1`` GPU."""
    if resource == MEMORY or resource.startswith(("hugepages-", "ephemeral-storage")):
        for suffix in ("Ti", "Gi", "Mi", "Ki"):
            if amount >= _SUFFIX[suffix]:
                scaled = amount / _SUFFIX[suffix]
                return f"{_number(scaled)}{suffix}"
        return _number(amount)
    if resource == CPU and amount and amount < 1:
        return f"{_number(amount * 1000)}m"
    return _number(amount)


def _number(value: Fraction) -> str:
    return str(int(value)) if value.denominator == 1 else f"{float(value):.3g}"


Resources = Mapping[str, Fraction]


# -- what the plan asks for ------------------------------------------------------------------------


@dataclass(frozen=True)
class Toleration:
    key: str | None = None  # None with operator Exists: tolerates every taint
    operator: str = "Equal"
    value: str | None = None
    effect: str | None = None  # None: every effect

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if self.key is None:
            return self.operator == "Exists"
        if self.key != taint.key:
            return False
        return self.operator == "Exists" or (self.value or "") == (taint.value or "")


@dataclass(frozen=True)
class Taint:
    key: str
    value: str | None
    effect: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True)
class PodNeed:
    """One kind of pod a plan creates, and how many."""

    role: str  # "head of RayJob train-x", "worker group train of RayJob train-x", …
    requests: Resources
    count: int = 1
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()

    def admitted_by(self, node: Node) -> bool:
        return not node.unschedulable and self.selects(node) and not self.untolerated(node)

    def selects(self, node: Node) -> bool:
        return all(node.labels.get(k) == v for k, v in self.node_selector.items())

    def untolerated(self, node: Node) -> list[Taint]:
        return [t for t in node.taints if t.effect in BLOCKING_EFFECTS
                and not any(tol.tolerates(t) for tol in self.tolerations)]


def pod_needs(objects: Iterable[dict[str, Any]]) -> list[PodNeed]:
    """The pods that the plan's Ray objects create: each head, each worker group (× its replicas,
    at least minReplicas) and each RayJob's submitter. Other objects create no pods."""
    needs: list[PodNeed] = []
    for obj in objects:
        kind, name = obj.get("kind"), obj.get("metadata", {}).get("name", "?")
        spec = obj.get("spec") or {}
        if kind == "RayJob":
            needs += _cluster_needs(spec.get("rayClusterSpec") or {}, f"RayJob {name}")
            submitter = spec.get("submitterPodTemplate")
            if submitter:
                needs.append(_need(f"submitter of RayJob {name}", submitter.get("spec") or {}))
        elif kind == "RayService":
            needs += _cluster_needs(spec.get("rayClusterConfig") or {}, f"RayService {name}")
        elif kind == "RayCluster":
            needs += _cluster_needs(spec, f"RayCluster {name}")
    return needs


def _cluster_needs(spec: dict[str, Any], owner: str) -> list[PodNeed]:
    head = spec.get("headGroupSpec") or {}
    head_pod = (head.get("template") or {}).get("spec") or {}
    if spec.get("enableInTreeAutoscaling"):  # KubeRay adds the Ray autoscaler as a container of the head
        sidecar = (spec.get("autoscalerOptions") or {}).get("resources") or {"requests": AUTOSCALER_SIDECAR}
        head_pod = {**head_pod, "containers": [*(head_pod.get("containers") or []), {"resources": sidecar}]}
    needs = [_need(f"head of {owner}", head_pod)]
    for group in spec.get("workerGroupSpecs") or []:
        if group.get("suspend"):
            continue
        replicas = max(int(group.get("replicas", 1) or 0), int(group.get("minReplicas", 0) or 0))
        replicas *= int(group.get("numOfHosts", 1) or 1)
        if replicas > 0:
            pod = (group.get("template") or {}).get("spec") or {}
            needs.append(_need(f"worker group {group.get('groupName', '?')} of {owner}", pod, replicas))
    return needs


def _need(role: str, pod: dict[str, Any], count: int = 1) -> PodNeed:
    return PodNeed(role, pod_requests(pod), count, dict(pod.get("nodeSelector") or {}),
                   tuple(_toleration(t) for t in pod.get("tolerations") or []))


def pod_requests(pod: dict[str, Any]) -> dict[str, Fraction]:
    """What the scheduler counts for a pod spec: the containers' requests (a limit stands in for a
    missing request) plus sidecars, or the largest init container's if larger, plus the overhead."""
    sidecars = [c for c in pod.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    total = _sum([_container(c) for c in (pod.get("containers") or []) + sidecars])
    for init in pod.get("initContainers") or []:
        if init.get("restartPolicy") != "Always":
            for resource, amount in _container(init).items():
                total[resource] = max(total.get(resource, Fraction(0)), amount)
    return _sum([total, {k: quantity(v) for k, v in (pod.get("overhead") or {}).items()}])


def _container(container: dict[str, Any]) -> dict[str, Fraction]:
    resources = container.get("resources") or {}
    amounts = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return {k: quantity(v) for k, v in amounts.items()}


def _sum(parts: Iterable[Mapping[str, Fraction]]) -> dict[str, Fraction]:
    total: dict[str, Fraction] = {}
    for part in parts:
        for resource, amount in part.items():
            total[resource] = total.get(resource, Fraction(0)) + amount
    return total


def _toleration(t: dict[str, Any]) -> Toleration:
    return Toleration(t.get("key") or None, t.get("operator") or "Equal", t.get("value"), t.get("effect") or None)


# -- what the cluster has --------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    name: str
    group: str  # the node group (or pool, or instance type) a new node like it would come from
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    allocatable: Resources
    free: Resources  # allocatable minus the requests of the pods bound to it
    unschedulable: bool = False


def nodes(node_items: Iterable[dict[str, Any]], pod_items: Iterable[dict[str, Any]],
          replacing: Iterable[dict[str, Any]] = (), namespace: str = "default") -> list[Node]:
    """The nodes of a LIST of nodes, with what the LIST of pods (all namespaces) leaves free. Pods of
    the objects ``replacing`` (being applied again to ``namespace``) do not count: an upgrade in
    place keeps them, a new cluster replaces them."""
    used: dict[str, list[Mapping[str, Fraction]]] = {}
    owners = [o for o in (_identity(obj, namespace) for obj in replacing if obj.get("kind") in RAY_KINDS) if o]
    for pod in pod_items:
        if _leaving(pod) or any(_owns(owner, pod) for owner in owners):
            continue
        bound = (pod.get("spec") or {}).get("nodeName")
        if bound:
            used.setdefault(bound, []).append(pod_requests(pod.get("spec") or {}))
    return [_node(item, _sum(used.get(item["metadata"]["name"], []))) for item in node_items]


def _identity(obj: dict[str, Any], namespace: str) -> tuple[str, dict[str, str]] | None:
    """Where an object's pods live, and the labels that mark them as its own: KubeRay's cluster label
    for a RayCluster; for a RayJob or RayService a label of its pod templates whose value is its name
    (Sentinel's run id, its RayService label). None when nothing marks them."""
    meta = obj["metadata"]
    name, where = meta["name"], meta.get("namespace") or namespace
    if obj["kind"] == "RayCluster":
        return where, {"ray.io/cluster": name}
    for template in _templates(obj):
        labels = ((template.get("metadata") or {}).get("labels") or {}).items()
        own = {k: v for k, v in labels if v == name and not k.startswith("app.kubernetes.io/")}
        if own:
            return where, own
    return None


def _templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    cluster = spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or spec
    groups = [cluster.get("headGroupSpec") or {}, *(cluster.get("workerGroupSpecs") or [])]
    return [g.get("template") or {} for g in groups]


def _owns(owner: tuple[str, dict[str, str]], pod: dict[str, Any]) -> bool:
    namespace, labels = owner
    meta = pod.get("metadata") or {}
    return meta.get("namespace") == namespace and all((meta.get("labels") or {}).get(k) == v
                                                      for k, v in labels.items())


def _leaving(pod: dict[str, Any]) -> bool:
    """A finished pod, or one being deleted (a finished RayJob's cluster going): its room is free,
    or about to be."""
    finished = (pod.get("status") or {}).get("phase") in FINISHED_PHASES
    return finished or bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def _node(item: dict[str, Any], used: Mapping[str, Fraction]) -> Node:
    meta, spec = item["metadata"], item.get("spec") or {}
    labels = dict(meta.get("labels") or {})
    allocatable = {k: quantity(v) for k, v in ((item.get("status") or {}).get("allocatable") or {}).items()}
    free = {k: v - used.get(k, Fraction(0)) for k, v in allocatable.items()}
    group = next((labels[k] for k in NODE_GROUP_LABELS if labels.get(k)), meta["name"])
    taints = tuple(Taint(t["key"], t.get("value"), t["effect"]) for t in spec.get("taints") or [])
    return Node(meta["name"], group, labels, taints, allocatable, free, bool(spec.get("unschedulable")))


@dataclass(frozen=True)
class Autoscaler:
    kind: str  # CLUSTER_AUTOSCALER or KARPENTER
    names: tuple[str, ...]  # namespace/name of the Deployment, or the NodePools

    def __str__(self) -> str:
        what = "NodePool" if self.kind == KARPENTER else "Deployment"
        return f"{self.kind} ({what} {', '.join(self.names)})"


def autoscaler(deployments: Iterable[dict[str, Any]], nodepools: Iterable[dict[str, Any]]) -> Autoscaler | None:
    """Karpenter when NodePools exist; else cluster-autoscaler when a Deployment of it runs."""
    pools = tuple(p["metadata"]["name"] for p in nodepools)
    if pools:
        return Autoscaler(KARPENTER, pools)
    found = tuple(f"{d['metadata'].get('namespace', '')}/{d['metadata']['name']}" for d in deployments
                  if _is_cluster_autoscaler(d) and ((d.get("spec") or {}).get("replicas", 1) or 0) > 0)
    return Autoscaler(CLUSTER_AUTOSCALER, found) if found else None


def _is_cluster_autoscaler(deployment: dict[str, Any]) -> bool:
    meta = deployment["metadata"]
    labels = meta.get("labels") or {}
    names = (meta["name"], labels.get("app.kubernetes.io/name", ""), labels.get("app", ""),
             labels.get("k8s-app", ""))
    return any(CLUSTER_AUTOSCALER in n for n in names)


# -- the verdict -----------------------------------------------------------------------------------


class Verdict(str, Enum):
    FITS = "fits"
    WAITS = "waits"  # fits on a kind of node that exists, once room frees up or the group grows
    NEVER = "never"  # no node that admits it could hold it, or none admits it


@dataclass(frozen=True)
class PodCheck:
    need: PodNeed
    verdict: Verdict
    placed: int  # replicas with room now
    reason: str = ""  # why not (WAITS, NEVER): a sentence naming the resource or the label or taint
    fix: str = ""  # what to do about it
    groups: tuple[str, ...] = ()  # WAITS: the node groups whose nodes could hold it
    nodes_needed: int = 0  # WAITS: empty nodes like the largest of ``groups`` that would take the rest


@dataclass(frozen=True)
class Preflight:
    checks: tuple[PodCheck, ...]
    autoscaler: Autoscaler | None = None

    @property
    def never(self) -> list[PodCheck]:
        return [c for c in self.checks if c.verdict is Verdict.NEVER]

    @property
    def waits(self) -> list[PodCheck]:
        return [c for c in self.checks if c.verdict is Verdict.WAITS]


def check(needs: Iterable[PodNeed], cluster: Iterable[Node], found: Autoscaler | None = None) -> Preflight:
    """Place each pod's replicas on the room the nodes have now, largest pods first; the checks come
    back in the order of ``needs``."""
    needs, cluster = list(needs), list(cluster)
    room = {n.name: dict(n.free) for n in cluster}
    order = sorted(range(len(needs)), key=lambda i: _size(needs[i]), reverse=True)
    checks = {i: _check(needs[i], cluster, room) for i in order}
    return Preflight(tuple(checks[i] for i in range(len(needs))), found)


class Insufficient(ConfigError):
    """A plan's pods cannot be scheduled on the cluster: refused before anything is applied."""


SKIP_HINT = "or apply anyway with --no-preflight"


def verdict(result: Preflight) -> tuple[Insufficient | None, list[str]]:
    """What the command does: refuse (the error to raise), or go ahead with these warnings.

    A pod that no admitting node could hold is refused. A pod without room now is refused too,
    naming the node group to grow, unless an autoscaler runs: then it is a warning naming what
    should scale."""
    never = result.never
    if never:
        hint = never[0].fix
        if result.autoscaler:
            hint += (f"; {result.autoscaler} runs here: if a node group that is now at zero nodes offers "
                     f"this, apply anyway with --no-preflight")
        else:
            hint += f"; {SKIP_HINT}"
        return Insufficient("; ".join(dict.fromkeys(c.reason for c in never)), hint=hint), []
    waits = result.waits
    if not waits:
        return None, []
    if result.autoscaler:
        return None, [f"{c.reason}; {result.autoscaler} should add nodes to node group "
                      f"{_or(c.groups)}" for c in waits]
    grow = "; ".join(f"grow node group {_or(c.groups)} by {c.nodes_needed} node(s)" for c in waits)
    return Insufficient("; ".join(c.reason for c in waits) + "; no autoscaler runs in the cluster",
                        hint=f"{grow}, or wait for running pods to finish, {SKIP_HINT}"), []


def _or(names: Iterable[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _size(need: PodNeed) -> tuple[Fraction, Fraction, Fraction]:
    r = need.requests
    return r.get(GPU, Fraction(0)), r.get(CPU, Fraction(0)), r.get(MEMORY, Fraction(0))


def _check(need: PodNeed, cluster: list[Node], room: dict[str, dict[str, Fraction]]) -> PodCheck:
    admitting = [n for n in cluster if need.admitted_by(n)]
    large_enough = [n for n in admitting if not _short(need.requests, n.allocatable)]
    if not large_enough:
        reason, fix = _why_never(need, cluster, admitting)
        return PodCheck(need, Verdict.NEVER, 0, reason, fix)
    placed = 0
    for _ in range(need.count):
        node = next((n for n in large_enough if not _short(need.requests, room[n.name])), None)
        if node is None:
            break
        placed += 1
        for resource, amount in need.requests.items():
            room[node.name][resource] = room[node.name].get(resource, Fraction(0)) - amount
    if placed == need.count:
        return PodCheck(need, Verdict.FITS, placed)
    groups = tuple(sorted({n.group for n in large_enough}))
    per_node = max(_how_many(need.requests, n.allocatable) for n in large_enough)
    return PodCheck(need, Verdict.WAITS, placed, _why_waits(need, placed, large_enough, room), "", groups,
                    -(-(need.count - placed) // per_node))


def _how_many(requests: Resources, available: Resources) -> int:
    """How many pods asking ``requests`` an empty node with ``available`` holds (at least 1 here)."""
    counts = [int(available.get(r, Fraction(0)) // a) for r, a in requests.items() if a > 0]
    return max(min(counts, default=1), 1)


def _short(requests: Resources, available: Resources) -> list[str]:
    """The resources of ``requests`` that ``available`` cannot cover."""
    return [r for r, amount in requests.items() if amount > 0 and available.get(r, Fraction(0)) < amount]


def _why_never(need: PodNeed, cluster: list[Node], admitting: list[Node]) -> tuple[str, str]:
    if not cluster:
        return "the cluster has no nodes", "add a node group, or point the kubeconfig at another cluster"
    selected = [n for n in cluster if need.selects(n)]
    if not selected:
        return _no_label_match(need, cluster)
    schedulable = [n for n in selected if not n.unschedulable]
    if not schedulable:
        names = ", ".join(n.name for n in selected)
        return (f"the {need.role} selects only cordoned nodes ({names})",
                "uncordon one (kubectl uncordon <node>) or add nodes to its group")
    if not admitting:
        return _untolerated(need, schedulable, "every node it selects carries")
    holders = [n for n in schedulable if need.untolerated(n) and not _short(need.requests, n.allocatable)]
    if holders:  # e.g. GPU nodes tainted nvidia.com/gpu, and a pod asking for a GPU without the toleration
        return _untolerated(need, holders, "the only nodes large enough for it carry")
    return _too_large(need, admitting)


def _no_label_match(need: PodNeed, cluster: list[Node]) -> tuple[str, str]:
    wanted = ", ".join(f"{k}={v}" for k, v in need.node_selector.items())
    seen = sorted({f"{k}={n.labels[k]}" for n in cluster for k in need.node_selector if k in n.labels})
    have = f"; the nodes have {', '.join(seen)}" if seen else "; no node has those labels"
    return (f"the {need.role} selects nodes labelled {wanted}, and no node matches{have}",
            "label a node group so (kubectl label node <node> …, or the group's labels), "
            "or change the selector in the profile (head_node_selector, spot.node_selector, "
            "serve.node_selector)")


def _untolerated(need: PodNeed, nodes: list[Node], which: str) -> tuple[str, str]:
    taints = sorted({str(t) for n in nodes for t in need.untolerated(n)})
    names = ", ".join(sorted({n.group for n in nodes}))
    return (f"the {need.role} does not tolerate the taint {' and '.join(taints)} that {which} "
            f"(node group {names})",
            "add the toleration to the pod (the profile's spot.tolerations for workers), "
            "or select nodes without that taint")


def _too_large(need: PodNeed, admitting: list[Node]) -> tuple[str, str]:
    lacking = [r for n in admitting for r in _short(need.requests, n.allocatable)]
    resource = max(set(lacking), key=lambda r: (lacking.count(r), r == GPU, r))
    asked = need.requests[resource]
    largest = max(admitting, key=lambda n: (n.allocatable.get(resource, Fraction(0)), n.free.get(resource, 0)))
    has = largest.allocatable.get(resource, Fraction(0))
    bare = [n.name for n in admitting if resource == GPU and _gpu_node(n)]
    if not has and bare:
        return (f"the {need.role} asks for {show(resource, asked)} {_noun(resource)}, and the GPU node(s) that "
                f"admit it ({', '.join(bare)}) advertise none: no device plugin has registered their GPUs",
                "run `sentinel up --target k8s` (it installs NVIDIA's device plugin on GPU nodes) and check it "
                "with `sentinel doctor --target k8s`")
    if not has:
        fix = ("add a GPU node group with the NVIDIA device plugin, or ask for no GPU (drop --gpus, "
               "--gpus-per-trial)"
               if resource == GPU else f"add nodes that offer {resource}, or drop the request")
        return (f"the {need.role} asks for {show(resource, asked)} {_noun(resource)}, and no node that admits it "
                f"has any", fix)
    free = max(n.free.get(resource, Fraction(0)) for n in admitting)
    return (f"the {need.role} asks for {show(resource, asked)} {_noun(resource)} per pod; the largest "
            f"node that admits it ({largest.name}, group {largest.group}) has {show(resource, has)} "
            f"allocatable, and the most free on any such node is {show(resource, max(free, Fraction(0)))}",
            f"ask for at most {show(resource, has)} {_noun(resource)} per pod{_SETTINGS.get(resource, '')}, "
            f"or add a node group with larger nodes")


def _gpu_node(node: Node) -> bool:
    return any(t.key == GPU for t in node.taints) or any(node.labels.get(k) == v for k, v in GPU_NODE_LABELS)


# Where a profile sets what a pod asks for (the watch's "Insufficient cpu" hint names the same).
_SETTINGS = {CPU: " (kubernetes.head.cpu, worker.cpu, serve_worker.cpu, submitter.cpu: the profile, or --set)",
             MEMORY: " (kubernetes.head.memory, worker.memory, serve_worker.memory, submitter.memory: the profile, "
                     "or --set)",
             GPU: " (train --gpus, tune --gpus-per-trial, serve --gpus; kubernetes.worker.gpu, serve.gpus)"}


def _why_waits(need: PodNeed, placed: int, fitting: list[Node], room: Mapping[str, Resources]) -> str:
    missing = need.count - placed
    lacking = sorted({r for n in fitting for r in _short(need.requests, room[n.name])})
    free = "; ".join(f"{r}: asked {show(r, need.requests[r])} each, the most free on such a node is "
                     f"{show(r, max(max(room[n.name].get(r, Fraction(0)) for n in fitting), Fraction(0)))}"
                     for r in lacking)
    return f"{missing} of {need.count} pod(s) of the {need.role} have no room on the nodes now ({free})"


def _noun(resource: str) -> str:
    return {CPU: "CPU", MEMORY: "of memory", GPU: "GPU (nvidia.com/gpu)"}.get(resource, resource)
