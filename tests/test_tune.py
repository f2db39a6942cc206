"""Hyperparameter tuning on a real local Ray: ASHA studies, failure isolation, the checkpoint index,
MLflow parent and child runs, and the CLI (JSON output, exit codes, validation before anything starts)."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_ml.compute import Compute
from sentinel_ml.data.source import DataSource
from sentinel_ml.tuning.config import StudyConfig
from sentinel_ml.tuning.search_space import from_mapping

runner = CliRunner()
DIVERGES = 1e12  # a learning rate at which Adam overflows the factors in the first steps
from tests.support.movielens_ref import u1_test


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def run_study(root, dataset_dir, **overrides):
    from sentinel_ml.tuning.study import tune

    model = overrides.pop("model", "mf")  # the study mechanics: mf, which is useful after one epoch
    space = from_mapping(overrides.pop("space", {}), "test", model=model)
    config = StudyConfig(model=model, space=space, source=DataSource(data=str(dataset_dir)), storage=str(root / "artifacts"),
                         mlflow_uri=f"sqlite:///{root / 'mlflow.db'}", **overrides)
    events: list[dict] = []
    result = tune(config, on_progress=events.append)
    return SimpleNamespace(result=result, events=events, config=config, root=str(root / "artifacts"),
                           mlflow_uri=config.mlflow_uri)


@pytest.fixture(scope="module")
def study(ray_session, dataset_dir, tmp_path_factory):
    """A real ASHA study: 4 trials of up to 2 epochs, one at a time so ASHA's decisions are
    deterministic (a trial worse than the median of those before it at epoch 1 is stopped)."""
    return run_study(tmp_path_factory.mktemp("study"), dataset_dir, samples=4, max_epochs=2,
                     grace_period=1, reduction_factor=2, concurrency=1, seed=8)


@pytest.mark.slow
def test_asha_study_reports_every_epoch_and_stops_weak_trials(study) -> None:
    result = study.result
    assert len(result.trials) == 4 and result.counts["failed"] == 0
    states = {t["state"] for t in result.trials}
    assert states <= {"completed", "stopped early"}
    assert result.counts["stopped early"] >= 1, f"ASHA stopped no trial: {result.trials}"
    for trial in result.trials:
        expected = 2 if trial["state"] == "completed" else 1
        assert trial["epochs"] == expected, trial
        assert trial["val_rmse"] < 1.2 and set(trial["config"]) == set(study.config.space.as_dict())
    assert result.trial_epochs == sum(t["epochs"] for t in result.trials) < 4 * 2
    # Trials come ranked by val RMSE, and the best one is the first.
    scores = [t["val_rmse"] for t in result.trials]
    assert scores == sorted(scores) and result.best["trial_id"] == result.trials[0]["trial_id"]

    epochs = [e for e in study.events if e["event"] == "trial_epoch"]
    assert len(epochs) == result.trial_epochs  # one report per trial per epoch, as they happened
    assert epochs[-1]["best_val_rmse"] == pytest.approx(result.metrics["val_rmse"])
    ended = [e for e in study.events if e["event"] == "trial" and e["state"] != "running"]
    assert sorted(e["trial"] for e in ended) == sorted(t["trial_id"] for t in result.trials)

    # Where the wall time went: the three phases, in order, add up to it.
    phases = result.phases
    assert set(phases) == {"setup_s", "trials_s", "finish_s"} and min(phases.values()) >= 0
    assert phases["trials_s"] > 0 and sum(phases.values()) == pytest.approx(result.wall_s, abs=0.05)


@pytest.mark.slow
def test_best_trial_checkpoint_is_indexed_and_resolves_as_best(study, dataset_dir) -> None:
    from sentinel_ml.models.evaluation import rmse
    from sentinel_ml.store import index as checkpoints
    from sentinel_ml.store.checkpoint import load_checkpoint, load_network

    result = study.result
    # A worse training run in the same index: `best` must still pick the study's checkpoint.
    checkpoints.write_record(study.root, checkpoints.RunRecord(
        run_id="train-20000101-000000-0000", kind="train", created_at="2000-01-01T00:00:00+00:00",
        config={}, metrics={"val_rmse": 0.99}, checkpoints={"best": "/elsewhere/best.pt"}))
    records = checkpoints.read_records(study.root)
    uri, record = checkpoints.resolve("best", records)
    assert uri == result.checkpoints["best"] and record.kind == "tune" and record.run_id == result.run_id
    assert record.config["embedding_dim"] == result.best["config"]["embedding_dim"]
    assert record.config["epochs"] == study.config.max_epochs
    assert record.metrics["val_rmse"] == pytest.approx(result.best["val_rmse"])
    assert record.extra["best_trial"] == result.best["trial_id"]

    net, saved = load_network(uri)
    assert rmse(net, u1_test(dataset_dir)) == pytest.approx(record.metrics["test_rmse"], abs=1e-6)
    assert saved["metrics"]["epoch"] == result.best["best_epoch"]
    from sentinel_ml.models.metrics import RANKING  # the ranking metrics beside the RMSE, the same everywhere

    assert all(0 < record.metrics[name] <= 1 for name in RANKING)
    assert {n: saved["metrics"][n] for n in RANKING} == {n: result.best[n] for n in RANKING} == {
        n: record.metrics[n] for n in RANKING}
    if result.best["state"] == "completed":
        assert load_checkpoint(result.checkpoints["last"])["metrics"]["epoch"] == 2


@pytest.mark.slow
def test_mlflow_has_a_parent_run_and_one_child_per_trial(study) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(study.mlflow_uri)
    experiment = client.get_experiment_by_name("sentinel")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.info.run_id == study.result.mlflow_run_id)
    assert parent.data.tags["sentinel.kind"] == "tune" and parent.data.params["scheduler"] == "asha"
    from sentinel_ml.models.metrics import TEST_METRICS

    assert {n: parent.data.metrics[n] for n in TEST_METRICS} == pytest.approx(
        {n: study.result.metrics[n] for n in TEST_METRICS})
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    trials = {t["trial_id"]: t for t in study.result.trials}
    assert sorted(r.data.tags["sentinel.trial_id"] for r in children) == sorted(trials)
    for child in children:
        trial = trials[child.data.tags["sentinel.trial_id"]]
        assert child.data.tags["sentinel.state"] == trial["state"]
        assert child.info.status == "FINISHED"
        assert float(child.data.params["lr"]) == pytest.approx(trial["config"]["lr"])
        history = client.get_metric_history(child.info.run_id, "val_rmse")
        assert [m.step for m in history] == list(range(1, trial["epochs"] + 1))


@pytest.mark.slow
def test_a_failing_trial_is_reported_and_the_study_goes_on(ray_session, dataset_dir, tmp_path) -> None:
    from mlflow import MlflowClient

    study = run_study(tmp_path, dataset_dir, samples=4, max_epochs=1, scheduler="fifo", concurrency=2,
                      seed=1, space={"lr": [0.01, DIVERGES]})
    result = study.result
    failed = [t for t in result.trials if t["state"] == "failed"]
    completed = [t for t in result.trials if t["state"] == "completed"]
    assert failed and completed, f"seed 1 should sample both learning rates: {result.trials}"
    assert len(failed) + len(completed) == 4
    assert all(t["config"]["lr"] == DIVERGES for t in failed)
    assert all("training diverged at epoch 1" in t["error"] for t in failed)
    assert all(t["config"]["lr"] == 0.01 for t in completed)
    assert result.best["config"]["lr"] == 0.01 and result.counts["failed"] == len(failed)
    assert result.trials[-1]["state"] == "failed"  # failed trials rank last

    client = MlflowClient(study.mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("sentinel").experiment_id])
    states = {r.data.tags.get("sentinel.trial_id"): (r.info.status, r.data.tags.get("sentinel.state"))
              for r in runs if r.data.tags.get("mlflow.parentRunId")}
    assert states[failed[0]["trial_id"]] == ("FAILED", "failed")
    assert states[completed[0]["trial_id"]] == ("FINISHED", "completed")


@pytest.mark.slow
def test_two_workers_per_trial_run_a_torchtrainer_and_release_their_cpus(ray_session, dataset_dir,
                                                                          tmp_path) -> None:
    import time

    from sentinel_ml.store.checkpoint import load_checkpoint

    study = run_study(tmp_path, dataset_dir, samples=1, max_epochs=1, concurrency=1, workers_per_trial=2,
                      compute=Compute(cpus=0.5), space={"embedding_dim": 16, "batch_size": 1024})
    result = study.result
    assert result.counts == {"completed": 1, "stopped early": 0, "failed": 0}, result.trials
    assert load_checkpoint(result.checkpoints["best"])["metrics"]["epoch"] == 1
    # Tune ends each trial by killing it; the Ray Train workers' placement groups must not outlive it.
    total = ray_session.cluster_resources()["CPU"]
    deadline = time.monotonic() + 60
    while ray_session.available_resources().get("CPU", 0) < total and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray_session.available_resources().get("CPU", 0) == total


@pytest.mark.slow
def test_cli_tune_prints_json_and_status_lists_the_study(ray_session, sentinel_home) -> None:
    result = invoke("tune", "--model", "mf", "--samples", "2", "--max-epochs", "1", "--scheduler", "fifo",
                    "-o", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout holds only the JSON
    assert summary["run_id"].startswith("tune-") and summary["scheduler"] == "fifo"
    assert summary["counts"] == {"completed": 2, "stopped early": 0, "failed": 0}
    assert summary["checkpoints"]["best"].startswith(str(sentinel_home / "artifacts"))
    assert summary["mlflow_run_id"] and summary["metrics"]["test_rmse"] < 1.1
    assert "started" in result.stderr and "epoch   1/1" in result.stderr  # live progress on stderr

    status = json.loads(invoke("status", "-o", "json").stdout)
    assert [(r["run_id"], r["kind"]) for r in status["runs"]] == [(summary["run_id"], "tune")]


@pytest.mark.slow
def test_cli_study_where_every_trial_fails_exits_1(ray_session, sentinel_home, tmp_path) -> None:
    space = tmp_path / "diverge.yaml"
    space.write_text(f"lr: {DIVERGES:.1e}\n")
    result = invoke("tune", "--model", "mf", "--samples", "1", "--max-epochs", "1", "--space", str(space))
    assert result.exit_code == 1, result.output
    assert "all 1 trials failed; first error: JobFailed: training diverged" in result.stderr
    assert "narrow the search space" in result.stderr, result.stderr
    assert "Traceback" not in result.output, result.output
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["--space", "{bad}"], "search space"),
        (["--grace-period", "0"], "--grace-period"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial"),
        (["--scheduler", "hyperband"], "--scheduler"),
        (["--samples", "0"], "--samples"),
    ],
)
def test_bad_flags_and_space_files_exit_2_before_anything_starts(sentinel_home, tmp_path, args, message):
    if args[0] == "--space":
        bad = tmp_path / "space.yaml"
        bad.write_text("embedding_dim: []\nlr: {lower: 0.1, upper: 0.01}\n")
        args = ["--space", str(bad)]
    result = invoke("tune", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in sentinel_home.iterdir()) == ["data"]  # no MLflow store, no artifacts


def test_module_entrypoint_rejects_a_bad_space_file(sentinel_home, tmp_path) -> None:
    bad = tmp_path / "space.toml"
    bad.write_text('learning_rate = 0.01\n')
    proc = subprocess.run([sys.executable, "-m", "sentinel_ml.tune", "--space", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "unknown key 'learning_rate'" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("max_t, grace, factor", [(30, 1, 4), (30, 2, 3), (20, 2, 3), (18, 2, 3), (5, 10, 3),
                                                  (27, 1, 3), (1, 1, 2)])
def test_decision_epochs_are_ray_asha_rungs_and_the_last_epoch(max_t, grace, factor) -> None:
    from ray.tune.schedulers import ASHAScheduler

    from sentinel_ml.tuning.trial import decision_epochs

    scheduler = ASHAScheduler(time_attr="epoch", metric="val_rmse", mode="min", max_t=max_t,
                              grace_period=min(grace, max_t), reduction_factor=factor)
    rungs = {milestone for milestone, _ in scheduler._brackets[0]._rungs if milestone < max_t}
    assert set(decision_epochs("asha", max_t, grace, factor)) == rungs | {max_t}
    assert decision_epochs("fifo", max_t, grace, factor) == (max_t,)


def test_trial_checkpoints_only_where_the_scheduler_may_stop_it() -> None:
    from sentinel_ml.tuning.trial import CheckpointPolicy

    policy = CheckpointPolicy((1, 4, 10))
    val = [1.2, 1.1, 1.0, 1.05, 0.9, 0.95, 0.97, 0.99, 0.98, 0.96]
    saved, best = [], float("inf")
    for epoch, rmse in enumerate(val, start=1):
        improved, best = rmse < best, min(best, rmse)
        state = SimpleNamespace(improved=improved, final=epoch == len(val))
        if policy.due(state, {"epoch": epoch, "val_rmse": rmse}):
            saved.append((epoch, policy.best_metrics["epoch"]))
    # epoch 4 saves epoch 3's weights (its best so far); epoch 10 saves epoch 5's
    assert saved == [(1, 1), (4, 3), (10, 5)]


def test_study_defaults_follow_the_model() -> None:
    from sentinel_ml.tuning.study import default_concurrency

    autorec, mf = StudyConfig(), StudyConfig(model="mf")
    assert (autorec.model, autorec.max_epochs, autorec.grace_period, autorec.reduction_factor) == ("autorec", 30, 1, 4)
    assert (mf.max_epochs, mf.grace_period, mf.reduction_factor) == (20, 2, 3)
    assert StudyConfig(model="mf", grace_period=5).grace_period == 5
    assert autorec.space != mf.space and autorec.concurrency is None
    assert [default_concurrency(c, 1) for c in (1, 2, 3, 16)] == [1, 2, 3, 4]
    assert default_concurrency(2, 4) == 1
