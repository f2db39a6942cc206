"""Load test of ``POST /recommend``: the Ray Serve application against a plain FastAPI baseline.

Both serve the same checkpoint on loopback: (a) the MovieRecommender application started exactly as
``sentinel serve`` starts it (detached local Ray, the settings in sentinel_cli/backends/local/serving.py),
(b) one plain FastAPI + uvicorn process with one forward pass per request. The load generator is
``wrk`` (``apt-get install wrk``; not needed by the test suite), one connection per concurrent
client, 10 random movie ids per request. Printed: requests/s, p50 and p99 latency, failed
requests (non-2xx and socket errors), the Serve/baseline ratios, and the targets at the highest
concurrency. Run from the repository root:

    .venv/bin/python bench/serve.py --checkpoint latest            # trains nothing: run `sentinel train` first
    .venv/bin/python bench/serve.py --duration 20 --concurrency 1,16,64,128

The bench runs its own Ray cluster under a temporary $SENTINEL_HOME and stops it at the end, so a
``sentinel serve`` you have running is left alone (use ports other than yours: --port/--baseline-port).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sentinel_ml.serving.api import (
    PredictRequest,
    PredictResponse,
    check_movies,
    check_user,
)

WRK_SCRIPT = r"""
math.randomseed(%(seed)d)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local ids = {}
  for i = 1, %(movies)d do ids[i] = math.random(1, 1682) end
  local body = string.format('{"user_id": %%d, "movie_ids": [%%s]}', math.random(1, 943), table.concat(ids, ","))
  return wrk.format(nil, nil, nil, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\n', summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99), e.connect, e.read, e.write,
    e.status, e.timeout))
