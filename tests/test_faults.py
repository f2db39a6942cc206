"""Faults survived (issue 16), injected by killing real processes, never by patching functions:

- a Ray Train worker of `sentinel train --workers 2` SIGKILLed: the group restarts from the last
  epoch's checkpoint and the run ends as it would have; with `--max-failures 0` it ends with exit 1
  and names the lost worker;
- every worker node of a `ray start` cluster SIGKILLed, new ones joining (a spot reclaim on
  Kubernetes): the run resumes on the new nodes;
- a Tune trial's process SIGKILLed, and one Ray Train worker of a trial with 2 workers: the trial
  resumes from its last checkpoint, the study completes;
- a writer SIGKILLed while it writes a large checkpoint, on disk and on the S3 test server: no index
  record resolves to a missing or partial checkpoint, `latest` and `best` skip the run, and the next
  run is unaffected.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.parse
from pathlib import Path

import pytest

from sentinel_ml.compute import Compute
from sentinel_ml.data.source import DataSource
from sentinel_ml.errors import CheckpointNotFound
from sentinel_ml.store import index as checkpoints
from sentinel_ml.store import uri as storage
from sentinel_ml.store.checkpoint import checkpoint_uri, load_checkpoint
from tests.support.cli import Run, sentinel_env
from tests.support.processes import TRAIN_WORKER, bytes_sent, kill_one
from tests.support.ray_nodes import ray_nodes
from tests.support.ray_train import checkpoint_taken, local_snapshot
from tests.testenv.process import wait_for

REPO = Path(__file__).resolve().parents[1]


# --- training -------------------------------------------------------------------------------------


def _train(home: Path, movielens_zip: Path, *flags: str) -> Run:
    return Run(["train", "--workers", "2", "--epochs", "3", "--mlflow-uri", "off", "-o", "json", *flags],
               sentinel_env(home, movielens_zip))


def _sentinel_settings(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("SENTINEL_") or k == "COLUMNS"}


def _checkpoint_taken_in(home: Path, epoch: int) -> None:
    """Wait until Ray Train's controller has taken in the checkpoint of ``epoch`` (it does at its next
    poll, every 2 s, after the epoch's line): a worker killed then resumes from it, or a later one."""
    wait_for(f"the checkpoint of epoch {epoch}, taken in by Ray Train's controller",
             checkpoint_taken(local_snapshot(home / "artifacts"), epoch), timeout_s=60)


def _kill_a_worker_after_epoch(run: Run, home: Path, epoch: int, epochs: int = 3) -> int:
    run.wait_for(rf"^epoch\s+{epoch}/{epochs}\b", timeout=240)
    _checkpoint_taken_in(home, epoch)
    return kill_one(run.proc.pid, TRAIN_WORKER)


@pytest.mark.slow
def test_training_survives_a_killed_worker_and_resumes_from_its_last_epoch(tmp_path, movielens_zip) -> None:
    run = _train(tmp_path / "home", movielens_zip)
    try:
        _kill_a_worker_after_epoch(run, tmp_path / "home", 1)
        code, out, err = run.finish(timeout=400)
    finally:
        run.stop()
    assert code == 0, err[-3000:]
    summary = json.loads(out)
    assert [row["epoch"] for row in summary["history"]] == [1, 2, 3]
    [restart] = summary["restarts"]
    # From the last checkpoint the controller took in before the kill: epoch 2 (the kill waits for
    # epoch 1's) or, when the worker had finished epoch 2 by then, epoch 3 -- never epoch 1 (a start
    # from scratch).
    resumed = restart["resumed_from_epoch"]
    assert resumed in (2, 3), summary["restarts"]
    assert "Ray Train worker rank" in restart["lost"] and "ActorDiedError" in restart["lost"]
    assert "restart 1: lost Ray Train worker rank" in err and f"resuming from epoch {resumed}" in err
    record = json.loads(Path(summary["index_uri"]).read_text())
    assert record["extra"]["restarts"] == summary["restarts"]
    assert record["sizes"]["best"] == Path(summary["checkpoints"]["best"]).stat().st_size
    assert load_checkpoint(summary["checkpoints"]["last"])["metrics"]["epoch"] == 3


@pytest.mark.slow
def test_with_max_failures_0_a_lost_worker_ends_the_run_with_exit_1(tmp_path, movielens_zip) -> None:
    run = _train(tmp_path / "home", movielens_zip, "--max-failures", "0")
    try:
        _kill_a_worker_after_epoch(run, tmp_path / "home", 1)
        code, out, err = run.finish(timeout=300)
    finally:
        run.stop()
    assert code == 1, err[-3000:]
    assert out == ""
    assert "error: lost Ray Train worker rank" in err and "--max-failures 0 allows no restart" in err, err[-3000:]
    assert "Traceback" not in err
    assert not list((tmp_path / "home" / "artifacts" / "index").glob("*.json"))  # no record of a failed run


