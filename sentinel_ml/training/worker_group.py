"""Data-parallel training on a Ray Train worker group, shared by a training run (``training.run``) and
a multi-worker tuning trial (``tuning.trial``).

The driver side builds the ``TorchTrainer`` (CPU workers and DDP over gloo, or
GPU workers and NCCL: ``sentinel_ml.compute``). The worker side is
``RayTrainWorker``: each worker's rank and world size from Ray Train's context, the Lightning loop
(``loop.run_loop``) under Ray's DDP strategy and cluster environment, and its reports to Ray Train.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sentinel_ml.training.config import Hyperparameters

if TYPE_CHECKING:  # the loop imports torch, which only a worker needs
    from sentinel_ml.compute import Compute
    from sentinel_ml.data.prepared import Prepared
    from sentinel_ml.training.loop import LoopResult


def worker_group_trainer(worker_loop: Callable[[dict[str, Any]], None], loop_config: dict[str, Any], *,
                         workers: int, cpus_per_worker: float, run_config, datasets: dict[str, Any] | None = None,
                         gpus_per_worker: float = 0.0):
    """A ``TorchTrainer`` running ``worker_loop(loop_config)`` on ``workers`` workers, DDP over gloo (NCCL
    with ``gpus_per_worker``: ``Compute.gpus`` once settled); ``datasets`` (Ray Datasets by name) are
    split into one shard per worker."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    return TorchTrainer(
        worker_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0,
                                     resources_per_worker={"CPU": cpus_per_worker,
                                                           **({"GPU": gpus_per_worker} if gpus_per_worker else {})}),
        torch_config=TorchConfig(backend="nccl" if gpus_per_worker else "gloo"),
        run_config=run_config,
        datasets=datasets,
    )


@dataclass(frozen=True)
class RayTrainWorker:
    """This process's place in the worker group it runs in."""

    rank: int
    world_size: int

    @classmethod
    def current(cls) -> RayTrainWorker:
        import ray.train

        context = ray.train.get_context()
        return cls(context.get_world_rank(), context.get_world_size())

    @property
    def is_rank_zero(self) -> bool:
        """Rank 0 alone writes checkpoints and sends progress; every rank reports its metrics."""
        return self.rank == 0

    def run_loop(self, hp: Hyperparameters, data: Prepared | None, compute: Compute | None = None,
                 **hooks: Any) -> LoopResult:
        """``loop.run_loop`` as this worker's shard of DDP on ``compute``'s device (settled; None: CPU);
        ``hooks`` are its ``on_*`` and ``split``."""
        from ray.train.lightning import (
            RayDDPStrategy,
            RayLightningEnvironment,
            prepare_trainer,
        )

        from sentinel_ml.training.loop import run_loop

        ddp = {"devices": "auto", "strategy": RayDDPStrategy(), "plugins": [RayLightningEnvironment()],
               **(compute.lightning_kwargs() if compute else {})}
        return run_loop(hp, data, rank=self.rank, world_size=self.world_size, trainer_kwargs=ddp,
                        prepare=prepare_trainer, **hooks)

    def report_epoch(self, metrics: dict[str, Any], resume_state: Callable[[], dict[str, Any]] | None) -> None:
        """Report an epoch; with ``resume_state`` (rank 0), a checkpoint of it that a restarted group
        resumes from. Every rank must report each epoch (Ray Train waits for all of them)."""
        if resume_state is None:
            self.report(metrics)
            return
        import tempfile

        from sentinel_ml.training.resume import write_resume

        with tempfile.TemporaryDirectory(prefix="sentinel-resume-") as directory:
            write_resume(directory, resume_state())
            self.report(metrics, checkpoint_dir=directory)

    @staticmethod
    def report(metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        """Report to Ray Train, with the checkpoint in ``checkpoint_dir`` when there is one."""
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)