end
"""

ROWS = ("baseline", "serve", "baseline again")
TARGET_RATIO = 0.5
TARGET_P99_MS = 250.0


def main() -> int:
    args = _parser().parse_args()
    if args.baseline_server:
        return _run_baseline_server(args)
    if not shutil.which("wrk"):
        print("error: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"load before: {_uptime()}")
    from sentinel_cli.backends.local import serving as local_serve
    from sentinel_ml.data.download import ensure_dataset
    from sentinel_ml.paths import storage_root
    from sentinel_ml.store.index import resolve_checkpoint

    uri, run_id = resolve_checkpoint(args.checkpoint, storage_root(args.storage))
    data = str(ensure_dataset(args.data))
    print(f"checkpoint: {uri}")
    work = Path(tempfile.mkdtemp(prefix="sentinel-bench-"))
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT % {"seed": 42, "movies": args.movies})
    for port in (args.port, args.baseline_port):
        if _port_taken(port):
            print(f"error: port {port} is in use; pass --port / --baseline-port", file=sys.stderr)
            return 2
    baseline = _start_baseline(uri, data, args.baseline_port, work)
    os.environ["SENTINEL_HOME"] = str(work / "home")  # the bench's own cluster, stopped at the end
    rows: dict[tuple[str, int], dict] = {}
    loads: dict[int, str] = {}
    try:
        started = time.monotonic()
        serve_env = dict(kv.split("=", 1) for kv in args.serve_env)
        app_args = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.app_arg)}
        from sentinel_ml.serving.config import ServeRequest

        summary = local_serve.start(
            ServeRequest(checkpoint=uri, data=data, port=args.port, app_args=app_args),
            on_progress=lambda m: print(f"  {m}", file=sys.stderr), cluster_env=serve_env)
        print(f"ray serve up in {time.monotonic() - started:.1f}s: {summary['url']} "
              f"extra settings {json.dumps(serve_env)} {json.dumps(app_args)}")
        targets = {"serve": f"http://127.0.0.1:{args.port}/recommend",
                   "baseline": f"http://127.0.0.1:{args.baseline_port}/recommend"}
        for c in levels:
            for url in targets.values():
                _wrk(url, script, c, args.warmup)  # warm connections, batch queues, autoscaling
            # baseline, serve, baseline again: the reference brackets the measurement in time, so a
            # neighbour's load that comes or goes during the level shows up instead of biasing the ratio
            for name, target in zip(ROWS, ("baseline", "serve", "baseline")):
                rows[(name, c)] = _wrk(targets[target], script, c, args.duration)
            loads[c] = _uptime().split("load average:")[-1].strip()
        replicas = local_serve.describe() or {}
    finally:
        try:
            local_serve.stop()
        finally:
            baseline.terminate()
            baseline.wait(timeout=30)
            shutil.rmtree(work, ignore_errors=True)
    _report(rows, levels, loads, replicas.get("replicas"))
    print(f"load after: {_uptime()}")
    return 0


def _wrk(url: str, script: Path, connections: int, duration_s: float) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", "10s", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    raw = json.loads(line[len("RESULT "):])
    failed = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {"rps": raw["requests"] / (raw["duration_us"] / 1e6), "p50_ms": raw["p50_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000, "requests": raw["requests"], "failed": failed}


def _report(rows: dict, levels: list[int], loads: dict[int, str], replicas) -> None:
    print()
    print(f"{'concurrency':>11}  {'target':<14}  {'req/s':>8}  {'p50 ms':>8}  {'p99 ms':>8}  {'requests':>8}  "
          f"{'failed':>6}")
    for c in levels:
        for name in ROWS:
            r = rows[(name, c)]
            print(f"{c:>11}  {name:<14}  {r['rps']:>8.1f}  {r['p50_ms']:>8.1f}  {r['p99_ms']:>8.1f}  "
                  f"{r['requests']:>8}  {r['failed']:>6}")
    print()
    print(f"{'concurrency':>11}  {'throughput serve/baseline':>25}  {'p99 serve/baseline':>18}  load average after")
    ratios = {c: _ratios(rows, c) for c in levels}
    for c in levels:
        throughput, p99 = ratios[c]
        print(f"{c:>11}  {throughput:>24.2f}x  {p99:>17.2f}x  {loads[c]}")
    top = max(levels)
    throughput, _ = ratios[top]
    p99_ms = rows[("serve", top)]["p99_ms"]
    failed = sum(r["failed"] for r in rows.values())
    print()
    print("baseline = the mean of the two baseline runs around each Serve run")
    print(f"serve replicas at the end: {replicas}")
    print(f"target at concurrency {top}: throughput >= {TARGET_RATIO}x baseline: "
          f"{throughput:.2f}x {'PASS' if throughput >= TARGET_RATIO else 'FAIL'}; "
          f"p99 <= {TARGET_P99_MS:.0f} ms: {p99_ms:.1f} ms {'PASS' if p99_ms <= TARGET_P99_MS else 'FAIL'}; "
          f"failed requests (all runs): {failed} {'PASS' if failed == 0 else 'FAIL'}")


def _ratios(rows: dict, c: int) -> tuple[float, float]:
    before, serve, after = (rows[(name, c)] for name in ROWS)
    baseline_rps = (before["rps"] + after["rps"]) / 2
    baseline_p99 = (before["p99_ms"] + after["p99_ms"]) / 2
    return serve["rps"] / baseline_rps, serve["p99_ms"] / baseline_p99


def _start_baseline(uri: str, data: str, port: int, work: Path) -> subprocess.Popen:
    log = (work / "baseline.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, __file__, "--baseline-server", "--checkpoint", uri, "--data", data,
         "--baseline-port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"baseline exited with {process.returncode}; see {work / 'baseline.log'}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.25)
    process.kill()
    raise SystemExit("baseline did not start within 120s")


def _run_baseline_server(args: argparse.Namespace) -> int:
    """(b): plain FastAPI + uvicorn, same model and contract, one forward pass per request."""
    import torch
    import uvicorn
    from fastapi import FastAPI

    from sentinel_ml.serving.recommender import Recommender

    torch.set_num_threads(1)
    model = Recommender.load(args.checkpoint, Path(args.data))
    app = FastAPI()

    @app.post("/recommend", response_model=PredictResponse)
    async def predict(request: PredictRequest) -> dict:
        check_user(request.user_id, model.num_users)
        check_movies(request.movie_ids, model.num_items)
        return {"user_id": request.user_id, "predictions": model.predict(request.user_id, request.movie_ids)}

    uvicorn.run(app, host="127.0.0.1", port=args.baseline_port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools")
    return 0


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="latest", help="latest, best, a run id or a URI")
    p.add_argument("--storage", default=None, help="checkpoint root (default: $SENTINEL_STORAGE or ~/.sentinel)")
    p.add_argument("--data", default=None, help="MovieLens source (default: $SENTINEL_DATA or download)")
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--duration", type=int, default=15, help="seconds measured per run")
    p.add_argument("--warmup", type=int, default=10, help="seconds of unmeasured load before each run")
    p.add_argument("--movies", type=int, default=10, help="movie ids per request")
    p.add_argument("--port", type=int, default=18000, help="Ray Serve HTTP port")
    p.add_argument("--baseline-port", type=int, default=18001)
    p.add_argument("--serve-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the bench's Ray cluster (to evaluate Serve settings)")
    p.add_argument("--app-arg", action="append", default=[], metavar="KEY=JSON",
                   help="ServeArgs override, e.g. max_replicas=2 or batch_wait_timeout_s=0.001")
    p.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    return p


if __name__ == "__main__":
    sys.exit(main())
