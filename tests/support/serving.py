"""A local `sentinel serve` driven as a user drives it, and what the fault tests watch while it runs:
Serve's replica states (a process of its own) and HAProxy's own request log."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.cli import REPO, SENTINEL
from tests.support.ports import free_ports


class Served:
    """`sentinel serve` on a detached local Ray under its own $SENTINEL_HOME, on free loopback ports."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port, self.grpc_port = free_ports(2)
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/recommend"

    def cli(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
        return subprocess.run([*SENTINEL, *args], cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def serve(self, *args: str, timeout: float = 300.0) -> dict:
        done = self.cli("serve", "--port", str(self.port), "--grpc-port", str(self.grpc_port), "--timeout",
                        str(int(timeout - 30)), "-o", "json", *args, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"sentinel serve {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return json.loads(done.stdout)

    def stop(self, timeout: float = 180.0) -> dict:
        done = self.cli("serve", "stop", "-o", "json", timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"sentinel serve stop failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return json.loads(done.stdout)

    def leader(self) -> int:
        return json.loads((Path(self.env["SENTINEL_HOME"]) / "ray" / "cluster.json").read_text())["pid"]

    def keep_logs(self, dest: Path) -> Path:
        """Copy what the running cluster logged (Serve's controller, proxy and replica logs, and
        HAProxy's own stdout/stderr) to ``dest``, before a stop removes them."""
        import shutil

        from sentinel_cli.backends.local.serving import haproxy_dir

        home = Path(self.env["SENTINEL_HOME"]) / "ray"
        temp = json.loads((home / "cluster.json").read_text())["temp_dir"]
        shutil.copytree(Path(temp) / "session_latest" / "logs" / "serve", dest / "serve", dirs_exist_ok=True)
        for path in haproxy_dir(home).glob("*/*.log"):
            shutil.copy2(path, dest / path.name)
        return dest

    def models(self, count: int = 40) -> list[str]:
        """The checkpoint that answers /recommend/model, asked ``count`` times (spread over the replicas)."""
        import httpx

        with httpx.Client(timeout=30) as client:
            return [client.get(f"{self.url}/model").json()["checkpoint_uri"] for _ in range(count)]


WATCH_REPLICAS = """
import json, sys, time
from sentinel_cli.backends.local import ray_cluster as local_ray
local_ray.connect(local_ray.find())  # find() first: it exports the cluster's auth settings before Ray loads
from ray import serve
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    app = serve.status().applications.get("sentinel")
    deployment = app.deployments.get("MovieRecommender") if app else None
    states = {str(getattr(k, "value", k)): v for k, v in (deployment.replica_states if deployment else {}).items()}
    print(json.dumps({"t": time.time(), "replicas": states}), flush=True)
    time.sleep(0.25)
"""


class ReplicaWatch:
    """serve.status()'s replica states every 0.25 s from a process of its own (connected once to the
    local cluster of ``env``'s $SENTINEL_HOME), bounded by ``duration_s``."""

    def __init__(self, env: dict[str, str], duration_s: float) -> None:
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.proc = subprocess.Popen([sys.executable, "-c", WATCH_REPLICAS, str(duration_s)], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                sample = json.loads(line)
            except ValueError:
                continue
            self.samples.append((sample["t"], sample["replicas"]))

    def wait_running(self, count: int, timeout_s: float) -> float:
        """Wait until a sample shows ``count`` RUNNING replicas; its time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for t, replicas in self.samples:
                if replicas.get("RUNNING", 0) == count:
                    return t
            time.sleep(0.2)
        raise RuntimeError(f"never {count} RUNNING replicas; last samples: {self.samples[-3:]}")

    def recovered_after(self, since: float, count: int) -> tuple[float | None, float | None]:
        """After ``since``: when fewer than ``count`` replicas were first RUNNING, and when ``count`` were
        RUNNING again after that (None where not seen)."""
        dropped = next((t for t, r in self.samples if t >= since and r.get("RUNNING", 0) < count), None)
        if dropped is None:
            return None, None
        back = next((t for t, r in self.samples if t > dropped and r.get("RUNNING", 0) >= count), None)
        return dropped, back

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class HaproxyLog:
    """HAProxy's own request log, sent to a UDP listener on loopback (``RAY_SERVE_HAPROXY_LOG_TARGET``
    = ``target``, set in the environment of the `sentinel serve` that starts the cluster): for each
    request, the server that answered, the status, the termination state (``SD--``: the server
    closed during the body, ``SH--``: before its headers, ``sC--``: the connection to it failed) and
    the retries (``+1``: replayed on another server). ``unusual()`` names what a failure met."""

    LINE = re.compile(r"\] http_frontend (?P<server>\S+) \S+ (?P<status>\d{3}) \d+ \S+ \S+ (?P<term>\S{4}) "
                      r"\d+/\d+/\d+/\d+/(?P<retries>\+?\d+) \S+ \"(?P<method>\S+) (?P<path>\S+)")

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.target = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.records: list[tuple[float, dict[str, str]]] = []
        self._halt = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self._halt.is_set():
            try:
                data = self.sock.recv(65535)
            except OSError:
                continue
            match = self.LINE.search(data.decode(errors="replace"))
            if match and match["path"].startswith("/recommend") and len(self.records) < 2_000_000:
                self.records.append((time.time(), match.groupdict()))

    def unusual(self, since: float = 0.0) -> dict[str, int]:
        """Requests after ``since`` that were not a plain 200, by status, termination state and whether
        HAProxy replayed them (the closing 400 CH-- of a load generator that hangs up left out)."""
        counts: dict[str, int] = {}
        for t, r in self.records:
            if t < since or (r["status"], r["term"]) == ("400", "CH--"):
                continue
            replayed = r["retries"].startswith("+")
            if r["status"] == "200" and r["term"] == "----" and not replayed:
                continue
            key = (f"{r['status']} {r['term']}{' replayed' if replayed else ''} "
                   f"via {'fallback proxy' if 'fallback' in r['server'] else 'replica'}")
            counts[key] = counts.get(key, 0) + 1
        return counts

    def stop(self) -> None:
        self._halt.set()
        self.sock.close()


def check_stopped(stopped, leader: int | None) -> None:
    """``sentinel serve stop -o json`` (``stopped``, a CompletedProcess) exited 0 and stopped it, and every
    process of the local Ray cluster led by ``leader`` ended."""
    from tests.support.processes import group_ended
    from tests.testenv.process import wait_for

    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["stopped"] is True
    assert leader is not None
    wait_for("the end of the local Ray cluster's processes", lambda: group_ended(leader), timeout_s=30)
