"""Capacity preflight, pure: the plans' checked-in objects against nodes and pods as one LIST of
each returns them (EKS-shaped labels and taints, GPU nodes advertising nvidia.com/gpu)."""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import pytest
import yaml

from sentinel_cli.k8s import capacity
from sentinel_cli.k8s.capacity import GPU, Verdict, quantity
from sentinel_ml.errors import ConfigError
from tests.k8s.conftest import EXPECTED, PROFILE

GPU_TAINT = {"key": GPU, "value": "true", "effect": "NoSchedule"}
SPOT_TOLERATION = {"key": "lifecycle", "operator": "Equal", "value": "Ec2Spot", "effect": "NoSchedule"}


def _objects(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((EXPECTED / f"{name}.yaml").read_text()) if doc]


def _node(name: str, group: str, cpu: str = "4", memory: str = "15Gi", gpu: int = 0,
          taints: list[dict[str, str]] | None = None, unschedulable: bool = False, **labels: str) -> dict[str, Any]:
    allocatable = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "95Gi"}
    if gpu:
        allocatable[GPU] = str(gpu)
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"eks.amazonaws.com/nodegroup": group,
                                                  "kubernetes.io/hostname": name, **labels}},
            "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
            "status": {"allocatable": allocatable, "capacity": allocatable}}


def _pod(node: str, cpu: str, memory: str, phase: str = "Running", gpu: int = 0) -> dict[str, Any]:
    requests = {"cpu": cpu, "memory": memory, **({GPU: str(gpu)} if gpu else {})}
    return {"metadata": {"name": f"busy-{node}-{cpu}", "namespace": "other"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": requests}}]},
            "status": {"phase": phase}}


def _eks() -> list[dict[str, Any]]:
    """The node groups sentinel's EKS config makes: on-demand for heads, spot for training workers."""
    return [_node("ip-10-0-1-1", "ondemand", lifecycle="OnDemand", intention="head"),
            _node("ip-10-0-2-1", "spot", lifecycle="Ec2Spot", intention="training",
                  taints=[{"key": "lifecycle", "value": "Ec2Spot", "effect": "NoSchedule"}]),
            _node("ip-10-0-2-2", "spot", lifecycle="Ec2Spot", intention="training",
                  taints=[{"key": "lifecycle", "value": "Ec2Spot", "effect": "NoSchedule"}])]


def _gpu_nodes(gpus: int = 4) -> list[dict[str, Any]]:
    return [_node("ip-10-0-3-1", "gpu-spot", cpu="48", memory="180Gi", gpu=gpus, lifecycle="Ec2Spot",
                  intention="training", taints=[GPU_TAINT, {"key": "lifecycle", "value": "Ec2Spot",
                                                           "effect": "NoSchedule"}])]


APPLIED = ["ServiceAccount", "NetworkPolicy", "RayJob"]  # the train plan, in order


def _run(objects, node_items, pod_items=(), deployments=(), nodepools=()):
    found = capacity.autoscaler(deployments, nodepools)
    return capacity.check(capacity.pod_needs(objects), capacity.nodes(node_items, pod_items), found)


def _with_workers(objects: list[dict[str, Any]], requests: dict[str, str], tolerations=None, replicas=None):
    """The train plan with other worker requests (and tolerations, replicas)."""
    objects = copy.deepcopy(objects)
    job = next(o for o in objects if o["kind"] == "RayJob")
    group = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    pod = group["template"]["spec"]
    pod["containers"][0]["resources"] = {"requests": requests, "limits": requests}
    if tolerations is not None:
        pod["tolerations"] = tolerations
    if replicas is not None:
        group["replicas"] = group["minReplicas"] = group["maxReplicas"] = replicas
    return objects


# -- quantities ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("1", 1), ("500m", Fraction(1, 2)), ("0.5", Fraction(1, 2)), ("1.5", Fraction(3, 2)), (".5", Fraction(1, 2)),
    ("2Gi", 2 * 2**30), ("512Mi", 512 * 2**20), ("128974848", 128974848), ("129e6", 129_000_000),
    ("129M", 129_000_000), ("1k", 1000), ("1Ki", 1024), ("100n", Fraction(1, 10**7)), ("1.5Gi", 3 * 2**29),
    (4, 4), ("8", 8), ("1E", 10**18), ("1Ei", 2**60)])
