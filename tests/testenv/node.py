"""A real node for the test environment: containers run, Ray starts in pods, pods talk to each other.

Beside the kwok nodes (which stay for the scheduling tests), ``start_node(env)`` adds one Node whose
kubelet runs real containers through containerd and runc, wired by the CNI bridge plugin, with
kube-proxy (iptables mode) for Services and CoreDNS for cluster DNS (KubeRay's workers find the
head through its headless Service). kubelet, kube-proxy and CoreDNS are built like the control plane
(build.py); containerd, runc, the CNI plugins and iptables are Debian's packages.

Isolation: everything of the node runs in one network namespace and one private mount namespace,
held by a small process (namespaces.py). The node's bridge, veths, iptables chains and
``ip_forward`` live in that network namespace; tmpfs on /run, /var/lib and /var/log inside the
mount namespace take the state kubelet, containerd and CNI keep at fixed paths; no mount is visible
outside. When the node's last process ends, the kernel removes all of it. What remains to undo on
the host, and ``stop`` undoes: the cgroups (under ``/<cgroup>`` in each hierarchy) and the global
sysctls kubelet sets (vm.overcommit_memory, kernel.panic, ...), which are restored. The host sees
one veth (removed with the namespace) and routes to the pod and Service ranges through it.

Addresses: the host end of the veth is HOST_ADDRESS, the node's is NODE_ADDRESS (its InternalIP,
where CoreDNS answers and the API server reaches the kubelet); pods get POD_CIDR. The node reaches
the API server on its own 127.0.0.1 through a relay (namespaces.py ``forward``), so the
environment's kubeconfig works unchanged inside. Pods reach it as in a real cluster, with in-cluster
config: the `kubernetes` Service (10.0.0.1:443) has HOST_ADDRESS as its endpoint (``api_endpoints``,
written when the node starts, removed when it stops), where a second relay on the host passes each
connection to the API server; its serving certificate names 10.0.0.1 and HOST_ADDRESS (pki.py).

Images: containerd's root (its content store and snapshots) persists under
``~/.cache/sentinel/node/containerd``, so images imported once stay; each start removes the
containers a previous run left there. Sentinel's images (images.py: train and serve, and the
platform's MinIO, mc and MLflow under the very names platform_objects.py gives them, such as
``quay.io/minio/minio:RELEASE...``) and the sandbox image (our pause program, packed here) are
imported when missing, under the names the pods use.

The KubeRay operator reaches the real head's dashboard through the stand-in dashboard, its HTTP
proxy: a host name that CoreDNS resolves into POD_CIDR is forwarded to the pod (dashboard.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import itertools
import json
import logging
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import IO, Any

import yaml
from kubernetes import client
from kubernetes.client import ApiException

from tests.testenv import build, images, namespaces
from tests.testenv.process import NotReady, Process, stop, wait_for

log = logging.getLogger(__name__)

NODE_NAME = "sentinel-node"
# Labels only this node has: tests select it with them (kwok's nodes carry type=kwok).
LABELS = {"sentinel.dev/node": "real", "type": "real", "node.kubernetes.io/instance-type": "local"}
POD_CIDR = "10.88.0.0/16"
HOST_ADDRESS = "10.87.255.1"
NODE_ADDRESS = "10.87.255.2"
LINK_PREFIX = 30
SERVICE_CIDR = "10.0.0.0/24"  # the API server's --service-cluster-ip-range (commands.py)
CLUSTER_DOMAIN = "cluster.local"
KUBELET_PORT = 10250
# What kubelet sets on the host (it is not namespaced): restored at stop.
KERNEL_TUNABLES = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                   "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
CGROUP_HIERARCHIES = Path("/sys/fs/cgroup")
CNI_BIN = Path("/usr/lib/cni")
# Debian packages: the program or file each provides.
DEBIAN = {
    "containerd": "containerd", "containerd-shim-runc-v2": "containerd", "ctr": "containerd",
    "runc": "runc", "iptables": "iptables", "ip": "iproute2", "unshare": "util-linux", "ipset": "ipset",
    str(CNI_BIN / "bridge"): "containernetworking-plugins",
}
STEP_TIMEOUT_S = 120.0


class NodeUnavailable(RuntimeError):
    """Something the real node needs is not installed or built; the message says how to get it."""


def prerequisites() -> list[str]:
    """What is missing for a real node, each with the command that provides it."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (a node creates namespaces, cgroups and mounts)")
    absent = sorted({package for program, package in DEBIAN.items()
                     if not (Path(program).exists() if program.startswith("/") else shutil.which(program))})
    if absent:
        missing.append(f"Debian packages {', '.join(absent)}: apt-get install {' '.join(absent)}")
    if not (CGROUP_HIERARCHIES / namespaces.TRACKING_HIERARCHY).is_dir():
        missing.append(f"the cgroup v1 '{namespaces.TRACKING_HIERARCHY}' hierarchy at "
                       f"{CGROUP_HIERARCHIES / namespaces.TRACKING_HIERARCHY}")
    try:
        build.locate_node()
    except build.AssetsMissing as error:
        missing.append(str(error))
    try:
        images.locate()
    except images.ImagesMissing as error:
        missing.append(str(error))
    return missing


