"""Peak memory of a process tree, sampled from /proc (Linux), for benchmarks.

Counts PSS (proportional set size): shared pages such as libtorch are split between the processes
that map them, so the sum over a tree of Ray workers is not inflated by each one's shared libraries.
"""

from __future__ import annotations

import threading
from pathlib import Path


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def tree_pss_bytes(root: int) -> tuple[int, int]:
    """(the tree's total PSS, the largest single process's PSS)."""
    children = _children_map()
    total, largest, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        pss = _pss_bytes(pid)
        total, largest = total + pss, max(largest, pss)
        stack.extend(children.get(pid, []))
    return total, largest


def _pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


class Sampler:
    """Calls ``sample()`` every ``interval`` seconds on a thread, from ``with`` entry to exit."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        raise NotImplementedError


class PeakMemory(Sampler):
    """Samples the tree's total PSS every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(interval)
        self.pid, self.peak, self.peak_process = pid, 0, 0

    def sample(self) -> None:
        total, largest = tree_pss_bytes(self.pid)
        self.peak, self.peak_process = max(self.peak, total), max(self.peak_process, largest)