def test_quantities_parse_exactly(text, value):
    assert quantity(text) == value


@pytest.mark.parametrize("text", ["", "1 Gi", "Gi", "1gi", "1GB", "one", "1..5"])
def test_a_malformed_quantity_is_a_config_error_naming_it(text):
    with pytest.raises(ConfigError, match="not a Kubernetes quantity"):
        quantity(text)


def test_amounts_show_as_people_write_them():
    assert capacity.show("cpu", Fraction(1, 2)) == "500m"
    assert capacity.show("cpu", Fraction(4)) == "4"
    assert capacity.show("memory", quantity("2Gi")) == "2Gi"
    assert capacity.show("memory", quantity("1536Mi")) == "1.5Gi"
    assert capacity.show(GPU, Fraction(8)) == "8"


# -- what a plan asks for --------------------------------------------------------------------------


def test_train_plan_asks_for_a_head_two_workers_and_a_submitter():
    needs = capacity.pod_needs(_objects("train"))
    assert [(n.role, n.count) for n in needs] == [
        ("head of RayJob train-20260101-000000-abcd", 1),
        ("worker group train of RayJob train-20260101-000000-abcd", 2),
        ("submitter of RayJob train-20260101-000000-abcd", 1)]
    head, workers, submitter = needs
    assert head.requests == {"cpu": 1, "memory": 4 * 2**30} and head.node_selector == {"lifecycle": "OnDemand"}
    assert workers.node_selector == {"intention": "training", "lifecycle": "Ec2Spot"}
    assert workers.tolerations == (capacity.Toleration("lifecycle", "Equal", "Ec2Spot", "NoSchedule"),)
    assert submitter.requests == {"cpu": Fraction(1, 5), "memory": 512 * 2**20}


def test_serve_plan_counts_the_workers_min_replicas_and_other_objects_none():
    needs = capacity.pod_needs(_objects("serve"))
    assert [(n.role, n.count) for n in needs] == [("head of RayService recommender", 1),
                                                  ("worker group serve of RayService recommender", 1)]
    head = needs[0]  # an autoscaling RayService: KubeRay adds its autoscaler container to the head
    assert head.requests == {"cpu": Fraction(3, 2), "memory": 4 * 2**30 + 512 * 2**20}
    options = copy.deepcopy(_objects("serve"))
    service = next(o for o in options if o["kind"] == "RayService")
    service["spec"]["rayClusterConfig"]["autoscalerOptions"] = {"resources": {"requests": {"cpu": "200m"}}}
    assert capacity.pod_needs(options)[0].requests["cpu"] == Fraction(6, 5)
    cluster = capacity.pod_needs(_objects("cluster"))
    assert [n.role.split(" of ")[0] for n in cluster] == ["head", "worker group train"]


def test_pod_requests_count_init_containers_sidecars_overhead_and_limits_alone():
    pod = {"containers": [{"resources": {"requests": {"cpu": "1"}}},
                          {"resources": {"limits": {"cpu": "500m", GPU: "1"}}}],  # limit only: request = limit
           "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "1Gi"}}},
                              {"restartPolicy": "Always", "resources": {"requests": {"memory": "64Mi"}}}],
           "overhead": {"cpu": "100m"}}
    assert capacity.pod_requests(pod) == {"cpu": Fraction(21, 10), "memory": 2**30, GPU: 1}


# -- nodes and autoscalers -------------------------------------------------------------------------


def test_free_room_is_allocatable_minus_the_bound_pods_that_stay():
    terminating = _pod("ip-10-0-1-1", "2", "1Gi")
    terminating["metadata"]["deletionTimestamp"] = "2026-12-07T18:00:00Z"
    pods = [_pod("ip-10-0-1-1", "1500m", "1Gi"), _pod("ip-10-0-1-1", "1", "1Gi", phase="Succeeded"), terminating,
            {"metadata": {"name": "pending"}, "spec": {"containers": [{"resources": {"requests": {"cpu": "4"}}}]},
             "status": {"phase": "Pending"}}]
    node = capacity.nodes(_eks()[:1], pods)[0]
    assert node.group == "ondemand"
    assert node.free["cpu"] == Fraction(5, 2) and node.free["memory"] == 14 * 2**30


