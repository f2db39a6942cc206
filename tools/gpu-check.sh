#!/usr/bin/env bash
# The one prepared check for a machine with an NVIDIA GPU (issue 26), under 10 minutes:
#   1. `sentinel train --gpus 1` end to end on the embedded Ray, and the same run on the CPU: their
#      test RMSE must agree within 0.005;
#   2. bench/gpu.py: steady ratings/s of Sentinel's training step, a plain PyTorch loop and a
#      torch.compile'd loop of the same model (ML-25M shape, dim 64), with the ratios.
# Self-contained: the data are synthetic (`sentinel data synth`), nothing is downloaded. It needs a
# Python with the project's dependencies (the lock's torch, a CUDA build, with Ray and Lightning):
# PYTHON=/path/to/python (default: .venv/bin/python, else python3). Figures go to stdout and, as JSON
# and logs, to $OUT (default: a temporary directory it names).
#
#   tools/gpu-check.sh                    # from the repository root
#   BENCH_ARGS="--ratings 10000000" tools/gpu-check.sh
set -euo pipefail

cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=$(command -v python3); fi
fi
OUT=${OUT:-$(mktemp -d -t sentinel-gpu-check-XXXXXX)}
RATINGS=${RATINGS:-1000000}   # the training run's table: ML-25M's ratings per user and per item
EPOCHS=${EPOCHS:-3}
TOLERANCE=0.005
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export SENTINEL_HOME="$OUT/home"
unset SENTINEL_STORAGE SENTINEL_MLFLOW_URI RAY_ADDRESS SENTINEL_PROFILE
mkdir -p "$OUT" "$SENTINEL_HOME"
sentinel() { "$PYTHON" -m sentinel_cli "$@"; }
say() { printf '== %s\n' "$*" >&2; }
fail() { printf 'gpu-check: %s\n' "$*" >&2; exit 1; }

say "machine"
command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: is this a GPU machine with NVIDIA's driver?"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
"$PYTHON" -c 'import torch, ray, lightning; assert torch.cuda.is_available(), "torch sees no CUDA device"; print("torch", torch.__version__, "CUDA", torch.version.cuda, "on", torch.cuda.get_device_name(0), "| ray", ray.__version__)' \
  || fail "$PYTHON lacks a CUDA torch, Ray or Lightning (PYTHON=... names another)"
sentinel train --help | grep -q -- '--gpus' \
  || fail "this tree's 'sentinel train' has no --gpus (issue 26 items 1-2 are not in it)"

say "data: $RATINGS synthetic ratings"
users=$(( RATINGS * 162541 / 25000000 )); items=$(( RATINGS * 59047 / 25000000 ))
items=$(( items < 1000 ? 1000 : items ))
timeout 120 "$PYTHON" -m sentinel_cli data synth --ratings "$RATINGS" --users "$users" --items "$items" \
  --out "$OUT/table" -o json > "$OUT/synth.json"

train() {  # $1: name; the rest: extra flags
  local name=$1; shift
  say "train ($name)"
  local started=$SECONDS
  timeout 240 "$PYTHON" -m sentinel_cli train --data "$OUT/table" --split random --epochs "$EPOCHS" --seed 42 \
    "$@" -o json > "$OUT/train-$name.json" 2> "$OUT/train-$name.log" \
    || { tail -20 "$OUT/train-$name.log" >&2; fail "sentinel train $* failed (log: $OUT/train-$name.log)"; }
  echo "$name: $(( SECONDS - started )) s" >&2
}
train cpu
train gpu --gpus 1

"$PYTHON" - "$OUT" "$TOLERANCE" <<'PY'
import json, sys
out, tolerance = sys.argv[1], float(sys.argv[2])
cpu, gpu = (json.load(open(f"{out}/train-{n}.json")) for n in ("cpu", "gpu"))
a, b = cpu["metrics"]["test_rmse"], gpu["metrics"]["test_rmse"]
print(f"test RMSE: cpu {a:.4f}, gpu {b:.4f}, difference {abs(a - b):.4f} (at most {tolerance})")
sys.exit(0 if abs(a - b) <= tolerance else f"gpu-check: the GPU run's RMSE differs from the CPU run's by {abs(a - b):.4f}")
PY
grep -qi 'cuda\|gpu' "$OUT/train-gpu.log" || say "note: the GPU run's log does not name the device it chose"

say "bench/gpu.py ${BENCH_ARGS:-}"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
timeout 330 "$PYTHON" bench/gpu.py --json "$OUT/bench-gpu.json" ${BENCH_ARGS:-} 2> "$OUT/bench-gpu.log" \
  || { tail -20 "$OUT/bench-gpu.log" >&2; fail "bench/gpu.py failed (log: $OUT/bench-gpu.log)"; }
say "done: figures in $OUT"
