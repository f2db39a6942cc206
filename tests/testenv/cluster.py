"""What the environment does through the Kubernetes API: CRDs, fake nodes, readiness checks.

Each ``*_reason`` function is a readiness check for ``process.wait_for``: it returns None when
ready, or a short sentence saying what is still missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client
from kubernetes.client import ApiException

NODES_FILE = Path(__file__).parent / "kwok" / "nodes.yaml"


def install_crds(api: client.ApiClient, crds: Iterable[Path]) -> list[str]:
    """Create the CRDs (the environment is fresh); returns their names."""
    extensions = client.ApiextensionsV1Api(api)
    names = []
    for path in crds:
        body = yaml.safe_load(path.read_text())
        names.append(body["metadata"]["name"])
        try:
            # About 1 MB each: skip deserialising the echo into client models.
            extensions.create_custom_resource_definition(body, _preload_content=False)
        except ApiException as error:
            if error.status != 409:
                raise
    return names


def crds_reason(api: client.ApiClient, names: list[str]) -> str | None:
    extensions = client.ApiextensionsV1Api(api)
    waiting = []
    for name in names:
        raw = extensions.read_custom_resource_definition_status(name, _preload_content=False)
        crd = yaml.safe_load(cast(Any, raw).data)  # the raw HTTP response, not a model
        conditions = crd.get("status", {}).get("conditions") or []
        if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            waiting.append(name)
    return f"CRDs not yet Established: {', '.join(waiting)}" if waiting else None


def node_manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(NODES_FILE.read_text()) if doc]


def create_nodes(api: client.ApiClient) -> list[str]:
    core = client.CoreV1Api(api)
    names = []
    for node in node_manifests():
        core.create_node(cast(Any, node))  # the client takes a plain manifest too
        names.append(node["metadata"]["name"])
    return names


def nodes_reason(api: client.ApiClient, names: list[str]) -> str | None:
    ready = {
        node.metadata.name
        for node in client.CoreV1Api(api).list_node().items
        if node.metadata and node.status
        and any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
    }
    waiting = sorted(set(names) - ready)
    return f"kwok has not yet made these nodes Ready: {', '.join(waiting)}" if waiting else None


def service_account_reason(api: client.ApiClient, namespace: str) -> str | None:
    try:
        client.CoreV1Api(api).read_namespaced_service_account("default", namespace)
    except ApiException as error:
        if error.status == 404:
            return f"no ServiceAccount 'default' in namespace {namespace} yet (controller-manager)"
        raise
    return None
