"""Benchmark: faults survived (issue 16). Each scenario injects a real fault (SIGKILL of a real process)
into a real `sentinel` run and prints one row of figures. Not a test: run it by hand.

    python bench/faults.py [--only train,tune,rollout,replica-kill,stop-drain,canary] [--epochs 5] [--kill-after 2]
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
  canary        under wrk at --concurrency (from 5 s before each transition to 5 s after it, at least
                --seconds): `serve --checkpoint <last> --canary 50` beside <best>,
                `serve promote`, then a candidate failing every request on purpose
                (--dev-canary-fault-rate 1) watched by `serve promote --auto`: failed requests of each
                (target 0) and the time from the failing candidate's start to the incumbent alone.
The serving scenarios share one short `sentinel train` run (its best and last checkpoints).

The helpers that run `sentinel`, drive load and find and kill processes live in tests/support/ (cli, load,
wrk, serving, processes), shared with tests/test_faults.py and tests/serving/test_faults_serving.py: the
bench imports them from there, never the reverse.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/faults.py`: the helpers are imported by package, from tests.support
    sys.path.insert(0, str(REPO))

from tests.support.cli import Run, sentinel_env  # noqa: E402 - after the path above
from tests.support.load import RequestLoad, drain_report  # noqa: E402
from tests.support.processes import REPLICA, TRAIN_WORKER, TRIAL_ACTOR, kill_one  # noqa: E402
from tests.support.serving import HaproxyLog, ReplicaWatch, Served  # noqa: E402
from tests.support.wrk import Wrk  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "ml-100k.zip"


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


def canary(args: argparse.Namespace, home: Path) -> list[str]:
    """The canary's three transitions, each under wrk at --concurrency: its start (the last checkpoint
    for 50% of users beside the best), its promotion, and an automatic rollback of a candidate that
    fails every request (the dev-only --dev-canary-fault-rate), with the time from the first failing
    answer to the incumbent serving alone."""
    first, second = serving_checkpoints(args, home.parent)
    served = Served(_serving_env(args, home))
    lines: list[str] = []

    def under_load(label: str, action: Callable[[], str]) -> None:
        # wrk runs until 5 s after the transition ended (at least --seconds), then stops as Ctrl-C does.
        load = Wrk(served.url, home, args.concurrency, 1200)
        began = time.monotonic()
        time.sleep(5.0)
        started = time.monotonic()
        said = action()
        took = time.monotonic() - started
        time.sleep(max(5.0, args.duration - (time.monotonic() - began)))
        result = load.finish_now()
        args.tally.append((f"canary {label}", result["failed"], result["requests"]))
        lines.append(f"canary {label} under wrk c={args.concurrency} {time.monotonic() - began:.0f}s: {_failed(result)} "
                     f"(target 0: {'met' if result['failed'] == 0 else 'NOT met'})")
        lines.append(f"  took {took:.1f}s   {said}   {result['rps']:.0f} req/s p99 {result['p99_ms']:.0f} ms")

    def start() -> str:
        summary = served.serve("--checkpoint", second, "--canary", "50")
        return f"candidate version {summary['canary']['model_version']} beside {summary['model_version']}"

    def promote() -> str:
        done = served.cli("serve", "promote", "-o", "json")
        if done.returncode != 0:
            sys.exit(f"serve promote failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return f"now serving version {json.loads(done.stdout)['model_version']} alone"

    def auto_rollback() -> str:
        served.serve("--checkpoint", first, "--canary", "50", "--dev-canary-fault-rate", "1")
        failing = time.monotonic()  # the candidate's replicas answer (and fail) from here on
        done = served.cli("serve", "promote", "--auto", "--window", "120s", "--interval", "1s", "-o", "json")
        rolled = time.monotonic() - failing
        verdict = json.loads(done.stdout) if done.stdout.strip() else {}
        if done.returncode != 1 or verdict.get("decision") != "rollback":
            sys.exit(f"the automatic watch did not roll back ({done.returncode}):\n{done.stderr[-3000:]}")
        return (f"from the failing candidate's start to the incumbent alone {rolled:.1f}s (the watch's "
                f"breach reading to the rollback done {verdict['breach_to_rollback_s']:.1f}s); "
                f"breach: {verdict['reason']}")

    try:
        served.serve("--checkpoint", first, "--min-replicas", "2", "--max-replicas", "2")
        under_load("start", start)
        under_load("promote", promote)
        under_load("auto rollback", auto_rollback)
    finally:
        served.stop()
    return lines


SCENARIOS: dict[str, Callable[[argparse.Namespace, Path], list[str]]] = {
    "train": train_worker_kill,
    "tune": tune_trial_kill,
    "rollout": rollout,
    "replica-kill": replica_kill,
    "stop-drain": stop_drain,
    "canary": canary,
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