@pytest.mark.slow
def test_training_survives_losing_every_worker_node_and_resumes_on_new_ones(tmp_path, movielens_zip) -> None:
    """As on Kubernetes, where a spot reclaim deletes the worker pods and KubeRay makes new ones: a
    cluster whose head offers no CPU (``num-cpus: 0``, as Sentinel's heads do) and two 1-CPU worker
    nodes. Both nodes are SIGKILLed after epoch 1 and two new ones join. Whatever the run keeps
    outside the driver's node is lost with them: its progress queue once was, and the run failed."""
    home = tmp_path / "home"
    with ray_nodes(tmp_path) as cluster:
        cluster.start("--num-cpus=0")
        workers = [cluster.start("--num-cpus=1") for _ in range(2)]
        # The cluster's environment, not this process's: a Ray started here set RAY_AUTH_* for itself.
        env = {**cluster.env, **_sentinel_settings(sentinel_env(home, movielens_zip)),
               "RAY_ADDRESS": cluster.address}
        run = Run(["train", "--workers", "2", "--epochs", "3", "--mlflow-uri", "off", "-o", "json"], env)
        try:
            run.wait_for(r"^epoch\s+1/3\b", timeout=300)
            _checkpoint_taken_in(home, 1)
            for node in workers:
                os.killpg(node.pid, signal.SIGKILL)
            for _ in workers:
                cluster.start("--num-cpus=1")
            code, out, err = run.finish(timeout=600)
        finally:
            run.stop()
    assert code == 0, err[-3000:]
    summary = json.loads(out)
    assert [row["epoch"] for row in summary["history"]] == [1, 2, 3]
    assert summary["restarts"] and summary["restarts"][0]["resumed_from_epoch"] >= 2, summary["restarts"]


def test_a_lost_progress_queue_ends_the_run_with_a_message_not_a_traceback(ray_session) -> None:
    import threading

    from ray.util.queue import Queue

    from sentinel_ml.errors import JobFailed
    from sentinel_ml.training.run import _Relay, _relay_progress

    progress = Queue()
    ray_session.kill(progress.actor)  # as when its node goes
    fitted = threading.Event()
    fitting = threading.Thread(target=fitted.wait, args=(120,))  # the fit still runs, until the test ends
    fitting.start()
    try:
        with pytest.raises(JobFailed, match="lost the run's progress queue: .*ActorDiedError"):
            _relay_progress(progress, fitting, _Relay(lambda *_: None, lambda *_: None))
    finally:
        fitted.set()
        fitting.join()


def test_the_lost_worker_is_named_not_its_peers_follow_on_errors() -> None:
    from ray.exceptions import ActorDiedError

    from sentinel_ml.training.run import describe_lost_workers

    gloo = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Connection closed")
    assert describe_lost_workers({0: gloo, 1: ActorDiedError()}) == \
        "Ray Train worker rank 1 (ActorDiedError: The actor died unexpectedly before finishing this task.)"
    assert describe_lost_workers({0: gloo}).startswith("Ray Train worker rank 0 (RuntimeError: [/__w/")


# --- tuning ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_trial_resumes_from_its_last_checkpoint_and_the_study_completes(ray_session, dataset_dir,
                                                                               tmp_path) -> None:
    from sentinel_ml.tuning.config import StudyConfig
    from sentinel_ml.tuning.study import tune

    killed: dict[str, int | str] = {}

    def on_progress(event: dict) -> None:
        # The first trial, after its epoch 3: its checkpoint (with the resume state) is from epoch 2,
        # an ASHA rung. Tune names the trial's process in each result.
        if (event.get("event") == "trial_epoch" and event["epoch"] == 3 and not killed):
            killed.update(trial=event["trial"], pid=event["pid"])
            os.kill(event["pid"], signal.SIGKILL)

    config = StudyConfig(model="mf", samples=2, max_epochs=4, scheduler="asha", grace_period=1, reduction_factor=2,
                         concurrency=1, seed=3, source=DataSource(data=str(dataset_dir)), storage=str(tmp_path / "artifacts"),
                         mlflow_uri="off")
    result = tune(config, on_progress=on_progress)
    assert killed, "no trial reached epoch 3"
    trial = next(t for t in result.trials if t["trial_id"] == killed["trial"])
    assert (trial["state"], trial["epochs"], trial["restarts"], trial["resumed_from_epochs"]) == \
        ("completed", 4, 1, [3]), trial
    assert result.counts["failed"] == 0 and len(result.trials) == 2
    record = checkpoints.read_records(str(tmp_path / "artifacts"))[0]
    assert record.extra["restarts"] == {killed["trial"]: {"restarts": 1, "resumed_from_epochs": [3]}}