def test_pods_of_the_objects_being_applied_again_leave_their_room():
    """Serving another checkpoint upgrades the RayService in place: its running pods stay."""
    serve = _objects("serve")
    own = _pod("ip-10-0-1-1", "3", "1Gi")
    own["metadata"].update(namespace="ml", labels={"sentinel.io/rayservice": "recommender",
                                                   "sentinel.io/ray-cluster": "recommender",
                                                   "app.kubernetes.io/name": "sentinel"})
    elsewhere = copy.deepcopy(own)
    elsewhere["metadata"]["namespace"] = "other"
    cluster = capacity.nodes(_eks()[:1], [own, elsewhere], serve, "ml")
    assert cluster[0].free["cpu"] == 1  # only the other namespace's pod counts
    standalone = _pod("ip-10-0-1-1", "3", "1Gi")
    standalone["metadata"].update(namespace="ml", labels={"ray.io/cluster": "sentinel",
                                                          "app.kubernetes.io/name": "sentinel"})
    assert capacity.nodes(_eks()[:1], [standalone], _objects("cluster"), "ml")[0].free["cpu"] == 4
    assert capacity.nodes(_eks()[:1], [standalone], _objects("train"), "ml")[0].free["cpu"] == 1


def test_autoscalers_are_found_from_their_deployments_or_nodepools():
    ca = {"metadata": {"name": "cluster-autoscaler-aws-cluster-autoscaler", "namespace": "kube-system",
                       "labels": {"app.kubernetes.io/name": "aws-cluster-autoscaler"}}, "spec": {"replicas": 1}}
    stopped = {**ca, "spec": {"replicas": 0}}
    other = {"metadata": {"name": "coredns", "namespace": "kube-system"}, "spec": {"replicas": 2}}
    assert capacity.autoscaler([other], []) is None
    assert capacity.autoscaler([stopped], []) is None
    found = capacity.autoscaler([other, ca], [])
    assert found.kind == capacity.CLUSTER_AUTOSCALER
    assert str(found) == "cluster-autoscaler (Deployment kube-system/cluster-autoscaler-aws-cluster-autoscaler)"
    karpenter = capacity.autoscaler([], [{"metadata": {"name": "gpu"}}, {"metadata": {"name": "default"}}])
    assert str(karpenter) == "Karpenter (NodePool gpu, default)"


# -- verdicts --------------------------------------------------------------------------------------


def test_train_plan_fits_the_eks_node_groups():
    result = _run(_objects("train"), _eks())
    assert [c.verdict for c in result.checks] == [Verdict.FITS] * 3
    assert capacity.verdict(result) == (None, [])


def test_more_cpu_than_any_node_has_names_the_resource_the_largest_node_and_the_fix():
    result = _run(_with_workers(_objects("train"), {"cpu": "6", "memory": "2Gi"}), _eks(),
                  [_pod("ip-10-0-2-1", "3", "1Gi")])
    error, warnings = capacity.verdict(result)
    assert isinstance(error, ConfigError) and warnings == []
    assert error.message == (
        "the worker group train of RayJob train-20260101-000000-abcd asks for 6 CPU per pod; the largest node "
        "that admits it (ip-10-0-2-2, group spot) has 4 allocatable, and the most free on any such node is 4")
    assert error.hint == ("ask for at most 4 CPU per pod (kubernetes.head.cpu, worker.cpu, serve_worker.cpu, "
                          "submitter.cpu: the profile, or --set), or add a node group with larger nodes; "
                          "or apply anyway with --no-preflight")


