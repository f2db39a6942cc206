"""Join the Ray that is there (a test's, a RayJob's via RAY_ADDRESS) or start the embedded one, the
same way for training and tuning."""

from __future__ import annotations

import logging
import os


def ensure_ray() -> None:
    import ray

    if ray.is_initialized():
        return
    if not os.environ.get("RAY_ADDRESS"):
        # A single machine has no spot nodes to be preempted; the watcher actor costs ~115 MB.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    verbose = logging.getLogger().level <= logging.INFO
    ray.init(
        address=os.environ.get("RAY_ADDRESS"),
        include_dashboard=False,
        # Worker output (Lightning banners, Ray Train reports) only with -v or on request.
        log_to_driver=verbose or os.environ.get("SENTINEL_WORKER_LOGS") == "1",
        logging_level=logging.WARNING if verbose else logging.ERROR,
        configure_logging=True,
    )
