"""``service_call.target``: the pod and port a port-forward to a Service's port reaches (pure)."""

from __future__ import annotations

import pytest

from sentinel_cli.k8s.service_call import target
from sentinel_ml.errors import ConfigError


def _pod(name: str, ready: bool, ports: list[dict] | None = None) -> dict:
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "ray-head", "ports": ports or []}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]}}


SERVICE = {"metadata": {"name": "recommender-serve-svc"},
           "spec": {"selector": {"ray.io/serve": "true"}, "ports": [{"name": "serve", "port": 8000,
                                                                     "targetPort": "serve"}]}}


def test_the_first_ready_pod_and_the_named_target_port() -> None:
    pods = [_pod("head", False, [{"name": "serve", "containerPort": 8000}]),
            _pod("worker", True, [{"name": "serve", "containerPort": 8100}])]
    assert target(SERVICE, 8000, pods) == ("worker", 8100)
    numbered = {**SERVICE, "spec": {**SERVICE["spec"], "ports": [{"port": 80, "targetPort": 8000}]}}
    assert target(numbered, 80, pods) == ("worker", 8000)


def test_no_ready_pod_or_no_such_port_is_an_error_naming_the_service() -> None:
    with pytest.raises(ConfigError, match="no ready pod serves Service recommender-serve-svc port 8000"):
        target(SERVICE, 8000, [_pod("head", False)])
    with pytest.raises(ConfigError, match="has no port 9000"):
        target(SERVICE, 9000, [])
