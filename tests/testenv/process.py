"""Start, watch and stop the environment's local processes, always by pid.

Each process gets its own session (so a Ctrl-C in the terminal reaches only Python, which then
tears down in order) and a log file. Stopping sends SIGTERM, waits, then SIGKILLs. A pid read back
from a state file is signalled only while /proc says it still runs the recorded executable, so a
reused pid is never hit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

_GRACE_S = 10.0


class NotReady(RuntimeError):
    """A component did not become ready in time, or exited while we waited."""


@dataclass
class Process:
    name: str
    argv: list[str]
    log_path: Path
    pid: int
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    exe: str = ""  # what /proc shows it runs, when a launcher execs it (argv[0] otherwise)

    @property
    def program(self) -> str:
        return self.exe or self.argv[0]

    def exited(self) -> int | None:
        """The exit code if the process has ended, else None."""
        if self.popen is not None:
            return self.popen.poll()
        return None if _runs(self.pid, self.program) else -1

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)

    def to_state(self) -> dict[str, object]:
        return {"name": self.name, "argv": self.argv, "log": str(self.log_path), "pid": self.pid,
                "exe": self.exe}

    @classmethod
    def from_state(cls, data: dict[str, object]) -> Process:
        argv = [str(a) for a in data["argv"]]  # type: ignore[attr-defined]
        return cls(str(data["name"]), argv, Path(str(data["log"])), int(str(data["pid"])),
                   exe=str(data.get("exe") or ""))


def start(name: str, argv: list[str], log_dir: Path, env: dict[str, str], exe: str = "") -> Process:
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return Process(name, argv, log_path, popen.pid, popen, exe)


def stop(process: Process, grace_s: float = _GRACE_S) -> None:
    """End one process: SIGTERM, then SIGKILL after ``grace_s``."""
    if process.popen is not None:
        _stop_child(process.popen, grace_s)
    elif _runs(process.pid, process.program):
        _stop_foreign(process.pid, process.program, grace_s)


def _stop_child(popen: subprocess.Popen[bytes], grace_s: float) -> None:
    if popen.poll() is not None:
        return
    popen.terminate()
    try:
        popen.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


def _stop_foreign(pid: int, exe: str, grace_s: float) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _runs(pid, exe):
            return
        time.sleep(0.1)
    if _runs(pid, exe):
        os.kill(pid, signal.SIGKILL)


def _runs(pid: int, exe: str) -> bool:
    """Whether ``pid`` is a live (non-zombie) process started from ``exe``."""
    proc = Path("/proc") / str(pid)
    try:
        cmdline = (proc / "cmdline").read_bytes().split(b"\0", 1)[0].decode()
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return cmdline == exe and state != "Z"


def wait_for(
    what: str,
    check: Callable[[], str | None],
    timeout_s: float,
    watch: Sequence[Process] = (),
    interval_s: float = 0.2,
) -> None:
    """Poll ``check`` until it returns None (ready); otherwise it returns why it is not ready.

    Fails at once when a watched process exits, and after ``timeout_s`` with the last reason.
    """
    deadline = time.monotonic() + timeout_s
    reason = "not checked yet"
    while True:
        for process in watch:
            code = process.exited()
            if code is not None:
                raise NotReady(
                    f"{process.name} exited with code {code} while waiting for {what}; "
                    f"last lines of {process.log_path}:\n{process.log_tail()}"
                )
        try:
            result = check()
        except Exception as error:  # noqa: BLE001 - any failure is a reason to keep waiting
            result = f"{type(error).__name__}: {error}"
        if result is None:
            return
        reason = result
        if time.monotonic() >= deadline:
            logs = "".join(
                f"\nlast lines of {p.log_path}:\n{p.log_tail()}" for p in watch
            )
            raise NotReady(f"{what} not ready after {timeout_s:.0f} s: {reason}{logs}")
        time.sleep(interval_s)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (a CI timeout, `kill`) into KeyboardInterrupt while inside, so the same
    clean-up as for Ctrl-C runs: atexit and finalizers do not run when SIGTERM kills Python."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
