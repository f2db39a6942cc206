"""A `sentinel` command as a user runs it: a subprocess in the background with its own environment."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SENTINEL = [sys.executable, "-m", "sentinel_cli"]


class Run:
    """A `sentinel` command in the background: stderr read line by line (``wait_for``), stdout kept."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([*SENTINEL, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._out: list[str] = []
        self._eof = False
        self._readers = [threading.Thread(target=self._read_err, daemon=True),
                         threading.Thread(target=lambda: self._out.append(self.proc.stdout.read()), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 300.0) -> str:
        """The first stderr line matching ``pattern`` (a regex), waiting for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    break
                self._cond.wait(min(left, 1.0))
        raise RuntimeError(f"no stderr line matching {pattern!r}; the last lines:\n" + "\n".join(self.lines[-20:]))

    def finish(self, timeout: float = 600.0) -> tuple[int, str, str]:
        """Exit code, stdout and stderr once the command ends (and both pipes are read to their end)."""
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=30)
            if reader.is_alive():
                raise RuntimeError("the command ended but its output was not read to its end in 30 s")
        return code, "".join(self._out), "\n".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def sentinel_env(home: Path, data: Path) -> dict[str, str]:
    """This process's environment for a `sentinel` run of its own: ``home`` as $SENTINEL_HOME, ``data``
    as its dataset, and no storage, tracking, target or Ray address from outside."""
    env = dict(os.environ, SENTINEL_HOME=str(home), SENTINEL_DATA=str(data), COLUMNS="160")
    for name in ("SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI", "SENTINEL_TARGET", "RAY_ADDRESS"):
        env.pop(name, None)
    return env
