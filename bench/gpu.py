"""GPU benchmark: biased MF at dim 64 on a synthetic ML-25M-shaped table (162,541 users x 59,047 items,
`sentinel_ml.data.synth`), steady ratings/s of three loops of the same model on the same device, in one
run, with the ratios:

- a: Sentinel's training step: `MFModule` (the network, its loss and optimizer rule: sparse gradients
  with `RowAdam` above `SPARSE_MIN_ROWS`) under a Lightning Trainer on the device, fed by `TensorBatches`
  as `training/loop.py` feeds it (batches on the host, moved to the device by Lightning);
- b: a plain PyTorch loop of the same network and optimizer, with the training part already on the
  device (batches indexed there);
- c: b with the loss `torch.compile`d.

Steady: the steps after `--warmup` steps (the first ones pay for CUDA's and the compiler's start-up),
timed with the device synchronized at both ends. Goals (issue 26, on an H100): a/b >= 0.9 and a >= 120M
ratings/s (a plain loop measured 99M ratings/s there, a compiled one 163M).

    python bench/gpu.py                            # CUDA, 25M ratings, batch 65,536
    python bench/gpu.py --small --device cpu       # 200k ratings at the same shape ratio: runs anywhere

Not a test: run it by hand (tools/gpu-check.sh runs it on a GPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ML25M = (25_000_000, 162_541, 59_047)  # ratings, users, items
SMALL = 200_000
SPLIT, SEED = "random", 42


def shape(ratings: int) -> tuple[int, int]:
    """Users and items for ``ratings``: ML-25M's own at 25M, scaled down (ratings per user and per
    item kept) below it, at least 1,000 items."""
    n, users, items = ML25M
    if ratings >= n:
        return users, items
    return max(20, round(users * ratings / n)), max(1000, round(items * ratings / n))


def load(ratings: int, tmp: Path):
    """The prepared training split of a synthetic table (``sentinel data synth`` + the prepare cache)."""
    from sentinel_ml.data.prepared import prepare
    from sentinel_ml.data.source import DataSource
    from sentinel_ml.data.synth import SynthSpec, synthesize

    users, items = shape(ratings)
    started = time.perf_counter()
    synthesize(SynthSpec(ratings=ratings, users=users, items=items, seed=SEED), str(tmp / "table"))
    split = prepare(DataSource(data=str(tmp / "table")), SPLIT, SEED, cache_dir=tmp / "cache").load_split()
    print(f"data: {ratings:,} ratings, {split.num_users:,} users x {split.num_items:,} items, "
          f"{len(split.train.ratings):,} training ratings; made in {time.perf_counter() - started:.0f} s", flush=True)
    return split


def model_config(split, dim: int, batch_size: int):
    from sentinel_ml.models.config import ModelConfig
    from sentinel_ml.training.config import Hyperparameters

    hp = Hyperparameters(embedding_dim=dim, batch_size=batch_size, split=SPLIT, seed=SEED)
    return ModelConfig.for_data(hp, num_users=split.num_users, num_items=split.num_items,
                                global_mean=split.global_mean, scale=split.scale)


class Window:
    """Seconds and ratings of the steps after the warm-up, the device synchronized at both ends."""

    def __init__(self, device, warmup: int, steps: int) -> None:
        self.device, self.warmup, self.steps = device, warmup, steps
        self.started = self.seconds = None
        self.ratings = 0

    def step(self, index: int, rows: int) -> bool:
        """Call after step ``index`` (0-based) of ``rows`` ratings; False once the window is complete."""
        if index == self.warmup - 1:
            _sync(self.device)
            self.started = time.perf_counter()
        elif index >= self.warmup:
            self.ratings += rows
            if index == self.warmup + self.steps - 1:
                _sync(self.device)
                self.seconds = time.perf_counter() - self.started
                return False
        return True

    @property
    def rate(self) -> float:
        return self.ratings / self.seconds


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sentinel_step(split, config, device, warmup: int, steps: int) -> Window:
    """a: MFModule under Lightning on ``device``, fed as training/loop.py feeds it."""
    import lightning.pytorch as pl
    import torch

    from sentinel_ml.data.batching import TensorBatches
    from sentinel_ml.models.module import MFModule

    torch.manual_seed(SEED)
    window = Window(device, warmup, steps)

    class Timer(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            if not window.step(trainer.global_step - 1, len(batch[0])):
                trainer.should_stop = True

    module = MFModule(config, split.train)
    batches = TensorBatches(split.train, config.batch_size, shuffle=True, seed=SEED)
    trainer = pl.Trainer(accelerator=device.type, devices=1, max_steps=warmup + steps, max_epochs=-1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                         callbacks=[Timer()])
    trainer.fit(module, train_dataloaders=batches)
    return window


def plain_loop(split, config, device, warmup: int, steps: int, compiled: bool) -> Window:
    """b (and c, compiled): the same network and optimizer rule, the data on the device."""
    import torch

    from sentinel_ml.models.biased_mf import BiasedMF
    from sentinel_ml.models.module import RowAdam, sparse_gradients

    torch.manual_seed(SEED)
    net = BiasedMF(split.num_users, split.num_items, config.embedding_dim, split.global_mean, split.scale)
    if sparse_gradients(net):
        net.use_sparse_gradients()
        optimizer = RowAdam(list(net.parameters()), lr=config.lr)
    else:
        optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    net.to(device)
    train = split.train
    users = torch.from_numpy(train.users).long().to(device)
    items = torch.from_numpy(train.items).long().to(device)
    ratings = torch.from_numpy(train.ratings).float().to(device)

    def loss_of(u, i, r):
        return net.training_loss((u, i, r), config.regularization)[0]

    step_loss = torch.compile(loss_of) if compiled else loss_of
    window = Window(device, warmup, steps)
    generator = torch.Generator(device=device).manual_seed(SEED)
    index, n = 0, len(ratings)
    while True:
        order = torch.randperm(n, device=device, generator=generator)
        for start in range(0, n, config.batch_size):
            rows = order[start:start + config.batch_size]
            loss = step_loss(users[rows], items[rows], ratings[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if not window.step(index, len(rows)):
                return window
            index += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=ML25M[0])
    parser.add_argument("--small", action="store_true", help=f"{SMALL:,} ratings: a smoke check on any machine")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--warmup", type=int, default=20, help="steps not timed (start-up, compilation)")
    parser.add_argument("--steps", type=int, default=200, help="steps timed")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--tmp", default=tempfile.gettempdir())
    args = parser.parse_args()
    if args.small:
        args.ratings = SMALL
        args.batch_size = min(args.batch_size, 4096)
        args.warmup, args.steps = min(args.warmup, 3), min(args.steps, 10)

    import logging

    import torch

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # its tips and device banners
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: torch.cuda.is_available() is False (use --device cpu --small to smoke-check)")
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {card}; torch {torch.__version__} (CUDA {torch.version.cuda}); dim {args.dim}, "
          f"batch {args.batch_size:,}, {args.warmup} warm-up + {args.steps} timed steps", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="sentinel-bench-gpu-", dir=args.tmp))
    try:
        split = load(args.ratings, tmp)
        config = model_config(split, args.dim, args.batch_size)
        runs: dict[str, float | str] = {}
        for name, run in (("b: plain PyTorch loop", lambda: plain_loop(split, config, device, args.warmup,
                                                                        args.steps, compiled=False)),
                          ("c: torch.compile'd loop", lambda: plain_loop(split, config, device, args.warmup,
                                                                          args.steps, compiled=True)),
                          ("a: Sentinel's training step", lambda: sentinel_step(split, config, device, args.warmup,
                                                                                 args.steps))):
            try:
                runs[name] = run().rate
            except Exception as e:  # noqa: BLE001 - a loop that cannot run here (say, no compiler) is reported
                runs[name] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            shown = f"{runs[name]:15,.0f} ratings/s" if isinstance(runs[name], float) else runs[name]
            print(f"{name:30} {shown}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    a, b, c = (runs[k] for k in ("a: Sentinel's training step", "b: plain PyTorch loop", "c: torch.compile'd loop"))
    ratios = {}
    if isinstance(a, float) and isinstance(b, float):
        ratios["a/b"] = a / b
    if isinstance(a, float) and isinstance(c, float):
        ratios["a/c"] = a / c
    if isinstance(c, float) and isinstance(b, float):
        ratios["c/b"] = c / b
    print("   ".join(f"{k} = {v:.2f}" for k, v in ratios.items())
          + "   (goals on an H100: a/b >= 0.9, a >= 120M ratings/s)")
    if args.json:
        args.json.write_text(json.dumps({"device": card, "torch": torch.__version__, "ratings": args.ratings,
                                         "dim": args.dim, "batch_size": args.batch_size, "steps": args.steps,
                                         "ratings_per_s": runs, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
