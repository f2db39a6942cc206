"""The capacity preflight against the real API server (tests/testenv): the three kwok m5.xlarge
nodes plus one kwok GPU node of this module's own (4 × nvidia.com/gpu, tainted like EKS's GPU
groups), where the real scheduler places the GPU pods that pass. Each refusal exits 2 with its own
message before anything is applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import yaml
from kubernetes import client

from sentinel_cli.backends.kubernetes import plan, run
from sentinel_cli.backends.results import TrainReport
from sentinel_cli.k8s import capacity
from sentinel_cli.k8s.capacity import GPU
from sentinel_cli.k8s.request import kube_request
from sentinel_ml.entrypoint import exit_code
from sentinel_ml.training.config import TrainConfig
from tests.k8s.test_cluster import cli, flat
from tests.support.k8s import kwok_gpu_node
from tests.testenv.process import wait_for

pytestmark = pytest.mark.k8s

TIMEOUT_S = 60
GPU_GROUP = "gpu-spot"
GPU_TAINT = {"key": GPU, "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture(scope="module")
def gpu_node(k8s_api) -> Iterator[str]:
    """A kwok node like a g5.12xlarge in an EKS GPU group: 4 GPUs, tainted nvidia.com/gpu."""
    labels = {"eks.amazonaws.com/nodegroup": GPU_GROUP, "lifecycle": "Ec2Spot", "intention": "training"}
    with kwok_gpu_node(k8s_api, labels, [GPU_TAINT]) as name:
        yield name


@pytest.fixture
def profile(k8s_env, k8s_namespace, kube_env, tmp_path, monkeypatch) -> str:
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump({"target": "k8s", "kubernetes": {
        "namespace": k8s_namespace, "storage": "s3://sentinel-test/artifacts", "workers": 2,
        "head": {"cpu": "100m", "memory": "256Mi"}, "worker": {"cpu": "100m", "memory": "256Mi"},
        "images": {"train": "registry.example/sentinel-train:0.1.0",
                   "serve": "registry.example/sentinel-serve:0.1.0"}}}))
    monkeypatch.setenv("KUBECONFIG", str(k8s_env.kubeconfig))
    monkeypatch.setenv("SENTINEL_PROFILE", str(path))
    return k8s_namespace


def _gpu_plan(name: str, gpus: int, tolerate: bool, select: dict[str, str] | None = None) -> plan.Plan:
    """``train --gpus N`` as planned (the workers ask for N GPUs and tolerate the GPU taint, the
    profile's ``gpu.tolerations``); ``tolerate=False`` takes that toleration away and ``select`` pins
    the workers, for the cases the flags alone cannot make."""
    from sentinel_ml.compute import Compute

    planned = plan.plan_train(TrainConfig(compute=Compute(gpus=gpus)), kube_request(name=name, wait=False))
    objects: list[dict[str, Any]] = yaml.safe_load(yaml.safe_dump(planned.objects))
    job = next(o for o in objects if o["kind"] == "RayJob")
    pod = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"][GPU] == str(gpus)
    if not tolerate:
        pod["tolerations"] = [t for t in pod.get("tolerations", []) if t.get("key") != GPU]
    if select is not None:
        pod["nodeSelector"] = select
    return replace(planned, objects=objects)


def _rayjobs(k8s_api, namespace: str) -> list[str]:
    items = client.CustomObjectsApi(k8s_api).list_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs")
    return [i["metadata"]["name"] for i in items["items"]]


def _refused(planned: plan.Plan) -> capacity.Insufficient:
    with pytest.raises(capacity.Insufficient) as caught:
        run.run_job(planned, kube_request(wait=False), TrainReport)
    assert exit_code(caught.value) == 2
    return caught.value


def test_gpu_workers_that_fit_are_applied_and_the_scheduler_puts_them_on_the_gpu_node(
        gpu_node, profile, k8s_api) -> None:
    report = run.run_job(_gpu_plan("gpu-fits", 2, tolerate=True), kube_request(wait=False), TrainReport)
    assert report.state == "applied"
    core = client.CoreV1Api(k8s_api)

    def workers_placed() -> str | None:
        pods = core.list_namespaced_pod(profile, label_selector="ray.io/node-type=worker").items
        nodes = sorted(p.spec.node_name or "(unscheduled)" for p in pods)
        return None if nodes == [gpu_node, gpu_node] else f"worker pods on {nodes or 'none yet'}"

    wait_for("the scheduler to place both GPU workers on the GPU node", workers_placed, TIMEOUT_S)


def test_more_gpus_than_any_node_has(gpu_node, profile, k8s_api) -> None:
    error = _refused(_gpu_plan("gpu-eight", 8, tolerate=True))
    assert "asks for 8 GPU (nvidia.com/gpu) per pod; the largest node that admits it " \
           f"({gpu_node}, group {GPU_GROUP}) has 4 allocatable" in error.message
    assert error.hint.startswith("ask for at most 4 GPU (nvidia.com/gpu) per pod")
    assert _rayjobs(k8s_api, profile) == []


def test_a_gpu_pod_without_the_toleration(gpu_node, profile, k8s_api) -> None:
    error = _refused(_gpu_plan("gpu-untolerated", 1, tolerate=False, select={"kubernetes.io/hostname": gpu_node}))
    assert error.message == ("the worker group train of RayJob gpu-untolerated does not tolerate the taint "
                             "nvidia.com/gpu=present:NoSchedule that every node it selects carries "
                             f"(node group {GPU_GROUP})")
    assert _rayjobs(k8s_api, profile) == []


def test_gpu_nodes_whose_gpus_no_device_plugin_registered(gpu_node, profile, k8s_api) -> None:
    """A GPU node (label and taint) that advertises no nvidia.com/gpu yet: the refusal names the
    missing device plugin, not a missing GPU group."""
    labels = {"eks.amazonaws.com/nodegroup": "gpu-new", "nvidia.com/gpu.present": "true"}
    with kwok_gpu_node(k8s_api, labels, [GPU_TAINT], gpus=0) as bare:
        error = _refused(_gpu_plan("gpu-bare", 1, tolerate=True, select={"kubernetes.io/hostname": bare}))
    assert error.message == ("the worker group train of RayJob gpu-bare asks for 1 GPU (nvidia.com/gpu), and the "
                             f"GPU node(s) that admit it ({bare}) advertise none: no device plugin has registered "
                             "their GPUs")
    assert error.hint.startswith("run `sentinel up --target k8s` (it installs NVIDIA's device plugin")
    assert _rayjobs(k8s_api, profile) == []


def test_more_cpu_than_any_node_has_exits_2_through_the_cli(gpu_node, profile, k8s_api) -> None:
    result = cli("train", "--target", "k8s", "--name", "cpu-64", "--set", "worker.cpu=64")
    assert result.exit_code == 2, result.output
    err = flat(result.stderr)
    assert "the worker group train of RayJob cpu-64 asks for 64 CPU per pod; the largest node that admits it " \
           "(kwok-spot-" in err and "has 4 allocatable" in err
    assert "ask for at most 4 CPU per pod (kubernetes.head.cpu, worker.cpu" in err and "larger nodes" in err
    assert "--no-preflight" in err
    assert _rayjobs(k8s_api, profile) == []


def test_a_node_selector_no_node_matches_exits_2_through_the_cli(gpu_node, profile, k8s_api) -> None:
    result = cli("train", "--target", "k8s", "--name", "no-match", "--set", "spot.node_selector.intention=gpu")
    assert result.exit_code == 2, result.output
    err = flat(result.stderr)
    assert "the worker group train of RayJob no-match selects nodes labelled intention=gpu, lifecycle=Ec2Spot, " \
           "and no node matches; the nodes have intention=head, intention=training" in err
    assert "change the selector in the profile" in err
    assert _rayjobs(k8s_api, profile) == []


def test_no_preflight_applies_what_the_preflight_refuses(gpu_node, profile, k8s_api) -> None:
    result = cli("train", "--target", "k8s", "--name", "skipped", "--set", "worker.cpu=64", "--no-wait",
                 "--no-preflight")
    assert result.exit_code == 0, result.output
    assert _rayjobs(k8s_api, profile) == ["skipped"]


def test_gpus_taken_by_running_pods_leave_no_room_and_no_autoscaler_grows_the_group(
        gpu_node, profile, k8s_api, monkeypatch) -> None:
    """The room is allocatable minus what bound pods request: with 3 of the node's 4 GPUs taken, two
    workers of 1 GPU each do not fit, and no autoscaler runs here."""
    from sentinel_cli.backends.kubernetes import preflight

    core = client.CoreV1Api(k8s_api)
    busy = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gpu-busy"},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": gpu_node}, "tolerations": [GPU_TOLERATION],
                     "containers": [{"name": "c", "image": "registry.example/busy:1",
                                     "resources": {"requests": {GPU: "3"}, "limits": {GPU: "3"}}}]}}
    core.create_namespaced_pod(profile, busy)
    wait_for("the scheduler to bind the busy GPU pod",
             lambda: None if core.read_namespaced_pod("gpu-busy", profile).spec.node_name else "not bound yet",
             TIMEOUT_S)
    monkeypatch.setattr(preflight, "SETTLE_S", 0.0)  # refuse at the first reading
    error = _refused(_gpu_plan("gpu-busy-job", 1, tolerate=True))
    assert error.message == ("1 of 2 pod(s) of the worker group train of RayJob gpu-busy-job have no room on the "
                             "nodes now (nvidia.com/gpu: asked 1 each, the most free on such a node is 0); "
                             "no autoscaler runs in the cluster")
    assert error.hint.startswith(f"grow node group {GPU_GROUP} by 1 node(s)")
    assert _rayjobs(k8s_api, profile) == []


def test_credentials_that_may_not_list_nodes_skip_the_preflight_with_a_warning(
        profile, k8s_env, k8s_api, tmp_path, monkeypatch) -> None:
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_service_account(profile, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", profile, {"spec": {"expirationSeconds": 600}}).status.token
    config = yaml.safe_load(k8s_env.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    (tmp_path / "nobody").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nobody"))
    result = cli("train", "--target", "k8s", "--name", "nobody-job", "--no-wait")
    err = flat(result.stderr)
    assert "warning: capacity preflight skipped: forbidden to list nodes" in err
    assert result.exit_code == 2 and "forbidden to apply" in err  # the apply itself is what RBAC refuses
