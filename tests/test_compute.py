"""Compute as one setting (issue 26): how ``--device``, the GPU flags and ``--precision`` settle, travel in
the jobs' command line, reach Lightning, and are refused at once (exit 2) where the GPUs asked for do
not exist: on a machine without GPUs, whatever machine runs the test."""

from __future__ import annotations

import pytest

from sentinel_ml.compute import Compute
from sentinel_ml.errors import ConfigError
from tests.test_cli import invoke


@pytest.mark.parametrize(("compute", "available", "units", "device", "gpus"), [
    (Compute(), 0, 1, "cpu", 0),  # auto without GPUs: the CPU path, as before
    (Compute(), 1, 2, "gpu", 0.5),  # auto shares what there is, at most one a unit
    (Compute(), 4, 2, "gpu", 1),
    (Compute(), 2, 3, "gpu", 0.66),  # rounded down: three units fit two GPUs
    (Compute(gpus=0.25), 0, 1, "gpu", 0.25),  # asked for: kept (the local check judges it)
    (Compute(device="gpu"), 2, 4, "gpu", 1),  # gpu without a count: one a unit
    (Compute(device="cpu"), 8, 1, "cpu", 0),
])
def test_settle_picks_the_device_and_the_gpus_per_unit(compute, available, units, device, gpus) -> None:
    settled = compute.settle(available, units)
    assert (settled.device, settled.gpus) == (device, gpus)
    assert settled.lightning_kwargs() == {"accelerator": device, "precision": "32"}


@pytest.mark.parametrize(("compute", "message"), [
    (Compute(device="cpu", gpus=1), "--device cpu with --gpus 1"),
    (Compute(gpus=1.5), "--gpus 1.5: a fraction shares one GPU; more than one must be a whole number"),
    (Compute(device="cpu", precision="16-mixed"), "--precision 16-mixed needs a GPU"),
])
def test_contradictions_are_refused(compute, message) -> None:
    with pytest.raises(ConfigError, match=message):
        compute.validate()


def test_gpu_where_none_is_and_16_bit_on_a_cpu_are_refused_when_settled() -> None:
    with pytest.raises(ConfigError, match="--device gpu, but there is no GPU here"):
        Compute(device="gpu").settle(0)
    with pytest.raises(ConfigError, match="16-mixed needs a GPU"):
        Compute(precision="16-mixed").settle(0)  # auto became cpu


def test_pods_ask_for_whole_gpus() -> None:
    assert [Compute(gpus=g).pod_gpus() for g in (0, 0.25, 1, 2)] == [0, 1, 1, 2]
    assert Compute(device="gpu").pod_gpus() == 1


def test_train_compute_round_trips_through_the_jobs_command_line() -> None:
    from sentinel_ml import train
    from sentinel_ml.training.config import TrainConfig

    config = TrainConfig(workers=2, compute=Compute(device="gpu", gpus=0.5, precision="bf16-mixed"), storage="s3://b/p",
                         mlflow_uri="off", run_id="r1")
    argv = train.job_argv(config)
    assert argv[argv.index("--gpus") + 1] == "0.5" and argv[argv.index("--precision") + 1] == "bf16-mixed"
    assert train.config_from_args(train.build_parser().parse_args(argv[3:])) == config
    default = train.job_argv(TrainConfig(storage="s3://b/p"))
    assert not {"--device", "--gpus", "--precision"} & set(default)  # a CPU job's command line as before


def test_tune_compute_round_trips_through_the_jobs_command_line() -> None:
    from sentinel_ml import tune
    from sentinel_ml.tuning.config import StudyConfig

    config = StudyConfig(samples=4, compute=Compute(gpus=0.25, precision="16-mixed"), storage="s3://b/p",
                         mlflow_uri="off", run_id="r1")
    argv = tune.job_argv(config)
    assert argv[argv.index("--gpus-per-trial") + 1] == "0.25"
    assert tune.config_from_args(tune.build_parser().parse_args(argv[3:])) == config
    assert "--gpus-per-trial" not in tune.job_argv(StudyConfig(storage="s3://b/p"))


