"""The capacity preflight against a live cluster: read what ``k8s.capacity`` needs, then refuse
(``capacity.Insufficient``, exit 2) or warn, before anything is applied.

It costs one LIST of nodes and one of pods (all namespaces), whatever the cluster's size. Only
when a pod does not fit does it also look for an autoscaler: one LIST of Deployments (all
namespaces) and one of Karpenter NodePools.
"""

from __future__ import annotations

from typing import Any

from sentinel_cli.k8s import capacity
from sentinel_cli.progress import kube_warning as _warn


def check(kube, objects: list[dict[str, Any]]) -> None:
    """Raise ``capacity.Insufficient`` when the objects' pods cannot be scheduled; warn when they
    wait for an autoscaler; say so and go ahead when the credentials cannot read the nodes."""
    from sentinel_cli.k8s.client import POD, Forbidden

    needs = capacity.pod_needs(objects)
    if not needs:
        return
    try:
        nodes = capacity.nodes(kube.nodes(), kube.list(POD, all_namespaces=True))
    except Forbidden as e:
        _warn(f"capacity preflight skipped: {e.message} ({e.hint}); --no-preflight silences this")
        return
    result = capacity.check(needs, nodes)
    if result.never or result.waits:
        result = capacity.check(needs, nodes, _autoscaler(kube))
    error, warnings = capacity.verdict(result)
    for warning in warnings:
        _warn(warning)
    if error is not None:
        raise error


def _autoscaler(kube) -> capacity.Autoscaler | None:
    from sentinel_cli.k8s.client import DEPLOYMENT, NODEPOOL, Forbidden, NotFound

    try:
        deployments = kube.list(DEPLOYMENT, all_namespaces=True)
    except Forbidden:
        deployments = []
    try:
        nodepools = kube.list(NODEPOOL)
    except (NotFound, Forbidden):  # no Karpenter CRD, or not ours to read
        nodepools = []
    return capacity.autoscaler(deployments, nodepools)
