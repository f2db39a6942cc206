"""Fixtures for the Kubernetes target's tests.

Pure tests need only ``kube_env`` (an isolated environment: no profile, no SENTINEL_* variables).
Tests marked ``k8s`` run against the real test environment of tests/testenv: they reuse its
fixtures, and its session environment when tests/testenv already started one in this session.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testenv import conftest as k8s_conftest
from tests.testenv.conftest import (  # noqa: F401
    k8s_api,
    k8s_namespace,
    pytest_runtest_makereport,
    pytest_runtest_setup,
)

ASSETS = Path(__file__).parent / "assets"
EXPECTED = Path(__file__).parent / "expected"
PROFILE = ASSETS / "profile.yaml"
ENV_NAMES = ("SENTINEL_PROFILE", "SENTINEL_TARGET", "SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI",
             "SENTINEL_NAMESPACE", "SENTINEL_TRAIN_IMAGE", "SENTINEL_SERVE_IMAGE",
             "SENTINEL_SERVICE_ACCOUNT", "SENTINEL_IAM_ROLE_ARN", "SENTINEL_KUBE_CONTEXT",
             "SENTINEL_TEMPLATES", "KUBECONFIG", "RAY_ADDRESS")


def pytest_configure(config: pytest.Config) -> None:
    k8s_conftest.pytest_configure(config)  # the `k8s` marker, also when tests/testenv is not collected


@pytest.fixture
def kube_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $SENTINEL_HOME and no Sentinel or kube settings from the outer environment."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SENTINEL_HOME", str(home))
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def k8s_env() -> Iterator:
    """The session's test environment: the one tests/testenv started, else a new one."""
    if k8s_conftest._ENVIRONMENT:
        yield k8s_conftest._ENVIRONMENT[0]
        return
    from tests.testenv import build
    from tests.testenv.env import up

    try:
        assets = build.locate()
    except build.AssetsMissing as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and the Kubernetes test environment is missing: {error}", pytrace=False)
        pytest.skip(f"Kubernetes test environment not built: {error}")
    env = up(assets)
    k8s_conftest._ENVIRONMENT.append(env)
    atexit.register(env.stop)
    try:
        yield env
    finally:
        env.stop()
        atexit.unregister(env.stop)
        k8s_conftest._ENVIRONMENT.clear()
