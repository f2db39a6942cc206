"""Benchmark: `sentinel tune --samples 20` with ASHA (a) and with FIFO (b, no early stopping), same seed
and search space, in one run. Prints each one's wall time, trial-epochs run, best val RMSE and that
checkpoint's u1 test RMSE, and the ratio a/b. Not a test: run it by hand.

    python bench/tune.py [--model autorec|mf] [--samples 20] [--max-epochs N] [--space FILE] [--seed 42] [--repeat 1]

Targets (issue 4): ASHA wall <= 0.4 x FIFO wall; ASHA's best val RMSE within 0.005 of FIFO's; the best
tuned model reaches u1 test RMSE <= 0.91. The data cache and the MLflow store are warmed first, and
each study is a fresh `sentinel` process (its own embedded Ray), so both pay the same start-up. The
machine's load drifts between the two studies; `--repeat N` alternates them N times and reports medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ml-100k.zip"


def study(sentinel: str, scheduler: str, args: argparse.Namespace, env: dict[str, str]) -> dict:
    cmd = [sentinel, "tune", "--model", args.model, "--scheduler", scheduler, "--samples", str(args.samples),
           "--seed", str(args.seed), "-o", "json"]
    if args.max_epochs:
        cmd += ["--max-epochs", str(args.max_epochs)]
    if args.space:
        cmd += ["--space", args.space]
    if args.concurrency:
        cmd += ["--concurrency", str(args.concurrency)]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout), "bench_wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("autorec", "mf"), default="autorec", help="as `sentinel tune`'s")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the model's")
    parser.add_argument("--space", default=None, help="search-space file for both studies")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--data", default=os.environ.get("SENTINEL_DATA", str(DEFAULT_DATA)))
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="sentinel-bench-tune-"))
    env = {**os.environ, "SENTINEL_HOME": str(home), "SENTINEL_DATA": args.data}
    for name in ("SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI", "RAY_ADDRESS"):
        env.pop(name, None)
    warm = (
        "from sentinel_ml.data.download import ensure_dataset; ensure_dataset()\n"
        "from sentinel_ml.tracking import Tracker, resolve_tracking_uri\n"
        "t = Tracker(resolve_tracking_uri()); t.close()\n"
    )
    subprocess.run([sys.executable, "-c", warm], env=env, check=True)
    sentinel = str(Path(sys.executable).with_name("sentinel"))
    load_before = os.getloadavg()[0]
    walls: dict[str, list[float]] = {"a: ASHA": [], "b: FIFO": []}
    phases: dict[str, list[dict[str, float]]] = {"a: ASHA": [], "b: FIFO": []}
    try:
        for _ in range(args.repeat):
            results = {"a: ASHA": study(sentinel, "asha", args, env), "b: FIFO": study(sentinel, "fifo", args, env)}
            for name, r in results.items():
                walls[name].append(r["bench_wall_s"])
                phases[name].append(r["phases"])
    finally:
        shutil.rmtree(home, ignore_errors=True)
    for name, r in results.items():  # same seed: the same trials each time; the wall time varies
        r["bench_wall_s"] = statistics.median(walls[name])
        r["phases"] = {k: statistics.median(p[k] for p in phases[name]) for k in r["phases"]}

    asha, fifo = results["a: ASHA"], results["b: FIFO"]
    print(f"model={args.model} samples={args.samples} max_epochs={asha['max_epochs']} seed={args.seed} "
          f"space={args.space or 'default'} repeat={args.repeat} cpus={os.cpu_count()} "
          f"load={load_before:.2f} (start) {os.getloadavg()[0]:.2f} (end)")
    print(f"{'study':10} {'wall s':>8} {'setup':>6} {'trials':>7} {'finish':>6} {'trial-epochs':>13} "
          f"{'stopped':>8} {'failed':>7} {'best val RMSE':>14} {'u1 test RMSE':>13}  best config")
    for name, r in results.items():
        config = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in r["best"]["config"].items())
        ph = r["phases"]
        print(f"{name:10} {r['bench_wall_s']:8.1f} {ph['setup_s']:6.1f} {ph['trials_s']:7.1f} {ph['finish_s']:6.1f} "
              f"{r['trial_epochs']:13d} {r['counts']['stopped early']:8d} "
              f"{r['counts']['failed']:7d} {r['metrics']['val_rmse']:14.4f} {r['metrics']['test_rmse']:13.4f}"
              f"  {config}")
    ratio = asha["bench_wall_s"] / fifo["bench_wall_s"]
    gap = asha["metrics"]["val_rmse"] - fifo["metrics"]["val_rmse"]
    if args.repeat > 1:
        pairs = "  ".join(f"{a:.1f}/{b:.1f}={a / b:.3f}" for a, b in zip(walls["a: ASHA"], walls["b: FIFO"]))
        print(f"each repeat, ASHA/FIFO wall s: {pairs}   (the table and ratio use the medians)")
    print(f"a/b wall = {ratio:.3f} (target <= 0.40)   "
          f"trial-epochs a/b = {asha['trial_epochs'] / fifo['trial_epochs']:.2f}   "
          f"best val RMSE a - b = {gap:+.4f} (target <= 0.005)   "
          f"u1 test RMSE of the best tuned model: ASHA {asha['metrics']['test_rmse']:.4f}, "
          f"FIFO {fifo['metrics']['test_rmse']:.4f} (target <= 0.91)")
    fixed = {name: r["bench_wall_s"] - r["phases"]["trials_s"] for name, r in results.items()}
    print(f"trials phase a/b = {asha['phases']['trials_s'] / fifo['phases']['trials_s']:.3f}   "
          f"fixed cost (wall - trials phase): ASHA {fixed['a: ASHA']:.1f} s, FIFO {fixed['b: FIFO']:.1f} s")


if __name__ == "__main__":
    main()
