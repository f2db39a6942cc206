"""Scale benchmark: `sentinel train` on synthetic data of growing size, against a plain PyTorch loop.

For each size (synthetic ratings at ML-25M's shape, scaled: 25M = 162,541 users x 59,047 items, 10M and
1M the same ratings per user and per item) it measures, in one run and side by side:

- ingest: `prepare` of the synthetic Parquet table (ids mapped, split, written as the prepared cache);
- `sentinel train --data DIR --workers N --epochs E -o json` for each N (a subprocess, as a user runs it):
  ratings/s of the first epoch (start-up and warm-up included) and the steady ratings/s (the median of
  the later epochs; each epoch's time includes its validation), peak RSS of each training worker and
  peak PSS of the whole process tree (the CLI, Ray's daemons, the workers), and the val RMSE;
- a plain single-process PyTorch loop of the same model on the same prepared data, in memory (the
  same optimizer rule, batch size, schedule and per-epoch validation; no Lightning, no Ray);

and the val RMSE against the noise floor that `sentinel data synth` wrote in `_synth.json`. It prints
every figure, the ratios and the targets of issue 25, and writes a PNG of ratings/s and memory against
dataset size (docs/img/scale.png). Not a test: run it by hand from the repository root.

    python bench/scale.py                       # 1m,10m,25m; 1 and 2 workers; 3 epochs
    python bench/scale.py --sizes 1m,10m --epochs 4
    python bench/scale.py --quick               # 100k ratings, 2 epochs: checks that it all runs

Generated data, the prepared cache and the runs' checkpoints live under one temporary directory
(``--tmp``, default /tmp) removed at the end.
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
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ML25M = (25_000_000, 162_541, 59_047)  # ratings, users, items
SIZES = {"100k": 100_000, "1m": 1_000_000, "3m": 3_000_000, "10m": 10_000_000, "25m": 25_000_000}
SPLIT, SEED = "random", 42
GIB = 2**30


def shape(ratings: int) -> tuple[int, int]:
    """Users and items for ``ratings`` at ML-25M's ratings per user and per item."""
    n, users, items = ML25M
    # At least 1,000 items, so a small size keeps room for heavy users (a user rates at most half of them).
    return max(20, round(users * ratings / n)), max(1000, round(items * ratings / n))


# ---------------------------------------------------------------- memory of a process tree, per process

def tree_memory(root: int, interval: float = 0.25):
    """A ``TreeMemory`` sampler (bench/procmem.py's ``Sampler``, imported once the path holds it)."""
    from procmem import Sampler, _children_map

    class TreeMemory(Sampler):
        """The tree's summed PSS (its peak) and each process's peak RSS and PSS with its command line,
        so the training workers can be picked out afterwards."""

        def __init__(self) -> None:
            super().__init__(interval)
            self.root, self.tree_pss = root, 0
            self.procs: dict[int, dict] = {}  # pid -> {"cmd", "rss", "pss"}

        def sample(self) -> None:
            _sample_tree(self, _children_map())

        def workers(self, local: bool) -> list[dict]:
            return _workers(self, local)

    return TreeMemory()


def _sample_tree(memory, children: dict[int, list[int]]) -> None:
    stack, total = [memory.root], 0
    while stack:
        pid = stack.pop()
        rss, pss = _rss_pss(pid)
        total += pss
        entry = memory.procs.get(pid)
        if entry is None:
            entry = memory.procs[pid] = {"cmd": _cmdline(pid), "rss": 0, "pss": 0}
        elif "TrainWorker" not in entry["cmd"]:  # Ray renames a worker once it runs its actor
            entry["cmd"] = _cmdline(pid) or entry["cmd"]
        entry["rss"], entry["pss"] = max(entry["rss"], rss), max(entry["pss"], pss)
        stack.extend(children.get(pid, []))
    memory.tree_pss = max(memory.tree_pss, total)


def _workers(memory, local: bool) -> list[dict]:
    """The training processes: the CLI itself in local mode, else Ray Train's worker actors."""
    if local:
        return [memory.procs[memory.root]] if memory.root in memory.procs else []
    return [p for p in memory.procs.values() if "RayTrainWorker" in p["cmd"]]


def _rss_pss(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return rss, pss


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) the live processes of ``root``'s tree have used so far."""
    from procmem import _children_map

    children, stack, ticks = _children_map(), [root], 0
    while stack:
        pid = stack.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
        stack.extend(children.get(pid, []))
    return ticks / os.sysconf("SC_CLK_TCK")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:300]
    except OSError:
        return ""