def node_cache() -> Path:
    return build.sentinel_cache() / "node"


def sandbox_reference() -> str:
    return f"localhost/sentinel-pause:{build.PAUSE.version}"


# -- the running node ---------------------------------------------------------------------------


@dataclass
class NodeState:
    """What stopping the node must undo; saved in the environment's state.json."""

    cgroup: str
    veth: str
    sysctls: dict[str, str] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        return {"cgroup": self.cgroup, "veth": self.veth, "sysctls": self.sysctls}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> NodeState:
        return cls(str(data["cgroup"]), str(data["veth"]), dict(data.get("sysctls") or {}))


@dataclass
class RealNode:
    env: Any  # tests.testenv.env.Environment (not imported: env imports this module)
    state: NodeState
    root: Path
    images: dict[str, images.Image]  # by name: train, serve, minio, mc, mlflow (images.images())
    processes: list[Process] = field(default_factory=list)
    lock: IO[str] | None = None
    name: str = NODE_NAME
    labels: dict[str, str] = field(default_factory=lambda: dict(LABELS))
    address: str = NODE_ADDRESS
    pod_cidr: str = POD_CIDR

    @property
    def containerd_socket(self) -> Path:
        return self.root / "run-containerd" / "containerd.sock"

    def ctr(self, *args: str, timeout: float = 600) -> str:
        """``ctr`` against the node's containerd, in the ``k8s.io`` namespace (the CRI's)."""
        return _run(["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io", *args],
                    timeout=timeout)

    def profile(self, **kubernetes: Any) -> dict[str, Any]:
        """A Sentinel profile whose pods land on this node (and only here): its labels as node
        selectors, no spot tolerations, the images loaded here; ``kubernetes`` adds or overrides."""
        selector = {"sentinel.dev/node": "real"}
        section: dict[str, Any] = {
            "head_node_selector": selector,
            "spot": {"node_selector": selector, "tolerations": []},
            "images": {"train": self.images["train"].reference,
                       "serve": self.images["serve"].reference, "cli": self.images["cli"].reference,
                       "pull_policy": "IfNotPresent"},
        }
        section.update(kubernetes)
        return {"target": "k8s", "kubernetes": section}

    def upstream(self, host: str) -> tuple[str, int] | None:
        """Where a request of the operator for ``host`` (``name.ns.svc.cluster.local:port`` or
        ``ip:port``) goes when its target runs on this node; None for the stand-in to answer."""
        name, _, port_text = host.rpartition(":") if ":" in host else (host, "", "80")
        port = int(port_text or 80)
        try:
            address = ip_address(name)
            return (name, port) if address in ip_network(self.pod_cidr) else None
        except ValueError:
            pass
        if not name.endswith(f".svc.{CLUSTER_DOMAIN}"):
            return None
        try:
            found = dns_query(self.address, name, timeout_s=1.0)
        except OSError:
            return None
        inside = [a for a in found if ip_address(a) in ip_network(self.pod_cidr)]
        return (inside[0], port) if inside else None

    def stop(self) -> None:
        """Stop every process of the node and undo its host changes; delete its Node. Idempotent."""
        for process in reversed(self.processes):
            try:
                stop(process, grace_s=5)
            except OSError as error:
                log.warning("could not stop %s (pid %d): %s", process.name, process.pid, error)
            if process in self.env.processes:
                self.env.processes.remove(process)
        self.processes.clear()
        cleanup(self.state)
        if self.env.node is self:
            self.env.node = None
            if self.env.dashboard is not None:
                self.env.dashboard.upstream = None
            self.env.save()
            _delete_node_object(self.env)
            _withdraw_api_endpoints(self.env)
        if self.lock is not None:
            self.lock.close()
            self.lock = None


