"""The capacity preflight against a live cluster: read what ``k8s.capacity`` needs, then refuse
(``capacity.Insufficient``, exit 2) or warn, before anything is applied.

It costs one LIST of nodes and one of pods (all namespaces), whatever the cluster's size. Only
when a pod does not fit does it also look for an autoscaler (one LIST of Deployments in all
namespaces, one of Karpenter NodePools), and, with none, re-read for a few seconds before refusing.
"""

from __future__ import annotations

import time
from typing import Any

from sentinel_cli.k8s import capacity
from sentinel_cli.progress import kube_say as _say
from sentinel_cli.progress import kube_warning as _warn

SETTLE_S = 20.0  # how long a request with no room now waits for room to free before it is refused
SETTLE_POLL_S = 2.0
_sleep = time.sleep  # the tests record the wait instead of sleeping it


def check(kube, objects: list[dict[str, Any]]) -> None:
    """Raise ``capacity.Insufficient`` when the objects' pods cannot be scheduled; warn when they
    wait for an autoscaler; say so and go ahead when the credentials cannot read the nodes.

    Pods with no room now, on a cluster with no autoscaler, are refused only after up to
    ``SETTLE_S`` seconds of re-reading: a RayJob's cluster is deleted a moment after the job ends,
    so the next command could otherwise find its pods still there."""
    needs = capacity.pod_needs(objects)
    if not needs:
        return
    tries = int(SETTLE_S // SETTLE_POLL_S) + 1
    for attempt in range(tries):
        result = _read(kube, needs, objects)
        if result is None:
            return
        error, warnings = capacity.verdict(result)
        if error is None or result.never or attempt == tries - 1:
            break
        if attempt == 0:
            _say(f"no room for every pod yet; checking again for up to {SETTLE_S:.0f}s: {error.message}")
        _sleep(SETTLE_POLL_S)
    for warning in warnings:
        _warn(warning)
    if error is not None:
        raise error


def _read(kube, needs: list[capacity.PodNeed], objects: list[dict[str, Any]]) -> capacity.Preflight | None:
    """One LIST of nodes and one of pods; the autoscaler too when something does not fit. The pods
    of the objects themselves (a RayService upgraded in place) leave room for their successors."""
    from sentinel_cli.k8s.client import POD, Forbidden

    try:
        nodes = capacity.nodes(kube.nodes(), kube.list(POD, all_namespaces=True), objects, kube.namespace)
    except Forbidden as e:
        _warn(f"capacity preflight skipped: {e.message} ({e.hint}); --no-preflight silences this")
        return None
    result = capacity.check(needs, nodes)
    if result.never or result.waits:
        result = capacity.check(needs, nodes, _autoscaler(kube))
    return result


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