# ---------------------------------------------------------------- the runs

def _load() -> float:
    return round(os.getloadavg()[0], 2)


def run_timed(cmd: list[str], env: dict[str, str], *, local: bool = True) -> dict:
    """Run ``cmd``; its stdout (JSON), wall time, each stderr line's arrival time, and its memory."""
    load_before = _load()
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str, float]] = []  # (arrival s, line, the tree's CPU seconds then)

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append((time.monotonic() - started, line.rstrip(), tree_cpu_s(proc.pid)))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    with tree_memory(proc.pid) as memory:
        out = proc.stdout.read()
        proc.wait()
    reader.join()
    wall = time.monotonic() - started
    if proc.returncode != 0:
        tail = "\n".join(line for _, line, _ in lines[-40:])
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
    workers = memory.workers(local)
    return {"out": json.loads(out), "wall_s": wall, "lines": lines, "load": (load_before, _load()),
            "tree_pss": memory.tree_pss, "worker_rss": max((w["rss"] for w in workers), default=0),
            "worker_pss": max((w["pss"] for w in workers), default=0), "workers_seen": len(workers)}


def epoch_times(lines: list[tuple[float, str, float]]) -> tuple[list[float], list[float]]:
    """Each epoch's wall and CPU seconds (the whole tree's) from the CLI's progress lines
    (``epoch   2/3  train_loss …``); the first counts from the line that starts the training (Ray Train
    local mode or the worker group)."""
    start = next(((t, c) for t, line, c in lines if line.startswith("run ") or "training data:" in line),
                 (0.0, 0.0))
    marks = [start, *[(t, c) for t, line, c in lines if line.lstrip().startswith("epoch ")]]
    return ([b[0] - a[0] for a, b in zip(marks, marks[1:])], [b[1] - a[1] for a, b in zip(marks, marks[1:])])


def rates(train_rows: int, durations: list[float], cpu: list[float]) -> dict:
    """Ratings/s of the first epoch and the median of the later ones (steady), and ratings per CPU
    second of the steady epochs: what a core that ran only this would do, whatever else loads the
    machine."""
    first = train_rows / durations[0]
    later = slice(1, None) if len(durations) > 1 else slice(None)
    steady = statistics.median(train_rows / d for d in durations[later])
    per_cpu = statistics.median(train_rows / max(c, 1e-9) for c in cpu[later])
    return {"first_rps": first, "steady_rps": steady, "per_cpu_s": per_cpu, "epoch_s": durations, "cpu_s": cpu}


def plain_loop(data_dir: str, epochs: int, batch_size: int, lr: float | None) -> dict:
    """The baseline, in this process: the prepared split in memory, the same network and optimizer rule
    as `sentinel train` (``MFModule``), a plain loop, validation after each epoch."""
    import torch

    from sentinel_ml.data.batching import TensorBatches
    from sentinel_ml.data.prepared import prepare
    from sentinel_ml.data.source import DataSource
    from sentinel_ml.models.biased_mf import BiasedMF
    from sentinel_ml.models.evaluation import EVAL_BATCH_SIZE
    from sentinel_ml.models.module import RowAdam, sparse_gradients
    from sentinel_ml.training.config import Hyperparameters

    hp = Hyperparameters(**{"epochs": epochs, "batch_size": batch_size, "split": SPLIT, "seed": SEED,
                            **({"lr": lr} if lr else {})})
    torch.set_num_threads(1)
    torch.manual_seed(hp.seed)
    split = prepare(DataSource(data=data_dir), hp.split, hp.seed).load_split()
    net = BiasedMF(split.num_users, split.num_items, hp.embedding_dim, split.global_mean, split.scale)
    sparse = sparse_gradients(net)
    if sparse:
        net.use_sparse_gradients()
        optimizer = RowAdam(list(net.parameters()), lr=hp.lr)
    else:
        optimizer = torch.optim.Adam(net.parameters(), lr=hp.lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=hp.lr_decay)
    batches = TensorBatches(split.train, hp.batch_size, shuffle=True, seed=hp.seed)
    val = TensorBatches(split.val, EVAL_BATCH_SIZE)
    durations, cpu, val_rmse = [], [], []
    for _ in range(hp.epochs):
        started, started_cpu = time.monotonic(), time.process_time()
        for batch in batches:
            loss, _ = net.training_loss(batch, hp.regularization)  # the objective sentinel train minimizes
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        squared, count = 0.0, 0
        with torch.no_grad():
            for users, items, ratings in val:
                squared += float((net(users, items).clamp(*split.scale) - ratings).pow(2).sum())
                count += len(ratings)
        val_rmse.append((squared / count) ** 0.5)
        durations.append(time.monotonic() - started)
        cpu.append(time.process_time() - started_cpu)
    return {"epoch_s": durations, "cpu_s": cpu, "val_rmse": min(val_rmse), "val_history": val_rmse,
            "train_rows": len(split.train.ratings), "sparse": sparse}


