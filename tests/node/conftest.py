"""Fixtures for tests on the real node (marker ``node``): containers run, Ray starts in pods.

    real_node      module: the session's environment (tests/testenv) plus the real node
                   (tests/testenv/node.py) with Sentinel's images loaded; stopped, and its Node
                   deleted, when the module's tests are done, so that kwok tests elsewhere never
                   schedule onto it
    node_profile   function: a Sentinel profile for a fresh namespace whose pods land on the real
                   node only, in $SENTINEL_PROFILE, with $KUBECONFIG set; returns its path

Without the node's pieces (Debian packages, binaries, images), tests skip with the commands that
provide them; under CI=true they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.testenv import conftest as testenv_conftest
from tests.testenv import node
from tests.testenv.conftest import (  # noqa: F401 - fixtures and hooks shared with tests/testenv
    k8s_api,
    k8s_env,
    k8s_namespace,
    pytest_runtest_makereport,
    pytest_runtest_setup,
)
from tests.testenv.env import Environment


def pytest_configure(config: pytest.Config) -> None:
    testenv_conftest.pytest_configure(config)
    config.addinivalue_line(
        "markers",
        "node: runs containers on the test environment's real node (tests/testenv/node.py); needs "
        "Debian's containerd, runc, containernetworking-plugins and iptables, the node binaries "
        "(python -m tests.testenv.env build) and the images (python -m tests.testenv.images build)",
    )


def node_or_skip() -> None:
    missing = node.prerequisites()
    if not missing:
        return
    message = "the real node is not available:\n- " + "\n- ".join(missing)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def real_node(k8s_env: Environment) -> Iterator[node.RealNode]:  # noqa: F811 - the imported fixture
    node_or_skip()
    started = node.start_node(k8s_env)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def node_profile(real_node: node.RealNode, k8s_namespace: str, tmp_path: Path,  # noqa: F811
                 monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "sentinel-home"
    home.mkdir()
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(real_node.profile(namespace=k8s_namespace)))
    monkeypatch.setenv("SENTINEL_HOME", str(home))
    monkeypatch.setenv("SENTINEL_PROFILE", str(profile))
    monkeypatch.setenv("KUBECONFIG", str(real_node.env.kubeconfig))
    for name in ("SENTINEL_TARGET", "SENTINEL_NAMESPACE", "SENTINEL_TRAIN_IMAGE",
                 "SENTINEL_SERVE_IMAGE", "SENTINEL_STORAGE", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return profile
