"""Fixtures for the Kubernetes target's tests.

Pure tests need only ``kube_env`` (an isolated environment: no profile, no SENTINEL_* variables).
Tests against the real test environment use ``k8s_env``, ``k8s_api`` and ``k8s_namespace`` from the
suite's plugin (tests/support/k8s.py), which marks them ``k8s``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ASSETS = Path(__file__).parent / "assets"
EXPECTED = Path(__file__).parent / "expected"
PROFILE = ASSETS / "profile.yaml"
ENV_NAMES = ("SENTINEL_PROFILE", "SENTINEL_TARGET", "SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI",
             "SENTINEL_NAMESPACE", "SENTINEL_TRAIN_IMAGE", "SENTINEL_SERVE_IMAGE",
             "SENTINEL_SERVICE_ACCOUNT", "SENTINEL_IAM_ROLE_ARN", "SENTINEL_KUBE_CONTEXT",
             "SENTINEL_TEMPLATES", "KUBECONFIG", "RAY_ADDRESS")


@pytest.fixture
def kube_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $SENTINEL_HOME and no Sentinel or kube settings from the outer environment."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SENTINEL_HOME", str(home))
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return home
