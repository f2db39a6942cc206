"""Helpers of the tests on the real node (tests/node): whether it can run here, its memory, and the
timings the end-to-end tests collect for the terminal summary ("node lifecycle")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.testenv import node

TIMINGS: list[tuple[str, float | str]] = []  # (step, seconds or a sentence), in the order measured


def node_or_skip() -> None:
    """Skip with the commands that provide what the real node lacks here; fail instead under CI=true."""
    missing = node.prerequisites()
    if not missing:
        return
    message = "the real node is not available:\n- " + "\n- ".join(missing)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


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