@pytest.fixture
def no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine without GPUs, whatever runs the test: none for torch, none for the embedded Ray."""
    monkeypatch.setattr("sentinel_ml.compute.cuda_devices", lambda: 0)
    monkeypatch.setattr("sentinel_ml.local_capacity.machine_gpus", lambda: 0)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("sentinel_ml.ray_runtime.running_cluster", lambda: None)


@pytest.mark.parametrize(("args", "message", "fix"), [
    (["train", "--gpus", "1"], "--gpus 1, but torch sees no CUDA device on this machine", "drop --gpus"),
    (["train", "--workers", "2", "--gpus", "0.5"],
     "--workers 2 x --gpus 0.5 asks for 1 GPU at once; the local Ray has none", "ask for fewer GPUs"),
    (["train", "--device", "gpu"], "--device gpu, but there is no GPU here", "use --device cpu or auto"),
    (["tune", "--gpus-per-trial", "0.5"],
     "a trial of --workers-per-trial 1 x --gpus-per-trial 0.5 asks for 0.5 GPUs at once; the local Ray has none",
     "lower --gpus-per-trial"),
    (["serve", "--gpus", "0.5", "--min-replicas", "2"],
     "--gpus 0.5 per replica x 2 replicas asks for 1 GPU at once; the local Ray has none", "lower --gpus"),
])
def test_gpus_that_do_not_exist_are_refused_at_once(sentinel_home, no_gpus, args, message, fix) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and fix in result.output and "Traceback" not in result.output
    assert not (sentinel_home / "artifacts").exists()  # no record, no checkpoint
    assert not (sentinel_home / "data" / "prepared").exists()  # refused before the data was read


def test_gpus_that_exist_pass_the_local_check(monkeypatch) -> None:
    from sentinel_ml.local_capacity import check_gpus

    monkeypatch.setattr("sentinel_ml.ray_runtime.running_cluster", lambda: None)
    monkeypatch.setattr("sentinel_ml.local_capacity.machine_gpus", lambda: 2)
    check_gpus(2, "--workers 2 x --gpus 1", hint="")
    check_gpus(4 * 0.5, "trials", hint="")
    with pytest.raises(ConfigError, match="asks for 3 GPUs at once; the local Ray has 2"):
        check_gpus(3, "--workers 3 x --gpus 1", hint="")
    monkeypatch.setattr("sentinel_ml.ray_runtime.running_cluster", lambda: "10.0.0.1:6379")
    check_gpus(8, "a joined cluster", hint="")  # may be scaling: not judged here


# -- CPUs per unit (train worker, tune trial, serve replica) -------------------------------------------


@pytest.mark.parametrize(("cpus", "flag"), [(0.0, "--cpus-per-worker"), (-1.0, "--cpus-per-trial"),
                                            (float("nan"), "--cpus-per-worker")])
def test_cpus_per_unit_must_be_positive(cpus, flag) -> None:
    with pytest.raises(ConfigError, match=f"{flag} .*: CPUs per unit must be positive"):
        Compute(cpus=cpus).validate("--gpus", flag)
    Compute(cpus=0.25).validate()  # a fraction is fine
    Compute().validate()  # None: the unit kind's default


def test_each_unit_kind_has_one_default_and_pods_get_a_quantity() -> None:
    from sentinel_ml.compute import SERVE_REPLICA_CPUS, TRAIN_WORKER_CPUS, pod_cpu, ray_node_cpus
    from sentinel_ml.serving.config import ServeArgs

    assert Compute().cpus_or(TRAIN_WORKER_CPUS) == 1.0 and Compute(cpus=0.5).cpus_or(TRAIN_WORKER_CPUS) == 0.5
    assert ServeArgs(checkpoint="s3://b/best.pt").num_cpus == SERVE_REPLICA_CPUS == 0.5
    assert [pod_cpu(c) for c in (0.5, 1.0, 2.0, 1.25, 0.0005)] == ["500m", "1", "2", "1250m", "1m"]
    assert [ray_node_cpus(c) for c in (0.5, 1.0, 1.25, 3.0)] == [1, 1, 2, 3]


def test_cpus_round_trip_through_the_jobs_command_lines() -> None:
    from sentinel_ml import train, tune
    from sentinel_ml.training.config import TrainConfig
    from sentinel_ml.tuning.config import StudyConfig

    config = TrainConfig(workers=2, compute=Compute(cpus=0.5), storage="s3://b/p", mlflow_uri="off", run_id="r1")
    argv = train.job_argv(config)
    assert argv[argv.index("--cpus-per-worker") + 1] == "0.5"
    assert train.config_from_args(train.build_parser().parse_args(argv[3:])) == config
    study = StudyConfig(samples=4, compute=Compute(cpus=0.75, gpus=0.25), storage="s3://b/p", mlflow_uri="off",
                        run_id="r1")
    argv = tune.job_argv(study)
    assert argv[argv.index("--cpus-per-trial") + 1] == "0.75" and study.cpus_per_trial == 0.75
    assert tune.config_from_args(tune.build_parser().parse_args(argv[3:])) == study
    assert "--cpus-per-worker" not in train.job_argv(TrainConfig(storage="s3://b/p"))
    assert "--cpus-per-trial" not in tune.job_argv(StudyConfig(storage="s3://b/p"))


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--cpus-per-worker", "0"], "--cpus-per-worker 0: CPUs per unit must be positive"),
    (["tune", "--cpus-per-trial", "-0.5"], "--cpus-per-trial -0.5: CPUs per unit must be positive"),
    (["serve", "--cpus", "0"], "--cpus 0: CPUs per unit must be positive"),
])
def test_bad_cpus_flags_exit_2_naming_the_flag(sentinel_home, args, message) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (sentinel_home / "artifacts").exists()


def _report_cpus(config: dict) -> None:
    """A Ray Train worker's loop: write the CPUs Ray assigned to this worker beside its rank."""
    import json
    from pathlib import Path

    import ray

    rank = ray.train.get_context().get_world_rank()
    assigned = ray.get_runtime_context().get_assigned_resources()
    Path(config["out"], f"{rank}.json").write_text(json.dumps(assigned))


@pytest.mark.slow
def test_ray_train_reserves_the_cpus_per_worker_the_job_parses(ray_session, tmp_path) -> None:
    """`train --workers 2 --cpus-per-worker 0.5` as the job parses it: each Ray Train worker of the group
    holds half a CPU (Ray's own account of the worker), the reservation the capacity check counted."""
    import json

    from ray.train import RunConfig

    from sentinel_ml import train
    from sentinel_ml.training.run import worker_cpus
    from sentinel_ml.training.worker_group import worker_group_trainer

    config = train.config_from_args(train.build_parser().parse_args(["--workers", "2", "--cpus-per-worker", "0.5"]))
    trainer = worker_group_trainer(_report_cpus, {"out": str(tmp_path)}, workers=config.workers,
                                   cpus_per_worker=worker_cpus(config),
                                   run_config=RunConfig(storage_path=str(tmp_path / "ray"), name="cpus"))
    trainer.fit()
    assigned = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    assert [a.get("CPU") for a in assigned] == [0.5, 0.5], assigned
