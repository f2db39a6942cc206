"""Periodic parameter averaging (local SGD) for a worker group that trains large sparse embedding tables.

DDP allreduces every gradient at every step. For biased MF above ``SPARSE_MIN_ROWS`` that is four sparse
gloo allreduces a step (user and item factors and biases): on the 2-core benchmark machine they took
~22 ms against ~38 ms of compute, and two workers trained at 0.36x one (docs/data.md, "How cost grows").
Here instead each worker trains its own shard with its own optimizer, and every ``SYNC_EVERY_STEPS``
steps (and before every validation) the workers merge their weights in one dense allreduce. For each
row, over the ``S`` steps since the last merge, with ``base`` the row as of that merge and ``n_w`` the
steps of worker ``w`` that touched it:

    row = base + sum_w (row_w - base) * union / sum_w n_w,   union = S * (1 - prod_w (1 - n_w / S))

``union`` estimates the steps a DDP run of the same batches would have moved the row (a step moves it
when any worker's batch holds it). Adam moves a row about ``lr`` a step whatever the batch, so a row
that one worker touched (or several, at different steps) keeps the sum of the updates, and a row that
every worker touched at every step (a popular item) gets their mean: as many moves as DDP would make.
Plain averaging (divide by the workers that touched the row) halved the moves of most rows and left the
val RMSE 0.015 behind one process at 300k ratings; this is within 0.0003 of one process at 300k and 10M
ratings (0.01 behind at the 1M shape, whatever K: docs/data.md).
After a merge every worker holds the same weights, so each validates its own slice of the validation set
(``val_slice``) and the sums are added across the group: the whole set's RMSE for 1/N of the work each.

A merge allreduces every parameter plus two floats per row: 12.2 MiB at the 10M-rating shape, ~20 ms
wall and ~7 ms CPU on the benchmark machine, once every ``SYNC_EVERY_STEPS`` steps.
"""

from __future__ import annotations

import torch

# Steps each worker takes between merges (K). Measured at 10M ratings in docs/data.md.
SYNC_EVERY_STEPS = 32


def uses_averaging(module, world_size: int) -> bool:
    """Whether a worker group trains ``module`` by periodic averaging (its network trains sparse tables)
    rather than DDP."""
    return world_size > 1 and bool(getattr(module, "sparse", False))


def val_slice(rows: int, rank: int, world_size: int) -> slice:
    """The contiguous part of ``rows`` validation rows that ``rank`` of ``world_size`` scores."""
    return slice(rows * rank // world_size, rows * (rank + 1) // world_size)


class RowAveraging:
    """The merge above over ``torch.distributed``'s default group (Ray Train's gloo group) for the
    parameters of ``net``: ``start`` once, ``mark`` after each backward, ``step`` after each optimizer step,
    ``merge`` before each validation. Every worker must take the same number of steps."""

    def __init__(self, net: torch.nn.Module, every: int = SYNC_EVERY_STEPS) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.every = every
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.base = [p.detach().clone() for p in self.params]
        self.touched = [torch.zeros(_rows(p), device=p.device) for p in self.params]  # steps per row
        self.steps = 0
        self.merges = 0
        self._merged_at = 0

    @torch.no_grad()
    def start(self) -> None:
        """Every worker starts from rank 0's weights (as DDP broadcasts them): the base of the first merge."""
        import torch.distributed as dist

        for param, base in zip(self.params, self.base):
            dist.broadcast(param.data, src=0)
            base.copy_(param)

    @torch.no_grad()
    def mark(self) -> None:
        """Count the rows this step's gradients touch: a sparse gradient's rows, every row of a dense one."""
        for param, touched in zip(self.params, self.touched):
            grad = param.grad
            if grad is None:
                continue
            if grad.is_sparse:
                # Coalesced here (one row per index) rather than by the optimizer: RowAdam's and SparseAdam's
                # own coalesce of it is then free, and the rows need no torch.unique (half a coalesce).
                param.grad = grad = grad.coalesce()
                rows = grad._indices()[0]
                touched.index_add_(0, rows, torch.ones(len(rows), device=touched.device))
            else:
                touched.add_(1.0)

    def step(self) -> None:
        self.steps += 1
        if self.steps % self.every == 0:
            self.merge()

    @torch.no_grad()
    def merge(self) -> None:
        """One allreduce of each parameter's change since the last merge, each row's touching steps and
        the log of the share of steps that missed it; then every worker sets the merged weights."""
        import torch.distributed as dist

        steps = self.steps - self._merged_at
        if steps == 0:
            return
        self._merged_at = self.steps
        deltas = [(p.detach() - b).reshape(-1) for p, b in zip(self.params, self.base)]
        missed = [torch.log((1.0 - t / steps).clamp_(min=1e-6)) for t in self.touched]
        buffer = torch.cat(deltas + self.touched + missed)
        dist.all_reduce(buffer)
        rows = [t.numel() for t in self.touched]
        parts = torch.split(buffer, [d.numel() for d in deltas] + rows + rows)
        n = len(self.params)
        for param, base, touched, delta, count, log in zip(self.params, self.base, self.touched, parts[:n],
                                                           parts[n:2 * n], parts[2 * n:]):
            union = steps * (1.0 - torch.exp(log))
            scale = union / count.clamp(min=1.0)
            shape = (-1,) + (1,) * (param.dim() - 1) if param.dim() else ()
            base.add_(delta.view(param.shape) * scale.view(shape))
            param.copy_(base)
            touched.zero_()
        self.merges += 1


def _rows(param: torch.Tensor) -> int:
    return param.shape[0] if param.dim() else 1


def averaging_callback(net: torch.nn.Module, every: int = SYNC_EVERY_STEPS):
    """A Lightning callback that runs ``RowAveraging`` on ``net`` around its optimizer steps."""
    import lightning.pytorch as pl

    class _Averaging(pl.Callback):
        def __init__(self) -> None:
            self.averaging: RowAveraging | None = None

        def on_fit_start(self, trainer, module) -> None:
            self.averaging = RowAveraging(net, every)  # after a resume loaded its weights
            self.averaging.start()

        def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
            self.averaging.mark()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.averaging.step()

        def on_validation_start(self, trainer, module) -> None:
            self.averaging.merge()

    return _Averaging()
