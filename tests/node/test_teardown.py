"""Nothing of the real node outlives it: no process, bridge or veth, iptables chain, mount, cgroup,
route, directory or changed sysctl on the host (CI runs on this same machine right after a session).

The module runs a node of its own (so it does not share test_real_node.py's), with a pod on it,
and compares the host before and after. It also checks that no earlier node in this session left
anything.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from kubernetes import client

from tests.support.node import node_or_skip
from tests.testenv import node
from tests.testenv.process import wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.node]

# Paths kubelet, containerd and the CNI plugins use by default: none may appear on the host.
DEFAULT_PATHS = ("/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/run/containerd",
                 "/var/lib/containerd", "/var/lib/cni", "/run/netns", "/etc/cni/net.d",
                 "/opt/containerd", "/run/xtables.lock")
# The node's own programs (nothing else on this machine runs them); anything in a container is
# found by its cgroup instead (Ray also runs outside the node, in other tests).
NODE_PROGRAMS = ("kubelet", "kube-proxy", "coredns", "containerd", "containerd-shim", "pause")


def _lines(*argv: str) -> list[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()


def host_state() -> dict[str, object]:
    """What a node could leave on the host, in a comparable form."""
    mounts = sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    programs = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            comm = (proc / "comm").read_text().strip()
            cgroup = (proc / "cgroup").read_text()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":  # ended; this machine's init reaps orphans when it gets to it
            continue
        if comm in NODE_PROGRAMS or "/sentinel-node-" in cgroup:
            programs.append(f"{comm} (pid {proc.name})")
    cgroups = sorted(str(p) for h in node._hierarchies() for p in h.glob("sentinel-node-*"))
    sysctls = {key: (Path("/proc/sys") / key).read_text().strip()
               for key in (*node.KERNEL_TUNABLES, "net/ipv4/ip_forward")}
    return {
        "links": sorted(line.split(":")[1].strip().split("@")[0]
                        for line in _lines("ip", "-o", "link", "show")),
        "routes": _lines("ip", "route", "show"),
        "iptables chains": [line for line in _lines("iptables-save") if line.startswith(":")],
        "mounts": mounts,
        "processes": sorted(programs),
        "cgroups": cgroups,
        "sysctls": sysctls,
        "paths": sorted(p for p in DEFAULT_PATHS if Path(p).exists()),
    }


def test_no_earlier_node_left_anything() -> None:
    state = host_state()
    assert not state["cgroups"], state["cgroups"]
    assert not state["processes"], state["processes"]
    assert not [link for link in state["links"] if link.startswith(("sn", "cni", "veth"))]
    assert not [c for c in state["iptables chains"] if c.startswith((":KUBE", ":CNI"))]
    assert not [m for m in state["mounts"] if "sentinel" in m or m.startswith(("/var/lib/kubelet", "/run/containerd", "/run/netns"))]


def test_a_node_with_a_pod_leaves_nothing_behind(k8s_env, k8s_api, k8s_namespace) -> None:
    node_or_skip()
    before = host_state()
    real = node.start_node(k8s_env)
    try:
        during = host_state()
        assert during["processes"] and during["cgroups"]  # the check sees a running node
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
               "spec": {"nodeSelector": {"sentinel.dev/node": "real"},
                        "containers": [{"name": "sleep", "image": real.images["train"].reference,
                                        "imagePullPolicy": "Never", "command": ["sleep", "600"],
                                        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}}]}}
        core = client.CoreV1Api(k8s_api)
        core.create_namespaced_pod(k8s_namespace, pod)

        def running() -> str | None:
            phase = core.read_namespaced_pod("sleeper", k8s_namespace).status.phase
            return None if phase == "Running" else f"phase {phase}"

        wait_for("the pod on the real node", running, 120)
    finally:
        real.stop()
    after = host_state()
    changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    assert not changed, "the node left these behind (before, after):\n" + "\n".join(
        f"{key}: {value}" for key, value in changed.items())
