"""Checkpoint resolution for `serve --target k8s` through the index in S3, on real S3-compatible
servers (moto in server mode on loopback): names resolve to exact URIs, and a server that refuses
the credentials gives an access-denied error with the next step."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_cli.backends.kubernetes.plan import resolve_checkpoint
from sentinel_cli.k8s.request import Overrides
from sentinel_cli.k8s.settings import load
from sentinel_ml.store import index as checkpoints
from sentinel_ml.store import uri as storage
from sentinel_ml.store.checkpoint import checkpoint_uri
from tests.testenv.process import wait_for


def _record(root: str, run_id: str, val_rmse: float, created_at: str) -> checkpoints.RunRecord:
    record = checkpoints.RunRecord(
        run_id=run_id, kind="train", created_at=created_at, config={}, metrics={"val_rmse": val_rmse},
        checkpoints={"best": checkpoint_uri(root, run_id, "best"),
                     "last": checkpoint_uri(root, run_id, "last")})
    checkpoints.write_record(root, record)
    return record


def test_latest_best_and_run_ids_resolve_to_exact_uris(kube_env, s3_bucket) -> None:
    older = _record(s3_bucket, "train-20260101-000000-aaaa", 0.90, "2026-01-01T00:00:00+00:00")
    newer = _record(s3_bucket, "train-20260102-000000-bbbb", 0.95, "2026-01-02T00:00:00+00:00")
    settings = load(Overrides(storage=s3_bucket), environ={})
    assert resolve_checkpoint("latest", settings) == (newer.best_checkpoint, newer.run_id)
    assert resolve_checkpoint("best", settings) == (older.best_checkpoint, older.run_id)
    assert resolve_checkpoint("train-20260101", settings) == (older.best_checkpoint, older.run_id)
    uri = f"{s3_bucket}/runs/train-20260102-000000-bbbb/last.pt"
    assert resolve_checkpoint(uri, settings) == (uri, "train-20260102-000000-bbbb")
    result = CliRunner().invoke(app, ["render", "serve", "--storage", s3_bucket, "--checkpoint", "best"])
    assert result.exit_code == 0, result.output
    assert older.best_checkpoint in result.stdout


def test_unknown_runs_and_local_paths_are_refused(kube_env, s3_bucket) -> None:
    _record(s3_bucket, "train-20260101-000000-aaaa", 0.90, "2026-01-01T00:00:00+00:00")
    runner = CliRunner()
    missing = runner.invoke(app, ["render", "serve", "--storage", s3_bucket, "--checkpoint", "train-1999"])
    assert missing.exit_code == 2 and "no run 'train-1999' in the checkpoint index" in missing.output
    local = runner.invoke(app, ["render", "serve", "--storage", s3_bucket, "--checkpoint", "/tmp/best.pt"])
    assert local.exit_code == 2 and "is not in S3" in local.output


@pytest.fixture
def refusing_s3(kube_env, monkeypatch) -> Iterator[str]:
    """A moto server that checks credentials (IAM auth from the first request): ours are unknown."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> str | None:
        with socket.socket() as sock:
            return None if sock.connect_ex(("127.0.0.1", port)) == 0 else "not listening yet"

    try:
        wait_for("moto with IAM auth", listening, 30)
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        storage._s3_client.cache_clear()
        yield "s3://sentinel-private/artifacts"
    finally:
        storage._s3_client.cache_clear()
        server.terminate()
        server.wait(10)


def test_s3_access_denied_names_the_cause_and_the_next_step(refusing_s3) -> None:
    result = CliRunner().invoke(app, ["render", "serve", "--storage", refusing_s3, "--checkpoint", "latest"])
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert "S3 access denied to list s3://sentinel-private/artifacts/index" in text
    assert "check the credentials" in text
