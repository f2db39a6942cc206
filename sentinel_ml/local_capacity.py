"""Whether a job can ever be placed on the embedded local Ray, checked before anything starts.

Ray queues a request for more CPUs than a cluster has and waits for them forever: ``sentinel train
--workers 3`` on a 2-CPU machine sat silent until it was killed. The embedded Ray that Sentinel starts
has exactly this machine's CPUs (Ray's own count, which follows cgroup limits) and nothing can join
it, so a request larger than that can never run and is refused at once (exit 2), naming what was
asked and what there is. A cluster Sentinel joins (``RAY_ADDRESS``, ``ray start``, a RayJob's) may be
autoscaling or still gaining workers, so it is not judged here; on Kubernetes the capacity preflight
(``sentinel_cli/k8s/capacity.py``) checks the pods before they are applied.

GPUs are judged the same way: the embedded Ray has this machine's GPUs (Ray's own count: the
``CUDA_VISIBLE_DEVICES`` it may be limited to, else what NVML finds), so ``train --gpus``, ``tune
--gpus-per-trial`` beyond them are refused at once; ``serve --gpus`` is judged against the GPUs of the
Ray cluster its replicas would run on.
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


def embedded_gpus() -> float | None:
    """The GPUs the embedded Ray would have; None when a run joins a cluster instead."""
    from sentinel_ml.ray_runtime import running_cluster

    if running_cluster():
        return None
    return float(machine_gpus())


def machine_gpus() -> int:
    """This machine's GPUs as Ray counts them when it starts a node here."""
    from ray._private.accelerators import get_accelerator_manager_for_resource

    return int(get_accelerator_manager_for_resource("GPU").get_current_node_num_accelerators() or 0)


def ray_gpus() -> float:
    """The GPUs of the Ray a run will use: the embedded one's (this machine's, before it starts), else
    the joined cluster's (joined here; ``ensure_ray`` is idempotent)."""
    have = embedded_gpus()
    if have is not None:
        return have
    import ray

    from sentinel_ml.ray_runtime import ensure_ray

    ensure_ray()
    return float(ray.cluster_resources().get("GPU", 0))


def check_gpus(asked: float, what: str, hint: str, have: float | None = None) -> None:
    """Refuse ``asked`` GPUs for ``what`` when the Ray cluster (``have``; default: the embedded Ray's,
    not judged when a run joins a cluster) could never hold them."""
    have = embedded_gpus() if have is None else have
    if asked > 0 and have is not None and asked > have + 1e-9:
        where = "the local Ray has" if have else "the local Ray has none"
        raise ConfigError(f"{what} asks for {asked:g} GPU{'s' if asked != 1 else ''} at once; "
                          + (f"{where} {have:g} (this machine's)" if have else f"{where} (no GPU on this machine)"),
                          hint=hint)
