"""Fixtures for tests on the real node (marker ``node``): containers run, Ray starts in pods.

    real_node      module: the session's environment (tests/testenv) plus the real node
                   (tests/testenv/node.py) with Sentinel's images loaded; stopped, and its Node
                   deleted, when the module's tests are done, so that kwok tests elsewhere never
                   schedule onto it
    node_profile   function: a Sentinel profile for a fresh namespace whose pods land on the real
                   node only, in $SENTINEL_PROFILE, with $KUBECONFIG set; returns its path

``TIMINGS`` collects what the end-to-end tests measure (each step's wall time, the node's memory);
the terminal summary prints it as "node lifecycle".

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

TIMINGS: list[tuple[str, float | str]] = []


def node_memory(real_node: node.RealNode) -> str:
    """The pods' memory now and at its peak (their cgroup), and the node's own processes' resident
    memory now and at its peak."""
    pods = node.CGROUP_HIERARCHIES / "memory" / real_node.state.cgroup / "kubepods"

    def read(name: str) -> int:
        path = pods / name
        return int(path.read_text()) if path.is_file() else 0

    rss = peak = 0
    for process in real_node.processes:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            continue
        fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status.splitlines()
                  if line.startswith(("VmRSS:", "VmHWM:"))}
        rss, peak = rss + fields.get("VmRSS", 0), peak + fields.get("VmHWM", 0)
    mib = 2 ** 20
    return (f"pods {read('memory.usage_in_bytes') / mib:.0f} MiB (peak {read('memory.max_usage_in_bytes') / mib:.0f}), "
            f"node processes {rss / mib:.0f} MiB (peak {peak / mib:.0f})")


def pytest_terminal_summary(terminalreporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("node lifecycle")
    for name, value in TIMINGS:
        shown = f"{value:7.1f} s" if isinstance(value, float) else value
        terminalreporter.write_line(f"{name:<70} {shown}")


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
