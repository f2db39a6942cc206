"""Secrets never shown, on the local target (issue 27): the commands a user runs, with S3 keys and
a serving token of known values in the environment and in a token file, print none of them, in
either output format, nor on failure; nor do the local MLflow store, the index records or anything
else under $SENTINEL_HOME. (`serve --auth token` locally: tests/serving/test_cli_serve.py scans its
outputs the same way. The cluster's side: tests/k8s/test_secret_scan.py, tests/node/test_lifecycle.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.secret_scan import Scan

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
KNOWN = {"AWS_ACCESS_KEY_ID": "AKIALOCALSCANKNOWN42", "AWS_SECRET_ACCESS_KEY": "local-known-secret-key-6e1b0c9f",
         "AWS_SESSION_TOKEN": "local-known-session-token-2a7d", "MINIO_ROOT_PASSWORD": "local-known-minio-pw-5f3e"}
SERVE_TOKEN = "local-known-serving-token-8c4f1e2d9b7a"


def test_local_commands_show_no_secret(sentinel_home: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(SERVE_TOKEN + "\n")
    token_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SENTINEL_TARGET", "SENTINEL_GRPC")}
    # An S3 endpoint that refuses at once: the keys are in play, no request leaves the machine.
    env.update(KNOWN, SENTINEL_SERVE_TOKEN_FILE=str(token_file), AWS_ENDPOINT_URL="http://127.0.0.1:9")
    outputs = tmp_path / "outputs"
    outputs.mkdir()

    def cli(*args: str, code: int = 0) -> str:
        done = subprocess.run([sys.executable, "-m", "sentinel_cli", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
        (outputs / f"{len(list(outputs.iterdir())):02d}-{args[0]}.log").write_text(
            f"$ sentinel {' '.join(args)}\n{done.stdout}\n{done.stderr}")
        assert done.returncode == code, f"{args}: exit {done.returncode}\n{done.stderr[-3000:]}"
        return done.stdout

    summary = json.loads(cli("train", "--epochs", "1", "--batch-size", "4096", "-o", "json"))
    assert summary["mlflow_run_id"]
    cli("status", "-o", "json")
    cli("status")
    cli("train", "--data", str(tmp_path / "missing.zip"), code=2)  # a failing command: its error message
    cli("train", "--data", "s3://no-such-bucket/ratings.parquet", "--epochs", "1", code=2)  # S3 refuses
    for args in (["predict", "-u", "1", "-m", "1,2", "--url", "http://127.0.0.1:9"],  # nothing listens: refused
                 ["predict", "-u", "1", "-m", "1", "--protocol", "grpc", "--grpc", "127.0.0.1:9", "-o", "json"]):
        cli(*args, code=2)
    profile = tmp_path / "k8s.yaml"  # the objects read the keys from a Secret: the environment's stay out
    profile.write_text("target: k8s\nkubernetes:\n  storage: s3://bucket/runs\n  s3:\n    endpoint: http://minio:9000\n"
                       "    credentials_secret: creds\n")
    for what in (["train"], ["serve", "--checkpoint", "s3://bucket/runs/x/best.pt"], ["cluster"]):
        cli("render", *what, "--profile", str(profile), "-o", "json" if what[0] == "cluster" else "yaml")

    scan = Scan()
    for name, value in {**KNOWN, "serving token": SERVE_TOKEN}.items():
        scan.add(name, value)
    scan.files("output", outputs)
    scan.files("sentinel home", sentinel_home, skip=("data",))  # the MLflow sqlite store, index, checkpoints
    assert scan.hits == [], scan.report()
    assert scan.searched["output"] == 10 and scan.searched["sentinel home"] >= 3, scan.report()
    assert (sentinel_home / "mlflow.db").is_file()
