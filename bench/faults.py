"""Benchmark: faults survived (issue 16). Each scenario injects a real fault (SIGKILL of a real process)
into a real `sentinel` run and prints one row of figures. Not a test: run it by hand.

    python bench/faults.py [--only train,tune] [--epochs 5] [--kill-after 2] [--seed 42] [--data PATH]

Scenarios (one function each, listed in SCENARIOS; add a row by adding one):
  train  `sentinel train --workers 2`: one Ray Train worker SIGKILLed after epoch --kill-after; the
         restarts and the epoch each resumed from, and the u1 test RMSE of that run minus an
         uninterrupted run with the same seed (target <= 0.005).
  tune   `sentinel tune` (mf, ASHA with rungs at 1, 2, 4, one trial at a time): the first trial's
         process SIGKILLed after its epoch --kill-after + 1; the study completes, and the trial's row
         shows the restart and the epoch it resumed from.

The helpers that find and kill processes (`descendants`, `processes_named`, `kill_one`) are shared with
tests/test_faults.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ml-100k.zip"
SENTINEL = [sys.executable, "-m", "sentinel_cli"]

TRAIN_WORKER = "RayTrainWorker"  # the proctitle of a Ray Train worker: ray::RayTrainWorker.…
TRIAL_ACTOR = "ImplicitFunc"  # the proctitle of a Tune function trial's actor: ray::ImplicitFunc.…


# --- finding and killing real processes ------------------------------------------------------------


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
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


class Run:
    """A `sentinel` command in the background: stderr read line by line (``wait_for``), stdout kept."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([*SENTINEL, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._out: list[str] = []
        self._eof = False
        threading.Thread(target=self._read_err, daemon=True).start()
        threading.Thread(target=lambda: self._out.append(self.proc.stdout.read()), daemon=True).start()

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
        """Exit code, stdout and stderr once the command ends."""
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.2)
        return code, "".join(self._out), "\n".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def sentinel_env(home: Path, data: Path) -> dict[str, str]:
    env = dict(os.environ, SENTINEL_HOME=str(home), SENTINEL_DATA=str(data), COLUMNS="160")
    for name in ("SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI", "SENTINEL_TARGET", "RAY_ADDRESS"):
        env.pop(name, None)
    return env


# --- scenarios ------------------------------------------------------------------------------------


def train_worker_kill(args: argparse.Namespace, home: Path) -> list[str]:
    env = sentinel_env(home, args.data)
    common = ["train", "--workers", "2", "--epochs", str(args.epochs), "--seed", str(args.seed),
              "--mlflow-uri", "off", "-o", "json"]
    started = time.monotonic()
    clean = Run(common, env)
    code, out, err = clean.finish()
    if code != 0:
        sys.exit(f"uninterrupted run failed ({code}):\n{err[-3000:]}")
    clean_wall = time.monotonic() - started
    baseline = json.loads(out)

    started = time.monotonic()
    run = Run(common, env)
    run.wait_for(rf"^epoch\s+{args.kill_after}/{args.epochs}\b")
    pid = kill_one(run.proc.pid, TRAIN_WORKER)
    code, out, err = run.finish()
    wall = time.monotonic() - started
    if code != 0:
        sys.exit(f"interrupted run failed ({code}):\n{err[-3000:]}")
    result = json.loads(out)
    restarts = result["restarts"]
    resumed = ", ".join(str(r["resumed_from_epoch"]) for r in restarts) or "-"
    diff = result["metrics"]["test_rmse"] - baseline["metrics"]["test_rmse"]
    return [
        f"train --workers 2 --epochs {args.epochs}: SIGKILL Ray Train worker pid {pid} after epoch {args.kill_after}",
        f"  restarts {len(restarts)}   resumed from epoch {resumed}   lost: {restarts[0]['lost'] if restarts else '-'}",
        (f"  u1 test RMSE interrupted {result['metrics']['test_rmse']:.4f}   uninterrupted "
         f"{baseline['metrics']['test_rmse']:.4f}   difference {diff:+.4f} (target <= 0.005: "
         f"{'met' if abs(diff) <= 0.005 else 'NOT met'})"),
        f"  wall s interrupted {wall:.1f}   uninterrupted {clean_wall:.1f}",
    ]


def tune_trial_kill(args: argparse.Namespace, home: Path) -> list[str]:
    env = sentinel_env(home, args.data)
    # Killed one epoch after --kill-after: the checkpoint of that epoch (an ASHA rung, with the resume
    # state) has been taken in by then; Tune registers it after the result that carries it is reported.
    kill_after = args.kill_after + 1
    epochs = max(args.epochs, kill_after + 2)
    run = Run(["tune", "--model", "mf", "--samples", "2", "--max-epochs", str(epochs), "--scheduler", "asha",
               "--grace-period", "1", "--reduction-factor", "2", "--concurrency", "1", "--seed", str(args.seed),
               "--mlflow-uri", "off", "-o", "json"], env)
    started = time.monotonic()
    line = run.wait_for(rf"^trial \S+ epoch\s+{kill_after}/{epochs}\b")
    pid = kill_one(run.proc.pid, TRIAL_ACTOR)
    code, out, err = run.finish()
    wall = time.monotonic() - started
    if code != 0:
        sys.exit(f"study failed ({code}):\n{err[-3000:]}")
    result = json.loads(out)
    killed = line.split()[1]
    trial = next(t for t in result["trials"] if t["trial_id"] == killed)
    resumed = ", ".join(str(e) for e in trial["resumed_from_epochs"]) or "-"
    return [
        (f"tune (mf, 2 trials, asha, one at a time): SIGKILL trial {killed}'s process pid {pid} after epoch "
         f"{kill_after}"),
        (f"  trial {killed}: state {trial['state']}   restarts {trial['restarts']}   resumed from epoch {resumed}   "
         f"epochs {trial['epochs']}"),
        (f"  study: {', '.join(f'{n} {s}' for s, n in result['counts'].items())}   best val RMSE "
         f"{result['metrics']['val_rmse']:.4f}   wall s {wall:.1f}"),
    ]


SCENARIOS: dict[str, Callable[[argparse.Namespace, Path], list[str]]] = {
    "train": train_worker_kill,
    "tune": tune_trial_kill,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--kill-after", type=int, default=2, help="the epoch after which the process is killed")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    print(f"faults: {', '.join(chosen)}  epochs={args.epochs} kill_after={args.kill_after} seed={args.seed} "
          f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sentinel-faults-") as tmp:
        for name in chosen:
            for line in SCENARIOS[name](args, Path(tmp, name)):
                print(line, flush=True)


if __name__ == "__main__":
    main()
