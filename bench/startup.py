"""How fast the CLI starts: `sentinel --help` against `ray --help` and a bare `import typer`, all
measured in this run, interleaved round by round so a neighbour's load hits each alike.

    python bench/startup.py [--rounds 15]

Prints each command's median and spread, the ratios, the machine's load average, and whether
`sentinel --help` loaded any heavy module (torch, ray, lightning, mlflow). Target: a median of at
most 0.15 s for `sentinel --help`.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
HEAVY = ("torch", "ray", "lightning", "mlflow", "pytorch_lightning")
COMMANDS = {
    "sentinel --help": [str(BIN / "sentinel"), "--help"],
    "ray --help": [str(BIN / "ray"), "--help"],
    "python -c 'import typer'": [sys.executable, "-c", "import typer"],
}
TARGET_S = 0.15


def _time(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run. CPU time (user + system of the child) moves far less than the
    wall time when other work shares the cores, so both are reported."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _heavy_modules_loaded() -> list[str]:
    probe = ("import sys; sys.argv = ['sentinel', '--help']\n"
             "from sentinel_cli.app import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return done.stderr.split()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    for argv in COMMANDS.values():  # warm the page cache and the bytecode
        _time(argv)
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, argv in COMMANDS.items():
            wall, cpu = _time(argv)
            walls[name].append(wall)
            cpus[name].append(cpu)
    print(f"rounds={args.rounds} cpus={os.cpu_count()} load={load:.2f} (start) {os.getloadavg()[0]:.2f} (end)")
    wall = {name: statistics.median(values) for name, values in walls.items()}
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    for name in COMMANDS:
        print(f"{name:28s} wall median {wall[name]:.3f} s (min {min(walls[name]):.3f}, "
              f"max {max(walls[name]):.3f})   CPU median {cpu[name]:.3f} s")
    typer_name = list(COMMANDS)[2]
    for what, medians in (("wall", wall), ("CPU", cpu)):
        print(f"{what}: sentinel --help / ray --help = {medians['sentinel --help'] / medians['ray --help']:.2f}   "
              f"sentinel --help / import typer = {medians['sentinel --help'] / medians[typer_name]:.2f}")
    print(f"sentinel --help wall median {wall['sentinel --help']:.3f} s, "
          f"CPU median {cpu['sentinel --help']:.3f} s (target <= {TARGET_S})")
    heavy = _heavy_modules_loaded()
    print(f"heavy modules loaded by sentinel --help: {', '.join(heavy) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
