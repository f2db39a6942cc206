"""Which Ray a job runs on, and how it starts: the embedded Ray's warm workers (a tuning study's trial
actors start on workers that were started, and imported torch and Lightning, while the driver was
still setting up), joining a cluster from RAY_ADDRESS or one started with ``ray start`` on this
machine, and a clear, fast error when that cluster does not answer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from sentinel_cli.backends.local import ray_cluster as local_ray
from sentinel_ml.entrypoint import exit_code
from tests.support.ray_nodes import closed_port, ray_nodes

PROBE = r"""
import json, os, sys
import ray
from ray.tune.execution.class_cache import _ActorClassCache
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from sentinel_ml import ray_runtime
from sentinel_ml.tuning.config import StudyConfig
from sentinel_ml.tuning.study import _warm_trial_workers

config = StudyConfig(samples=4, concurrency=int(sys.argv[1]))
ray_runtime.ensure_ray(lambda: _warm_trial_workers(config))
warm = ray_runtime.await_warm_workers(timeout_s=60)


class Trial:  # stands in for a trainable: Tune wraps it the same way
    def where(self):
        return os.getpid(), "lightning.pytorch" in sys.modules


# As Tune starts trials: one placement group each, the actor class from Tune's own cache.
remote = _ActorClassCache().get(Trial)
groups = [placement_group([{"CPU": 1}]) for _ in range(config.concurrency)]
ray.get([g.ready() for g in groups])
actors = [remote.options(num_cpus=1, scheduling_strategy=PlacementGroupSchedulingStrategy(g)).remote()
          for g in groups]
found = ray.get([a.where.remote() for a in actors])
print(json.dumps({"warm": sorted(warm), "actors": [pid for pid, _ in found],
                  "preloaded": [loaded for _, loaded in found]}))
"""


@pytest.mark.slow
def test_trial_actors_start_on_the_warm_workers_of_the_embedded_ray(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-c", PROBE, "2"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(seen["warm"]) == 2, seen
    assert sorted(seen["actors"]) == seen["warm"], seen  # no cold worker was started for them
    assert all(seen["preloaded"]), seen


def test_no_warm_workers_when_joining_a_running_ray(monkeypatch) -> None:
    """A RayJob or a test's Ray: their system config is not ours to set, and nothing is prestarted."""
    from sentinel_ml import ray_runtime

    asked = []
    # Something answers at the address. Not 127.0.0.1: Ray (and our probe) dial this node's IP for that.
    with socket.create_server(("127.0.0.2", 0)) as gcs:
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.2:{gcs.getsockname()[1]}")
        monkeypatch.setattr("ray.is_initialized", lambda: False)
        monkeypatch.setattr("ray.init", lambda **kwargs: asked.append(kwargs))
        joined = ray_runtime.ensure_ray(lambda: ray_runtime.WarmWorkers(2))
    assert joined == os.environ["RAY_ADDRESS"] and asked[0]["address"] == joined
    assert "_system_config" not in asked[0]
    assert ray_runtime.await_warm_workers(timeout_s=0.1) == set()


def test_an_unreachable_ray_address_fails_at_once_with_the_next_step(monkeypatch) -> None:
    """Ray itself retries an absent GCS for minutes without a word."""
    from sentinel_ml import ray_runtime
    from sentinel_ml.errors import ConfigError

    address = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    monkeypatch.setattr("ray.is_initialized", lambda: False)
    started = time.monotonic()
    with pytest.raises(ConfigError) as raised:
        ray_runtime.ensure_ray()
    assert time.monotonic() - started < 30
    assert f"cannot connect to the Ray cluster at {address} (RAY_ADDRESS=" in raised.value.message
    assert "unset RAY_ADDRESS" in raised.value.hint and exit_code(raised.value) == 2


def test_cli_exits_2_without_a_traceback_when_ray_address_does_not_answer(sentinel_home) -> None:
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{closed_port()}"}
    proc = subprocess.run([sys.executable, "-m", "sentinel_cli", "tune", "--samples", "1", "--max-epochs", "1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "cannot connect to the Ray cluster" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.slow
def test_tune_joins_a_cluster_started_with_ray_start(sentinel_home, tmp_path) -> None:
    """Like ``ray.init()``, a job joins the cluster ``ray start`` recorded on this machine (and its
    token) instead of failing on the embedded Ray's system config."""
    with ray_nodes(tmp_path) as cluster:
        cluster.start("--num-cpus=2")
        proc = subprocess.run([sys.executable, "-m", "sentinel_cli", "tune", "--samples", "2", "--max-epochs", "1",
                               "-o", "json"], capture_output=True, text=True, env=cluster.env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"on the Ray cluster at {cluster.address}" in " ".join(proc.stderr.split())  # rich wraps lines
        result = json.loads(proc.stdout)
        assert len(result["trials"]) == 2 and result["counts"]["failed"] == 0



def test_ports_for_later_listeners_lie_outside_the_ephemeral_range_and_rays_worker_ports() -> None:
    ports = local_ray.free_ports(4)
    assert len(set(ports)) == 4
    assert all(local_ray.RAY_WORKER_PORTS_END < p < local_ray._ephemeral_ports_start() for p in ports), ports