def prepare_only(data_dir: str) -> dict:
    from sentinel_ml.data.prepared import prepare
    from sentinel_ml.data.source import DataSource

    started = time.monotonic()
    meta = prepare(DataSource(data=data_dir), SPLIT, SEED).meta
    return {"prepare_s": time.monotonic() - started, "counts": meta.counts, "users": meta.num_users,
            "items": meta.num_items}


def bench_size(name: str, args: argparse.Namespace, work: Path) -> dict:
    n = SIZES[name]
    users, items = shape(n)
    home = work / f"home-{name}"
    data = work / f"data-{name}"
    env = {**os.environ, "SENTINEL_HOME": str(home), "PYTHONPATH": str(REPO)}
    for key in ("SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI", "RAY_ADDRESS", "SENTINEL_TARGET", "SENTINEL_PROFILE"):
        env.pop(key, None)
    sentinel = str(Path(sys.executable).with_name("sentinel"))
    result: dict = {"size": name, "ratings": n, "users": users, "items": items}

    print(f"\n== {name}: {n:,} ratings, {users:,} users, {items:,} items (load {_load()})", file=sys.stderr)
    synth = run_timed([sentinel, "data", "synth", "--ratings", str(n), "--users", str(users), "--items", str(items),
                       "--seed", "0", "--dim", str(args.synth_dim), "--noise", str(args.noise), "--out", str(data),
                       "-o", "json"], env)
    manifest = json.loads((data / "_synth.json").read_text())
    result["synth_s"] = synth["wall_s"]
    result["noise_floor"] = manifest["noise_floor"]
    print(f"  synth {synth['wall_s']:.1f}s, noise floor {manifest['noise_floor']:.4f}", file=sys.stderr)

    ingest = run_timed([sys.executable, __file__, "--prepare-only", str(data)], env)
    result["ingest"] = {**ingest["out"], "wall_s": ingest["wall_s"], "tree_pss": ingest["tree_pss"],
                        "load": ingest["load"]}
    train_rows = ingest["out"]["counts"]["train"]
    result["train_rows"] = train_rows
    print(f"  ingest {ingest['out']['prepare_s']:.1f}s ({ingest['wall_s']:.1f}s with start-up), "
          f"train {train_rows:,} ratings", file=sys.stderr)

    plain_cmd = [sys.executable, __file__, "--plain", str(data), "--epochs", str(args.epochs),
                 "--batch-size", str(args.batch_size)] + (["--lr", str(args.lr)] if args.lr else [])
    plain = run_timed(plain_cmd, env)
    result["plain"] = {**rates(train_rows, plain["out"]["epoch_s"], plain["out"]["cpu_s"]), "val_rmse": plain["out"]["val_rmse"],
                       "sparse": plain["out"]["sparse"], "worker_rss": plain["worker_rss"],
                       "tree_pss": plain["tree_pss"], "wall_s": plain["wall_s"], "load": plain["load"]}
    print(f"  plain loop: steady {result['plain']['steady_rps']:,.0f} ratings/s, val RMSE "
          f"{plain['out']['val_rmse']:.4f} (load {plain['load'][1]})", file=sys.stderr)

    for workers in args.workers:
        cmd = [sentinel, "train", "--data", str(data), "--split", SPLIT, "--workers", str(workers),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--mlflow-uri", "off",
               "--ingestion", args.ingestion, "-o", "json"] + (["--lr", str(args.lr)] if args.lr else [])
        run = run_timed(cmd, env, local=workers == 1)
        durations, cpu = epoch_times(run["lines"])
        how = next((line.split("training data:", 1)[1].strip() for _, line, _ in run["lines"]
                    if "training data:" in line), "in-memory (local mode)")
        entry = {**rates(train_rows, durations, cpu), "val_rmse": run["out"]["metrics"]["val_rmse"],
                 "worker_rss": run["worker_rss"], "worker_pss": run["worker_pss"],
                 "workers_seen": run["workers_seen"], "tree_pss": run["tree_pss"], "wall_s": run["wall_s"],
                 "load": run["load"], "ingestion": how}
        result[f"w{workers}"] = entry
        print(f"  sentinel train --workers {workers} ({how}): steady {entry['steady_rps']:,.0f} ratings/s, "
              f"worker peak RSS {entry['worker_rss'] / GIB:.2f} GiB, tree {entry['tree_pss'] / GIB:.2f} GiB, "
              f"val RMSE {entry['val_rmse']:.4f} (load {run['load'][1]})", file=sys.stderr)
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    return result