def test_more_gpus_than_any_node_has():
    tolerations = [SPOT_TOLERATION, {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
    objects = _with_workers(_objects("train"), {"cpu": "8", "memory": "32Gi", GPU: "8"}, tolerations)
    error, _ = capacity.verdict(_run(objects, _eks() + _gpu_nodes(4)))
    assert "asks for 8 GPU (nvidia.com/gpu) per pod; the largest node that admits it (ip-10-0-3-1, group " \
           "gpu-spot) has 4 allocatable" in error.message
    assert error.hint.startswith("ask for at most 4 GPU (nvidia.com/gpu) per pod")


def test_gpus_on_a_cluster_without_gpu_nodes():
    error, _ = capacity.verdict(_run(_with_workers(_objects("train"), {"cpu": "1", GPU: "1"}), _eks()))
    assert error.message == ("the worker group train of RayJob train-20260101-000000-abcd asks for 1 GPU "
                             "(nvidia.com/gpu), and no node that admits it has any")
    assert error.hint.startswith("add a GPU node group with the NVIDIA device plugin")


def test_a_node_selector_no_node_matches():
    nodes = [n for n in _eks() if n["metadata"]["labels"]["lifecycle"] != "OnDemand"]
    error, _ = capacity.verdict(_run(_objects("train"), nodes))
    assert error.message.startswith(
        "the head of RayJob train-20260101-000000-abcd selects nodes labelled lifecycle=OnDemand, and no node "
        "matches; the nodes have lifecycle=Ec2Spot")
    assert "label a node group so" in error.hint and "head_node_selector" in error.hint


def test_a_taint_not_tolerated():
    objects = _with_workers(_objects("train"), {"cpu": "8", "memory": "32Gi", GPU: "1"})  # only the spot toleration
    nodes = [n for n in _eks() if n["metadata"]["labels"]["lifecycle"] == "OnDemand"] + _gpu_nodes()
    error, _ = capacity.verdict(_run(objects, nodes))
    assert error.message == ("the worker group train of RayJob train-20260101-000000-abcd does not tolerate the "
                             "taint nvidia.com/gpu=true:NoSchedule that every node it selects carries "
                             "(node group gpu-spot)")
    assert error.hint.startswith("add the toleration to the pod")


def test_a_gpu_pod_without_the_gpu_toleration_is_told_about_the_taint():
    """The spot group admits it but has no GPU; the GPU group has GPUs but a taint it does not tolerate."""
    objects = _with_workers(_objects("train"), {"cpu": "8", "memory": "32Gi", GPU: "1"})
    error, _ = capacity.verdict(_run(objects, _eks() + _gpu_nodes()))
    assert error.message == ("the worker group train of RayJob train-20260101-000000-abcd does not tolerate the "
                             "taint nvidia.com/gpu=true:NoSchedule that the only nodes large enough for it carry "
                             "(node group gpu-spot)")


def test_a_tolerating_pod_lands_on_the_gpu_node():
    tolerations = [SPOT_TOLERATION, {"key": GPU, "operator": "Exists"}]
    objects = _with_workers(_objects("train"), {"cpu": "8", "memory": "32Gi", GPU: "2"}, tolerations)
    result = _run(objects, _eks() + _gpu_nodes(4))
    assert [c.verdict for c in result.checks] == [Verdict.FITS] * 3


def test_cordoned_nodes_admit_nothing():
    nodes = [_node("ip-10-0-1-1", "ondemand", unschedulable=True, lifecycle="OnDemand")] + _eks()[1:]
    error, _ = capacity.verdict(_run(_objects("train"), nodes))
    assert "selects only cordoned nodes (ip-10-0-1-1)" in error.message


def test_no_room_now_without_an_autoscaler_names_the_group_to_grow():
    objects = _with_workers(_objects("train"), {"cpu": "3", "memory": "4Gi"}, replicas=4)
    result = _run(objects, _eks(), [_pod("ip-10-0-2-1", "2", "1Gi")])
    workers = result.checks[1]
    assert (workers.verdict, workers.placed, workers.groups, workers.nodes_needed) == (Verdict.WAITS, 1, ("spot",), 3)
    error, _ = capacity.verdict(result)
    assert error.message == ("3 of 4 pod(s) of the worker group train of RayJob train-20260101-000000-abcd have no "
                             "room on the nodes now (cpu: asked 3 each, the most free on such a node is 2); "
                             "no autoscaler runs in the cluster")
    assert error.hint == ("grow node group spot by 3 node(s), or wait for running pods to finish, "
                          "or apply anyway with --no-preflight")


def test_no_room_now_with_an_autoscaler_is_a_warning_naming_what_should_scale():
    objects = _with_workers(_objects("train"), {"cpu": "3", "memory": "4Gi"}, replicas=4)
    ca = {"metadata": {"name": "cluster-autoscaler", "namespace": "kube-system"}, "spec": {"replicas": 1}}
    error, warnings = capacity.verdict(_run(objects, _eks(), deployments=[ca]))
    assert error is None
    assert warnings == ["2 of 4 pod(s) of the worker group train of RayJob train-20260101-000000-abcd have no room "
                        "on the nodes now (cpu: asked 3 each, the most free on such a node is 1); cluster-autoscaler "
                        "(Deployment kube-system/cluster-autoscaler) should add nodes to node group spot"]


def test_pods_of_one_plan_compete_for_the_same_room():
    """Head and submitter both select the on-demand node: 2.9 of its 4 CPUs are taken, the head
    takes 1, and the submitter's 0.2 no longer fits."""
    result = _run(_objects("train"), _eks(), [_pod("ip-10-0-1-1", "2900m", "1Gi")])
    head, _, submitter = result.checks
    assert head.verdict is Verdict.FITS and submitter.verdict is Verdict.WAITS


def test_never_with_an_autoscaler_is_still_refused_but_says_how_to_go_ahead():
    error, _ = capacity.verdict(_run(_with_workers(_objects("train"), {"cpu": "1", GPU: "1"}), _eks(),
                                     nodepools=[{"metadata": {"name": "default"}}]))
    assert "Karpenter (NodePool default) runs here: if a node group that is now at zero nodes offers this, " \
           "apply anyway with --no-preflight" in error.hint


def test_an_empty_cluster():
    error, _ = capacity.verdict(_run(_objects("serve"), []))
    assert error.message == "the cluster has no nodes"  # once, though neither pod fits


# -- the wiring: what the preflight reads, and what it does with the verdict -------------------------


class _Cluster:
    """Stands in for ``k8s.client.Kube``: the LISTs the preflight makes, counted."""

    def __init__(self, node_items, pod_items=(), deployments=(), nodepools=None) -> None:
        self.node_items, self.pod_items = node_items, pod_items
        self.deployments, self.nodepools = deployments, nodepools
        self.calls: list[str] = []
        self.applied: list[str] = []
        self.namespace = "ml"

    def nodes(self):
        self.calls.append("nodes")
        return self.node_items

    def list(self, kind, selector=None, all_namespaces=False):
        from sentinel_cli.k8s.client import NotFound

        self.calls.append(kind.plural)
        if kind.plural == "nodepools" and self.nodepools is None:
            raise NotFound("not found: list nodepools")
        return {"pods": self.pod_items, "deployments": self.deployments, "nodepools": self.nodepools}[kind.plural]

    def apply(self, obj, dry_run=False):
        self.applied.append(obj["kind"])
        return obj

    def get(self, kind, name, namespace=None):
        self.calls.append(f"get {kind.plural}")
        return None  # no RayCluster CRD here: the token check leaves that to the apply


def test_a_fitting_plan_costs_one_list_of_nodes_and_one_of_pods_then_applies():
    from sentinel_cli.backends.kubernetes import run
    from sentinel_cli.k8s.request import KubeRequest

    kube = _Cluster(_eks())
    run.apply(kube, _objects("train"), KubeRequest())
    # then one GET of the RayCluster CRD: does the operator know token auth (k8s/ray_auth.py)
    assert kube.calls == ["nodes", "pods", "get customresourcedefinitions"] and kube.applied == APPLIED


def test_an_insufficient_plan_is_refused_before_anything_is_applied():
    from sentinel_cli.backends.kubernetes import run
    from sentinel_cli.k8s.request import KubeRequest

    kube = _Cluster(_eks())
    with pytest.raises(capacity.Insufficient, match="asks for 6 CPU per pod"):
        run.apply(kube, _with_workers(_objects("train"), {"cpu": "6"}), KubeRequest())
    assert kube.applied == [] and kube.calls == ["nodes", "pods", "deployments", "nodepools"]


def test_no_room_now_is_read_again_before_it_is_refused(monkeypatch):
    """A finished RayJob's cluster is deleted a moment after the job ends: room that frees within
    SETTLE_S lets the next command through."""
    from sentinel_cli.backends.kubernetes import preflight, run
    from sentinel_cli.k8s.request import KubeRequest

    slept: list[float] = []
    busy = _Cluster(_eks(), [_pod("ip-10-0-2-1", "3500m", "1Gi"), _pod("ip-10-0-2-2", "3500m", "1Gi")])

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            busy.pod_items = []  # the old cluster's pods are gone

    monkeypatch.setattr(preflight, "_sleep", sleep)
    run.apply(busy, _objects("train"), KubeRequest())
    assert slept == [preflight.SETTLE_POLL_S] * 2 and busy.applied == APPLIED

    slept.clear()
    busy.pod_items = [_pod("ip-10-0-2-1", "3500m", "1Gi"), _pod("ip-10-0-2-2", "3500m", "1Gi")]
    monkeypatch.setattr(preflight, "_sleep", slept.append)
    with pytest.raises(capacity.Insufficient, match="grow node group spot by 1 node"):
        run.apply(busy, _objects("train"), KubeRequest())
    assert sum(slept) == preflight.SETTLE_S and busy.applied == APPLIED


def test_no_preflight_applies_without_reading_the_cluster():
    from sentinel_cli.backends.kubernetes import run
    from sentinel_cli.k8s.request import KubeRequest

    kube = _Cluster(_eks())
    run.apply(kube, _with_workers(_objects("train"), {"cpu": "6"}), KubeRequest(preflight=False))
    # no capacity reads; the Ray token check (k8s/ray_auth.py) is not a preflight and always runs
    assert kube.calls == ["get customresourcedefinitions"] and kube.applied == APPLIED


def test_waiting_for_an_autoscaler_warns_and_applies(capsys):
    from sentinel_cli.backends.kubernetes import run
    from sentinel_cli.k8s.request import KubeRequest

    kube = _Cluster(_eks(), nodepools=[{"metadata": {"name": "default"}}])
    run.apply(kube, _with_workers(_objects("train"), {"cpu": "3"}, replicas=3), KubeRequest())
    assert kube.applied == APPLIED
    err = " ".join(capsys.readouterr().err.split())
    assert "Karpenter (NodePool default) should add nodes to node group spot" in err


def test_no_preflight_is_refused_on_the_local_target():
    from sentinel_cli.k8s.request import check_local, kube_request

    with pytest.raises(ConfigError, match="--no-preflight only apply to --target k8s"):
        check_local(kube_request(preflight=False))


@pytest.mark.parametrize(("gpus", "fits"), [(2, True), (8, False)])
def test_the_gpu_flags_pods_are_counted_against_the_gpu_nodes(kube_env, gpus: int, fits: bool) -> None:
    """``train --gpus N`` as planned (not hand-made requests): the workers ask for N GPUs and tolerate the
    GPU taint, so they fit the GPU node group up to its size and are refused beyond it, naming the flag."""
    from sentinel_cli.backends.kubernetes import plan
    from sentinel_cli.k8s.request import KubeRequest, Overrides
    from sentinel_ml.compute import Compute
    from sentinel_ml.training.config import TrainConfig

    planned = plan.plan_train(TrainConfig(compute=Compute(gpus=gpus)),
                              KubeRequest(overrides=Overrides(profile=str(PROFILE)), name="gpu-run"))
    workers = capacity.pod_needs(planned.objects)[1]
    assert workers.requests[GPU] == gpus and workers.count == 2
    error, _ = capacity.verdict(_run(planned.objects, _eks() + _gpu_nodes(4)))
    if fits:
        assert error is None
    else:
        assert "asks for 8 GPU (nvidia.com/gpu) per pod" in error.message
        assert "(train --gpus, tune --gpus-per-trial, serve --gpus" in error.hint