def _delete_node_object(env: Any) -> None:
    try:
        with env.api_client() as api:
            client.CoreV1Api(api).delete_node(NODE_NAME, grace_period_seconds=0)
    except Exception as error:  # noqa: BLE001 - the API server may be gone already
        log.debug("could not delete Node %s: %s", NODE_NAME, error)


API_SERVICE = "kubernetes"  # in `default`: the Service the API server creates for itself
API_SLICE_MANAGER = "sentinel-testenv"  # our EndpointSlice's endpointslice.kubernetes.io/managed-by


def api_endpoints(port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `kubernetes` Service's Endpoints and EndpointSlice (pure): HOST_ADDRESS:``port``, what the
    API server's endpoint reconciler writes for its --advertise-address in a real cluster (this one
    runs with --endpoint-reconciler-type=none: it listens on 127.0.0.1 only, commands.py). kube-proxy
    reads the slice; the Endpoints is marked so that no controller mirrors it into a second one."""
    meta = {"name": API_SERVICE, "namespace": "default"}
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {**meta, "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                 "subsets": [{"addresses": [{"ip": HOST_ADDRESS}],
                              "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}
    endpoint_slice = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {**meta, "labels": {"kubernetes.io/service-name": API_SERVICE,
                                                      "endpointslice.kubernetes.io/managed-by": API_SLICE_MANAGER}},
                      "addressType": "IPv4",
                      "endpoints": [{"addresses": [HOST_ADDRESS], "conditions": {"ready": True}}],
                      "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
    return endpoints, endpoint_slice


def publish_api_endpoints(api: client.ApiClient, port: int) -> None:
    """Point the `kubernetes` Service at the pods' relay (replacing what a previous node left)."""
    _withdraw(api)
    endpoints, endpoint_slice = api_endpoints(port)
    client.CoreV1Api(api).create_namespaced_endpoints("default", endpoints)
    client.DiscoveryV1Api(api).create_namespaced_endpoint_slice("default", endpoint_slice)


def _withdraw_api_endpoints(env: Any) -> None:
    try:
        with env.api_client() as api:
            _withdraw(api)
    except Exception as error:  # noqa: BLE001 - the API server may be gone already
        log.debug("could not remove the endpoints of Service %s: %s", API_SERVICE, error)


def _withdraw(api: client.ApiClient) -> None:
    for delete in (client.CoreV1Api(api).delete_namespaced_endpoints,
                   client.DiscoveryV1Api(api).delete_namespaced_endpoint_slice):
        try:
            delete(API_SERVICE, "default")
        except ApiException as error:
            if error.status != 404:
                raise


def cleanup(state: NodeState) -> None:
    """Undo the node's host changes, also for a node whose environment died: end every process
    left in its cgroup (containers, shims, containerd), remove the cgroups, restore the sysctls."""
    procs_root = CGROUP_HIERARCHIES / namespaces.TRACKING_HIERARCHY / state.cgroup
    deadline = time.monotonic() + 20
    while procs_root.is_dir():
        pids = _cgroup_pids(procs_root)
        if not pids or time.monotonic() > deadline:
            break
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    for hierarchy in _hierarchies():
        folder = hierarchy / state.cgroup
        if folder.is_dir():
            for sub in sorted((p for p in folder.rglob("*") if p.is_dir()),
                              key=lambda p: len(p.parts), reverse=True):
                _rmdir(sub)
            _rmdir(folder)
    for key, value in state.sysctls.items():
        path = Path("/proc/sys") / key
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
        except OSError as error:
            log.warning("could not restore %s=%s: %s", key.replace("/", "."), value, error)
    # The kernel removes the namespace, and the veth with it, shortly after its last process ends.
    veth = Path(f"/sys/class/net/{state.veth}")
    deadline = time.monotonic() + 10
    while veth.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if veth.exists():
        subprocess.run(["ip", "link", "delete", state.veth], capture_output=True, check=False)


def _rmdir(folder: Path) -> None:
    for _ in range(50):
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)  # a process that just ended may still be counted
    log.warning("could not remove cgroup %s", folder)


