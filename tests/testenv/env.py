"""Start and stop the whole environment; also its command line.

    python -m tests.testenv.env build    build or reuse the binaries (see build.py)
    python -m tests.testenv.env up       start everything, print the kubeconfig path, leave it running
    python -m tests.testenv.env up --node   the same plus the real node (node.py; images.py builds
                                            its images: python -m tests.testenv.images build)
    python -m tests.testenv.env down     stop what `up` started and remove its files

Start order: etcd → kube-apiserver → (CRDs, fake nodes, kube-controller-manager, kube-scheduler,
kwok) → KubeRay operator. Each step waits, bounded, for its component and names it when it is
not ready. Stopping ends every process by pid in reverse order and removes the work directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config

from tests.testenv import build, cluster, commands, node, pki, probes
from tests.testenv.build import Assets
from tests.testenv.commands import Paths, Ports
from tests.testenv.dashboard import StandInDashboard
from tests.testenv.node import NodeState, RealNode
from tests.testenv.process import (
    NotReady,
    Process,
    sigterm_as_interrupt,
    start,
    stop,
    wait_for,
)

log = logging.getLogger(__name__)

NO_PROXY = "127.0.0.1,localhost,.svc,.svc.cluster.local"
# The operator reaches Ray dashboards through the stand-in, acting as its HTTP proxy.
OPERATOR_NO_PROXY = "127.0.0.1,localhost"
STAGES_FILE = Path(__file__).parent / "kwok" / "stages.yaml"
RUNS_DIR = Path(tempfile.gettempdir()) / "sentinel-k8s"
# What a container "prints" in this environment, in CRI log format; `kubectl logs` returns it.
CONTAINER_LOG = (
    "2025-01-01T00:00:00.000000000Z stdout F "
    "kwok pod: no container runs in the Sentinel test environment\n"
)
STEP_TIMEOUT_S = 90.0


@dataclass
class Environment:
    """A running environment: its files, ports and processes."""

    paths: Paths
    ports: Ports
    detached: bool = False
    processes: list[Process] = field(default_factory=list)
    dashboard: StandInDashboard | None = None  # None when detached: it lives in this process
    node: RealNode | None = None  # the real node, when started (node.start_node)
    node_state: NodeState | None = None  # what a dead environment's node left to undo (reaping)

    @property
    def kubeconfig(self) -> Path:
        return self.paths.kubeconfig

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def api_client(self) -> client.ApiClient:
        """A new client of the Kubernetes Python library, for this environment only."""
        api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig))
        return api

    def log_path(self, component: str) -> Path:
        return self.paths.logs / f"{component}.log"

    def stop(self) -> None:
        """End every process, newest first, and remove the work directory. Idempotent."""
        if self.node is not None:
            self.node.stop()
        for process in reversed(self.processes):
            try:
                stop(process)
            except OSError as error:
                log.warning("could not stop %s (pid %d): %s", process.name, process.pid, error)
        self.processes.clear()
        if self.node_state is not None:  # a node whose environment died: undo its host changes
            node.cleanup(self.node_state)
            self.node_state = None
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard = None
        if os.environ.get("SENTINEL_K8S_KEEP"):
            log.warning("SENTINEL_K8S_KEEP is set: keeping %s", self.paths.root)
            return
        shutil.rmtree(self.paths.root, ignore_errors=True)

    def save(self) -> None:
        state = {
            "owner": os.getpid(),
            "detached": self.detached,
            "root": str(self.paths.root),
            "ports": self.ports.__dict__,
            "processes": [p.to_state() for p in self.processes],
        }
        node_state = self.node.state if self.node is not None else self.node_state
        if node_state is not None:
            state["node"] = node_state.to_state()
        self.paths.state.write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, root: Path) -> tuple[Environment, int]:
        """The environment recorded in ``root`` and the pid of the process that started it."""
        state = json.loads((root / "state.json").read_text())
        env = cls(Paths(root), Ports(**state["ports"]), state["detached"])
        env.processes = [Process.from_state(p) for p in state["processes"]]
        if state.get("node"):
            env.node_state = NodeState.from_state(state["node"])
        return env, int(state["owner"])

    def launch(self, name: str, argv: list[str], proxy: str | None = None, exe: str = "",
               extra_env: dict[str, str] | None = None) -> Process:
        no_proxy = NO_PROXY if proxy is None else OPERATOR_NO_PROXY
        environ = {**os.environ, "NO_PROXY": no_proxy, "no_proxy": no_proxy,
                   "KUBECONFIG": str(self.kubeconfig), **(extra_env or {})}
        if proxy is not None:
            environ.update(HTTP_PROXY=proxy, http_proxy=proxy)
        process = start(name, argv, self.paths.logs, environ, exe)
        self.processes.append(process)
        self.save()
        log.info("started %s (pid %d)", name, process.pid)
        return process


def up(assets: Assets, detached: bool = False, timeout_s: float = STEP_TIMEOUT_S) -> Environment:
    """Start everything and wait until it is ready; on any failure stop what was started."""
    reap_stale()
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=RUNS_DIR))
    env = Environment(Paths(root), Ports.pick(), detached)
    started = time.monotonic()
    try:
        _bring_up(env, assets, timeout_s)
    except BaseException:
        log.error("start-up failed; stopping what was started")
        env.stop()
        raise
    log.info("environment ready in %.1f s; kubeconfig %s", time.monotonic() - started,
             env.kubeconfig)
    return env


def _bring_up(env: Environment, assets: Assets, timeout_s: float) -> None:
    paths, ports = env.paths, env.ports
    for folder in (paths.logs, paths.etcd_data):
        folder.mkdir(parents=True)
    certs = pki.create(paths.pki, extra_ips=(node.HOST_ADDRESS,))  # the real node's pods come there
    pki.write_kubeconfig(paths.kubeconfig, env.api_url, certs)
    _write_kwok_config(paths)
    env.save()

    etcd = env.launch("etcd", commands.etcd(assets, paths, ports))
    wait_for("etcd", probes.http(f"http://127.0.0.1:{ports.etcd_client}/health"), timeout_s,
             [etcd])
    apiserver = env.launch("kube-apiserver", commands.kube_apiserver(assets, paths, ports, certs))
    wait_for("kube-apiserver", probes.http(f"{env.api_url}/readyz",
                                           probes.trusted(certs, client_cert=True)),
             timeout_s, [etcd, apiserver])

    controllers = env.launch("kube-controller-manager",
                             commands.kube_controller_manager(assets, paths, ports, certs))
    scheduler = env.launch("kube-scheduler", commands.kube_scheduler(assets, paths, ports))
    kwok = env.launch("kwok", commands.kwok(assets, paths, ports, certs))
    with env.api_client() as api:  # while those three start up
        crds = cluster.install_crds(api, assets.crds)
        nodes = cluster.create_nodes(api)
        wait_for("KubeRay CRDs", lambda: cluster.crds_reason(api, crds), timeout_s, [apiserver])
        operator = _launch_operator(env, assets)
        every = [etcd, apiserver, controllers, scheduler, kwok, operator]
        for what, check in _readiness_checks(env, certs, api, nodes).items():
            wait_for(what, check, timeout_s, every)


def _launch_operator(env: Environment, assets: Assets) -> Process:
    """The operator, reaching Ray dashboards through the stand-in (absent when detached)."""
    proxy = None
    if not env.detached:
        env.dashboard = StandInDashboard(env.ports.dashboard)
        env.dashboard.start()
        proxy = f"http://127.0.0.1:{env.ports.dashboard}"
    return env.launch("ray-operator", commands.ray_operator(assets, env.paths, env.ports), proxy)


def _readiness_checks(
    env: Environment, certs: pki.Pki, api: client.ApiClient, nodes: list[str]
) -> dict[str, probes.Check]:
    ports, own_cert = env.ports, probes.self_signed()
    return {
        "kube-controller-manager": probes.http(
            f"https://127.0.0.1:{ports.controller_manager}/healthz", own_cert),
        "kube-scheduler": probes.http(f"https://127.0.0.1:{ports.scheduler}/healthz", own_cert),
        "kwok": probes.http(f"https://127.0.0.1:{ports.kwok}/healthz", probes.trusted(certs)),
        "kwok nodes": lambda: cluster.nodes_reason(api, nodes),
        "KubeRay operator": probes.http(f"http://127.0.0.1:{ports.operator_health}/readyz"),
        "ServiceAccount controller": lambda: cluster.service_account_reason(api, "default"),
    }


def _write_kwok_config(paths: Paths) -> None:
    paths.container_log.write_text(CONTAINER_LOG)
    cluster_logs = (
        "apiVersion: kwok.x-k8s.io/v1alpha1\n"
        "kind: ClusterLogs\n"
        "metadata:\n  name: every-pod\n"
        f"spec:\n  logs:\n  - logsFile: {paths.container_log}\n"
    )
    paths.kwok_config.write_text(f"{STAGES_FILE.read_text()}\n---\n{cluster_logs}")


def reap_stale() -> None:
    """Stop environments left by test sessions that died without tearing down (say, SIGKILL)."""
    if not RUNS_DIR.is_dir():
        return
    for root in RUNS_DIR.iterdir():
        try:
            env, owner = Environment.load(root)
        except (OSError, ValueError, KeyError):
            continue
        if env.detached or _alive(owner):
            continue
        log.warning("stopping an environment whose owner (pid %d) is gone: %s", owner, root)
        env.stop()


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def current_file() -> Path:
    """Where `up` records the environment it left running, for `down`."""
    return build.cache_root() / "current-env"


def _cmd_build(_: argparse.Namespace) -> int:
    assets = build.build()
    for name, value in assets.__dict__.items():
        print(f"{name}: {value}", file=sys.stderr)
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    pointer = current_file()
    if pointer.exists() and Path(pointer.read_text().strip()).exists():
        print(f"an environment is already up ({pointer.read_text().strip()}); "
              "run `python -m tests.testenv.env down` first", file=sys.stderr)
        return 2
    env = up(build.build(), detached=True, timeout_s=args.timeout)
    pointer.write_text(str(env.paths.root))
    if args.node:
        try:
            node.start_node(env, timeout_s=max(args.timeout, node.STEP_TIMEOUT_S))
        except BaseException:
            env.stop()
            pointer.unlink()
            raise
    print(f"export KUBECONFIG={env.kubeconfig}", file=sys.stderr)
    print(env.kubeconfig)
    return 0


def _cmd_down(_: argparse.Namespace) -> int:
    pointer = current_file()
    if not pointer.exists():
        print("no environment is up", file=sys.stderr)
        return 0
    root = Path(pointer.read_text().strip())
    if (root / "state.json").exists():
        env, _owner = Environment.load(root)
        env.stop()
        print(f"stopped the environment in {root}", file=sys.stderr)
    pointer.unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testenv.env", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands_ = parser.add_subparsers(dest="command", required=True)
    commands_.add_parser("build", help="build or reuse the binaries").set_defaults(run=_cmd_build)
    up_parser = commands_.add_parser("up", help="start the environment and leave it running")
    up_parser.add_argument("--timeout", type=float, default=STEP_TIMEOUT_S,
                           help="seconds each component may take to become ready")
    up_parser.add_argument("--node", action="store_true",
                           help="also start the real node (kubelet, containerd, CoreDNS; node.py)")
    up_parser.set_defaults(run=_cmd_up)
    commands_.add_parser("down", help="stop the environment `up` started").set_defaults(
        run=_cmd_down)
    parser.add_argument("-v", "--verbose", action="store_true", help="log Go's downloads too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        with sigterm_as_interrupt():
            return int(args.run(args))
    except (build.AssetsMissing, build.BuildFailed, NotReady, node.NodeUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
