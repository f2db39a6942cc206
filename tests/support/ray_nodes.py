"""A Ray cluster of several nodes on this machine, made with ``ray start`` as a user (or KubeRay's
pods) would: a head, then worker nodes that join it. Each cluster has its own RAY_TMPDIR and HOME,
so its address file and its token stay away from any other Ray on the machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sentinel_cli.backends.local import ray_cluster as local_ray


def closed_port() -> int:
    """A port nothing listens on (free a moment ago), from the range the CLI takes its own from."""
    return local_ray.free_ports(1)[0]


@dataclass
class RayNodes:
    env: dict[str, str]  # the environment of a process on this machine that ``ray.init()`` joins to it
    logs: Path
    address: str = ""
    nodes: list[subprocess.Popen] = field(default_factory=list)

    def start(self, *flags: str, timeout_s: float = 120.0) -> subprocess.Popen:
        """One more node: the head first (``--head``), then workers that join ``address``."""
        head = not self.nodes
        args = ["--head", f"--port={closed_port()}", "--include-dashboard=false"] if head \
            else [f"--address={self.address}"]
        log = self.logs / f"node-{len(self.nodes)}.log"
        with log.open("wb") as out:
            node = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--block", *args, *flags],
                                    env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.nodes.append(node)
        if head:
            address_file = Path(self.env["RAY_TMPDIR"]) / "ray" / "ray_current_cluster"
            self._wait(node, log, address_file.exists, timeout_s)
            self.address = address_file.read_text().strip()
        else:
            self._wait(node, log, lambda: b"Ray runtime started" in log.read_bytes(), timeout_s)
        return node

    @staticmethod
    def _wait(node: subprocess.Popen, log: Path, ready, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert node.poll() is None and time.monotonic() < deadline, \
                f"ray start failed:\n{log.read_text(errors='replace')[-3000:]}"
            time.sleep(0.25)


@contextmanager
def ray_nodes(home: Path) -> Iterator[RayNodes]:
    """Start nodes with ``.start(...)``; all of them stop when the block ends."""
    ray_tmp = tempfile.mkdtemp(prefix="rs-", dir="/tmp")  # short: Ray's socket paths are limited
    # Without RAY_AUTH_* (a Ray started earlier in the tests' process sets RAY_AUTH_MODE), `ray start`
    # makes its own token in $HOME/.ray, as on a user's machine.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("RAY_AUTH_")}
    env.update({"RAY_TMPDIR": ray_tmp, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"})  # SIGTERM stops a node in seconds, not 30+
    cluster = RayNodes(env, home)
    try:
        yield cluster
    finally:
        for node in reversed(cluster.nodes):  # workers first, the head last
            local_ray._stop_group(node.pid, grace_s=60)  # SIGTERM to the group, SIGKILL if it lingers
        shutil.rmtree(ray_tmp, ignore_errors=True)