def _cgroup_pids(folder: Path) -> list[int]:
    pids = []
    for procs in folder.rglob("cgroup.procs"):
        try:
            pids += [int(line) for line in procs.read_text().split()]
        except OSError:
            continue
    return pids


def _hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, named ones and the unified one)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] in ("cgroup", "cgroup2"):
            found.append(Path(fields[1]))
    return found


# -- starting -----------------------------------------------------------------------------------


def start_node(env: Any, timeout_s: float = STEP_TIMEOUT_S) -> RealNode:
    """Add the real node to a running environment; on failure, undo what was started."""
    missing = prerequisites()
    if missing:
        raise NodeUnavailable("the real node cannot start:\n- " + "\n- ".join(missing))
    lock = _lock()
    node_assets = build.locate_node()
    tag = f"{os.getpid() % 100000}{next(_STARTS)}"  # unique on the machine (the lock: one node)
    state = NodeState(cgroup=f"sentinel-node-{tag}", veth=f"sn{tag}h")
    root = env.paths.root / "node"
    node = RealNode(env, state, root, images.locate(), lock=lock)
    env.node = node
    started = time.monotonic()
    try:
        _bring_up(node, node_assets, timeout_s)
    except BaseException:
        log.error("the real node failed to start; stopping it")
        node.stop()
        raise
    log.info("real node %s ready in %.1f s", NODE_NAME, time.monotonic() - started)
    return node


_STARTS = itertools.count()


