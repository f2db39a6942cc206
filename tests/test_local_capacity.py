"""What can never fit the embedded local Ray is refused at once (exit 2), naming the CPUs asked and
those it has, before any data, Ray, MLflow run or record (issue 26, item 4: `train --workers 3` on a
2-CPU machine used to wait silently until it was killed)."""

from __future__ import annotations

import pytest

from tests.test_cli import invoke


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as the embedded Ray counts it, fixed at 2 whatever runs the test (Ray's own
    count; no cluster to join)."""
    import ray._private.utils

    monkeypatch.setattr(ray._private.utils, "get_num_cpus", lambda *a, **k: 2)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("sentinel_ml.ray_runtime.running_cluster", lambda: None)


@pytest.mark.parametrize(("args", "message", "fix"), [
    (["train", "--workers", "3"], "--workers 3 asks for 3 CPUs at once; the local Ray has 2", "use fewer workers"),
    (["train", "--workers", "5", "--cpus-per-worker", "0.5"],
     "--workers 5 x --cpus-per-worker 0.5 asks for 2.5 CPUs at once; the local Ray has 2", "--cpus-per-worker"),
    (["serve", "--cpus", "1.5", "--min-replicas", "2"],
     "--cpus 1.5 per replica x 2 replicas asks for 3 CPUs at once; the local Ray has 2", "lower --cpus"),
    (["tune", "--workers-per-trial", "3", "--cpus-per-trial", "1"],
     "a trial of --workers-per-trial 3 x 1 CPU asks for 3 CPUs at once; the local Ray has 2",
     "lower --workers-per-trial or --cpus-per-trial"),
    (["tune", "--concurrency", "4", "--cpus-per-trial", "1"],
     "--concurrency 4 trials of 1 x 1 CPU asks for 4 CPUs at once; the local Ray has 2", "lower --concurrency"),
])
def test_what_can_never_fit_the_local_ray_exits_2_at_once(sentinel_home, two_cpus, args, message, fix) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and fix in result.output and "Traceback" not in result.output
    assert not (sentinel_home / "artifacts").exists()  # no record, no checkpoint
    assert not (sentinel_home / "data" / "prepared").exists()  # refused before the data was read


def test_what_fits_is_not_refused(two_cpus) -> None:
    from sentinel_ml.local_capacity import check_cpus

    check_cpus(2, "--workers 2", hint="")  # the whole machine is fine
    check_cpus(3 * 0.25, "a trial", hint="")  # shared-out fractions are fine


@pytest.mark.parametrize(("total", "concurrency", "workers"), [(2, 1, 3), (2, 1, 2), (2, 3, 1), (16, 3, 7), (2, 4, 1)])
def test_a_shared_out_trial_always_fits_the_cpus_it_shares(total, concurrency, workers) -> None:
    """Rounding the share up once asked 3 x 0.67 = 2.01 of 2 CPUs: the trial waited forever."""
    from sentinel_ml.tuning.study import MIN_CPUS_PER_WORKER, shared_cpus_per_worker

    share = shared_cpus_per_worker(total, concurrency, workers)
    assert MIN_CPUS_PER_WORKER <= share <= 1.0
    if total / (concurrency * workers) >= MIN_CPUS_PER_WORKER:  # else the trials queue, one trial still fits
        assert concurrency * workers * share <= total + 1e-9
    assert workers * share <= total + 1e-9
