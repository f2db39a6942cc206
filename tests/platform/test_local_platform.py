"""`sentinel up` / `doctor` / `down` on the local target: real checks of Ray, data, storage, MLflow."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sentinel_cli.app import app


def _invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    report = json.loads(result.stdout) if "-o" in args and result.stdout.startswith("{") else None
    return result, report


def _states(report: dict) -> dict[str, str]:
    return {item["name"]: item["state"] for item in report["items"]}


def test_up_local_reports_every_prerequisite(sentinel_home) -> None:
    result, report = _invoke("up", "-o", "json")
    assert result.exit_code == 0, result.output
    assert report["target"] == "local" and report["ok"] is True
    assert _states(report) == {"ray": "pass", "data": "pass", "storage": "pass", "mlflow": "pass"}
    details = {item["name"]: item["detail"] for item in report["items"]}
    assert details["data"] == f"cached in {sentinel_home / 'data' / 'ml-100k'}"
    assert (sentinel_home / "artifacts" / ".sentinel-probe").is_file()


def test_up_local_not_cached_but_source_present(sentinel_home, movielens_zip) -> None:
    (sentinel_home / "data" / "ml-100k" / ".complete").unlink()
    result, report = _invoke("up", "--data", str(movielens_zip), "-o", "json")
    assert result.exit_code == 0, result.output
    assert {i["name"]: i["detail"] for i in report["items"]}["data"] == f"not cached; will copy from {movielens_zip}"


def test_up_local_failures_name_the_fix(sentinel_home, tmp_path) -> None:
    (sentinel_home / "data" / "ml-100k" / ".complete").unlink()
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a directory cannot be made inside a file, even as root
    result, report = _invoke("up", "--data", str(tmp_path / "missing.zip"), "--storage", str(blocker / "ckpt"),
                             "--mlflow-uri", f"sqlite:///{blocker}/db/mlflow.db", "-o", "json")
    assert result.exit_code == 1, result.output
    items = {item["name"]: item for item in report["items"]}
    assert items["ray"]["state"] == "pass"
    for name in ("data", "storage", "mlflow"):
        assert items[name]["state"] == "fail" and items[name]["fix"], items[name]
    assert "--data" in items["data"]["fix"] and "not writable" in items["storage"]["detail"]


def test_doctor_local_without_runs_fails_on_the_index(sentinel_home) -> None:
    result, report = _invoke("doctor", "-o", "json")
    assert result.exit_code == 1, result.output
    index = report["items"][-1]
    assert index["name"] == "checkpoint index" and index["state"] == "fail"
    assert "sentinel train" in index["fix"]
    table = CliRunner().invoke(app, ["doctor"])
    assert table.exit_code == 1 and "checkpoint index" in table.stdout and "fail" in table.stdout


@pytest.mark.slow
def test_doctor_local_passes_with_a_trained_run(sentinel_home, trained_run) -> None:
    result, report = _invoke("doctor", "--storage", trained_run.storage_root, "-o", "json")
    assert result.exit_code == 0, result.output
    assert all(state == "pass" for state in _states(report).values())
    assert trained_run.run_id in report["items"][-1]["detail"]


def test_kubernetes_flags_are_rejected_locally(sentinel_home) -> None:
    result = CliRunner().invoke(app, ["up", "--dry-run", "--target", "local"])
    assert result.exit_code == 2 and "--dry-run only apply to --target k8s" in result.output
    result = CliRunner().invoke(app, ["down", "-o", "json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["items"][0]["state"] == "skip"
