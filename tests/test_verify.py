"""`sentinel verify`: the smoke test a user runs; one row per step, exit 0 or 1, nothing left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SENTINEL = Path(sys.executable).parent / "sentinel"
STEPS = ["ray", "train", "serve", "predict", "cleanup"]


def _verify(*args: str, env: dict[str, str]) -> tuple[int, dict]:
    done = subprocess.run([str(SENTINEL), "verify", *args, "-o", "json"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.stdout.startswith("{"), done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def test_a_cluster_it_cannot_reach_is_a_failed_first_step_with_the_fix(sentinel_home, tmp_path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none"), "SENTINEL_STORAGE": "s3://bucket/prefix"}
    code, report = _verify("--target", "k8s", env=env)
    assert code == 1 and report["ok"] is False
    items = {item["name"]: item for item in report["items"]}
    assert list(items) == ["cluster", "train", "serve", "predict", "cleanup"]
    assert items["cluster"]["state"] == "fail" and "no kubeconfig found" in items["cluster"]["detail"]
    assert "KUBECONFIG" in items["cluster"]["fix"]
    assert [items[n]["state"] for n in ("train", "serve", "predict")] == ["skip"] * 3
    assert items["cleanup"]["state"] == "pass"


@pytest.mark.slow
def test_local_verify_trains_serves_checks_and_removes_what_it_made(sentinel_home, movielens_zip) -> None:
    env = {**os.environ, "SENTINEL_HOME": str(sentinel_home), "SENTINEL_DATA": str(movielens_zip)}
    code, report = _verify(env=env)
    assert code == 0, report
    items = {item["name"]: item for item in report["items"]}
    assert list(items) == STEPS and {i["state"] for i in items.values()} == {"pass"}, report
    assert "match the checkpoint" in items["predict"]["detail"]
    scratch = items["train"]["detail"].split("checkpoint ", 1)[1].split("/runs/", 1)[0]
    assert not Path(scratch).exists()  # its checkpoint store is gone
    assert not (sentinel_home / "artifacts" / "index").exists()  # the user's index never saw the run
    assert not (sentinel_home / "ray" / "cluster.json").exists()  # the local Serve cluster is stopped
    token = (sentinel_home / "serve-token").read_text().strip()  # it served with a token, and sent it
    assert token and token not in json.dumps(report)
