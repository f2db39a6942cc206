"""Join the Ray that is there (a test's; a RayJob's or any cluster's via RAY_ADDRESS; one started with
``ray start`` on this machine) or start the embedded one, the same way for training and tuning."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sentinel_ml.errors import ConfigError

log = logging.getLogger(__name__)

# What a tuning trial imports before its first epoch: ~4 CPU-s and ~0.5 GB per process (Lightning
# alone pulls in torch._dynamo and scipy).
WORKER_PRELOAD = ("torch", "lightning.pytorch")
WARM_KEEP_ALIVE_S = 120


@dataclass(frozen=True)
class WarmWorkers:
    """Worker processes to start, with ``WORKER_PRELOAD`` imported, as soon as the embedded Ray is up.

    Ray gives an actor a prestarted worker only if it was started for the actor's exact runtime env,
    so ``runtime_env`` must be the one the actors will be created with (Tune gives its trial actors
    one of their own).
    """

    count: int
    # The env, or a function that gives it once Ray is up (so deriving it can overlap Ray's start).
    runtime_env: dict | Callable[[], dict] = field(default_factory=dict)


# Set by ``ensure_ray`` when it prestarted workers: (raylet client, worker pids before, workers asked for).
_warming: tuple[Any, set[int], int] | None = None


def ensure_ray(warm: Callable[[], WarmWorkers | None] | None = None) -> str | None:
    """Join the Ray that ``ray.init`` would join (``RAY_ADDRESS``, or one started with ``ray start`` on
    this machine), else start the embedded one. Returns the joined cluster's address, or None for
    the embedded Ray.

    ``warm`` is called only when this starts the embedded Ray, once its environment is set (the
    runtime env Tune gives trial actors carries some of the variables set here).
    """
    import ray

    if ray.is_initialized():
        return None
    address = running_cluster()
    if not address:
        # A single machine has no spot nodes to be preempted; the watcher actor costs ~115 MB.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    # System config belongs to whoever starts the cluster: only the embedded one gets warm workers.
    warm = warm() if warm and not address else None
    warm = warm if warm and warm.count > 0 else None
    verbose = logging.getLogger().level <= logging.INFO
    if address:
        _check_reachable(address)
    try:
        ray.init(
            address=_init_address(address),
            include_dashboard=False,
            # Worker output (Lightning banners, Ray Train reports) only with -v or on request.
            log_to_driver=verbose or os.environ.get("SENTINEL_WORKER_LOGS") == "1",
            logging_level=logging.WARNING if verbose else logging.ERROR,
            configure_logging=True,
            # Every worker this Ray starts imports WORKER_PRELOAD before it takes work, and Ray's own
            # prestart (one worker per CPU, for the default runtime env that no trial uses) is off.
            **({"_system_config": {"preload_python_modules": list(WORKER_PRELOAD),
                                   "prestart_worker_first_driver": False}} if warm else {}),
        )
    except ConnectionError as e:
        raise _unreachable(address, e) from None
    if warm:
        global _warming
        _warming = prestart_workers(warm)
    return address


def running_cluster() -> str | None:
    """The cluster ``ray.init()`` would join, by Ray's own rule: ``RAY_ADDRESS``, else the last
    cluster ``ray start`` started on this machine (``/tmp/ray/ray_current_cluster``). None when it
    would start a new one."""
    address = os.environ.get("RAY_ADDRESS")
    if address:
        return None if address == "local" else address
    return _resolved_as_ray_does(None)


def _resolved_as_ray_does(address: str | None) -> str | None:
    """``address`` as ``ray.init`` resolves it: None finds a ``ray start`` cluster (or None for a new
    one); localhost becomes this node's IP. A Ray that moved or changed this gets ``address`` back."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(address)
    except Exception:  # noqa: BLE001 - ImportError, or its ConnectionError for "auto" with nothing running
        return address


