"""Finding, inspecting and killing real processes through /proc (Linux): the faults the tests and
bench/faults.py inject are SIGKILLs of real Ray processes, found by their proctitle."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable

TRAIN_WORKER = "RayTrainWorker"  # the proctitle of a Ray Train worker: ray::RayTrainWorker.…
TRIAL_ACTOR = "ImplicitFunc"  # the proctitle of a Tune function trial's actor: ray::ImplicitFunc.…
REPLICA = "ServeReplica:sentinel:MovieRecommender"  # a Serve replica's proctitle: ray::ServeReplica:<app>:<deployment>


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first, then the parent's pid)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(entry)) is not None:
            parents[int(entry)] = int(fields[1])
    return parents


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (Ray's GCS, raylet and workers are below the driver that started them)."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def running_descendants(root: int) -> dict[int, str]:
    """The descendants of ``root`` that still run (zombies left out), with their command lines."""
    running = {}
    for pid in descendants(root):
        fields = _stat(pid)
        if fields is not None and fields[0] != "Z":
            running[pid] = cmdline(pid)
    return running


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def processes_named(root: int, marker: str) -> list[int]:
    """The descendants of ``root`` whose command line (Ray's proctitle ``ray::<Actor>.<method>``) names ``marker``."""
    return sorted(pid for pid in descendants(root) if cmdline(pid).startswith(f"ray::{marker}"))


def kill_one(root: int, marker: str, timeout: float = 60.0, pick: Callable[[list[int]], int] = max) -> int:
    """SIGKILL one process named ``marker`` below ``root`` (waiting up to ``timeout`` for one); its pid."""
    deadline = time.monotonic() + timeout
    while True:
        pids = processes_named(root, marker)
        if pids:
            pid = pick(pids)
            os.kill(pid, signal.SIGKILL)
            return pid
        if time.monotonic() > deadline:
            raise RuntimeError(f"no ray::{marker} process below pid {root} after {timeout:.0f}s")
        time.sleep(0.2)


def group_ended(pgid: int) -> str | None:
    """A check for ``tests.testenv.process.wait_for``: None once no process of group ``pgid`` runs."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return None
    return f"processes of group {pgid} still run"


def bytes_sent(pid: int, port: int) -> int:
    """Bytes that process ``pid`` has sent, and had acknowledged, on its TCP connections to loopback
    port ``port`` (the kernel's own count, read with iproute2's ``ss``)."""
    out = subprocess.run(["ss", "-tinpH", "state", "established", "dport", f"= :{port}"], capture_output=True,
                         text=True, check=True).stdout
    total = 0
    # ss prints each connection on two lines: its addresses and users:(("python",pid=…)), then its counters.
    for connection in re.split(r"\n(?=\S)", out):
        if f"pid={pid}," in connection and (acked := re.search(r"\bbytes_acked:(\d+)", connection)):
            total += int(acked[1])
    return total
