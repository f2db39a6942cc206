"""The detached local Ray that serving runs on: it must outlive the ``sentinel serve`` process.

``start`` runs ``ray start --head --block`` as a session leader with its own temp dir, ports and
auth token; every Ray process it starts stays in its process group, so ``stop`` ends exactly that
cluster (SIGTERM to the leader, which drains and stops its children; SIGKILL to the group only if
that does not finish in time) and never touches another Ray on the machine. The cluster's address
and leader pid live in ``$SENTINEL_HOME/ray/cluster.json``.

Ray binds its GCS and raylet on all interfaces whatever ``--node-ip-address`` says; the cluster is
reached on 127.0.0.1 and guarded by Ray's token authentication with a token only this
``$SENTINEL_HOME`` holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sentinel_ml.errors import JobFailed, WaitTimeout
from sentinel_ml.paths import sentinel_home

STATE_FILE = "cluster.json"
_MAX_TEMP_DIR = 40  # Ray puts Unix sockets at <temp>/session_<41 chars>/sockets/…: 107 bytes at most


@dataclass
class LocalCluster:
    address: str  # GCS address, 127.0.0.1:<port>
    pid: int  # the `ray start --block` leader; its process group holds every process of the cluster
    temp_dir: str
    token_path: str
    log_path: str
    env: dict[str, str] = field(default_factory=dict)  # settings it was started with (Serve flags)

    def auth_env(self) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.token_path}


def cluster_dir() -> Path:
    return sentinel_home() / "ray"


def find() -> LocalCluster | None:
    """The recorded cluster if its leader still runs and its GCS answers; None otherwise."""
    state = cluster_dir() / STATE_FILE
    try:
        cluster = LocalCluster(**json.loads(state.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if _leader_alive(cluster) and _port_open(cluster.address):
        os.environ.update(cluster.auth_env())  # before Ray reads its config in this process
        return cluster
    return None


def prepare_auth() -> str:
    """Make this home's cluster token (once) and export Ray's auth settings for this process."""
    home = cluster_dir()
    home.mkdir(parents=True, exist_ok=True)
    token_path = home / "auth_token"
    if not token_path.exists():
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)})
    return str(token_path)


def start(env: dict[str, str], timeout_s: float = 60.0, on_progress=None) -> LocalCluster:
    """Start a detached single-node Ray and wait (bounded) until its GCS accepts connections."""
    home = cluster_dir()
    token_path = prepare_auth()
    temp = temp_dir()
    gcs_port, client_port, agent_port, dashboard_port = free_ports(4)
    log_path = home / "ray-start.log"
    cluster = LocalCluster(address=f"127.0.0.1:{gcs_port}", pid=0, temp_dir=str(temp),
                           token_path=str(token_path), log_path=str(log_path), env=dict(env))
    command = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
        "--node-ip-address=127.0.0.1", f"--port={gcs_port}", f"--ray-client-server-port={client_port}",
        f"--dashboard-agent-listen-port={agent_port}", f"--dashboard-port={dashboard_port}",
        "--dashboard-host=127.0.0.1", "--include-dashboard=false", f"--temp-dir={temp}",
        "--disable-usage-stats",
    ]
    child_env = {**os.environ, **cluster.auth_env(), **env, "RAY_USAGE_STATS_ENABLED": "0",
                 # On SIGTERM Ray first drains the node so traffic can move to other nodes, for up to
                 # 30 s (an idle `ray start --block` head took 33 s to stop, 3.5 s without). This
                 # cluster is one node, and `stop` has already shut Serve down gracefully.
                 "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    with log_path.open("wb") as log:
        leader = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  env=child_env, start_new_session=True)
    cluster.pid = leader.pid
    if on_progress:
        on_progress(f"starting a local Ray cluster at {cluster.address} (pid {leader.pid})")
    deadline = time.monotonic() + timeout_s
    while not _port_open(cluster.address):
        if leader.poll() is not None:
            raise JobFailed(f"the local Ray cluster exited while starting (code {leader.returncode})",
                            hint=f"see {log_path}")
        if time.monotonic() > deadline:
            _stop_group(leader.pid, grace_s=10)
            raise WaitTimeout(f"the local Ray cluster did not answer within {timeout_s:.0f}s",
                              hint=f"see {log_path}; the machine may be overloaded")
        time.sleep(0.25)
    (home / STATE_FILE).write_text(json.dumps(asdict(cluster), indent=2))
    return cluster


def connect(cluster: LocalCluster) -> None:
    """Join ``cluster`` as a driver from this process (quietly).

    Ray reads its auth settings once per process: ``find`` and ``start`` export them, so call one
    of them before anything in this process initialises Ray.
    """
    import logging

    import ray

    if ray.is_initialized():
        return
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING,
             configure_logging=False, namespace="sentinel")


def stop(cluster: LocalCluster, grace_s: float = 40.0) -> None:
    """End the cluster's processes and forget it. Its temp dir goes too when it lies outside
    $SENTINEL_HOME (the short /tmp fallback); under $SENTINEL_HOME its logs stay for a post-mortem."""
    import shutil

    _stop_group(cluster.pid, grace_s)
    forget()
    if not Path(cluster.temp_dir).is_relative_to(cluster_dir()):
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)


def forget() -> None:
    """Drop a stale record (its leader is gone)."""
    (cluster_dir() / STATE_FILE).unlink(missing_ok=True)


def _stop_group(pid: int, grace_s: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)  # the leader drains the node and stops its children
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_s
    while _group_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.25)
    if _group_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # only reaps when this process started the leader
    except ChildProcessError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(_pgid_of(p) == pgid and not _is_zombie(p) for p in _pids())


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()] if os.path.isdir("/proc") else []


def _pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _leader_alive(cluster: LocalCluster) -> bool:
    """The pid still runs and is the leader we started (not a recycled pid)."""
    proc = Path(f"/proc/{cluster.pid}")
    if not Path("/proc/self").exists():  # no procfs (macOS): trust the pid
        try:
            os.kill(cluster.pid, 0)
        except OSError:
            return False
        return True
    try:
        command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return not _is_zombie(cluster.pid) and f"--temp-dir={cluster.temp_dir}" in command


def _port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


RAY_WORKER_PORTS_END = 19999  # Ray's workers listen on 10002-19999 (min/max_worker_port)


def free_ports(count: int) -> list[int]:
    """Ports free now, for listeners that other processes open later. Taken between Ray's worker
    ports and the kernel's ephemeral range: a port from bind(0) lies in that range, where outgoing
    connections draw theirs, and was once taken by one before HAProxy could listen on it."""
    low, high = RAY_WORKER_PORTS_END + 1, _ephemeral_ports_start() - 1
    if high - low < 1000:  # an unusual ephemeral range: fall back to the kernel's choice
        return _kernel_ports(count)
    ports: list[int] = []
    for port in random.sample(range(low, high + 1), k=min(high - low + 1, 200)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    return ports + _kernel_ports(count - len(ports))


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _kernel_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def temp_dir() -> Path:
    """``$SENTINEL_HOME/ray/tmp`` when short enough for Ray's socket paths, else a short /tmp path."""
    home = cluster_dir()
    preferred = home / "tmp"
    if len(str(preferred)) <= _MAX_TEMP_DIR:
        return preferred
    digest = hashlib.sha1(str(home).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"sentinel-ray-{digest}"
