"""The embedded Ray's warm workers: a tuning study's trial actors start on workers that were started
(and imported torch and Lightning) while the driver was still setting up, not on cold ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import json, os, sys
import ray
from ray.tune.execution.class_cache import _ActorClassCache
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from sentinel_ml import ray_runtime
from sentinel_ml.config import StudyConfig
from sentinel_ml.tune import _warm_trial_workers

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
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    monkeypatch.setattr("ray.is_initialized", lambda: False)
    monkeypatch.setattr("ray.init", lambda **kwargs: asked.append(kwargs))
    ray_runtime.ensure_ray(lambda: ray_runtime.WarmWorkers(2))
    assert asked and "_system_config" not in asked[0]
    assert ray_runtime.await_warm_workers(timeout_s=0.1) == set()
