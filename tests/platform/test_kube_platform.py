"""`sentinel up` / `down` / `doctor` --target k8s against the real test API server (kwok nodes, the
real KubeRay CRDs): up twice converges, down removes what up made and keeps data, every object
passes the API server's validation, secrets never reach the output, doctor names what is wrong."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_cli.backends.kubernetes import platform as kube_platform

pytestmark = pytest.mark.k8s


@pytest.fixture
def kube_cli(k8s_env, k8s_namespace, sentinel_home, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(k8s_env.kubeconfig))
    monkeypatch.setenv("SENTINEL_NAMESPACE", k8s_namespace)

    def invoke(*args: str):
        result = CliRunner().invoke(app, [*args, "--target", "k8s", "-o", "json"])
        return result, (json.loads(result.stdout) if result.stdout.startswith("{") else None)

    return invoke


def _states(report: dict) -> dict[str, str]:
    return {item["name"]: item["state"] for item in report["items"]}


def _secret_values(k8s_api, namespace: str) -> list[str]:
    import base64

    from kubernetes import client

    secret = client.CoreV1Api(k8s_api).read_namespaced_secret("sentinel-minio", namespace)
    return [base64.b64decode(v).decode() for v in secret.data.values()]


def test_up_twice_converges_and_down_removes_but_keeps_data(kube_cli, k8s_api, k8s_namespace) -> None:
    dry, plan = kube_cli("up", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert _states(plan)["minio"] == "would apply" and _states(plan)["credentials"] == "would create"

    first, report = kube_cli("up", "--no-wait")
    assert first.exit_code == 0, first.output
    states = _states(report)
    assert states["minio"] == states["mlflow"] == states["kuberay-operator"] == "created", report
    assert states["credentials"] == "created" and states["kuberay crds"] == "unchanged"
    values = _secret_values(k8s_api, k8s_namespace)

    second, report = kube_cli("up", "--no-wait")
    assert second.exit_code == 0, second.output
    states = _states(report)
    assert all(states[c] == "unchanged" for c in ("minio", "mlflow", "kuberay-operator", "credentials",  # noqa
                                                  "dashboards", "service account")), report["items"]
    assert _secret_values(k8s_api, k8s_namespace) == values  # kept, not regenerated
    for output in (dry.output, first.output, second.output):
        assert not any(v in output for v in values)

    gone, report = kube_cli("down")
    assert gone.exit_code == 0, gone.output
    states = _states(report)
    assert states["mlflow"] == "deleted" and states["credentials"] == "kept"
    from kubernetes import client

    apps = client.AppsV1Api(k8s_api)
    assert apps.list_namespaced_deployment(k8s_namespace).items == []
    claims = client.CoreV1Api(k8s_api).list_namespaced_persistent_volume_claim(k8s_namespace).items
    assert sorted(c.metadata.name for c in claims) == ["sentinel-minio-data", "sentinel-mlflow-data"]

    purged, report = kube_cli("down", "--purge")
    assert purged.exit_code == 0 and _states(report)["credentials"] == "deleted"
    assert report["gone_in_s"] is not None  # it returned once they were gone, not once asked
    assert client.CoreV1Api(k8s_api).list_namespaced_persistent_volume_claim(k8s_namespace).items == []


def test_down_waits_for_what_it_deleted_and_names_what_holds_it(kube_cli, k8s_api, k8s_namespace) -> None:
    """A finalizer nobody removes holds the Secret: `down --purge` waits, bounded, names it, exits 3."""
    from kubernetes import client

    core = client.CoreV1Api(k8s_api)
    up, _ = kube_cli("up", "--no-wait")
    assert up.exit_code == 0, up.output
    hold = {"metadata": {"finalizers": ["sentinel.dev/test-hold"]}}
    core.patch_namespaced_secret("sentinel-minio", k8s_namespace, hold)
    try:
        held, _ = kube_cli("down", "--purge", "--timeout", "3")
        assert held.exit_code == 3, held.output
        said = " ".join(held.stderr.split())
        assert "waiting until deleted: Secret/sentinel-minio (finalizers: sentinel.dev/test-hold)" in said
        assert "still there after 3 s without progress: Secret/sentinel-minio" in said
        assert "Traceback" not in held.output
    finally:
        core.patch_namespaced_secret("sentinel-minio", k8s_namespace, {"metadata": {"finalizers": None}})
    again, _ = kube_cli("down", "--purge")
    assert again.exit_code == 0, again.output
    assert [s.metadata.name for s in core.list_namespaced_secret(k8s_namespace).items
            if s.metadata.name == "sentinel-minio"] == []


def test_a_claim_still_in_use_is_named_as_such() -> None:
    claim = {"kind": "PersistentVolumeClaim", "metadata": {"name": "sentinel-minio-data"}}
    live = {"metadata": {"finalizers": ["kubernetes.io/pvc-protection"]}}
    assert kube_platform._still_there(claim, live) == \
        "PersistentVolumeClaim/sentinel-minio-data (in use by a pod that is still stopping)"
    assert kube_platform._still_there(claim, {"metadata": {}}) == "PersistentVolumeClaim/sentinel-minio-data"


def test_up_creates_the_bucket_once_through_the_storage_funnel(kube_cli, s3_bucket) -> None:
    import secrets

    storage = f"s3://sentinel-new-{secrets.token_hex(4)}/artifacts"
    _, plan = kube_cli("up", "--dry-run", "--storage", storage)
    assert _states(plan)["s3 bucket"] == "would create", plan["items"]
    first, report = kube_cli("up", "--no-wait", "--storage", storage)
    assert first.exit_code == 0 and _states(report)["s3 bucket"] == "created", first.output
    _, again = kube_cli("up", "--dry-run", "--storage", storage)
    assert {"name": "s3 bucket", "state": "unchanged", "detail": f"{storage.rsplit('/', 1)[0]} exists",
            "fix": None} in again["items"]


def test_up_waits_for_the_platform_but_says_at_once_when_a_volume_cannot_bind(kube_cli) -> None:
    """The test cluster has no StorageClass (its nodes are simulated): waiting would never end, so
    `up` names the claim, the binder's reason and the fix instead of running out its --timeout."""
    result, report = kube_cli("up", "--timeout", "300")  # running out would read "still waiting"
    assert result.exit_code == 1, result.output
    ready = {i["name"]: i for i in report["items"]}["ready"]
    assert ready["state"] == "fail" and "cannot bind" in ready["detail"], ready
    assert "-data" in ready["detail"] and "StorageClass" in ready["fix"], ready


