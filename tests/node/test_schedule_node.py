"""Scheduled retraining on the real node (issue 28, item 4): a one-minute schedule's CronJob fires twice
in Sentinel's CLI image, in a pod that reaches the API server with in-cluster config (the `kubernetes`
Service, tests/testenv/node.py). The first run trains on the current table and beats what serves: the
gate promotes it. Then the table is corrupted on purpose (its ratings shuffled, same rows, same keys)
and the next run trains on it: the gate refuses it, with both numbers, and what serves stays. `status`
shows each run's outcome as it lands.

``check_scheduled_runs`` holds the steps; it needs only a namespace after ``up`` with the platform's
credentials exported (``Lifecycle.environ``) and a served RayService, so the lifecycle test can call it
with its own. This module's fixture makes both: ``up --no-operator``, a first model trained on the
corrupted table and served (the model a good run must beat).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kubernetes import client

from tests.node.test_lifecycle import (
    BUCKET,
    Lifecycle,
    _key,
    _platform_credentials,
    _s3,
    platform_namespace,
    step,
)
from tests.testenv import node
from tests.testenv.process import wait_for

pytestmark = [
    pytest.mark.k8s, pytest.mark.node,
    # Minutes of the real node (two RayJobs and a RayService on 2 cores), like the lifecycle: in its
    # tier, and SENTINEL_LIFECYCLE=0 leaves it out too, until it shares the lifecycle's served model.
    pytest.mark.lifecycle,
    # Opt-in until it has passed on the real node and shares the lifecycle's served model (about 15
    # min on its own): SENTINEL_SCHEDULE_NODE=1 runs it.
    pytest.mark.skipif(os.environ.get("SENTINEL_SCHEDULE_NODE") != "1",
                       reason="the real-node schedule test runs with SENTINEL_SCHEDULE_NODE=1 (docs/testing.md)"),
]

SCHEDULE = "nightly"
TABLE = f"s3://{BUCKET}/data/nightly/ratings/"  # what each run trains on: the table as it is then
TABLE_SHAPE = {"ratings": 6_000, "users": 200, "items": 150}
TRAIN = ("--data", TABLE, "--split", "temporal", "--epochs", "2", "--workers", "1")  # as tests/test_schedule_runs.py
RUN_TIMEOUT_S = 420  # one run: its pod, a RayJob's cluster on 2 busy cores, the gate


def _profile(real_node: node.RealNode, namespace: str) -> dict[str, Any]:
    """Sized so that, on the node's 2 CPUs (requests are limits), MinIO (0.25), the serving cluster (head
    0.25 + KubeRay's autoscaler sidecar 0.5, a serve worker 0.2), a run's pod (0.25) and its RayJob's
    cluster (head 0.25, one worker 0.2, submitter 0.1) fit at once: 2.0. No MLflow tracking (the
    fixture stops the platform's MLflow to free its 0.25; the gate reads the index, not MLflow)."""
    return real_node.profile(
        namespace=namespace, storage=f"s3://{BUCKET}/runs", data=TABLE,
        s3={"endpoint": f"http://sentinel-minio.{namespace}.svc:9000", "credentials_secret": "sentinel-minio"},
        head={"cpu": "250m", "memory": "3Gi"}, worker={"cpu": "200m", "memory": "2Gi"},
        submitter={"cpu": "100m", "memory": "512Mi"}, serve_worker={"cpu": "200m", "memory": "2Gi"}, workers=1,
        serve={"node_selector": {"sentinel.dev/node": "real"}, "workers": 1, "max_workers": 1,
               "min_replicas": 1, "max_replicas": 1},
        rayjob={"ttl_seconds_after_finished": 0}, wait_timeout_s=300)


def tables(seed: int = 3) -> tuple[pa.Table, pa.Table]:
    """A synthetic ratings table with a learnable structure, and the same rows with the ratings
    shuffled (the data corrupted on purpose: nothing left to learn)."""
    import tempfile
    from pathlib import Path

    from sentinel_ml.data.synth import SynthSpec, synthesize

    with tempfile.TemporaryDirectory() as folder:
        synthesize(SynthSpec(ratings=TABLE_SHAPE["ratings"], users=TABLE_SHAPE["users"],
                             items=TABLE_SHAPE["items"], seed=seed), folder)
        good = pa.concat_tables(pq.read_table(p) for p in sorted(Path(folder).glob("*.parquet")))
    ratings = good["rating"].to_numpy()
    bad = good.set_column(good.schema.get_field_index("rating"), "rating",
                          [np.random.default_rng(0).permutation(ratings)])
    return good, bad


def upload(life: Lifecycle, table: pa.Table) -> None:
    """Replace the table under ``TABLE`` (one Parquet part, same key each time: `aws s3 cp`)."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    bucket, prefix = _key(TABLE)
    _s3(life).put_object(Bucket=bucket, Key=prefix + "part-0.parquet", Body=buffer.getvalue())


def _runs(life: Lifecycle) -> list[client.V1Job]:
    jobs = client.BatchV1Api(life.api).list_namespaced_job(
        life.namespace, label_selector=f"sentinel.io/schedule={SCHEDULE}").items
    return sorted(jobs, key=lambda j: j.metadata.creation_timestamp)


def _finished(job: client.V1Job) -> bool:
    return any(c.type in ("Complete", "Failed") and c.status == "True" for c in job.status.conditions or [])


def _outcome(life: Lifecycle, job: client.V1Job) -> dict[str, Any]:
    """The run's outcome as its pod left it (the termination message `status` reads)."""
    pods = client.CoreV1Api(life.api).list_namespaced_pod(
        life.namespace, label_selector=f"job-name={job.metadata.name}").items
    for pod in pods:
        for status in pod.status.container_statuses or []:
            if status.state.terminated and status.state.terminated.message:
                return json.loads(status.state.terminated.message)
    raise AssertionError(f"run {job.metadata.name} left no outcome")


def _wait_run(life: Lifecycle, index: int) -> tuple[client.V1Job, dict[str, Any]]:
    """The schedule's ``index``-th run (0: the first the CronJob fired), once it has finished."""
    def reason() -> str | None:
        runs = _runs(life)
        if len(runs) <= index:
            return f"the CronJob has fired {len(runs)} run(s)"
        return None if _finished(runs[index]) else f"run {runs[index].metadata.name} is running"

    wait_for(f"run {index + 1} of schedule {SCHEDULE}", reason, RUN_TIMEOUT_S + 90)
    job = _runs(life)[index]
    return job, _outcome(life, job)


def _status_row(life: Lifecycle) -> dict[str, Any]:
    out, _ = life.ok("status", "--target", "k8s", "-o", "json")
    rows = [r for r in json.loads(out)["schedules"] if r["name"] == SCHEDULE]
    assert len(rows) == 1, rows
    return rows[0]


def check_scheduled_runs(life: Lifecycle, service: str, serving_rmse: float) -> dict[str, Any]:
    """Two runs of a one-minute schedule, as the CronJob fires them: the first, on good data, is
    promoted into ``service``; the second, on the same table corrupted, is refused by the gate.
    Expects the platform's credentials in ``life.environ`` and ``service`` serving a model whose test
    RMSE is ``serving_rmse`` (on this table's split). Deletes the schedule at the end."""
    good, bad = tables()
    found: dict[str, Any] = {}
    with step(life, "schedule train --cron '* * * * *' --promote-if-better (the CLI image's CronJob)"):
        upload(life, good)
        out, _ = life.ok("schedule", "train", "--target", "k8s", "--cron", "* * * * *", "--name", SCHEDULE,
                         "--promote-if-better", "--metric", "rmse", "-o", "json", "--", *TRAIN)
        assert f"CronJob/{SCHEDULE}" in json.loads(out)["applied"], out
    try:
        with step(life, "schedule: the first run, on good data, is promoted"):
            job, first = _wait_run(life, 0)
            # Corrupt the table at once: with concurrencyPolicy Forbid the minute skipped while this run
            # trained is due now, and the next run's RayJob reads the table a minute or so after its pod starts.
            upload(life, bad)
            assert job.status.succeeded == 1, first
            assert (first["outcome"], first["step"], first["gate"]["verdict"]) == ("promoted", "promote", "passed"), first
            assert first["gate"]["metric"] == "rmse"
            assert first["gate"]["candidate"] < first["gate"]["serving"] == pytest.approx(serving_rmse, rel=1e-4)
            row = _status_row(life)
            assert (row["outcome"], row["checkpoint"]) == ("promoted", first["checkpoint"]), row
            found["promoted"] = first
        with step(life, "schedule: the second run, on corrupted data, is refused by the gate"):
            job, second = _wait_run(life, 1)
            assert (second["outcome"], second["step"], second["exit_code"]) == ("refused", "promote", 1), second
            gate = second["gate"]
            assert gate["verdict"] == "refused" and gate["candidate"] > gate["serving"], gate
            assert gate["serving"] == pytest.approx(first["metrics"]["test_rmse"], rel=1e-4), (gate, first)
            assert second["detail"].startswith("error: the gate refused"), second["detail"]
            row = _status_row(life)
            assert (row["outcome"], row["run_id"]) == ("refused", second["run_id"]), row
            rayservice = client.CustomObjectsApi(life.api).get_namespaced_custom_object(
                "ray.io", "v1", life.namespace, "rayservices", service)
            assert first["checkpoint"] in json.dumps(rayservice), "what serves must stay the promoted run"
            found["refused"] = second
    finally:
        life.cli("schedule", "delete", SCHEDULE, "--target", "k8s")
    return found


@pytest.fixture(scope="module")
def served(real_node: node.RealNode, k8s_api: client.ApiClient, tmp_path_factory) -> Iterator[tuple[Lifecycle, str, float]]:
    """A namespace after ``up --no-operator``, serving a model trained on the corrupted table."""
    with platform_namespace(real_node, k8s_api, tmp_path_factory.mktemp("schedule"), "t-sched", _profile) as life:
        with step(life, "schedule setup: up --no-operator"):
            life.ok("up", "--target", "k8s", "--no-operator", "-o", "json", timeout_s=600)
            _platform_credentials(life)
            client.AppsV1Api(k8s_api).patch_namespaced_deployment_scale(
                "sentinel-mlflow", life.namespace, {"spec": {"replicas": 0}})  # its CPU goes to the runs
            upload(life, tables()[1])
        with step(life, "schedule setup: train on the corrupted table and serve it"):
            out, _ = life.ok("train", "--target", "k8s", *TRAIN, "--name", "seed", "-o", "json", timeout_s=RUN_TIMEOUT_S)
            trained = json.loads(out)
            assert trained["state"] == "Complete", trained
            served = json.loads(life.ok("serve", "--target", "k8s", "--checkpoint", "seed", "-o", "json",
                                        timeout_s=RUN_TIMEOUT_S)[0])
            yield life, served["rayservice"], float(trained["metrics"]["test_rmse"])


def test_a_one_minute_schedule_promotes_once_and_is_refused_on_corrupted_data(served) -> None:
    life, service, serving_rmse = served
    found = check_scheduled_runs(life, service, serving_rmse)
    assert found["promoted"]["checkpoint"] != found["refused"]["checkpoint"]
