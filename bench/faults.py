"""Benchmark: faults survived (issue 16). Each scenario injects a real fault (SIGKILL of a real process)
into a real `sentinel` run and prints one row of figures. Not a test: run it by hand.

    python bench/faults.py [--only train,tune,rollout,replica-kill,stop-drain] [--epochs 5] [--kill-after 2]
                           [--seed 42] [--data PATH] [--concurrency 64] [--seconds 60]
                           [--repeat N] [--haproxy-log]

``--repeat N`` runs the chosen scenarios N times in a row and closes with a tally per serving case;
``--haproxy-log`` collects HAProxy's own request log and names, per case, every answer that was not a
plain 200 (its status, termination state, and whether HAProxy replayed it on another replica).

Scenarios (one function each, listed in SCENARIOS; add a row by adding one):
  train  `sentinel train --workers 2`: one Ray Train worker SIGKILLed after epoch --kill-after; the
         restarts and the epoch each resumed from, and the u1 test RMSE of that run minus an
         uninterrupted run with the same seed (target <= 0.005).
  tune   `sentinel tune` (mf, ASHA with rungs at 1, 2, 4, one trial at a time): the first trial's
         process SIGKILLed after its epoch --kill-after + 1; the study completes, and the trial's row
         shows the restart and the epoch it resumed from.

  rollout       `sentinel serve --checkpoint <other>` while wrk drives POST /recommend at --concurrency
                for --duration s, then an update that changes only the replica settings (1..2 -> 2..2):
                failed requests of each (target 0) and whether every answer after it comes from the
                new checkpoint (/recommend/model).
  replica-kill  2 replicas under wrk load: one `ray::ServeReplica:sentinel:MovieRecommender` process
                SIGKILLed; failed requests (target 0) and the seconds until serve.status() shows 2
                RUNNING replicas again.
  stop-drain    `sentinel serve stop` under load (a bounded asyncio client that records every request):
                requests sent before the stop that failed (target 0; resets named), then what the
                requests sent after it met.
The serving scenarios share one short `sentinel train` run (its best and last checkpoints).

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
if str(REPO) not in sys.path:  # `python bench/faults.py`: bench.serve's helpers are imported by package
    sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ml-100k.zip"
SENTINEL = [sys.executable, "-m", "sentinel_cli"]

TRAIN_WORKER = "RayTrainWorker"  # the proctitle of a Ray Train worker: ray::RayTrainWorker.…
TRIAL_ACTOR = "ImplicitFunc"  # the proctitle of a Tune function trial's actor: ray::ImplicitFunc.…
REPLICA = "ServeReplica:sentinel:MovieRecommender"  # a Serve replica's proctitle: ray::ServeReplica:<app>:<deployment>


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


# --- serving under load -----------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Wrk:
    """``wrk`` driving POST /recommend (random valid bodies; bench/serve.py's script) in the background,
    bounded by its duration; ``result()`` waits for it and parses its figures."""

    def __init__(self, url: str, workdir: Path, connections: int = 64, duration_s: float = 60.0) -> None:
        from bench.serve import wrk_command, wrk_script

        script = wrk_script(workdir / "recommend.lua", "recommend")
        self.duration_s = duration_s
        self.proc = subprocess.Popen(wrk_command(url, script, connections, duration_s), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)

    def result(self) -> dict:
        from bench.serve import wrk_result

        try:
            out, err = self.proc.communicate(timeout=self.duration_s + 60)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError("wrk did not finish in time") from None
        if self.proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({self.proc.returncode}): {err.strip()[-500:]}")
        return wrk_result(out)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# httpcore's messages for a connection closed before any byte of the response arrived, and for one
# closed after the status line and headers but before the whole body (a replica killed mid-answer:
# HAProxy had already passed the 200 on, so it cannot replay the request; its log says SD--).
UNANSWERED = "Server disconnected without sending a response"
HALF_ANSWERED = "peer closed connection without sending complete message body"


class RequestLoad:
    """A bounded asyncio client (httpx) keeping ``concurrency`` POST /recommend requests in flight; every
    request is recorded as (sent, done, outcome), outcome one of ok, status <code>, refused, reset,
    timeout. It stops by itself after ``duration_s`` or ``max_requests``, or when ``stop()`` is called.

    ``retry_unanswered``: send a request once more, on a new connection, when its connection was
    closed before a whole answer arrived: before any byte of it, or after the headers but before the
    whole body (RFC 9112 §9.3.1 allows a client to resend such an aborted request when it knows it is
    idempotent; every call of this API is). HAProxy closes a reused client connection unanswered, with
    no log line, when the replica's connection it reused dies before answering: its signal that it
    never processed the request and the client may send it again (haproxy/haproxy#1423, #3414). A
    replica killed after its headers left but before its body did cannot be replayed by HAProxy at
    all (the 200 is already on its way; HAProxy logs SD--): only the client can. ``client_retries``
    counts the resends; ``details`` counts every failure by its exception's text."""

    def __init__(self, url: str, concurrency: int = 64, duration_s: float = 60.0, max_requests: int = 200_000,
                 timeout_s: float = 30.0, retry_unanswered: bool = False) -> None:
        self.url, self.concurrency, self.duration_s = url, concurrency, duration_s
        self.max_requests, self.timeout_s, self.retry_unanswered = max_requests, timeout_s, retry_unanswered
        self.records: list[tuple[float, float, str]] = []
        self.details: dict[str, int] = {}
        self.resent: dict[str, int] = {}  # the resends by what the connection met: unanswered, half-answered
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._main, name="request-load", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        import asyncio

        asyncio.run(self._run())

    async def _run(self) -> None:
        import asyncio
        import random

        import httpx

        rng = random.Random(42)
        end = time.monotonic() + self.duration_s
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits) as client:
            async def worker() -> None:
                while not self._halt.is_set() and time.monotonic() < end and len(self.records) < self.max_requests:
                    body = {"user_id": rng.randint(1, 943), "movie_ids": [rng.randint(1, 1682) for _ in range(10)]}
                    sent = time.time()
                    error: Exception | None = None
                    try:
                        response = await self._post(client, body)
                        outcome = "ok" if response.status_code == 200 else f"status {response.status_code}"
                    except httpx.ConnectError as e:
                        outcome, error = "refused", e
                    except httpx.TimeoutException as e:
                        outcome, error = "timeout", e
                    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as e:
                        outcome, error = "reset", e
                    except httpx.HTTPError as e:
                        outcome, error = type(e).__name__, e
                    self.records.append((sent, time.time(), outcome))
                    if error is not None:
                        detail = f"{outcome}: {type(error).__name__}: {error}"
                        self.details[detail] = self.details.get(detail, 0) + 1
                    if outcome != "ok":
                        await asyncio.sleep(0.05)  # a refused connect returns at once: no busy loop

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _post(self, client, body: dict):
        import httpx

        try:
            return await client.post(self.url, json=body)
        except httpx.RemoteProtocolError as e:
            if not (self.retry_unanswered and (UNANSWERED in str(e) or HALF_ANSWERED in str(e))):
                raise
            kind = "unanswered" if UNANSWERED in str(e) else "half-answered"
            self.resent[kind] = self.resent.get(kind, 0) + 1
            return await client.post(self.url, json=body)

    @property
    def client_retries(self) -> int:
        return sum(self.resent.values())

    def stop(self, timeout_s: float = 60.0) -> list[tuple[float, float, str]]:
        """Stop sending; wait (bounded) for the requests in flight; every record."""
        self._halt.set()
        self._thread.join(timeout_s)
        return list(self.records)

    def wait(self) -> list[tuple[float, float, str]]:
        self._thread.join(self.duration_s + self.timeout_s + 30)
        return self.stop()


def outcomes(records: list[tuple[float, float, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, _, outcome in records:
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


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


class Served:
    """`sentinel serve` on a detached local Ray under its own $SENTINEL_HOME, on free loopback ports."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port, self.grpc_port = free_port(), free_port()
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


_MODEL: dict[str, tuple[str, str]] = {}


def serving_checkpoints(args: argparse.Namespace, tmp: Path) -> tuple[str, str]:
    """The best and last checkpoint of one short `sentinel train` run, trained once for every serving scenario."""
    if "model" not in _MODEL:
        run = Run(["train", "--epochs", "3", "--seed", str(args.seed), "--mlflow-uri", "off",
                   "-o", "json"], sentinel_env(tmp / "serving-model", args.data))
        code, out, err = run.finish()
        if code != 0:
            sys.exit(f"training the served model failed ({code}):\n{err[-3000:]}")
        checkpoints = json.loads(out)["checkpoints"]
        _MODEL["model"] = (checkpoints["best"], checkpoints["last"])
    return _MODEL["model"]


def _failed(result: dict) -> str:
    errors = ", ".join(f"{k} {v}" for k, v in result["errors"].items() if v)
    return f"failed {result['failed']} of {result['requests']}" + (f" ({errors})" if errors else "")


def _serving_env(args: argparse.Namespace, home: Path) -> dict[str, str]:
    env = sentinel_env(home, args.data)
    if args.haproxy_log is not None:
        env["RAY_SERVE_HAPROXY_LOG_TARGET"] = args.haproxy_log.target
    return env


def _haproxy_said(args: argparse.Namespace, since: float) -> list[str]:
    if args.haproxy_log is None:
        return []
    unusual = args.haproxy_log.unusual(since)
    return [f"  HAProxy's log: {', '.join(f'{k}: {v}' for k, v in sorted(unusual.items())) or 'every request a plain 200'}"]


def rollout(args: argparse.Namespace, home: Path) -> list[str]:
    first, second = serving_checkpoints(args, home.parent)
    served = Served(_serving_env(args, home))
    lines = []
    try:
        served.serve("--checkpoint", first, "--min-replicas", "1", "--max-replicas", "2")
        for label, update in (("checkpoint", ["--checkpoint", second, "--min-replicas", "1", "--max-replicas", "2"]),
                              ("replicas 1..2 -> 2..2", ["--checkpoint", second, "--min-replicas", "2",
                                                         "--max-replicas", "2"])):
            load_started = time.time()
            load = Wrk(served.url, home, args.concurrency, args.duration)
            time.sleep(min(5.0, args.duration / 4))
            started = time.monotonic()
            summary = served.serve(*update)
            took = time.monotonic() - started
            answers = served.models()
            result = load.result()
            new = sum(a == second for a in answers)
            args.tally.append((f"rollout ({label})", result["failed"], result["requests"]))
            kept = (served.keep_logs(args.keep_logs / f"{home.name}-{label.split()[0]}")
                    if result["failed"] and args.keep_logs else None)
            lines.append(f"rollout ({label}) under wrk c={args.concurrency} {args.duration:.0f}s: "
                         f"{_failed(result)} (target 0: {'met' if result['failed'] == 0 else 'NOT met'})")
            lines.append(f"  update took {took:.1f}s   replicas after {summary['replicas']}   answers from the new "
                         f"checkpoint {new}/{len(answers)}   {result['rps']:.0f} req/s p99 {result['p99_ms']:.0f} ms")
            lines += _haproxy_said(args, load_started) + ([f"  logs kept in {kept}"] if kept else [])
    finally:
        served.stop()
    return lines


def replica_kill(args: argparse.Namespace, home: Path) -> list[str]:
    checkpoint, _ = serving_checkpoints(args, home.parent)
    served = Served(_serving_env(args, home))
    duration = args.duration
    watch = None
    kept_logs = None
    try:
        served.serve("--checkpoint", checkpoint, "--min-replicas", "2", "--max-replicas", "2")
        watch = ReplicaWatch(served.env, duration + 60)
        watch.wait_running(2, 60)
        load_started = time.time()
        load = Wrk(served.url, home, args.concurrency, duration)
        time.sleep(min(10.0, duration / 4))  # steady load first; the rest of the run watches the recovery
        killed_at = time.time()
        pid = kill_one(served.leader(), REPLICA, pick=min)
        result = load.result()
        kept_logs = (served.keep_logs(args.keep_logs / home.name) if result["failed"] and args.keep_logs else None)
        dropped, back = watch.recovered_after(killed_at, 2)
        if back is None:  # the replica may still be starting when the load ends
            watch.wait_running(2, 60)
            dropped, back = watch.recovered_after(killed_at, 2)
    finally:
        if watch:
            watch.stop()
        served.stop()
    recovery = f"{back - killed_at:.1f}" if back else "not seen"
    noticed = f"{dropped - killed_at:.1f}" if dropped else "not seen"
    args.tally.append(("replica kill", result["failed"], result["requests"]))
    return [(f"replica kill (SIGKILL ray::{REPLICA} pid {pid}, 2 replicas, wrk c={args.concurrency} "
             f"{duration:.0f}s): {_failed(result)} (target 0: {'met' if result['failed'] == 0 else 'NOT met'})"),
            (f"  Serve noticed after {noticed}s   2 replicas RUNNING again after {recovery}s   "
             f"{result['rps']:.0f} req/s p99 {result['p99_ms']:.0f} ms"), *_haproxy_said(args, load_started),
            *([f"  logs kept in {kept_logs}"] if kept_logs else [])]


def drain_report(records: list[tuple[float, float, str]], stop_at: float) -> dict:
    """Requests sent before ``stop_at`` and after it. A request the server accepted must succeed
    (a reset or an error fails it); one whose connection was refused was never accepted: one sent
    just before ``stop_at`` may still meet the closed listener."""
    before = [r for r in records if r[0] < stop_at]
    after = [r for r in records if r[0] >= stop_at]
    return {"before": outcomes(before), "after": outcomes(after),
            "before_failed": sum(1 for r in before if r[2] not in ("ok", "refused")),
            "in_flight_at_stop": sum(1 for r in before if r[1] >= stop_at),
            "last_ok_s": max((r[1] for r in records if r[2] == "ok"), default=stop_at) - stop_at}


def stop_drain(args: argparse.Namespace, home: Path) -> list[str]:
    checkpoint, _ = serving_checkpoints(args, home.parent)
    served = Served(sentinel_env(home, args.data))
    served.serve("--checkpoint", checkpoint, "--min-replicas", "2", "--max-replicas", "2")
    load = RequestLoad(served.url, args.concurrency, duration_s=120)
    try:
        time.sleep(8)
        stop_at = time.time()
        stopped = served.stop()
        took = time.time() - stop_at
        time.sleep(1)
    finally:
        records = load.stop()
    report = drain_report(records, stop_at)
    return [(f"stop under load (asyncio client c={args.concurrency}): requests sent before the stop "
             f"{sum(report['before'].values())}, failed {report['before_failed']} (target 0: "
             f"{'met' if report['before_failed'] == 0 else 'NOT met'}) {report['before']}"),
            (f"  in flight when the stop began {report['in_flight_at_stop']}   last answer "
             f"{report['last_ok_s']:.1f}s after it   stop took {took:.1f}s   after the stop: {report['after']}   "
             f"{stopped['message']}")]


SCENARIOS: dict[str, Callable[[argparse.Namespace, Path], list[str]]] = {
    "train": train_worker_kill,
    "tune": tune_trial_kill,
    "rollout": rollout,
    "replica-kill": replica_kill,
    "stop-drain": stop_drain,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--kill-after", type=int, default=2, help="the epoch after which the process is killed")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--concurrency", type=int, default=64, help="serving scenarios: requests in flight")
    parser.add_argument("--seconds", "--duration", dest="duration", type=float, default=60.0,
                        help="serving scenarios: seconds of load in each (the rollout, the replica kill)")
    parser.add_argument("--repeat", type=int, default=1, help="run the chosen scenarios this many times in a "
                        "row; a closing tally gives each serving case's failed requests per run")
    parser.add_argument("--haproxy-log", action="store_true", help="serving scenarios: collect HAProxy's request "
                        "log (a UDP listener on loopback) and name the unusual answers of each case")
    parser.add_argument("--keep-logs", type=Path, default=None, help="serving scenarios: where to copy Serve's and "
                        "HAProxy's logs of a case that failed a request")
    args = parser.parse_args()
    args.tally = []
    args.haproxy_log = HaproxyLog() if args.haproxy_log else None
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    from sentinel_cli.backends.local.serving import HAPROXY_RETRIES

    retries = {k: os.environ.get(k, v) for k, v in HAPROXY_RETRIES.items()}
    print(f"faults: {', '.join(chosen)}  epochs={args.epochs} kill_after={args.kill_after} seed={args.seed} "
          f"seconds={args.duration:.0f} cpus={os.cpu_count()} load={', '.join(f'{x:.2f}' for x in os.getloadavg())}"
          f"  HAProxy {retries}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sentinel-faults-") as tmp:
        for run in range(1, args.repeat + 1):
            for name in chosen:
                if args.repeat > 1:
                    print(f"[run {run}/{args.repeat}, {time.strftime('%H:%M:%S')}] {name}", flush=True)
                for line in SCENARIOS[name](args, Path(tmp, f"{name}-{run}")):
                    print(line, flush=True)
                print(f"  load average after {name}: {', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if args.repeat > 1:
        for case in dict.fromkeys(label for label, _, _ in args.tally):
            runs = [(failed, requests) for label, failed, requests in args.tally if label == case]
            print(f"{case}: {len(runs)} runs, {sum(1 for f, _ in runs if f == 0)} with 0 failed; failed "
                  f"{sum(f for f, _ in runs)} of {sum(r for _, r in runs)} requests "
                  f"(per run: {', '.join(str(f) for f, _ in runs)})", flush=True)


if __name__ == "__main__":
    main()
