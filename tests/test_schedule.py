"""`sentinel schedule` without a cluster: the cron expression's rules, the crontab line (absolute
paths, shell quoting, cron's %), the train flags checked as `sentinel train` parses them, the runner's
Role as data, and one run whose training step fails, through the real CLI in a child process."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_cli.k8s.settings import KubeSettings
from sentinel_cli.schedules import cron, objects
from sentinel_cli.schedules.spec import ScheduleRequest, crontab_line, run_args
from sentinel_ml.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("expression", ["0 3 * * *", "*/15 * * * *", "0 0 1,15 jan-jun mon-fri", "5-10/2 0 * * 7",
                                        "@daily", "  0  3 * * SUN "])
def test_valid_cron_expressions(expression: str) -> None:
    assert cron.validate(expression) == " ".join(expression.split()).lower() if expression.startswith("@") \
        else " ".join(expression.split())


@pytest.mark.parametrize(("expression", "why"), [
    ("0 3 * *", "it has 4 fields"), ("60 * * * *", "minute: 60 is outside 0-59"),
    ("0 24 * * *", "hour: 24 is outside 0-23"), ("0 0 0 * *", "day of month: 0 is outside 1-31"),
    ("0 0 * 13 *", "month: 13 is outside 1-12"), ("0 0 * * 8", "day of week: 8 is outside 0-7"),
    ("*/0 * * * *", "a step of 0"), ("0 5-1 * * *", "runs backwards"), ("0 0 * foo *", "'foo' is not a number"),
    ("@reboot", "is not one of"), ("0 3 * * * *", "it has 6 fields"),
])
def test_invalid_cron_expressions_name_the_field(expression: str, why: str) -> None:
    with pytest.raises(cron.CronError) as raised:
        cron.validate(expression)
    assert why in raised.value.message and "0 3 * * *" in raised.value.hint


def test_the_crontab_line_quotes_every_word_and_escapes_percent(tmp_path) -> None:
    request = ScheduleRequest(name="nightly", cron="0 3 * * *", train_args=("--data", "/data/my ratings%.csv"),
                              promote_if_better=True, metric="ndcg@10", tolerance=0.005)
    line = crontab_line(request, ["/opt/venv/bin/sentinel"], tmp_path / "work dir", tmp_path / "nightly.log")
    assert line.startswith(f"0 3 * * * cd '{tmp_path}/work dir' && /opt/venv/bin/sentinel schedule run ")
    assert "\\%" in line and "%" not in line.replace("\\%", "")
    # What cron hands to sh (with the escape undone) splits back into exactly the run's words.
    command = line.replace("\\%", "%").split(" && ", 1)[1].rsplit(" >> ", 1)[0]
    assert shlex.split(command) == ["/opt/venv/bin/sentinel", *run_args(request, "local")]
    assert run_args(request, "local")[-3:] == ["--", "--data", "/data/my ratings%.csv"]


def test_schedule_train_locally_prints_the_crontab_line_and_installs_nothing(sentinel_home, tmp_path,
                                                                             monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["schedule", "train", "--cron", "*/1 * * * *", "--promote-if-better",
                                      "--", "--epochs", "2", "--split", "temporal"])
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    assert line.startswith(f"*/1 * * * * cd {tmp_path} && {Path(sys.executable).absolute()} -m sentinel_cli ")
    assert "--promote-if-better --metric rmse -- --epochs 2 --split temporal >> " in line
    assert str(sentinel_home / "schedules" / "sentinel-retrain.log") in line
    assert "not installed" in result.stderr


@pytest.mark.parametrize(("args", "said"), [
    (["--cron", "0 3 * * *", "--epoks", "2"], "No such option: --epoks"),
    (["--cron", "0 3 * * *", "--model", "nope"], "'nope' is not one of"),
    (["--cron", "0 3 * * *", "--", "-o", "json"], "-o cannot be a train flag"),
    (["--cron", "0 3 * * *", "--canary", "150"], "between 0 and 100"),
    (["--cron", "3 * *"], "invalid cron expression"),
    (["--cron", "0 3 * * *", "--target", "k8s", "--name", "Nightly_Run"], "invalid schedule name"),
])
def test_bad_schedules_exit_2_before_anything_is_made(sentinel_home, args: list[str], said: str) -> None:
    result = CliRunner().invoke(app, ["schedule", "train", *args])
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.stderr.split()) and "Traceback" not in result.output


def test_list_and_delete_are_for_kubernetes(sentinel_home) -> None:
    for args in (["schedule", "list"], ["schedule", "delete", "nightly"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "crontab" in result.stderr


def test_the_runner_role_reads_no_secret_and_makes_no_pod() -> None:
    role = objects.role("nightly", "ml")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert not {r for _, r, _ in granted} & {"secrets", "configmaps", "rayclusters", "cronjobs", "jobs", "roles"}
    assert ("", "pods", "create") not in granted and all(v != "*" for *_, v in granted)
    request = ScheduleRequest(name="nightly", cron="@daily", canary=10)
    settings = KubeSettings(namespace="ml", s3={"endpoint": "http://minio:9000", "credentials_secret": "creds"})
    cronjob = objects.cronjob(request, settings)
    env = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    # The S3 keys reach the pod through the kubelet (secretKeyRef), never through the runner's RBAC.
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e} == {"creds"}
    assert cronjob["metadata"]["annotations"][objects.ACTION] == "canary 10%"


def test_a_run_whose_training_fails_records_failed_with_the_error(sentinel_home) -> None:
    """(A train flag its parser refuses: the cheapest real failure of the real command.)"""
    result = subprocess.run([sys.executable, "-m", "sentinel_cli", "schedule", "run", "--name", "nightly",
                             "--target", "local", "--promote-if-better", "--", "--workers", "0"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2, result.stderr
    outcome = json.loads(result.stdout)
    assert (outcome["schedule"], outcome["outcome"], outcome["step"], outcome["exit_code"]) == (
        "nightly", "failed", "train", 2)
    assert "--workers" in outcome["detail"] and "Invalid value" in outcome["detail"]


def test_requests_refuse_an_unknown_metric() -> None:
    with pytest.raises(ConfigError):
        ScheduleRequest(name="n", cron="@daily", metric="mae")