@pytest.mark.slow
def test_a_killed_worker_of_a_multi_worker_trial_resumes_from_its_last_checkpoint(ray_session, dataset_dir,
                                                                                  tmp_path) -> None:
    """A trial of 2 Ray Train workers (DDP): one worker SIGKILLed after epoch 3. The trial's TorchTrainer
    fails, Tune restarts the trial, and its new worker group resumes from its last checkpoint. Epoch 3's
    report reaches this process late when the machine is busy, so the trial runs 8 epochs: the kill
    must land while it still trains (a kill after its last epoch restarts nothing)."""
    from sentinel_ml.tuning.config import StudyConfig
    from sentinel_ml.tuning.study import tune

    killed: dict[str, int | str] = {}

    def on_progress(event: dict) -> None:
        if event.get("event") == "trial_epoch" and event["epoch"] == 3 and not killed:
            # The workers run below this process's Ray (ray_session); either rank will do.
            killed.update(trial=event["trial"], pid=kill_one(os.getpid(), TRAIN_WORKER, timeout=30))

    config = StudyConfig(model="mf", samples=1, max_epochs=8, scheduler="asha", grace_period=1, reduction_factor=2,
                         concurrency=1, workers_per_trial=2, compute=Compute(cpus=0.5), seed=3, source=DataSource(data=str(dataset_dir)),
                         storage=str(tmp_path / "artifacts"), mlflow_uri="off")
    result = tune(config, on_progress=on_progress)
    assert killed, "the trial never reached epoch 3"
    [trial] = result.trials
    assert trial["trial_id"] == killed["trial"]
    assert (trial["state"], trial["epochs"], trial["restarts"]) == ("completed", 8, 1), trial
    [resumed] = trial["resumed_from_epochs"]
    assert 3 <= resumed < 8, trial  # from a checkpoint taken before the kill, not from scratch
    record = checkpoints.read_records(str(tmp_path / "artifacts"))[0]
    assert record.extra["restarts"] == {killed["trial"]: {"restarts": 1, "resumed_from_epochs": [resumed]}}


# --- nothing half-written -------------------------------------------------------------------------

# A run's end, as training.run does it: best.pt and last.pt (here ~64 MB each, so that the kill lands
# while they are written), then the index record. "writing" is printed just before the first write.
_WRITER = textwrap.dedent("""
    import sys, torch
    from sentinel_ml.store import index, uri
    from sentinel_ml.store.checkpoint import checkpoint_uri, save_checkpoint
    root, run_id, floats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if uri.is_s3(root):  # say when each upload starts (boto3's event hook; nothing is replaced)
        uri._s3_client().meta.events.register(
            "before-send.s3.PutObject", lambda request, **kw: print("sending", request.url, flush=True))
    weights = {"w": torch.ones(floats)}
    sizes, uris = {}, {}
    print("writing", flush=True)
    for which in ("best", "last"):
        uris[which] = checkpoint_uri(root, run_id, which)
        sizes[which] = save_checkpoint(uris[which], weights, {"model": "mf"}, {"val_rmse": 0.9})
    index.write_record(root, index.RunRecord(run_id=run_id, kind="train", created_at=sys.argv[4], config={},
                                             metrics={"val_rmse": float(sys.argv[5])}, checkpoints=uris,
                                             sizes=sizes))
    print("done", flush=True)
""")


def _writer(root: str, run_id: str, created: str, val_rmse: float, floats: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WRITER, root, run_id, str(floats), created, str(val_rmse)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)


def _write_whole_run(root: str, run_id: str, created: str, val_rmse: float) -> None:
    writer = _writer(root, run_id, created, val_rmse, floats=1000)
    assert writer.wait(timeout=120) == 0


def _kill_while_writing(root: str, run_id: str, until_writing) -> None:
    """Start a writer of a large run (a better val RMSE than any other: `best` would pick it) and
    SIGKILL it once ``until_writing(writer)`` says a checkpoint is being written."""
    writer = _writer(root, run_id, "2026-12-02T00:00:00+00:00", 0.5, floats=16_000_000)
    assert writer.stdout.readline().strip() == "writing"
    deadline = time.monotonic() + 60
    while not until_writing(writer):
        assert writer.poll() is None, "the writer finished before it could be killed"
        assert time.monotonic() < deadline, "the writer did not start writing a checkpoint in 60 s"
        time.sleep(0.005)  # a poll: the kill must land while a checkpoint is written
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=30) == -signal.SIGKILL