# ---------------------------------------------------------------- report

def report(results: list[dict], args: argparse.Namespace) -> list[str]:
    cpus = os.cpu_count()
    lines = [f"MF dim 32, batch {args.batch_size}, {args.epochs} epochs, synth --dim {args.synth_dim} "
             f"--noise {args.noise}, split {SPLIT}; {cpus} CPUs; load (1-min) before/after each run in brackets",
             "",
             "| size | run | ingest s | epoch 1 ratings/s | steady ratings/s | per core | per CPU-s | vs plain | "
             "worker peak RSS GiB | tree peak PSS GiB | val RMSE | - floor | load |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        plain = r["plain"]["steady_rps"]
        runs = [("plain loop", r["plain"], 1)] + [(f"sentinel --workers {w}", r[f"w{w}"], w)
                                                  for w in args.workers if f"w{w}" in r]
        for label, e, cores in runs:
            ingest = f"{r['ingest']['prepare_s']:.1f}" if label == "plain loop" else ""
            lines.append(
                f"| {r['size']} | {label} | {ingest} | {e['first_rps']:,.0f} | {e['steady_rps']:,.0f} | "
                f"{e['steady_rps'] / cores:,.0f} | {e['per_cpu_s']:,.0f} | {e['steady_rps'] / plain:.2f} | {e['worker_rss'] / GIB:.2f} | "
                f"{e['tree_pss'] / GIB:.2f} | {e['val_rmse']:.4f} | {e['val_rmse'] - r['noise_floor']:+.4f} | "
                f"{e['load'][0]}/{e['load'][1]} |")
    lines += ["", "per core: steady ratings/s / workers; per CPU-s: ratings per CPU second the whole process "
              "tree used in a steady epoch (independent of what else loads the machine)", "", "Targets:"]
    by = {r["size"]: r for r in results}
    ten = by.get("10m") or (by.get(args.sizes[-1]) if args.quick else None)
    if ten and "w1" in ten:
        ratio = ten["w1"]["steady_rps"] / ten["plain"]["steady_rps"]
        lines.append(f"- 1 worker vs plain loop at {ten['size']}: {ratio:.2f}x (target >= 0.8): "
                     f"{'met' if ratio >= 0.8 else 'MISSED'}")
        lines.append(f"- ratings/s per core at {ten['size']} (1 worker): {ten['w1']['steady_rps']:,.0f} "
                     f"(target >= 1,000,000): {'met' if ten['w1']['steady_rps'] >= 1e6 else 'MISSED'}; "
                     f"per CPU second {ten['w1']['per_cpu_s']:,.0f}")
        if "w2" in ten:
            scale = ten["w2"]["steady_rps"] / ten["w1"]["steady_rps"]
            per_core = ten["w2"]["steady_rps"] / 2
            lines.append(f"- 2 workers vs 1 at {ten['size']}: {scale:.2f}x (target >= 1.6): "
                         f"{'met' if scale >= 1.6 else 'MISSED'}; per core with 2 workers {per_core:,.0f}")
    big = by.get("25m") or (by.get(args.sizes[-1]) if args.quick else None)
    if big and "w2" in big:
        peak = big["w2"]["worker_rss"] / GIB
        falls = "w1" in big and big["w2"]["worker_rss"] < big["w1"]["worker_rss"]
        lines.append(f"- each worker's peak at {big['size']} with 2 workers: {peak:.2f} GiB RSS (target <= 1.5): "
                     f"{'met' if peak <= 1.5 else 'MISSED'}; per-worker memory falls from 1 to 2 workers: "
                     f"{'yes' if falls else 'NO'}"
                     + (f" ({big['w1']['worker_rss'] / GIB:.2f} -> {peak:.2f} GiB)" if "w1" in big else ""))
    for r in results:
        gaps = {label: r[key]["val_rmse"] - r["noise_floor"] for label, key in
                [("plain", "plain")] + [(f"{w}w", f"w{w}") for w in args.workers if f"w{w}" in r]}
        shown = ", ".join(f"{k} {v:+.4f}" for k, v in gaps.items())
        lines.append(f"- val RMSE - noise floor ({r['noise_floor']:.4f}) at {r['size']}: {shown} (target <= 0.01): "
                     f"{'met' if max(gaps.values()) <= 0.01 else 'MISSED'}")
    return lines


def plot(results: list[dict], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sizes = [r["ratings"] for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = [("plain loop (1 process)", "plain")] + [(f"sentinel train --workers {w}", f"w{w}") for w in args.workers]
    for label, key in series:
        points = [(r["ratings"], r[key]["steady_rps"]) for r in results if key in r]
        left.plot(*zip(*points), marker="o", label=label)
        points = [(r["ratings"], r[key]["per_cpu_s"]) for r in results if key in r]
        left.plot(*zip(*points), marker="x", linestyle="--", color=left.lines[-1].get_color(),
                  label=f"{label}: per CPU second")
    left.axhline(1e6, color="grey", linestyle=":", label="1M ratings/s (per-core target)")
    left.set(xscale="log", xlabel="ratings in the dataset", ylabel="steady training ratings/s",
             title="Throughput (each epoch with its validation)")
    for label, key in series:
        points = [(r["ratings"], r[key]["worker_rss"] / GIB) for r in results if key in r]
        right.plot(*zip(*points), marker="o", label=f"{label}: a worker's peak RSS")
    for w in args.workers:
        points = [(r["ratings"], r[f"w{w}"]["tree_pss"] / GIB) for r in results if f"w{w}" in r]
        right.plot(*zip(*points), marker="x", linestyle="--", label=f"--workers {w}: process tree peak PSS")
    right.axhline(1.5, color="grey", linestyle=":", label="1.5 GiB per worker (target)")
    right.set(xscale="log", xlabel="ratings in the dataset", ylabel="GiB", title="Peak memory")
    for axis in (left, right):
        axis.set_xticks(sizes, [f"{s / 1e6:g}M" for s in sizes])
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    loads = [x for r in results for k in ("plain", *(f"w{w}" for w in args.workers)) if k in r for x in r[k]["load"]]
    fig.suptitle(f"Biased MF dim 32, batch {args.batch_size}, on {os.cpu_count()} shared cores, 1-min load "
                 f"{min(loads):g}-{max(loads):g} (synthetic ratings at ML-25M's shape)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1m,10m,25m", help=f"comma-separated, of: {', '.join(SIZES)}")
    p.add_argument("--workers", default="1,2", help="worker counts of `sentinel train`")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8192, help="global batch size of every run")
    p.add_argument("--lr", type=float, default=None, help="Adam's learning rate (default: mf's)")
    p.add_argument("--ingestion", default="auto", choices=("auto", "in-memory", "ray-data"))
    p.add_argument("--synth-dim", type=int, default=8, help="rank of the planted model")
    p.add_argument("--noise", type=float, default=0.8, help="noise of the planted model")
    p.add_argument("--quick", action="store_true", help="100k ratings, 2 epochs: a check that it runs")
    p.add_argument("--tmp", default="/tmp", help="where the generated data goes (removed at the end)")
    p.add_argument("--png", default=str(REPO / "docs" / "img" / "scale.png"))
    p.add_argument("--json", default=None, help="also write every figure here")
    p.add_argument("--plain", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--prepare-only", metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.plain:
        print(json.dumps(plain_loop(args.plain, args.epochs, args.batch_size, args.lr)))
        return 0
    if args.prepare_only:
        print(json.dumps(prepare_only(args.prepare_only)))
        return 0
    if args.quick:
        args.sizes, args.epochs = "100k", 2
    args.sizes = [s for s in args.sizes.split(",") if s]
    unknown = set(args.sizes) - set(SIZES)
    if unknown:
        p.error(f"unknown sizes {sorted(unknown)}: choose from {', '.join(SIZES)}")
    args.workers = [int(w) for w in args.workers.split(",")]
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # procmem
    work = Path(tempfile.mkdtemp(prefix="sentinel-scale-", dir=args.tmp))
    results = []
    try:
        for name in args.sizes:
            results.append(bench_size(name, args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(report(results, args)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    plot(results, args, Path(args.png))
    print(f"\nplot: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