def test_doctor_passes_on_the_test_cluster(kube_cli) -> None:
    result, report = kube_cli("doctor")
    assert result.exit_code == 0 and report["ok"] is True, result.output
    states = _states(report)
    assert states["cluster reachable"] == states["kuberay crds"] == "pass", report
    assert states["node labels"] == states["pod sizes fit"] == "pass", report
    assert states["s3 reachable"] == "skip"
    assert states["gpu nodes"] == "skip" and report["gpus"] == {"nodes": [], "device_plugins": [], "allocatable": 0}
    auth = {i["name"]: i for i in report["items"]}["ray token auth"]  # names the operator, says token auth works
    assert auth["state"] == "pass" and "token authentication supported" in auth["detail"], auth


def test_doctor_names_a_missing_label_and_an_unschedulable_size(kube_cli, sentinel_home, monkeypatch) -> None:
    profile = sentinel_home / "gpu-profile.yaml"
    profile.write_text("kubernetes:\n  spot: {node_selector: {intention: gpu}}\n  worker: {cpu: '64'}\n")
    monkeypatch.setenv("SENTINEL_PROFILE", str(profile))
    result, report = kube_cli("doctor")
    assert result.exit_code == 1 and report["ok"] is False, result.output
    from sentinel_cli.k8s import settings as settings_module
    from sentinel_cli.k8s.request import Overrides

    settings = settings_module.load(Overrides(sets=("spot.node_selector.intention=gpu", "worker.cpu=64")))
    for report in (report, kube_platform.doctor(settings)):
        items = {i["name"]: i for i in report["items"]}
        assert report["ok"] is False
        assert items["node labels"]["state"] == "fail" and "intention=gpu" in items["node labels"]["detail"]
        assert "kubectl label node" in items["node labels"]["fix"]
        assert items["pod sizes fit"]["state"] == "fail" and "worker pod 64 CPU" in items["pod sizes fit"]["detail"]
        assert _states(report)["cluster reachable"] == _states(report)["kuberay crds"] == "pass", report