def _lock() -> IO[str]:
    node_cache().mkdir(parents=True, exist_ok=True)
    handle = (node_cache() / ".lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise NodeUnavailable(f"another real node runs on this machine (it holds "
                              f"{node_cache() / '.lock'}); one at a time") from None
    taken = subprocess.run(["ip", "-o", "addr", "show", "to", HOST_ADDRESS], capture_output=True,
                           text=True, check=False).stdout.strip()
    if taken:  # a node of an `env up --node` (whose process, and lock, are gone) still runs
        handle.close()
        raise NodeUnavailable(f"another real node runs on this machine ({taken.split()[1]} has "
                              f"{HOST_ADDRESS}): stop it first (python -m tests.testenv.env down)")
    return handle


def _launch(node: RealNode, name: str, argv: list[str], exe: str = "") -> Process:
    process = node.env.launch(name, argv, exe=exe, extra_env={"PYTHONPATH": str(images.REPO)})
    node.processes.append(process)
    return process


def _in_node(node: RealNode, holder: Process, name: str, argv: list[str]) -> Process:
    wrapper = [os.fspath(_python()), "-m", "tests.testenv.namespaces", "exec",
               f"--holder={holder.pid}", f"--cgroup={node.state.cgroup}/runtime", "--", *argv]
    return _launch(node, name, wrapper, exe=argv[0])


def _python() -> str:
    return sys.executable


def _bring_up(node: RealNode, assets: build.NodeAssets, timeout_s: float) -> None:
    env, state, root = node.env, node.state, node.root
    for folder in ("run-containerd", "cni", "coredns", "kubelet"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    containerd_root = node_cache() / "containerd"
    containerd_root.mkdir(parents=True, exist_ok=True)
    state.sysctls = {key: (Path("/proc/sys") / key).read_text().strip() for key in KERNEL_TUNABLES
                     if (Path("/proc/sys") / key).exists()}
    _make_cgroups(state.cgroup)
    env.save()

    holder_log = _size(env.log_path("node-namespaces"))  # a node before this one wrote there too
    holder = _launch(node, "node-namespaces", [
        _python(), "-m", "tests.testenv.namespaces", "hold", f"--cgroup={state.cgroup}/runtime",
        "--tmpfs=/run", "--tmpfs=/var/lib", "--tmpfs=/var/log",
        f"--bind={root / 'run-containerd'}:/run/containerd",
        f"--bind={containerd_root}:/var/lib/containerd"])
    wait_for("the node's namespaces", lambda: _said(holder, holder_log, namespaces.READY),
             timeout_s, [holder])
    _wire_network(node, holder)
    forwarder_log = _size(env.log_path("node-apiserver-relay"))
    forwarder = _launch(node, "node-apiserver-relay", [
        _python(), "-m", "tests.testenv.namespaces", "forward", f"--holder={holder.pid}",
        f"--listen=127.0.0.1:{env.ports.apiserver}", f"--to=127.0.0.1:{env.ports.apiserver}"])
    wait_for("the API server relay", lambda: _said(forwarder, forwarder_log, namespaces.READY),
             timeout_s, [forwarder])
    # The node's pods reach the API server as in a real cluster: the `kubernetes` Service
    # (KUBERNETES_SERVICE_HOST, 10.0.0.1:443) leads, through kube-proxy, to the host's end of the
    # link, where this relay passes each connection to the API server on 127.0.0.1.
    pod_relay_log = _size(env.log_path("pod-apiserver-relay"))
    pod_relay = _launch(node, "pod-apiserver-relay", [
        _python(), "-m", "tests.testenv.namespaces", "forward",
        f"--listen={HOST_ADDRESS}:{env.ports.apiserver}", f"--to=127.0.0.1:{env.ports.apiserver}"])
    wait_for("the pods' API server relay", lambda: _said(pod_relay, pod_relay_log, namespaces.READY),
             timeout_s, [pod_relay])
    with env.api_client() as api:
        publish_api_endpoints(api, env.ports.apiserver)

    config = root / "containerd.toml"
    config.write_text(containerd_config(root / "cni"))
    (root / "cni" / "10-sentinel.conflist").write_text(json.dumps(cni_config(), indent=2))
    containerd = _in_node(node, holder, "containerd",
                          [shutil.which("containerd") or "containerd", f"--config={config}"])
    wait_for("containerd", lambda: _ctr_ready(node), timeout_s, [holder, containerd])
    _remove_stale_containers(node)
    _import_images(node, assets)

    corefile = root / "coredns" / "Corefile"
    corefile.write_text(corefile_text(env.kubeconfig))
    coredns = _in_node(node, holder, "coredns", [str(assets.coredns), f"-conf={corefile}"])
    proxy_config = root / "kube-proxy.yaml"
    proxy_config.write_text(yaml.safe_dump(kube_proxy_config(env.kubeconfig)))
    kube_proxy = _in_node(node, holder, "kube-proxy",
                          [str(assets.kube_proxy), f"--config={proxy_config}",
                           f"--hostname-override={NODE_NAME}", "--v=1"])
    kubelet_config = root / "kubelet.yaml"
    kubelet_config.write_text(yaml.safe_dump(kubelet_configuration(state.cgroup)))
    kubelet = _in_node(node, holder, "kubelet", [
        str(assets.kubelet), f"--config={kubelet_config}", f"--kubeconfig={env.kubeconfig}",
        f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_ADDRESS}",
        "--node-labels=" + ",".join(f"{k}={v}" for k, v in LABELS.items()),
        "--root-dir=/var/lib/kubelet", "--v=1"])
    every = [holder, forwarder, pod_relay, containerd, coredns, kube_proxy, kubelet]
    with env.api_client() as api:
        wait_for(f"Node {NODE_NAME} Ready", lambda: _node_reason(api), timeout_s, every)
    wait_for("CoreDNS", lambda: _dns_reason(), timeout_s, every)
    if env.dashboard is not None:
        env.dashboard.upstream = node.upstream


def start_network_policies(node: RealNode, timeout_s: float = STEP_TIMEOUT_S) -> Process:
    """Enforce NetworkPolicies on the node from now on: kube-router's firewall (its routing and
    service proxy off) in the node's network namespace, until the node stops. It filters with
    iptables and ipset; it admits what the node itself sends (kubelet's probes), but the host's
    HOST_ADDRESS (the operator and the tests run there) is outside: a policy admits it by ipBlock."""
    holder = next(p for p in node.processes if p.name == "node-namespaces")
    offset = _size(node.env.log_path("kube-router"))
    router = _in_node(node, holder, "kube-router", [
        str(build.locate_node().kube_router), "--run-firewall=true", "--run-router=false",
        "--run-service-proxy=false", "--enable-cni=false", f"--kubeconfig={node.env.kubeconfig}",
        f"--hostname-override={NODE_NAME}", f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--health-port=0", "--metrics-port=0", "--v=1"])
    wait_for("kube-router's first sync of NetworkPolicies",
             lambda: _said(router, offset, "sync iptables took"), timeout_s, [router])
    return router


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _said(process: Process, offset: int, word: str) -> str | None:
    """None once ``process`` wrote ``word`` to its log after ``offset``."""
    with process.log_path.open("rb") as log_file:
        log_file.seek(offset)
        return None if word.encode() in log_file.read() else f"{process.name} has not said {word}"


def _make_cgroups(cgroup: str) -> None:
    for hierarchy in _hierarchies():
        for folder in (hierarchy / cgroup, hierarchy / cgroup / "runtime"):
            folder.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset children start empty
                own, parent = folder / name, folder.parent / name
                if own.exists() and not own.read_text().strip():
                    own.write_text(parent.read_text())


def _wire_network(node: RealNode, holder: Process) -> None:
    veth = node.state.veth
    inside = ["nsenter", f"--target={holder.pid}", "--net", "--"]
    _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
          str(holder.pid)])
    _run(["ip", "addr", "add", f"{HOST_ADDRESS}/{LINK_PREFIX}", "dev", veth])
    _run(["ip", "link", "set", veth, "up"])
    _run([*inside, "ip", "addr", "add", f"{NODE_ADDRESS}/{LINK_PREFIX}", "dev", "eth0"])
    _run([*inside, "ip", "link", "set", "eth0", "up"])
    # No default route inside: nothing in the node can reach past the host (image pulls fail fast).
    for cidr in (POD_CIDR, SERVICE_CIDR):
        _run(["ip", "route", "add", cidr, "via", NODE_ADDRESS, "dev", veth])


def _ctr_ready(node: RealNode) -> str | None:
    if not node.containerd_socket.exists():
        return f"no socket {node.containerd_socket} yet"
    try:
        node.ctr("version", timeout=5)
    except NotReady as error:
        return str(error)
    return None


def _remove_stale_containers(node: RealNode) -> None:
    """Containers a previous run left in the persistent root (their processes are long gone)."""
    stale = node.ctr("containers", "list", "--quiet").split()
    if stale:
        log.info("removing %d containers a previous node left in containerd", len(stale))
        for chunk in range(0, len(stale), 50):
            node.ctr("containers", "delete", *stale[chunk:chunk + 50])


def _import_images(node: RealNode, assets: build.NodeAssets) -> None:
    present = set(node.ctr("images", "list", "--quiet").split())
    marks = node_cache() / "imported"
    marks.mkdir(exist_ok=True)
    if images.normalize(sandbox_reference()) not in present:
        archive = node.root / "pause.tar"
        write_pause_archive(assets.pause, archive, sandbox_reference())
        node.ctr("images", "import", str(archive))
    for image in node.images.values():
        mark = marks / image.archive.name
        if image.normalized in present and mark.exists():
            continue
        started = time.monotonic()
        for old in marks.glob(f"{image.name}-*"):
            old.unlink()
        _import(node, image)
        mark.touch()
        log.info("imported %s into containerd in %.0f s", image.normalized, time.monotonic() - started)


def _import(node: RealNode, image) -> None:
    # The archive names its image in full; --base-name keeps names with that prefix.
    args = ("images", "import", f"--base-name={image.normalized.rsplit(':', 1)[0]}", str(image.archive))
    try:
        node.ctr(*args)
    except NotReady as error:
        # The import moves the tag off the older image; containerd's garbage collection then removes
        # that image's snapshots, which can include a shared layer's that the unpack has just found
        # and means to build on ("parent snapshot … does not exist"; seen once in CI). Once the
        # collection is over, the same import unpacks that layer anew.
        if "does not exist" not in str(error):
            raise
        log.warning("importing %s met containerd's garbage collection; importing again", image.normalized)
        time.sleep(2)
        node.ctr(*args)


def _node_reason(api: client.ApiClient) -> str | None:
    try:
        node = client.CoreV1Api(api).read_node(NODE_NAME)
    except ApiException as error:
        if error.status == 404:
            return f"kubelet has not registered Node {NODE_NAME} yet"
        raise
    for condition in node.status.conditions or []:
        if condition.type == "Ready":
            return None if condition.status == "True" else f"Ready={condition.status}: {condition.message}"
    return "no Ready condition yet"


def _dns_reason() -> str | None:
    name = f"kubernetes.default.svc.{CLUSTER_DOMAIN}"
    try:
        answers = dns_query(NODE_ADDRESS, name, timeout_s=1.0)
    except OSError as error:
        return f"CoreDNS on {NODE_ADDRESS}:53: {error}"
    return None if answers else f"CoreDNS has no address for {name} yet"


# -- configuration files (pure) ----------------------------------------------------------------


def containerd_config(cni_dir: Path) -> str:
    """containerd 1.6's config: its own root and state, the CRI with cgroupfs, runc, overlayfs."""
    return f"""version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{images.normalize(sandbox_reference())}"
  # The CRI asks for oomScoreAdj -998 for sandboxes; without CAP_SYS_RESOURCE in this machine's
  # bounding set runc cannot lower it ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_dir}"
"""


def cni_config() -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "sentinel-node",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/var/lib/cni/networks"}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def corefile_text(kubeconfig: Path) -> str:
    return f""".:53 {{
    bind {NODE_ADDRESS}
    errors
    cache 5
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
}}
"""


def kube_proxy_config(kubeconfig: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "clusterCIDR": POD_CIDR,
        "bindAddress": NODE_ADDRESS,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # No conntrack sysctls: maxPerCore 0 leaves nf_conntrack_max alone, 0 s timeouts too.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
    }


def kubelet_configuration(cgroup: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{cgroup}",
        "cgroupsPerQOS": True,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        "imageServiceEndpoint": "unix:///run/containerd/containerd.sock",
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "address": NODE_ADDRESS,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "clusterDNS": [NODE_ADDRESS],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "",
        "evictionHard": {"nodefs.available": "1%", "imagefs.available": "1%",
                         "memory.available": "100Mi"},
        # Never collect our images: they are imported once and persist.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 30,
        "registerNode": True,
        "protectKernelDefaults": False,
        "nodeStatusReportFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "runtimeRequestTimeout": "5m",
        "shutdownGracePeriod": "0s",
        "containerLogMaxSize": "50Mi",
        "logging": {"format": "text"},
    }


# -- the sandbox image --------------------------------------------------------------------------


def write_pause_archive(program: Path, archive: Path, reference: str) -> None:
    """A one-layer OCI image archive holding ``program`` as /pause (its entrypoint)."""
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w") as layer:
        info = layer.gettarinfo(str(program), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        info.mode = 0o755
        with program.open("rb") as handle:
            layer.addfile(info, handle)
    layer_bytes = layer_buffer.getvalue()
    layer_digest = hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
    }).encode()
    config_digest = hashlib.sha256(config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{config_digest}", "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{layer_digest}", "size": len(layer_bytes)}],
    }).encode()
    manifest_digest = hashlib.sha256(manifest).hexdigest()
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": f"sha256:{manifest_digest}", "size": len(manifest),
                       "annotations": {"io.containerd.image.name": images.normalize(reference),
                                       "org.opencontainers.image.ref.name": reference.rsplit(":", 1)[1]}}],
    }).encode()
    with tarfile.open(archive, "w") as tar:
        for name, data in (("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
                           ("index.json", index),
                           (f"blobs/sha256/{layer_digest}", layer_bytes),
                           (f"blobs/sha256/{config_digest}", config),
                           (f"blobs/sha256/{manifest_digest}", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# -- DNS ----------------------------------------------------------------------------------------


def dns_query(server: str, name: str, timeout_s: float = 2.0, port: int = 53) -> list[str]:
    """The A records of ``name`` from ``server``:``port`` (one UDP query; [] for none or NXDOMAIN)."""
    query_id = random.randrange(1 << 16)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split("."))
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + b"\0" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.sendto(packet, (server, port))
        data = sock.recv(4096)
    answer_id, flags, questions, answers = struct.unpack(">HHHH", data[:8])
    if answer_id != query_id or flags & 0x000F:
        return []
    offset = 12
    for _ in range(questions):
        offset = _skip_name(data, offset) + 4
    found = []
    for _ in range(answers):
        offset = _skip_name(data, offset)
        kind, _class, _ttl, length = struct.unpack(">HHIH", data[offset:offset + 10])
        offset += 10
        if kind == 1 and length == 4:
            found.append(socket.inet_ntoa(data[offset:offset + 4]))
        offset += length
    return found


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length


# -- helpers ------------------------------------------------------------------------------------


def _run(argv: list[str], timeout: float = 60) -> str:
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise NotReady(f"`{' '.join(argv)}` took more than {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise NotReady(f"`{' '.join(argv)}` exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout
