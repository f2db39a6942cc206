"""Whether a job can ever be placed on the embedded local Ray, checked before anything starts.

Ray queues a request for more CPUs than a cluster has and waits for them forever: ``sentinel train
--workers 3`` on a 2-CPU machine sat silent until it was killed. The embedded Ray that Sentinel starts
has exactly this machine's CPUs (Ray's own count, which follows cgroup limits) and nothing can join
it, so a request larger than that can never run and is refused at once (exit 2), naming what was
asked and what there is. A cluster Sentinel joins (``RAY_ADDRESS``, ``ray start``, a RayJob's) may be
autoscaling or still gaining workers, so it is not judged here; on Kubernetes the capacity preflight
(``sentinel_cli/k8s/capacity.py``) checks the pods before they are applied.
"""

from __future__ import annotations

from sentinel_ml.errors import ConfigError


def embedded_cpus() -> float | None:
    """The CPUs the embedded Ray would have; None when a run joins a cluster instead."""
    from sentinel_ml.ray_runtime import running_cluster

    if running_cluster():
        return None
    from ray._private.utils import get_num_cpus

    return float(get_num_cpus())


def check_cpus(asked: float, what: str, hint: str) -> None:
    """Refuse ``asked`` CPUs for ``what`` (one unit that must be placed whole, such as a worker group)
    when the embedded Ray could never hold them."""
    have = embedded_cpus()
    if have is not None and asked > have + 1e-9:
        raise ConfigError(f"{what} asks for {asked:g} CPUs at once; the local Ray has {have:g} (this machine's)",
                          hint=hint)