def _init_address(joining: str | None) -> str | None:
    """What to pass ``ray.init``: RAY_ADDRESS as given; None for the cluster ``ray start`` recorded
    (only then does Ray pick up that cluster's token, ~/.ray/auth_token, by itself); "local" for the
    embedded Ray, even if a cluster has appeared since ``running_cluster`` looked."""
    if not joining:
        return "local"
    return os.environ.get("RAY_ADDRESS") or None


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when a host:port cluster address does not answer: ``ray.init`` itself retries an
    absent GCS for minutes without a word. Other forms (``auto``, ``ray://``) are left to Ray."""
    import socket

    host, _, port = (_resolved_as_ray_does(address) or address).rpartition(":")
    if not host or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise _unreachable(address, e) from None


def _unreachable(address: str | None, error: Exception) -> ConfigError:
    if os.environ.get("RAY_ADDRESS"):
        source = f"RAY_ADDRESS={os.environ['RAY_ADDRESS']}"
        hint = "check that the cluster runs (`ray status --address ...`), or unset RAY_ADDRESS to use the embedded Ray"
    else:
        source = "the cluster `ray start` recorded on this machine"
        hint = "restart it with `ray start --head`, or run `ray stop` so sentinel starts its embedded Ray"
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return ConfigError(f"cannot connect to the Ray cluster at {address} ({source}): {reason}", hint=hint)


def await_warm_workers(timeout_s: float = 5.0) -> set[int]:
    """Wait (bounded) until the workers ``ensure_ray`` prestarted have registered with the raylet.

    Call it right before starting the actors: an actor asked for before then gets a cold worker of
    its own, and the warm one is later killed as idle. Registration takes ~1 s (they import Ray
    first); the modules are imported after it, and an actor waits for that on its own.
    Returns the warm workers' pids (empty if there are none, or they did not register in time).
    """
    global _warming
    if _warming is None:
        return set()
    client, before, count = _warming
    _warming = None
    import asyncio

    async def registered() -> set[int]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            new = set(await _worker_pids(client)) - before
            if len(new) >= count:
                return new
            await asyncio.sleep(0.05)
        log.debug("warm workers: %d of %d registered within %.0f s", len(new), count, timeout_s)
        return set()

    try:
        return asyncio.run(registered())
    except Exception as e:  # noqa: BLE001 - an optimisation: never fail the job for it
        log.debug("warm workers: %s", e)
        return set()


def prestart_workers(warm: WarmWorkers) -> tuple[Any, set[int], int] | None:
    """Ask the local raylet to start ``warm.count`` workers for ``warm.runtime_env`` now.

    They import while the driver sets up, so the trials' actors start warm instead of paying ~4 s
    each. This is the raylet's PrestartWorkers RPC, which Ray has no public API for: on any failure
    (a Ray that changed it) the actors simply start cold. Returns what ``await_warm_workers`` needs.
    """
    try:
        import asyncio

        import ray
        from ray._private.grpc_utils import init_grpc_channel
        from ray._private.utils import get_runtime_env_info
        from ray._raylet import RayletClient
        from ray.core.generated import (
            common_pb2,
            node_manager_pb2,
            node_manager_pb2_grpc,
        )
        from ray.runtime_env import RuntimeEnv

        env = warm.runtime_env() if callable(warm.runtime_env) else warm.runtime_env
        worker = ray._private.worker.global_worker
        node = worker.node
        client = RayletClient(ip_address=node.node_ip_address, port=node.node_manager_port)
        before = set(asyncio.run(_worker_pids(client)))
        request = node_manager_pb2.PrestartWorkersRequest(
            language=common_pb2.PYTHON,
            job_id=worker.current_job_id.binary(),
            runtime_env_info=get_runtime_env_info(RuntimeEnv(**env), is_job_runtime_env=False),
            keep_alive_duration_secs=WARM_KEEP_ALIVE_S,
            num_workers=warm.count,
        )
        channel = init_grpc_channel(f"{node.node_ip_address}:{node.node_manager_port}")
        try:
            node_manager_pb2_grpc.NodeManagerServiceStub(channel).PrestartWorkers(request, timeout=10)
        finally:
            channel.close()
        return client, before, warm.count
    except Exception as e:  # noqa: BLE001 - an optimisation: never fail the job for it
        log.debug("could not prestart %d warm workers: %s", warm.count, e)
        return None


async def _worker_pids(client) -> list[int]:
    return await client.async_get_worker_pids(1000)


def shutdown_ray() -> None:
    """``ray.shutdown()``, without its 1 s wait for the autoscaler monitor of an embedded Ray.

    Ray stops the GCS before the monitor, and the monitor's SIGTERM handler then tries to report its
    own termination to that GCS, so every shutdown waited out its 1 s grace period before the kill.
    A single-node Ray has nothing to autoscale: the monitor is killed first. Joined clusters (no
    processes of ours) are only disconnected from, as before.
    """
    import ray

    if not ray.is_initialized():
        return
    node = getattr(ray._private.worker, "_global_node", None)
    for info in (getattr(node, "all_processes", None) or {}).get("monitor", []):
        with contextlib.suppress(Exception):
            info.process.kill()
            info.process.wait(timeout=5)
    ray.shutdown()