def _assert_nothing_half_written_resolves(root: str, killed: str, complete: str) -> None:
    for reference in ("latest", "best"):
        assert checkpoints.resolve_checkpoint(reference, root)[1] == complete
    assert killed not in [r.run_id for r in checkpoints.read_records(root)]
    for record in checkpoints.read_records(root):  # every record left resolves to whole checkpoints
        for which, uri in record.checkpoints.items():
            assert storage.size(uri) == record.sizes[which]
            assert load_checkpoint(uri)["metrics"]["val_rmse"] == 0.9
    # The next run is unaffected.
    _write_whole_run(root, "train-20261203-000000-next", "2026-12-03T00:00:00+00:00", 0.95)
    assert checkpoints.resolve_checkpoint("latest", root)[1] == "train-20261203-000000-next"


def test_a_writer_killed_mid_checkpoint_on_disk_leaves_nothing_that_resolves(tmp_path) -> None:
    root = str(tmp_path / "artifacts")
    _write_whole_run(root, "train-20261201-000000-done", "2026-12-01T00:00:00+00:00", 0.9)
    run_dir = Path(checkpoint_uri(root, "train-20261202-000000-kill", "best")).parent

    # A temporary file beside best.pt (or last.pt) exists: it is being written right now.
    def writing(_writer) -> bool:
        return run_dir.is_dir() and any(p.name.startswith((".best.pt.", ".last.pt.")) for p in run_dir.iterdir())

    _kill_while_writing(root, "train-20261202-000000-kill", writing)
    assert not (run_dir / "best.pt").exists() or (run_dir / "best.pt").stat().st_size > 64_000_000
    assert not (run_dir / "last.pt").exists()  # never a partial file under the checkpoint's name
    _assert_nothing_half_written_resolves(root, "train-20261202-000000-kill", "train-20261201-000000-done")


def test_a_writer_killed_mid_checkpoint_on_s3_leaves_nothing_that_resolves(s3_bucket) -> None:
    import boto3

    root = s3_bucket
    _write_whole_run(root, "train-20261201-000000-done", "2026-12-01T00:00:00+00:00", 0.9)
    bucket, prefix = storage.split_s3(root)
    s3 = boto3.client("s3")

    # The writer says when the PUT of best.pt starts; 64 MB take a while to send: the kill lands once
    # the kernel counts 1 MiB of it sent to the S3 server.
    port = urllib.parse.urlsplit(os.environ["AWS_ENDPOINT_URL"]).port
    put_started = False

    def sending(writer) -> bool:
        nonlocal put_started
        if not put_started:
            put_started = "best.pt" in writer.stdout.readline()
            return False
        return bytes_sent(writer.pid, port) >= 2 ** 20

    _kill_while_writing(root, "train-20261202-000000-kill", sending)
    assert not storage.exists(checkpoint_uri(root, "train-20261202-000000-kill", "best"))  # the PUT never landed
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    assert not any("train-20261202-000000-kill" in key and key.endswith(".json") for key in keys), keys
    _assert_nothing_half_written_resolves(root, "train-20261202-000000-kill", "train-20261201-000000-done")


@pytest.mark.parametrize("damage", ["missing", "partial"])
def test_latest_and_best_skip_a_run_whose_checkpoint_is_missing_or_partial(tmp_path, damage) -> None:
    root = str(tmp_path / "artifacts")
    _write_whole_run(root, "train-20261201-000000-good", "2026-12-01T00:00:00+00:00", 0.9)
    _write_whole_run(root, "train-20261202-000000-hurt", "2026-12-02T00:00:00+00:00", 0.5)
    best = Path(checkpoint_uri(root, "train-20261202-000000-hurt", "best"))
    if damage == "missing":
        best.unlink()
    else:
        best.write_bytes(best.read_bytes()[:100])
    for reference in ("latest", "best"):
        assert checkpoints.resolve_checkpoint(reference, root)[1] == "train-20261201-000000-good"
    assert [r.run_id for r in checkpoints.read_records(root)] == ["train-20261201-000000-good"]
    assert len(checkpoints.read_records(root, include_incomplete=True)) == 2
    with pytest.raises(CheckpointNotFound, match=f"run train-20261202-000000-hurt is incomplete: .*{damage}"):
        checkpoints.resolve_checkpoint("train-20261202-000000-hurt", root)
