"""Fixtures for tests against the real Kubernetes test environment (tests/testenv; marker ``k8s``):

    k8s_env        session: the running Environment (.kubeconfig, .api_url, .api_client(), ...)
    k8s_api        session: a kubernetes.client.ApiClient for it
    k8s_namespace  function: a fresh namespace (its default ServiceAccount exists), deleted after

A failing test that used the environment gets the KubeRay operator's log lines written during
the test (and the real node's kubelet and containerd lines while it runs), and its namespace's
events, attached to its report.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client

from tests.testenv import build, cluster, session
from tests.testenv.env import Environment
from tests.testenv.process import wait_for

_OPERATOR_LOG_START = pytest.StashKey[int]()
_NODE_LOG_STARTS = pytest.StashKey[dict[str, int]]()
_NODE_LOGS = ("kubelet", "containerd")  # attached too while the real node runs (node.py)
_ATTACHED_LINES = 200


@pytest.fixture(scope="session")
def k8s_env() -> Iterator[Environment]:
    with session.environment(_assets_or_skip()) as env:
        yield env


def _assets_or_skip() -> build.Assets:
    try:
        return build.locate()
    except build.AssetsMissing as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and the Kubernetes test environment is missing: {error}",
                        pytrace=False)
        pytest.skip(f"Kubernetes test environment not built: {error}")


@pytest.fixture(scope="session")
def k8s_api(k8s_env: Environment) -> Iterator[client.ApiClient]:
    api = k8s_env.api_client()
    yield api
    api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def k8s_namespace(k8s_api: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _namespace_name(request.node.name)
    core = client.CoreV1Api(k8s_api)
    labels = {"app.kubernetes.io/created-by": "sentinel-tests"}
    metadata = client.V1ObjectMeta(name=name, labels=labels)
    core.create_namespace(client.V1Namespace(metadata=metadata))
    wait_for(f"the default ServiceAccount of namespace {name}",
             lambda: cluster.service_account_reason(k8s_api, name), timeout_s=30)
    yield name
    core.delete_namespace(name)  # the namespace controller finishes in the background


@contextmanager
def kwok_gpu_node(api: client.ApiClient, labels: dict[str, str], taints: list[dict[str, str]],
                  gpus: int = 4, instance_type: str = "g5.12xlarge") -> Iterator[str]:
    """A kwok node like a GPU instance of an EKS GPU group (``gpus`` × nvidia.com/gpu allocatable, 47
    CPUs, 180Gi), Ready while the block runs, deleted after: the real scheduler places GPU pods on it."""
    from tests.testenv.commands import KWOK_NODE_ANNOTATION

    name = f"kwok-gpu-{secrets.token_hex(3)}"
    allocatable = {"cpu": "47", "memory": "180Gi", "nvidia.com/gpu": str(gpus), "pods": "110",
                   "ephemeral-storage": "95Gi"}
    node: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                     "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "node.kubernetes.io/instance-type": instance_type, **labels}},
        "spec": {"taints": taints},
        "status": {"capacity": allocatable, "allocatable": allocatable}}
    core = client.CoreV1Api(api)
    core.create_node(node)
    try:
        wait_for(f"kwok to make node {name} Ready", lambda: cluster.nodes_reason(api, [name]), 60)
        # The node lifecycle controller lifts its node.kubernetes.io/not-ready taint a moment after Ready;
        # until then the preflight rightly reports that taint, not the case a test builds.
        wait_for(f"the not-ready taint to leave node {name}", lambda: _lifecycle_taints(core, name), 60)
        yield name
    finally:
        core.delete_node(name)


def read_secret(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Secret | None:
    """The Secret, or None when there is none (404)."""
    try:
        return core.read_namespaced_secret(name, namespace)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def _lifecycle_taints(core: client.CoreV1Api, name: str) -> str | None:
    taints = [t.key for t in core.read_node(name).spec.taints or [] if t.key.startswith("node.kubernetes.io/")]
    return f"node {name} still carries {', '.join(taints)}" if taints else None


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].rstrip("-")
    return f"t-{slug}-{secrets.token_hex(3)}"


def pytest_runtest_setup(item: pytest.Item) -> None:
    env = session.running()
    if env is not None:
        item.stash[_OPERATOR_LOG_START] = _size(env.log_path("ray-operator"))
        item.stash[_NODE_LOG_STARTS] = {name: _size(env.log_path(name)) for name in _NODE_LOGS}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    funcargs = getattr(item, "funcargs", {})
    env = funcargs.get("k8s_env")
    if not report.failed or not isinstance(env, Environment):
        return
    start = item.stash.get(_OPERATOR_LOG_START, 0)
    report.sections.append(
        ("KubeRay operator log during this test", _read_from(env.log_path("ray-operator"), start))
    )
    if env.node is not None:
        starts = item.stash.get(_NODE_LOG_STARTS, {})
        for name in _NODE_LOGS:
            report.sections.append((f"real node: {name} log during this test",
                                    _read_from(env.log_path(name), starts.get(name, 0))))
    namespace = funcargs.get("k8s_namespace")
    if isinstance(namespace, str):
        report.sections.append((f"events in namespace {namespace}", _events(env, namespace)))


def _size(path: os.PathLike[str]) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _read_from(path: os.PathLike[str], offset: int) -> str:
    try:
        with open(path, errors="replace") as handle:
            handle.seek(offset)
            lines = handle.read().splitlines()
    except OSError as error:
        return f"(cannot read {path}: {error})"
    skipped = max(0, len(lines) - _ATTACHED_LINES)
    head = [f"({skipped} earlier lines in {path})"] if skipped else []
    return "\n".join(head + lines[-_ATTACHED_LINES:])


def _events(env: Environment, namespace: str) -> str:
    try:
        with env.api_client() as api:
            events = client.CoreV1Api(api).list_namespaced_event(namespace).items
    except Exception as error:  # noqa: BLE001 - a report must not fail on its attachments
        return f"(cannot list events: {error})"
    rows = [
        f"{e.type} {e.reason} {e.involved_object.kind}/{e.involved_object.name}: {e.message}"
        for e in events
    ]
    return "\n".join(rows) or "(none)"