def test_doctor_names_a_missing_crd(kube_cli) -> None:
    from sentinel_cli.k8s import settings as settings_module

    report = kube_platform.doctor(settings_module.load(), crds=("rayclusters.ray.io", "raynothings.ray.io"))
    crds = {i["name"]: i for i in report["items"]}["kuberay crds"]
    assert crds["state"] == "fail" and "raynothings.ray.io" in crds["detail"] and "sentinel up" in crds["fix"]


def test_metrics_server_is_opt_in_installed_once_and_removed_by_down(kube_cli, k8s_api) -> None:
    from kubernetes import client

    from sentinel_cli.k8s import platform_objects
    from sentinel_cli.k8s.client import Kube

    apps = client.AppsV1Api(k8s_api)
    try:
        _, report = kube_cli("up", "--dry-run")
        assert _states(report)["metrics-server"] == "skip"

        first, report = kube_cli("up", "--no-wait", "--metrics-server")
        assert first.exit_code == 0, first.output
        assert _states(report)["metrics-server"] == "created", report["items"]
        deployment = apps.read_namespaced_deployment("metrics-server", "kube-system")
        assert deployment.spec.template.spec.containers[0].image == platform_objects.METRICS_SERVER_IMAGE
        service = client.ApiregistrationV1Api(k8s_api).read_api_service("v1beta1.metrics.k8s.io")
        assert service.spec.service.name == "metrics-server"

        _, report = kube_cli("up", "--no-wait")  # ours is kept up to date even without the flag
        assert _states(report)["metrics-server"] == "unchanged", report["items"]

        gone, report = kube_cli("down")
        assert gone.exit_code == 0 and _states(report)["metrics-server"] == "deleted", report["items"]
        assert apps.list_namespaced_deployment("kube-system", label_selector="k8s-app=metrics-server").items == []
    finally:  # an APIService with no backend would block namespace deletion for the rest of the session
        kube = Kube(k8s_api, "kube-system")  # not closed: k8s_api is the session's
        for obj in platform_objects.metrics_server():
            kube.delete_object(obj)


def _pod(container_status: dict) -> dict:
    return {"metadata": {"name": "sentinel-mlflow-abc", "namespace": "ml"},
            "status": {"phase": "Running", "containerStatuses": [{"name": "mlflow", "image": "mlflow:x",
                                                                  **container_status}]}}


