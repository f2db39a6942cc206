"""Benchmark: `sentinel train --epochs 5` (a), the same with --workers 2 (b), and a plain PyTorch
loop of the same model (c), in one run. Prints wall times, the ratios a/c and b/c, each one's u1 test
RMSE and the peak memory of a and b. Not a test: run it by hand.

    python bench/train.py [--epochs 5] [--repeat 1] [--data PATH]

Targets (issue 2): a/c <= 4, b/c <= 10, u1 test RMSE <= 0.93 for a and b, peak memory < 2 GiB.
The data cache and the MLflow store are warmed first, so every run measures the steady state.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procmem import PeakMemory  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ml-100k.zip"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, tuple[int, int], str]:
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakMemory(proc.pid) as memory:
        out, err = proc.communicate()
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, (memory.peak, memory.peak_process), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--data", default=os.environ.get("SENTINEL_DATA", str(DEFAULT_DATA)))
    parser.add_argument("--only", choices=("a", "b"), help="run the baseline and only this one")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="sentinel-bench-"))
    env = {**os.environ, "SENTINEL_HOME": str(home), "SENTINEL_DATA": args.data}
    for name in ("SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI", "RAY_ADDRESS"):
        env.pop(name, None)
    sentinel = str(Path(sys.executable).with_name("sentinel"))
    warm = (
        "from sentinel_ml.data.download import ensure_dataset; ensure_dataset()\n"
        "from sentinel_ml.tracking import Tracker, resolve_tracking_uri\n"
        "t = Tracker(resolve_tracking_uri()); t.close()\n"
    )
    subprocess.run([sys.executable, "-c", warm], env=env, check=True)

    runs = {
        "a: sentinel train": [sentinel, "train", "--epochs", str(args.epochs), "-o", "json"],
        "b: sentinel train --workers 2": [sentinel, "train", "--epochs", str(args.epochs),
                                           "--workers", "2", "-o", "json"],
        "c: plain PyTorch loop": [sys.executable, str(REPO / "bench" / "plain_loop.py"), str(args.epochs)],
    }
    if args.only:
        runs = {k: v for k, v in runs.items() if k[0] in (args.only, "c")}
    results: dict[str, dict] = {name: {"wall": [], "peak": 0, "process": 0, "rmse": None} for name in runs}
    try:
        for _ in range(args.repeat):
            for name, cmd in runs.items():
                wall, peak, out = timed(cmd, env)
                payload = json.loads(out)
                rmse = payload["metrics"]["test_rmse"] if "metrics" in payload else payload["test_rmse"]
                results[name]["wall"].append(wall)
                results[name]["peak"] = max(results[name]["peak"], peak[0])
                results[name]["process"] = max(results[name]["process"], peak[1])
                results[name]["rmse"] = rmse
    finally:
        shutil.rmtree(home, ignore_errors=True)

    baseline = statistics.median(results["c: plain PyTorch loop"]["wall"])
    print(f"epochs={args.epochs} repeat={args.repeat} cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
    print(f"{'run':34} {'wall s':>8} {'ratio':>7} {'u1 test RMSE':>13} {'peak MiB':>9} {'largest process MiB':>20}")
    for name, r in results.items():
        wall = statistics.median(r["wall"])
        print(f"{name:34} {wall:8.2f} {wall / baseline:7.2f} {r['rmse']:13.4f} {r['peak'] / 2**20:9.0f} "
              f"{r['process'] / 2**20:20.0f}")
    print("peak MiB: PSS summed over the whole process tree (driver, Ray daemons, actors, workers)")
    targets = {"a": 4, "b": 10}
    ratios = [f"{name[0]}/c = {statistics.median(r['wall']) / baseline:.2f} (target <= {targets[name[0]]})"
              for name, r in results.items() if name[0] in targets]
    print("   ".join(ratios))


if __name__ == "__main__":
    main()
