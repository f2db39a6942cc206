"""Fixtures for tests on the real node (marker ``node``): containers run, Ray starts in pods.

    real_node      module: the session's environment (k8s_env, tests/support/k8s.py) plus the real
                   node (tests/testenv/node.py) with Sentinel's images loaded; stopped, and its Node
                   deleted, when the module's tests are done, so that kwok tests elsewhere never
                   schedule onto it
    node_profile   function: a Sentinel profile for a fresh namespace whose pods land on the real
                   node only, in $SENTINEL_PROFILE, with $KUBECONFIG set; returns its path

What the end-to-end tests measure (tests.support.node.TIMINGS: each step's wall time, the node's
memory) prints in the terminal summary as "node lifecycle".

Without the node's pieces (Debian packages, binaries, images), tests skip with the commands that
provide them; under CI=true they fail instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.node import TIMINGS, node_or_skip
from tests.testenv import node
from tests.testenv.env import Environment


def pytest_terminal_summary(terminalreporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("node lifecycle")
    for name, value in TIMINGS:
        shown = f"{value:7.1f} s" if isinstance(value, float) else value
        terminalreporter.write_line(f"{name:<70} {shown}")


@pytest.fixture(scope="module")
def real_node(k8s_env: Environment) -> Iterator[node.RealNode]:
    node_or_skip()
    started = node.start_node(k8s_env)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def node_profile(real_node: node.RealNode, k8s_namespace: str, tmp_path: Path,
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