def test_a_container_that_keeps_crashing_ends_the_wait_with_its_cause() -> None:
    """Measured on the real node: MLflow's server with its default 4 workers was OOM-killed at 1Gi;
    `up` kept waiting, since CrashLoopBackOff and Running alternate."""
    from sentinel_ml.errors import ConfigError, SentinelError

    oom = {"restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
           "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
    with pytest.raises(SentinelError, match="keeps failing: OOMKilled \\(exit code 137\\), restarted 3") as info:
        kube_platform._failing(_pod(oom))
    assert "logs sentinel-mlflow-abc -c mlflow --previous" in info.value.hint and "memory" in info.value.hint
    kube_platform._failing(_pod({**oom, "restartCount": 1}))  # once may be a fluke: keep waiting
    pull = {"restartCount": 0, "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}}}
    with pytest.raises(ConfigError, match="image mlflow:x cannot be pulled \\(ErrImageNeverPull"):
        kube_platform._failing(_pod(pull))


def test_gpu_nodes_get_the_device_plugin_from_up_and_doctor_reports_their_gpus(kube_cli, k8s_api) -> None:
    """A kwok GPU node (4 × nvidia.com/gpu, tainted like EKS's GPU groups): doctor fails it while no
    device plugin runs; `up` installs NVIDIA's DaemonSet, which the real DaemonSet controller and
    scheduler put on that node only; doctor then passes with its allocatable GPUs; `down` removes it."""
    from kubernetes import client

    from sentinel_cli.k8s import platform_objects as po
    from sentinel_cli.k8s.client import Kube
    from tests.support.k8s import kwok_gpu_node
    from tests.testenv.process import wait_for

    apps = client.AppsV1Api(k8s_api)
    labels = {"eks.amazonaws.com/nodegroup": "gpu-ondemand", "nvidia.com/gpu.present": "true"}
    taint = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
    with kwok_gpu_node(k8s_api, labels, [taint]) as node:
        try:
            result, report = kube_cli("doctor")
            assert result.exit_code == 1, result.output
            gpu = {i["name"]: i for i in report["items"]}["gpu nodes"]
            assert gpu["state"] == "fail", gpu
            assert gpu["detail"] == (f"1 GPU node(s), 4 GPUs allocatable: {node} (group gpu-ondemand): 4 allocatable; "
                                     "no device plugin runs: their GPUs cannot be scheduled")
            assert "sentinel up --target k8s" in gpu["fix"] and po.DEVICE_PLUGIN_IMAGE in gpu["fix"]

            first, report = kube_cli("up", "--no-wait")
            assert first.exit_code == 0, first.output
            assert _states(report)["nvidia device plugin"] == "created", report["items"]

            def placed() -> str | None:
                pods = client.CoreV1Api(k8s_api).list_namespaced_pod(
                    po.DEVICE_PLUGIN_NS, label_selector="name=nvidia-device-plugin-ds").items
                nodes = [p.spec.node_name for p in pods]
                ready = apps.read_namespaced_daemon_set(po.DEVICE_PLUGIN, po.DEVICE_PLUGIN_NS).status.number_ready
                return None if nodes == [node] and ready == 1 else f"plugin pods on {nodes}, {ready} ready"

            wait_for("the device plugin to run on the GPU node (and on no other)", placed, 60)
            result, report = kube_cli("doctor")
            gpu = {i["name"]: i for i in report["items"]}["gpu nodes"]
            assert gpu["state"] == "pass", gpu
            assert gpu["detail"].endswith(f"device plugin: DaemonSet kube-system/{po.DEVICE_PLUGIN} "
                                          f"({po.DEVICE_PLUGIN_IMAGE}), ready on 1 of 1 node(s)")
            assert report["gpus"]["allocatable"] == 4
            assert [(n["name"], n["allocatable"], n["tainted"]) for n in report["gpus"]["nodes"]] == [(node, 4, True)]
            assert report["gpus"]["device_plugins"][0]["managed_by_sentinel"] is True

            _, report = kube_cli("up", "--no-wait")
            assert _states(report)["nvidia device plugin"] == "unchanged", report["items"]
            gone, report = kube_cli("down")
            assert gone.exit_code == 0 and _states(report)["nvidia device plugin"] == "deleted", report["items"]
            assert apps.list_namespaced_daemon_set(po.DEVICE_PLUGIN_NS, label_selector=po.COMPONENT).items == []
        finally:
            Kube(k8s_api, po.DEVICE_PLUGIN_NS).delete_object(po.device_plugin()[0])
